//! [`Scheduler`]: admission into the [`JobQueue`] and dispatch onto run slots.
//!
//! A job asks for a [`Slot`] with its tenant, priority and queue-wait deadline. A full queue refuses
//! at once (the API answers 429); otherwise the job waits until the queue's order gives it a free
//! slot, or until its deadline (it then leaves the queue and never starts). A slot is held while the
//! job runs; dropping it frees the slot and dispatches the next job.
//!
//! How many slots there are is the [`ConcurrencyLimit`], adapted once a second to how busy the
//! CPUs are (`limit.rs`). The same once-a-second upkeep hands the shards' pools the pages to keep
//! warm per isolation key, from the demand the [`Statistics`] predict. Which shard a job with a
//! slot runs on is the shards' choice (`shard/`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::cpu::Priority;
use super::limit::{ADAPT_EVERY, ConcurrencyLimit, CpuMeter};
use super::origins::{KeyDemand, Statistics};
use super::queue::{BAND_NAMES, Class, JobQueue, Placement, Refused, Ticket, band_of};
use crate::metrics::{BandLabels, Metrics, ReasonLabels};
use crate::plugin::{
    JobContext, JobInfo, OriginStats, Plugin, PluginError, PluginHost, PriorityClass, Role,
};

/// Urgent jobs that may run beyond the concurrency limit, so that an urgent job does not wait for
/// a render to finish; never beyond `--max-concurrent-renders`.
pub const URGENT_HEADROOM: usize = 2;

/// While a favoured job runs or an urgent one waits, other jobs start only while fewer than this
/// many of them run. Favoured jobs are urgent ones and a tenant's only job in flight (a trickle
/// beside another tenant's flood). Renders share the CPUs, so every other render under way slows
/// the favoured one (on 2 cores one render alone takes ~150 ms, one of four ~340 ms, measured):
/// those already running finish, the favoured job soon has Chromium nearly to itself, and the
/// others fill the slots again once it is done. When every job is favoured (many light tenants),
/// none is held back.
pub const OTHERS_DURING_FAVOURED: usize = 1;

/// How long a scorer call may wait for a plugin instance and run, in all.
const SCORER_WAIT: Duration = Duration::from_millis(100);

/// What the scheduler needs to know of a job.
#[derive(Debug, Clone)]
pub struct Admission {
    pub tenant: Arc<str>,
    pub class: Class,
    /// Moves the job within its class: -50..=50.
    pub number: i8,
    /// When the request arrived: a scorer sees the job's age from it.
    pub received_at: Instant,
    pub queue_deadline: Instant,
    /// The page (`about:blank` for inline HTML) and the extractor, for a scorer plugin.
    pub url: String,
    pub plugin: Option<String>,
    /// Scheme, host and port of `url` (empty for inline HTML): whose statistics the job feeds and
    /// draws its predicted cost from.
    pub origin: String,
    /// The pages the job runs on: demand per key decides which pages are kept warm.
    pub isolation_key: Arc<str>,
}

impl Admission {
    /// An admission for `url` with the defaults a request without scheduling fields gets.
    pub fn new(url: &str, queue_deadline: Instant) -> Self {
        Self {
            tenant: Arc::from("default"),
            class: Class::Hot,
            number: 0,
            received_at: Instant::now(),
            queue_deadline,
            url: url.to_owned(),
            plugin: None,
            origin: origin_of(url),
            isolation_key: Arc::from(crate::pool::DEFAULT_ISOLATION_KEY),
        }
    }
}

/// Scheme, host and port of `url`; empty when it has none (inline HTML's `about:blank`).
pub fn origin_of(url: &str) -> String {
    match url::Url::parse(url).map(|url| url.origin()) {
        Ok(origin @ url::Origin::Tuple(..)) => origin.ascii_serialization(),
        _ => String::new(),
    }
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
    /// Jobs that may run at once, at most (`--max-concurrent-renders`).
    pub slots: usize,
    /// The least the adaptive limit goes down to, and where it starts.
    pub min_slots: usize,
    pub start_slots: usize,
    /// Adapt the limit to the CPUs' load; off, it stays at `slots`.
    pub adaptive: bool,
    /// Waiting this long lifts a job one band.
    pub aging_step: Duration,
    /// First come, first served: classes, numbers, tenants, scorers and costs are ignored (a
    /// baseline for the benchmarks, and an escape hatch).
    pub fifo: bool,
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
    /// Jobs that may run now: the adaptive limit.
    pub slots: usize,
    pub min_slots: usize,
    pub max_slots: usize,
    /// How busy the CPUs were in the last second (0 to 1), as the limit saw it.
    pub cpu_busy: Option<f64>,
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
    stats: Statistics,
}

