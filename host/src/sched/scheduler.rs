//! [`Scheduler`]: admission into the [`JobQueue`] and dispatch onto run slots.
//!
//! A job is scored (`scoring.rs`) and queued with its tenant and queue-wait deadline. A full queue
//! refuses at once (the API answers 429); otherwise the job waits until the queue's order gives it a
//! free slot, or until its deadline (it then leaves the queue and never starts). A [`RunSlot`] is held
//! while the job runs; [`RunSlot::finished`] feeds the job's render time to the statistics, and
//! dropping the slot frees it and dispatches the next job.
//!
//! How many slots there are is the [`ConcurrencyLimit`], adapted once a second to how busy the
//! CPUs are (`limit.rs`). The same once-a-second upkeep hands the shards' pools the pages to keep
//! warm per isolation key, from the demand the [`Statistics`] predict. Which shard a job with a
//! slot runs on is the shards' choice (`shard/`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::limit::{ADAPT_EVERY, ConcurrencyLimit, CpuMeter};
use super::origins::{KeyDemand, Statistics};
use super::priority::Priority;
use super::queue::{BAND_NAMES, JobQueue, QueueEntry, Refused, Ticket, band_of};
use super::scoring::{SCORER_BUDGET, ScoreRequest, Scorer, builtin_score};
use crate::job::{Class, Job};
use crate::metrics::{BandLabels, Metrics, ReasonLabels};
use crate::tasks::supervise;

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

/// Scheme, host and port of `url`; empty when it has none (inline HTML's `about:blank`).
pub fn origin_of(url: &str) -> String {
    match url::Url::parse(url).map(|url| url.origin()) {
        Ok(origin @ url::Origin::Tuple(..)) => origin.ascii_serialization(),
        _ => String::new(),
    }
}

#[derive(Debug, Clone)]
pub struct SchedSettings {
    /// Jobs that may wait at once; beyond it, 429. Each waiting job costs a few hundred bytes of
    /// host memory.
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

impl SchedSettings {
    /// Holds a flood of 12,800+ jobs.
    pub const QUEUE_CAPACITY: usize = 16_384;
    /// A cold job waiting this long counts as hot: cold jobs finish under a flood of hot ones.
    pub const AGING_STEP: Duration = Duration::from_secs(10);

    /// The defaults on `cores` CPU cores: at most 8 renders per core (renders waiting on slow sites
    /// use no CPU and can run by the dozen), starting and staying at least at 2 per core, where
    /// Chromium rendering local pages saturated 2 cores in the pool benchmark (measured).
    pub fn for_cores(cores: usize) -> Self {
        Self {
            queue_capacity: Self::QUEUE_CAPACITY,
            slots: 8 * cores,
            min_slots: 2 * cores,
            start_slots: 2 * cores,
            adaptive: true,
            aging_step: Self::AGING_STEP,
            fifo: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("the queue is full ({capacity} jobs waiting); retry later")]
    QueueFull { capacity: usize },
    #[error("the job waited {} ms in the queue without a free slot and was not started", waited.as_millis())]
    QueueTimeout { waited: Duration },
}

/// Where a job goes in the queue: its score (which gives its band) and its predicted render time in
/// milliseconds (what its turn costs its tenant).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    pub score: f64,
    pub cost: f64,
}

impl Standing {
    /// 0 urgent, 1 hot, 2 cold.
    pub fn band(&self) -> usize {
        band_of(self.score)
    }
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
    scorer: RwLock<Option<Arc<dyn Scorer>>>,
    stats: Statistics,
    /// Woken when room may have grown (see [`Scheduler::room_changed`]).
    room: tokio::sync::Notify,
}

#[derive(Debug)]
struct State {
    queue: JobQueue<Waiter>,
    running: Running,
    limit: ConcurrencyLimit,
    /// A job waited while every slot was taken, since the limit last adapted.
    held_back: bool,
    cpu_busy: Option<f64>,
    /// Keys with demand, as the last upkeep saw them.
    demand: Vec<KeyDemand>,
}

/// A queued job: where its slot goes, and whose statistics it will feed.
#[derive(Debug)]
struct Waiter {
    slot: oneshot::Sender<RunSlot>,
    origin: Arc<str>,
    key: Arc<str>,
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
pub struct RunSlot {
    inner: Option<Arc<Inner>>,
    taken_at: Instant,
    priority: Priority,
    tenant: Arc<str>,
    /// Others made way for this job (`OTHERS_DURING_FAVOURED`).
    favoured: bool,
    /// Whose statistics the job feeds: its origin and isolation key.
    origin: Arc<str>,
    key: Arc<str>,
}

impl RunSlot {
    /// The job's priority when it left the queue (its band after aging, and its score): its
    /// standing for the CPU slots its plugin code runs in.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The job's predicted render time in milliseconds, from its origin's figures so far.
    pub fn predicted_ms(&self) -> f64 {
        self.inner
            .as_ref()
            .map_or(0.0, |inner| inner.stats.predicted_ms(&self.origin))
    }

