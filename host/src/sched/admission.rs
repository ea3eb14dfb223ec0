//! [`Scheduler`]: admission into the [`JobQueue`] and dispatch onto a fixed number of run slots.
//!
//! A job asks for a [`Slot`] with its tenant, priority and queue-wait deadline. A full queue refuses
//! at once (the API answers 429); otherwise the job waits until the queue's order gives it a free
//! slot, or until its deadline (it then leaves the queue and never starts). A slot is held while the
//! job runs; dropping it frees the slot and dispatches the next job.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::queue::{BAND_NAMES, Class, JobQueue, Placement, Refused, Ticket, band_of};
use crate::metrics::{BandLabels, Metrics, ReasonLabels};
use crate::plugin::{JobContext, JobInfo, Plugin, PluginError, PluginHost, PriorityClass, Role};

/// How long a scorer call may wait for a plugin instance and run, in all.
const SCORER_WAIT: Duration = Duration::from_millis(100);

/// What the scheduler needs to know of a job.
#[derive(Debug, Clone)]
pub struct Admission {
    pub tenant: Arc<str>,
    pub class: Class,
    /// Moves the job within its class: -50..=50.
    pub number: i8,
    pub queue_deadline: Instant,
    /// The page (`about:blank` for inline HTML) and the extractor, for a scorer plugin.
    pub url: String,
    pub plugin: Option<String>,
}

impl Admission {
    /// The built-in score: the class's base plus the number.
    pub fn score(&self) -> f64 {
        self.class.base_score() + f64::from(self.number)
    }
}

#[derive(Debug, Clone)]
pub struct SchedSettings {
    /// Jobs that may wait at once; beyond it, 429.
    pub queue_capacity: usize,
    /// Jobs that may run at once.
    pub slots: usize,
    /// Waiting this long lifts a job one band.
    pub aging_step: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("the queue is full ({capacity} jobs waiting); retry later")]
    QueueFull { capacity: usize },
    #[error("the job waited {} ms in the queue without a free slot and was not started", waited.as_millis())]
    QueueTimeout { waited: Duration },
}

/// Queue and slot figures at one moment, for `/v1/pressure` and `/v1/status`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SchedStatus {
    pub queued: usize,
    pub queue_capacity: usize,
    /// Waiting jobs by the band they were queued in.
    pub queued_urgent: usize,
    pub queued_hot: usize,
    pub queued_cold: usize,
    pub running: usize,
    pub slots: usize,
}

/// The scheduler. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    settings: SchedSettings,
    metrics: Metrics,
    /// The plugin host scorers run in; `None` when scores are always the built-in ones.
    plugins: Option<PluginHost>,
    scorer: RwLock<Option<Arc<Plugin>>>,
}

#[derive(Debug)]
struct State {
    queue: JobQueue<oneshot::Sender<Slot>>,
    running: usize,
}

/// A run slot, held while a job runs. Dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    inner: Option<Arc<Inner>>,
    taken_at: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner
                .metrics
                .sched_run_seconds
                .observe(self.taken_at.elapsed().as_secs_f64());
            inner.changed(|state| state.running -= 1);
            inner.dispatch();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the state under the lock and publishes the queue and slot gauges.
    fn changed<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.lock();
        let result = change(&mut state);
        for (band, depth) in BAND_NAMES.iter().zip(state.queue.depth_by_band()) {
            self.metrics
                .sched_queued
                .get_or_create(&BandLabels { band })
                .set(depth as i64);
        }
        self.metrics.sched_running.set(state.running as i64);
        result
    }

    /// Hands free slots to the jobs the queue puts first. A job whose caller left is skipped.
    fn dispatch(self: &Arc<Self>) {
        loop {
            let waiter = self.changed(|state| {
                if state.running >= self.settings.slots {
                    return None;
                }
                let (_, waiter) = state.queue.pop(std::time::Instant::now())?;
                state.running += 1;
                Some(waiter)
            });
            let Some(waiter) = waiter else {
                return;
            };
            let slot = Slot {
                inner: Some(self.clone()),
                taken_at: Instant::now(),
            };
            if let Err(mut unwanted) = waiter.send(slot) {
                // The caller gave up between its deadline check and now: take the slot back without
                // recursing through its `Drop`.
                unwanted.inner = None;
                self.changed(|state| state.running -= 1);
            }
        }
    }
}