#[derive(Debug)]
struct State {
    queue: JobQueue<oneshot::Sender<Slot>>,
    running: Running,
    limit: ConcurrencyLimit,
    /// A job waited while every slot was taken, since the limit last adapted.
    held_back: bool,
    cpu_busy: Option<f64>,
    /// Keys with demand, as the last upkeep saw them.
    demand: Vec<KeyDemand>,
}

/// The jobs holding run slots: how many, how many of them are favoured, and how many per tenant.
#[derive(Debug, Default)]
struct Running {
    total: usize,
    favoured: usize,
    by_tenant: std::collections::HashMap<Arc<str>, usize>,
}

impl Running {
    fn of(&self, tenant: &str) -> usize {
        self.by_tenant.get(tenant).copied().unwrap_or(0)
    }

    fn start(&mut self, tenant: &Arc<str>, favoured: bool) {
        self.total += 1;
        self.favoured += usize::from(favoured);
        *self.by_tenant.entry(tenant.clone()).or_default() += 1;
    }

    fn end(&mut self, tenant: &str, favoured: bool) {
        self.total -= 1;
        self.favoured -= usize::from(favoured);
        if let Some(count) = self.by_tenant.get_mut(tenant) {
            *count -= 1;
            if *count == 0 {
                self.by_tenant.remove(tenant);
            }
        }
    }
}

/// A run slot, held while a job runs. Dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    inner: Option<Arc<Inner>>,
    taken_at: Instant,
    priority: Priority,
    tenant: Arc<str>,
    /// Others made way for this job (`OTHERS_DURING_FAVOURED`).
    favoured: bool,
}

impl Slot {
    /// The job's priority when it left the queue (its band after aging, and its score): its
    /// standing for the CPU slots its plugin code runs in.
    pub fn priority(&self) -> Priority {
        self.priority
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner
                .metrics
                .sched_run_seconds
                .observe(self.taken_at.elapsed().as_secs_f64());
            inner.changed(|state| state.running.end(&self.tenant, self.favoured));
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
        self.metrics.sched_running.set(state.running.total as i64);
        result
    }