    /// The job ended after running since it got this slot; `origin_failed` if it failed in a way
    /// that is the site's doing (it did not load, timed out, crashed its renderer). Its figures go
    /// into the statistics, and the slot is freed.
    pub fn finished(self, origin_failed: bool) {
        if let Some(inner) = &self.inner {
            inner.stats.finished(
                &self.origin,
                &self.key,
                self.taken_at.elapsed(),
                !origin_failed,
                std::time::Instant::now(),
            );
        }
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner
                .metrics
                .sched_run_seconds
                .observe(self.taken_at.elapsed().as_secs_f64());
            inner.changed(|state| state.running.end(&self.tenant, self.favoured));
            inner.dispatch();
            inner.room.notify_waiters();
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
                let Some((band, entry, waiter)) = popped else {
                    state.held_back |= !state.queue.is_empty() && state.running.total >= limit;
                    return None;
                };
                let favoured = favoured(band, &entry.tenant);
                state.running.start(&entry.tenant, favoured);
                let priority = Priority {
                    band: band as u8,
                    score: entry.score,
                };
                Some((priority, entry.tenant, favoured, waiter))
            });
            let Some((priority, tenant, favoured, waiter)) = waiter else {
                return;
            };
            let slot = RunSlot {
                inner: Some(self.clone()),
                taken_at: Instant::now(),
                priority,
                tenant,
                favoured,
                origin: waiter.origin,
                key: waiter.key,
            };
            if let Err(mut unwanted) = waiter.slot.send(slot) {
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
    receiver: oneshot::Receiver<RunSlot>,
    enqueued_at: Instant,
    deadline: Instant,
    band: usize,
}

impl Queued {
    /// Waits for a run slot in the queue's order, until the job's queue deadline.
    pub async fn slot(mut self) -> Result<RunSlot, SchedError> {
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
            self.inner.room.notify_waiters();
        }
    }
}

impl Scheduler {
    pub fn new(settings: SchedSettings, metrics: Metrics) -> Self {
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
                scorer: RwLock::new(None),
                stats: Statistics::default(),
                room: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Scores every job with `scorer` from now on, or with the built-in score if `None`.
    pub fn set_scorer(&self, scorer: Option<Arc<dyn Scorer>>) {
        *self
            .inner
            .scorer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = scorer;
    }

    pub fn scorer(&self) -> Option<Arc<dyn Scorer>> {
        self.inner
            .scorer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The job's score: the scorer's, or the built-in one when there is none or it fails (an
    /// error, its budget, a score that is not a number). A failure is counted, never a reason to
    /// refuse the job.
    async fn score(&self, job: &Job, origin: &str) -> f64 {
        let builtin = builtin_score(job);
        let Some(scorer) = self.scorer() else {
            return builtin;
        };
        let request = ScoreRequest {
            url: job.url().to_owned(),
            origin: origin.to_owned(),
            plugin: job.extractor().map(str::to_owned),
            tenant: job.tenant.to_string(),
            class: job.class,
            number: job.number,
            age: job.received_at.elapsed(),
            origin_figures: self.inner.stats.origin(origin),
        };
        let deadline = Instant::now() + SCORER_BUDGET;
        let scored = tokio::time::timeout_at(deadline, scorer.score(request, deadline)).await;
        let failure = match scored {
            Ok(Ok(score)) if score.is_finite() => return score,
            Ok(Ok(score)) => format!("its score {score} is not a number"),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no score within {SCORER_BUDGET:?}"),
        };
        tracing::debug!(scorer = scorer.name(), %failure, "the scorer failed; using the built-in score");
        self.inner.metrics.sched_scorer_failures.inc();
        builtin
    }

    /// Waits for a run slot in the queue's order, until the job's queue deadline.
    pub async fn admit(&self, job: &Job) -> Result<RunSlot, SchedError> {
        self.enqueue(job).await?.slot().await
    }

    /// Scores the job and puts it in the queue; a full queue refuses it at once.
    pub async fn enqueue(&self, job: &Job) -> Result<Queued, SchedError> {
        let standing = self.standing(job).await;
        self.enqueue_at(job, standing)
    }

    /// Where `job` goes in the queue: its score (the scorer's, or the built-in one) and its
    /// predicted cost. First come, first served gives every job the same.
    pub async fn standing(&self, job: &Job) -> Standing {
        if self.inner.settings.fifo {
            return Standing {
                score: Class::Hot.base_score(),
                cost: 1.0,
            };
        }
        let origin = origin_of(job.url());
        Standing {
            score: self.score(job, &origin).await,
            cost: self.inner.stats.predicted_ms(&origin),
        }
    }

    /// Puts `job` in the queue at `standing`, decided already (an async job is scored when it is
    /// submitted, and queued here when a host claims it); a full queue refuses it at once.
    pub fn enqueue_at(&self, job: &Job, standing: Standing) -> Result<Queued, SchedError> {
        let enqueued_at = Instant::now();
        let key: Arc<str> = Arc::from(&*job.isolation_key());
        let origin: Arc<str> = Arc::from(origin_of(job.url()));
        self.inner.stats.arrived(&key, enqueued_at.into_std());
        let (sender, receiver) = oneshot::channel();
        let tenant = if self.inner.settings.fifo {
            // One tenant: the queue's order is the arrival order.
            Arc::from("")
        } else {
            job.tenant.clone()
        };
        let entry = QueueEntry {
            tenant,
            score: standing.score,
            cost: standing.cost,
            enqueued_at: enqueued_at.into_std(),
            queue_deadline: job.queue_deadline().into_std(),
        };
        let waiter = Waiter {
            slot: sender,
            origin,
            key,
        };
        let pushed = self.inner.changed(|state| state.queue.push(entry, waiter));
        let ticket = pushed.map_err(|Refused::Full(capacity)| {
            self.inner.reject("queue_full");
            SchedError::QueueFull { capacity }
        })?;
        let queued = Queued {
            inner: self.inner.clone(),
            ticket: Some(ticket),
            receiver,
            enqueued_at,
            deadline: job.queue_deadline(),
            band: standing.band(),
        };
        self.inner.dispatch();
        Ok(queued)
    }

    /// How many more jobs could start now: the limit, less the jobs running and waiting. An async
    /// job is claimed from the store only into such room.
    pub fn room(&self) -> usize {
        let state = self.inner.lock();
        state
            .limit
            .current
            .saturating_sub(state.running.total + state.queue.len())
    }

    /// Resolves when there may be more room: a job ended or left the queue, or the limit grew.
    /// Take it before reading [`Scheduler::room`], so that no change between the two is missed.
    pub fn room_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.room.notified()
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
    /// Restarted if it panics (`tasks::supervise`): a scheduler whose limit stopped adapting would
    /// quietly run too few or too many jobs.
    pub fn start_upkeep(&self, warm: impl Fn(&[KeyDemand]) + Send + Sync + 'static) {
        let inner = Arc::downgrade(&self.inner);
        let warm: Arc<WarmPages> = Arc::new(warm);
        supervise("scheduler upkeep", move || {
            let (inner, warm) = (inner.clone(), warm.clone());
            upkeep(inner, warm)
        });
    }
}

/// What the upkeep hands the keys with demand (the shards' pools, to keep pages warm).
type WarmPages = dyn Fn(&[KeyDemand]) + Send + Sync;

/// The upkeep [`Scheduler::start_upkeep`] runs, once a second until the scheduler is gone.
async fn upkeep(inner: std::sync::Weak<Inner>, warm: Arc<WarmPages>) {
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
        // A limit that grew lets waiting jobs in now, and claims of async jobs.
        inner.dispatch();
        inner.room.notify_waiters();
    }
}