/// Takes a job's ticket out of the queue if the caller stops waiting (its deadline, or its
/// request went away).
struct Waiting<'a> {
    inner: &'a Arc<Inner>,
    ticket: Option<Ticket>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.inner.changed(|state| state.queue.remove(ticket));
        }
    }
}

impl Scheduler {
    /// A scheduler; with `plugins`, a scorer plugin can be set.
    pub fn new(settings: SchedSettings, metrics: Metrics, plugins: Option<PluginHost>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: JobQueue::new(settings.queue_capacity, settings.aging_step),
                    running: 0,
                }),
                settings,
                metrics,
                plugins,
                scorer: RwLock::new(None),
            }),
        }
    }

    /// Scores jobs with `scorer` (a plugin with the scorer role) from now on, or with the built-in
    /// score if `None`.
    pub fn set_scorer(&self, scorer: Option<Arc<Plugin>>) -> Result<(), PluginError> {
        if let Some(scorer) = &scorer {
            scorer.require(Role::Scorer)?;
        }
        *self
            .inner
            .scorer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = scorer;
        Ok(())
    }

    pub fn scorer(&self) -> Option<Arc<Plugin>> {
        self.inner
            .scorer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The job's score: the scorer plugin's, or the built-in one when there is none or it fails
    /// (a trap, its small fuel budget, a score that is not a number). A failure is counted, never
    /// a reason to refuse the job.
    async fn score(&self, admission: &Admission) -> f64 {
        let builtin = admission.score();
        let (Some(plugins), Some(scorer)) = (&self.inner.plugins, self.scorer()) else {
            return builtin;
        };
        let info = JobInfo {
            url: admission.url.clone(),
            origin: url::Url::parse(&admission.url)
                .map(|url| url.origin().ascii_serialization())
                .unwrap_or_default(),
            plugin: admission.plugin.clone(),
            tenant: Some(admission.tenant.to_string()),
            class: match admission.class {
                Class::Urgent => PriorityClass::Urgent,
                Class::Hot => PriorityClass::Hot,
                Class::Cold => PriorityClass::Cold,
            },
            priority: Some(i32::from(admission.number)),
            age_ms: 0,
            attempt: 1,
            origin_stats: None,
        };
        // Waiting long for a plugin instance would hold up admission: give up soon.
        let job = JobContext {
            id: 0,
            deadline: Instant::now() + SCORER_WAIT,
        };
        match plugins.score(&scorer, info, job).await.0 {
            Ok(score) if score.is_finite() => score,
            Ok(score) => {
                tracing::debug!(
                    scorer = scorer.name(),
                    score,
                    "the scorer's score is not a number; using the built-in one"
                );
                self.inner.metrics.sched_scorer_failures.inc();
                builtin
            }
            Err(error) => {
                tracing::debug!(scorer = scorer.name(), %error, "the scorer failed; using the built-in score");
                self.inner.metrics.sched_scorer_failures.inc();
                builtin
            }
        }
    }

    fn reject(&self, reason: &'static str) {
        self.inner
            .metrics
            .sched_rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Waits for a run slot in the queue's order, until the job's queue deadline.
    pub async fn admit(&self, admission: &Admission) -> Result<Slot, SchedError> {
        let enqueued_at = Instant::now();
        let (sender, receiver) = oneshot::channel();
        let placement = Placement {
            tenant: admission.tenant.clone(),
            score: self.score(admission).await,
            enqueued_at: enqueued_at.into_std(),
            queue_deadline: admission.queue_deadline.into_std(),
        };
        let score = placement.score;
        let pushed = self
            .inner
            .changed(|state| state.queue.push(placement, sender));
        let ticket = pushed.map_err(|Refused::Full(capacity)| {
            self.reject("queue_full");
            SchedError::QueueFull { capacity }
        })?;
        let mut waiting = Waiting {
            inner: &self.inner,
            ticket: Some(ticket),
        };
        self.inner.dispatch();
        match tokio::time::timeout_at(admission.queue_deadline, receiver).await {
            Ok(Ok(slot)) => {
                waiting.ticket = None;
                self.inner
                    .metrics
                    .sched_wait_seconds
                    .get_or_create(&BandLabels {
                        band: BAND_NAMES[band_of(score)],
                    })
                    .observe(enqueued_at.elapsed().as_secs_f64());
                Ok(slot)
            }
            // Timed out (or, which cannot happen while the queue holds the sender, dropped):
            // `waiting` takes the ticket out as it goes.
            Ok(Err(_)) | Err(_) => {
                self.reject("queue_timeout");
                Err(SchedError::QueueTimeout {
                    waited: enqueued_at.elapsed(),
                })
            }
        }
    }

    pub fn status(&self) -> SchedStatus {
        let state = self.inner.lock();
        let [urgent, hot, cold] = state.queue.depth_by_band();
        SchedStatus {
            queued: state.queue.len(),
            queue_capacity: state.queue.capacity(),
            queued_urgent: urgent,
            queued_hot: hot,
            queued_cold: cold,
            running: state.running,
            slots: self.inner.settings.slots,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(capacity: usize, slots: usize) -> Scheduler {
        Scheduler::new(
            SchedSettings {
                queue_capacity: capacity,
                slots,
                aging_step: Duration::from_secs(10),
            },
            Metrics::new(),
            None,
        )
    }

    fn admission(tenant: &str, class: Class, wait: Duration) -> Admission {
        Admission {
            tenant: Arc::from(tenant),
            class,
            number: 0,
            queue_deadline: Instant::now() + wait,
            url: "about:blank".into(),
            plugin: None,
        }
    }

    /// Takes a one-slot scheduler's slot, and queues one more job with `wait` as its queue budget.
    async fn busy_with_one_waiting(
        scheduler: &Scheduler,
        wait: Duration,
    ) -> (Slot, tokio::task::JoinHandle<Result<Slot, SchedError>>) {
        let busy = scheduler
            .admit(&admission("t", Class::Hot, Duration::from_secs(5)))
            .await
            .expect("a free slot");
        let waiting = {
            let scheduler = scheduler.clone();
            tokio::spawn(async move { scheduler.admit(&admission("t", Class::Hot, wait)).await })
        };
        while scheduler.status().queued < 1 {
            tokio::task::yield_now().await;
        }
        (busy, waiting)
    }

    #[tokio::test]
    async fn slots_go_to_the_highest_priority_waiting_job() {
        let scheduler = scheduler(10, 1);
        let busy = scheduler
            .admit(&admission("t", Class::Hot, Duration::from_secs(5)))
            .await
            .expect("a free slot");
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for (name, class) in [
            ("cold", Class::Cold),
            ("hot", Class::Hot),
            ("urgent", Class::Urgent),
        ] {
            let scheduler = scheduler.clone();
            let order_tx = order_tx.clone();
            waiters.push(tokio::spawn(async move {
                let slot = scheduler
                    .admit(&admission("t", class, Duration::from_secs(5)))
                    .await
                    .expect("admitted");
                order_tx.send(name).expect("send");
                drop(slot);
            }));
            tokio::task::yield_now().await;
        }
        // Let every waiter queue before the slot frees.
        while scheduler.status().queued < 3 {
            tokio::task::yield_now().await;
        }
        drop(busy);
        for waiter in waiters {
            waiter.await.expect("waiter");
        }
        let mut seen = Vec::new();
        while let Ok(name) = order.try_recv() {
            seen.push(name);
        }
        assert_eq!(seen, ["urgent", "hot", "cold"]);
        assert_eq!(scheduler.status().running, 0);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_waiting_job_times_out_without_starting() {
        let scheduler = scheduler(1, 1);
        let (_busy, waiting) = busy_with_one_waiting(&scheduler, Duration::from_millis(200)).await;
        let refused = scheduler
            .admit(&admission("t", Class::Urgent, Duration::from_secs(5)))
            .await;
        assert!(
            matches!(refused, Err(SchedError::QueueFull { capacity: 1 })),
            "{refused:?}"
        );
        let timed_out = waiting.await.expect("task");
        assert!(
            matches!(timed_out, Err(SchedError::QueueTimeout { .. })),
            "{timed_out:?}"
        );
        assert_eq!(
            scheduler.status().queued,
            0,
            "the expired job left the queue"
        );
        assert_eq!(scheduler.status().running, 1);
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_leaves_the_queue() {
        let scheduler = scheduler(10, 1);
        let (busy, waiting) = busy_with_one_waiting(&scheduler, Duration::from_secs(5)).await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(scheduler.status().queued, 0);
        drop(busy);
        assert_eq!(
            scheduler.status().running,
            0,
            "no slot went to the departed caller"
        );
    }
}