    fn reject(&self, reason: &'static str) {
        self.metrics
            .sched_rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Hands free slots to the jobs the queue puts first. A job whose caller left is skipped.
    fn dispatch(self: &Arc<Self>) {
        loop {
            let waiter = self.changed(|state| {
                let now = std::time::Instant::now();
                let fifo = self.settings.fifo;
                let running = &state.running;
                let favoured =
                    |band: usize, tenant: &str| !fifo && (band == 0 || running.of(tenant) == 0);
                let others = running.total - running.favoured;
                let favoured_active =
                    !fifo && (running.favoured > 0 || state.queue.depth_by_band()[0] > 0);
                let limit = state.limit.current;
                let popped = if running.total < limit
                    && !(favoured_active && others >= OTHERS_DURING_FAVOURED)
                {
                    state.queue.pop_with_band(now)
                } else if !fifo
                    && others > 0
                    && running.total < (limit + URGENT_HEADROOM).min(state.limit.max)
                {
                    // Beyond the limit only jobs that others make way for: the others already
                    // running finish and none starts, so the favoured job does not crowd Chromium.
                    state.queue.pop_next(now, 2, favoured)
                } else {
                    None
                };
                let Some((band, placement, waiter)) = popped else {
                    state.held_back |= !state.queue.is_empty() && state.running.total >= limit;
                    return None;
                };
                let favoured = favoured(band, &placement.tenant);
                state.running.start(&placement.tenant, favoured);
                let priority = Priority {
                    band: band as u8,
                    score: placement.score,
                };
                Some((priority, placement.tenant, favoured, waiter))
            });
            let Some((priority, tenant, favoured, waiter)) = waiter else {
                return;
            };
            let slot = Slot {
                inner: Some(self.clone()),
                taken_at: Instant::now(),
                priority,
                tenant,
                favoured,
            };
            if let Err(mut unwanted) = waiter.send(slot) {
                // The caller gave up between its deadline check and now: take the slot back without
                // recursing through its `Drop`.
                unwanted.inner = None;
                self.changed(|state| state.running.end(&unwanted.tenant, unwanted.favoured));
            }
        }
    }
}

/// A job in the queue, waiting for a run slot. Dropping it (the caller's deadline, a request that
/// went away, a cancelled async job) takes the job out of the queue.
#[derive(Debug)]
pub struct Queued {
    inner: Arc<Inner>,
    ticket: Option<Ticket>,
    receiver: oneshot::Receiver<Slot>,
    enqueued_at: Instant,
    deadline: Instant,
    band: usize,
}

impl Queued {
    /// Waits for a run slot in the queue's order, until the job's queue deadline.
    pub async fn slot(mut self) -> Result<Slot, SchedError> {
        match tokio::time::timeout_at(self.deadline, &mut self.receiver).await {
            Ok(Ok(slot)) => {
                self.ticket = None;
                self.inner
                    .metrics
                    .sched_wait_seconds
                    .get_or_create(&BandLabels {
                        band: BAND_NAMES[self.band],
                    })
                    .observe(self.enqueued_at.elapsed().as_secs_f64());
                Ok(slot)
            }
            // Timed out (or, which cannot happen while the queue holds the sender, dropped):
            // the drop takes the ticket out as it goes.
            Ok(Err(_)) | Err(_) => {
                self.inner.reject("queue_timeout");
                Err(SchedError::QueueTimeout {
                    waited: self.enqueued_at.elapsed(),
                })
            }
        }
    }
}

impl Drop for Queued {
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
                    running: Running::default(),
                    limit: if settings.adaptive {
                        ConcurrencyLimit::new(
                            settings.start_slots,
                            settings.min_slots,
                            settings.slots,
                        )
                    } else {
                        ConcurrencyLimit::new(settings.slots, settings.slots, settings.slots)
                    },
                    held_back: false,
                    cpu_busy: None,
                    demand: Vec::new(),
                }),
                settings,
                metrics,
                plugins,
                scorer: RwLock::new(None),
                stats: Statistics::default(),
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
        let info =
            JobInfo {
                url: admission.url.clone(),
                origin: admission.origin.clone(),
                plugin: admission.plugin.clone(),
                tenant: Some(admission.tenant.to_string()),
                class: match admission.class {
                    Class::Urgent => PriorityClass::Urgent,
                    Class::Hot => PriorityClass::Hot,
                    Class::Cold => PriorityClass::Cold,
                },
                priority: Some(i32::from(admission.number)),
                age_ms: admission.received_at.elapsed().as_millis() as u64,
                // A job is scored once, when it is admitted; a retry after a browser death keeps its
                // slot and is not queued again.
                attempt: 1,
                origin_stats: self.inner.stats.origin(&admission.origin).map(|figures| {
                    OriginStats {
                        jobs: figures.jobs,
                        mean_render_ms: figures.mean_render_ms,
                        failure_rate: figures.failure_rate,
                    }
                }),
            };
        // Waiting long for a plugin instance would hold up admission: give up soon. A scorer is
        // not page work and belongs to no shard: it runs on the first shard's workers.
        let job = JobContext {
            id: 0,
            deadline: Instant::now() + SCORER_WAIT,
            priority: Priority::ADMISSION,
            shard: 0,
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

    /// Waits for a run slot in the queue's order, until the job's queue deadline.
    pub async fn admit(&self, admission: &Admission) -> Result<Slot, SchedError> {
        self.enqueue(admission).await?.slot().await
    }

    /// Scores the job and puts it in the queue; a full queue refuses it at once.
    pub async fn enqueue(&self, admission: &Admission) -> Result<Queued, SchedError> {
        let enqueued_at = Instant::now();
        self.inner
            .stats
            .arrived(&admission.isolation_key, enqueued_at.into_std());
        let (sender, receiver) = oneshot::channel();
        let (tenant, score, cost) = if self.inner.settings.fifo {
            // One tenant, one score, one cost: the queue's order is the arrival order.
            (Arc::from(""), Class::Hot.base_score(), 1.0)
        } else {
            (
                admission.tenant.clone(),
                self.score(admission).await,
                self.inner.stats.predicted_ms(&admission.origin),
            )
        };
        let placement = Placement {
            tenant,
            score,
            cost,
            enqueued_at: enqueued_at.into_std(),
            queue_deadline: admission.queue_deadline.into_std(),
        };
        let pushed = self
            .inner
            .changed(|state| state.queue.push(placement, sender));
        let ticket = pushed.map_err(|Refused::Full(capacity)| {
            self.inner.reject("queue_full");
            SchedError::QueueFull { capacity }
        })?;
        let queued = Queued {
            inner: self.inner.clone(),
            ticket: Some(ticket),
            receiver,
            enqueued_at,
            deadline: admission.queue_deadline,
            band: band_of(score),
        };
        self.inner.dispatch();
        Ok(queued)
    }

    /// A job admitted with `admission` ran for `ran`; `origin_failed` if it failed in a way that
    /// is the site's doing (it did not load, timed out, crashed its renderer).
    pub fn finished(&self, admission: &Admission, ran: Duration, origin_failed: bool) {
        self.inner.stats.finished(
            &admission.origin,
            &admission.isolation_key,
            ran,
            !origin_failed,
            std::time::Instant::now(),
        );
    }

    /// Per-origin and per-key statistics.
    pub fn statistics(&self) -> &Statistics {
        &self.inner.stats
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
            running: state.running.total,
            slots: state.limit.current,
            min_slots: state.limit.min,
            max_slots: state.limit.max,
            cpu_busy: state.cpu_busy,
        }
    }

    /// The keys with demand and the pages kept warm for them, as the last upkeep computed them.
    pub fn demand(&self) -> Vec<KeyDemand> {
        self.inner.lock().demand.clone()
    }

    /// Jobs that may run at once now: the adaptive limit.
    pub fn limit(&self) -> usize {
        self.inner.lock().limit.current
    }

    /// Starts the once-a-second upkeep: adapt the concurrency limit, and hand `warm` the keys with
    /// demand and the pages to keep warm for each (the shards' pools). It ends with the scheduler.
    pub fn start_upkeep(&self, warm: impl Fn(&[KeyDemand]) + Send + 'static) {
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut meter = CpuMeter::new(None);
            let mut tick = tokio::time::interval(ADAPT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                let busy = meter.busy();
                let demand = inner.stats.demand(std::time::Instant::now());
                warm(&demand);
                let adaptive = inner.settings.adaptive;
                inner.changed(|state| {
                    if let (true, Some(busy)) = (adaptive, busy) {
                        state.limit.adapt(busy, state.held_back);
                    }
                    state.held_back = false;
                    state.cpu_busy = busy;
                    state.demand = demand;
                });
                inner
                    .metrics
                    .sched_limit
                    .set(inner.lock().limit.current as i64);
                // A limit that grew lets waiting jobs in now.
                inner.dispatch();
            }
        });
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
                min_slots: slots,
                start_slots: slots,
                adaptive: false,
                aging_step: Duration::from_secs(10),
                fifo: false,
            },
            Metrics::new(),
            None,
        )
    }

    fn admission(tenant: &str, class: Class, wait: Duration) -> Admission {
        Admission {
            tenant: Arc::from(tenant),
            class,
            ..Admission::new("about:blank", Instant::now() + wait)
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

    /// A scheduler whose limit is `limit` with room up to `max`.
    fn scheduler_with_headroom(limit: usize, max: usize) -> Scheduler {
        Scheduler::new(
            SchedSettings {
                queue_capacity: 100,
                slots: max,
                min_slots: limit,
                start_slots: limit,
                adaptive: true,
                aging_step: Duration::from_secs(10),
                fifo: false,
            },
            Metrics::new(),
            None,
        )
    }

    /// Admits a job in a task of its own, returning its slot (or error) when it gets one.
    fn admit_later(
        scheduler: &Scheduler,
        tenant: &'static str,
        class: Class,
    ) -> tokio::task::JoinHandle<Result<Slot, SchedError>> {
        let scheduler = scheduler.clone();
        tokio::spawn(async move {
            scheduler
                .admit(&admission(tenant, class, Duration::from_secs(5)))
                .await
        })
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn an_urgent_job_starts_beyond_the_limit_and_others_wait_for_it() {
        let scheduler = scheduler_with_headroom(2, 4);
        let cold = |_| admission("t", Class::Cold, Duration::from_secs(5));
        let first = scheduler.admit(&cold(())).await.expect("a slot");
        let second = scheduler.admit(&cold(())).await.expect("a slot");
        // Both slots are taken, yet the urgent job starts at once.
        let urgent = scheduler
            .admit(&admission("t", Class::Urgent, Duration::from_secs(5)))
            .await
            .expect("a slot beyond the limit");
        assert_eq!(urgent.priority().band, 0);
        let waiting = admit_later(&scheduler, "t", Class::Cold);
        settle().await;
        drop(first);
        settle().await;
        assert!(
            !waiting.is_finished(),
            "no other job starts while the urgent one runs and one other still does"
        );
        drop(urgent);
        let started = waiting.await.expect("task").expect("a slot");
        assert_eq!(scheduler.status().running, 2);
        drop((second, started));
    }

    #[tokio::test]
    async fn a_tenants_only_job_starts_while_another_tenants_flood_holds_the_slots() {
        let scheduler = scheduler_with_headroom(2, 4);
        let flood: Vec<_> = (0..2)
            .map(|_| admission("flood", Class::Hot, Duration::from_secs(5)))
            .collect();
        let mut held = Vec::new();
        for job in &flood {
            held.push(scheduler.admit(job).await.expect("a slot"));
        }
        let queued: Vec<_> = (0..5)
            .map(|_| admit_later(&scheduler, "flood", Class::Hot))
            .collect();
        settle().await;
        assert_eq!(scheduler.status().queued, 5);
        let trickle = scheduler
            .admit(&admission("trickle", Class::Hot, Duration::from_secs(5)))
            .await
            .expect("the trickle's job starts at once");
        assert_eq!(scheduler.status().running, 3);
        drop((trickle, held));
        for job in queued {
            drop(job.await.expect("task").expect("a slot"));
        }
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
