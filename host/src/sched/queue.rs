//! [`JobQueue`]: the scheduler's queue of jobs waiting for a slot, without any I/O, so that ordering,
//! aging, fairness and deadlines are tested without a browser.
//!
//! - **Bands.** A job's score puts it in a band: urgent (score ≥ 200), hot (≥ 100) or cold. The
//!   built-in score is its class's base (urgent 200, hot 100, cold 0) plus the request's number
//!   (-50..=50); a scorer plugin's score replaces it. Higher bands go first.
//! - **Aging.** A cold job that has waited `aging_step` moves into the hot band, where it goes
//!   ahead of its own tenant's hot jobs and takes its tenant's turns like any hot job: cold jobs
//!   finish under a flood of hot work, yet an old backlog never jumps another tenant's turn. Nothing
//!   ages into the urgent band: aged work must not delay the jobs that asked to go first, and a hot
//!   flood turning urgent would push out every other tenant's hot jobs.
//! - **Fairness.** Within a band, tenants take turns by predicted render time (start-time fair
//!   queuing): each tenant has a virtual clock that its dispatched jobs advance by their predicted
//!   cost, and the tenant whose clock is furthest behind goes next. With equal costs this is round
//!   robin; a tenant whose pages take ten times as long gets a tenth of the turns. A tenant sending a
//!   hundred times another's rate gets no more time, and a tenant arriving with nothing queued
//!   starts at the band's current virtual time, so it waits for at most one turn. A tenant's own
//!   jobs go by score, then arrival.
//! - **Deadlines.** Every job has a queue-wait deadline; [`JobQueue::expire`] takes out the jobs past
//!   theirs, so they end with their own error and never start.
//!
//! Each job is in several indexes (its tenant's heap in its band, its band's arrival order, the
//! deadline heap); dispatch, cancellation, expiry and aging change `jobs` only, and the indexes skip
//! entries that no longer match it when they reach them. Enqueue and dequeue are O(log n)
//! amortised.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The band a score falls in: 0 (urgent), 1 (hot) or 2 (cold).
pub(super) fn band_of(score: f64) -> usize {
    if score >= 200.0 {
        0
    } else if score >= 100.0 {
        1
    } else {
        2
    }
}

const BANDS: usize = 3;

/// Why a job could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the queue is full ({0} jobs)")]
    Full(usize),
}

/// A job's place in the queue, for cancelling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(u64);

/// What the queue knows of a job besides its payload.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    pub tenant: Arc<str>,
    pub score: f64,
    /// Predicted render time in milliseconds: what the job's turn costs its tenant.
    pub cost: f64,
    pub enqueued_at: Instant,
    pub queue_deadline: Instant,
}

#[derive(Debug)]
struct Waiting<T> {
    entry: QueueEntry,
    /// The band the job is in now (a cold job that aged is in the hot band).
    band: usize,
    /// The band it was queued in, which `depth_by_band` counts.
    queued_band: usize,
    job: T,
}

/// A tenant's jobs in one band: jobs that aged into the band first, then the best score, then the
/// earliest.
#[derive(Debug, Default)]
struct TenantJobs {
    heap: BinaryHeap<(bool, Score, Reverse<u64>)>,
    /// Virtual time at which the tenant's last dispatched job ends; its next one starts no earlier.
    finish: f64,
    /// The tenant has an entry in its band's `turns`.
    has_turn: bool,
}

/// An `f64` score ordered totally (NaN is refused before it gets here).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

const HOT: usize = 1;
const COLD: usize = 2;

#[derive(Debug, Default)]
struct Band {
    tenants: HashMap<Arc<str>, TenantJobs>,
    /// Tenants with jobs in this band, by the virtual start time of their next job, then by when
    /// they got the turn.
    turns: BinaryHeap<Reverse<(Score, u64, Arc<str>)>>,
    /// The virtual start time of the job dispatched last.
    vtime: f64,
    /// The cold band's jobs in arrival order: the oldest is the first to age upwards.
    arrivals: VecDeque<u64>,
}

impl Band {
    /// Puts job `id` in its tenant's queue in this band, and the tenant in turn if it was not.
    fn enter(&mut self, entry: &QueueEntry, id: u64, aged: bool) {
        let tenant = self.tenants.entry(entry.tenant.clone()).or_default();
        tenant.heap.push((aged, Score(entry.score), Reverse(id)));
        if !tenant.has_turn {
            tenant.has_turn = true;
            let start = tenant.finish.max(self.vtime);
            self.turns
                .push(Reverse((Score(start), id, entry.tenant.clone())));
        }
    }
}

/// The queue. Not thread-safe by itself: the scheduler holds it under one lock.
#[derive(Debug)]
pub struct JobQueue<T> {
    jobs: HashMap<u64, Waiting<T>>,
    bands: [Band; BANDS],
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    capacity: usize,
    aging_step: Duration,
    next: u64,
    /// Waiting jobs by the band they were queued in.
    depth: [usize; BANDS],
}

/// Band names, as metrics and status label them.
pub const BAND_NAMES: [&str; BANDS] = ["urgent", "hot", "cold"];

impl<T> JobQueue<T> {
    pub fn new(capacity: usize, aging_step: Duration) -> Self {
        Self {
            jobs: HashMap::with_capacity(capacity.min(1 << 16)),
            bands: Default::default(),
            deadlines: BinaryHeap::new(),
            capacity,
            aging_step,
            next: 0,
            depth: [0; BANDS],
        }
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Jobs waiting per band (urgent, hot, cold), by the band they were queued in.
    pub fn depth_by_band(&self) -> [usize; BANDS] {
        self.depth
    }

    /// Queues a job; refused when the queue is full. A NaN score counts as 0; a cost that is not a
    /// positive number counts as 1 ms.
    pub fn push(&mut self, mut entry: QueueEntry, job: T) -> Result<Ticket, Refused> {
        if self.jobs.len() >= self.capacity {
            return Err(Refused::Full(self.capacity));
        }
        if entry.score.is_nan() {
            entry.score = 0.0;
        }
        if !(entry.cost.is_finite() && entry.cost > 0.0) {
            entry.cost = 1.0;
        }
        let id = self.next;
        self.next += 1;
        let band_index = band_of(entry.score);
        self.bands[band_index].enter(&entry, id, false);
        if band_index == COLD {
            self.bands[COLD].arrivals.push_back(id);
        }
        self.deadlines.push(Reverse((entry.queue_deadline, id)));
        self.jobs.insert(
            id,
            Waiting {
                entry,
                band: band_index,
                queued_band: band_index,
                job,
            },
        );
        self.depth[band_index] += 1;
        self.compact_if_needed();
        if id.is_multiple_of(1024) {
            self.forget_idle_tenants();
        }
        Ok(Ticket(id))
    }

    /// Drops the entries of jobs that left from the arrival and deadline indexes once those hold
    /// twice the live jobs: a job that stays at the front of an index (a long deadline, a cold job
    /// under a flood) would otherwise keep everything behind it.
    fn compact_if_needed(&mut self) {
        let limit = 2 * self.jobs.len() + 1024;
        let jobs = &self.jobs;
        let cold = &mut self.bands[COLD].arrivals;
        if cold.len() > limit {
            cold.retain(|id| jobs.get(id).is_some_and(|waiting| waiting.band == COLD));
        }
        if self.deadlines.len() > limit {
            self.deadlines
                .retain(|Reverse((_, id))| jobs.contains_key(id));
        }
    }

    /// Takes a queued job out (a cancellation); `None` if it already left.
    pub fn remove(&mut self, ticket: Ticket) -> Option<(QueueEntry, T)> {
        self.take(ticket.0)
    }

    /// The next job to run at `now`: the highest band first (cold jobs that waited `aging_step`
    /// count as hot); in a band, tenants in turn.
    pub fn pop(&mut self, now: Instant) -> Option<(QueueEntry, T)> {
        self.pop_with_band(now).map(|(_, entry, job)| (entry, job))
    }

    /// [`Self::pop`], with the band the job left from (after aging): 0 urgent, 1 hot, 2 cold.
    pub fn pop_with_band(&mut self, now: Instant) -> Option<(usize, QueueEntry, T)> {
        self.pop_within(now, BANDS - 1)
    }

    /// The next job at `now` if it is in band `max_band` or higher (after aging).
    pub fn pop_within(&mut self, now: Instant, max_band: usize) -> Option<(usize, QueueEntry, T)> {
        self.pop_next(now, max_band, |_, _| true)
    }

    /// The next job at `now` if it is in band `max_band` or higher and `accept(band, tenant)` takes
    /// it; `None` (and the job stays first) if not.
    pub fn pop_next(
        &mut self,
        now: Instant,
        max_band: usize,
        accept: impl Fn(usize, &str) -> bool,
    ) -> Option<(usize, QueueEntry, T)> {
        self.age(now);
        for band in 0..=max_band.min(BANDS - 1) {
            let Some(tenant) = self.head_tenant(band) else {
                continue;
            };
            if !accept(band, &tenant) {
                return None;
            }
            if let Some((entry, job)) = self.next_turn(band).and_then(|id| self.take(id)) {
                return Some((band, entry, job));
            }
        }
        None
    }

    /// The tenant whose turn it is in `band`, after taking tenants left without live jobs there
    /// out of turn.
    fn head_tenant(&mut self, band_index: usize) -> Option<Arc<str>> {
        let jobs = &self.jobs;
        let band = &mut self.bands[band_index];
        while let Some(Reverse((_, _, tenant))) = band.turns.peek() {
            let tenant = tenant.clone();
            if let Some(queue) = band.tenants.get_mut(&tenant) {
                while let Some(&(_, _, Reverse(id))) = queue.heap.peek() {
                    if jobs
                        .get(&id)
                        .is_some_and(|waiting| waiting.band == band_index)
                    {
                        return Some(tenant);
                    }
                    queue.heap.pop();
                }
                // No job left here: out of turn, its clock kept (`forget_idle_tenants`).
                queue.has_turn = false;
            }
            band.turns.pop();
        }
        None
    }

    /// Moves the cold jobs that have waited `aging_step` at `now` into the hot band, oldest first.
    fn age(&mut self, now: Instant) {
        while let Some(&id) = self.bands[COLD].arrivals.front() {
            let Some(waiting) = self.jobs.get_mut(&id) else {
                self.bands[COLD].arrivals.pop_front();
                continue;
            };
            if waiting.band != COLD {
                self.bands[COLD].arrivals.pop_front();
                continue;
            }
            if now.saturating_duration_since(waiting.entry.enqueued_at) < self.aging_step {
                return;
            }
            self.bands[COLD].arrivals.pop_front();
            waiting.band = HOT;
            self.bands[HOT].enter(&waiting.entry, id, true);
        }
    }

    /// Removes and returns the jobs whose queue-wait deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(QueueEntry, T)> {
        let mut expired = Vec::new();
        while let Some(Reverse((deadline, id))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if let Some(job) = self.take(id) {
                expired.push(job);
            }
        }
        expired
    }

    /// The earliest queue-wait deadline of a waiting job, for the timer that calls [`Self::expire`].
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, id))) = self.deadlines.peek().copied() {
            if self.jobs.contains_key(&id) {
                return Some(deadline);
            }
            self.deadlines.pop();
        }
        None
    }

    fn take(&mut self, id: u64) -> Option<(QueueEntry, T)> {
        let waiting = self.jobs.remove(&id)?;
        self.depth[waiting.queued_band] -= 1;
        Some((waiting.entry, waiting.job))
    }

    /// The best job of the tenant whose turn it is in `band` (the earliest virtual start time),
    /// advancing the tenant's clock by the job's cost.
    fn next_turn(&mut self, band_index: usize) -> Option<u64> {
        let jobs = &self.jobs;
        let band = &mut self.bands[band_index];
        while let Some(Reverse((Score(start), _, tenant))) = band.turns.pop() {
            let Some(queue) = band.tenants.get_mut(&tenant) else {
                continue;
            };
            queue.has_turn = false;
            while let Some((_, _, Reverse(id))) = queue.heap.pop() {
                // Gone, or aged out of this band.
                let Some(waiting) = jobs.get(&id).filter(|waiting| waiting.band == band_index)
                else {
                    continue;
                };
                band.vtime = start;
                queue.finish = start + waiting.entry.cost;
                // A tenant left without jobs keeps its clock (see `forget_idle_tenants`), so a
                // tenant sending in bursts does not start each burst with a fresh turn.
                if !queue.heap.is_empty() {
                    queue.has_turn = true;
                    band.turns
                        .push(Reverse((Score(queue.finish), id, tenant.clone())));
                }
                return Some(id);
            }
        }
        None
    }

    /// Drops the tenants that have no jobs and whose clock the band's has caught up with: they
    /// would start at the band's clock anyway.
    fn forget_idle_tenants(&mut self) {
        for band in &mut self.bands {
            let vtime = band.vtime;
            band.tenants.retain(|_, tenant| {
                tenant.has_turn || !tenant.heap.is_empty() || tenant.finish > vtime
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_secs(10);

    fn entry(tenant: &str, score: f64, at: Instant) -> QueueEntry {
        QueueEntry {
            tenant: Arc::from(tenant),
            score,
            cost: 100.0,
            enqueued_at: at,
            queue_deadline: at + Duration::from_secs(3600),
        }
    }

    fn drain(queue: &mut JobQueue<&'static str>, now: Instant) -> Vec<&'static str> {
        std::iter::from_fn(|| queue.pop(now).map(|(_, job)| job)).collect()
    }

    #[test]
    fn higher_bands_first_then_score_then_arrival() {
        let now = Instant::now();
        let mut queue = JobQueue::new(100, STEP);
        queue
            .push(entry("t", 0.0, now), "cold")
            .expect("room in the queue");
        queue
            .push(entry("t", 100.0, now), "hot")
            .expect("room in the queue");
        queue
            .push(entry("t", 150.0, now), "hot+50")
            .expect("room in the queue");
        queue
            .push(entry("t", 200.0, now), "urgent")
            .expect("room in the queue");
        queue
            .push(entry("t", 100.0, now), "hot, later")
            .expect("room in the queue");
        assert_eq!(
            drain(&mut queue, now),
            ["urgent", "hot+50", "hot", "hot, later", "cold"]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn waiting_cold_jobs_age_into_the_hot_band_so_they_finish() {
        let start = Instant::now();
        let mut queue = JobQueue::new(100, STEP);
        queue
            .push(entry("t", 0.0, start), "old cold")
            .expect("room in the queue");
        // A steady stream of hot work arriving after it.
        for _ in 0..5 {
            queue
                .push(entry("t", 150.0, start + STEP), "hot")
                .expect("room in the queue");
        }
        // Before a step has passed, hot work goes first; after one the cold job counts as hot, and
        // goes ahead of its tenant's hot jobs.
        assert_eq!(queue.pop(start + STEP / 2).expect("a job").1, "hot");
        let (band, _, job) = queue.pop_with_band(start + STEP).expect("a job");
        assert_eq!((band, job), (1, "old cold"));
        assert_eq!(
            queue.depth_by_band(),
            [0, 4, 0],
            "counted by the band it was queued in"
        );
    }

    #[test]
    fn aged_jobs_never_pass_urgent_ones_or_another_tenants_turn() {
        let start = Instant::now();
        let later = start + 3 * STEP;
        let mut queue = JobQueue::new(100, STEP);
        queue
            .push(entry("old", 0.0, start), "old cold")
            .expect("room in the queue");
        queue
            .push(entry("old", 100.0, start), "old hot")
            .expect("room in the queue");
        queue
            .push(entry("new", 200.0, later), "urgent")
            .expect("room in the queue");
        queue
            .push(entry("new", 100.0, later), "new hot")
            .expect("room in the queue");
        let order = drain(&mut queue, later);
        assert_eq!(order[0], "urgent");
        // In the hot band the tenants take turns, whatever the age of one's backlog.
        let new_hot = order.iter().position(|job| *job == "new hot");
        assert!(new_hot <= Some(2), "{order:?}");
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn tenants_take_turns_whatever_their_rates() {
        let now = Instant::now();
        let mut queue = JobQueue::new(1000, STEP);
        for _ in 0..100 {
            queue
                .push(entry("flood", 100.0, now), "flood")
                .expect("room in the queue");
        }
        queue
            .push(entry("trickle", 100.0, now), "trickle")
            .expect("room in the queue");
        let order = drain(&mut queue, now);
        let position = order
            .iter()
            .position(|job| *job == "trickle")
            .expect("the trickle ran");
        assert!(position <= 1, "the trickle went {position}th");
        assert_eq!(order.len(), 101);
    }

    #[test]
    fn tenants_share_by_predicted_render_time() {
        let now = Instant::now();
        let mut queue = JobQueue::new(1000, STEP);
        for _ in 0..200 {
            let mut slow = entry("slow pages", 100.0, now);
            slow.cost = 1_000.0;
            queue.push(slow, "slow").expect("room in the queue");
            queue
                .push(entry("fast pages", 100.0, now), "fast")
                .expect("room in the queue");
        }
        // Each slow job costs ten fast ones: over 110 turns, 10 slow and 100 fast.
        let first: Vec<_> = (0..110).map(|_| queue.pop(now).expect("a job").1).collect();
        let slow = first.iter().filter(|job| **job == "slow").count();
        assert!((10..=11).contains(&slow), "{slow} slow jobs in 110 turns");
        // A tenant that arrives with nothing queued waits for one turn at most.
        queue
            .push(entry("newcomer", 100.0, now), "newcomer")
            .expect("room in the queue");
        let next: Vec<_> = (0..2).map(|_| queue.pop(now).expect("a job").1).collect();
        assert!(next.contains(&"newcomer"), "{next:?}");
    }

    #[test]
    fn a_full_queue_refuses_and_cancelled_jobs_leave() {
        let now = Instant::now();
        let mut queue = JobQueue::new(2, STEP);
        let first = queue
            .push(entry("t", 100.0, now), "first")
            .expect("room in the queue");
        queue
            .push(entry("t", 100.0, now), "second")
            .expect("room in the queue");
        assert_eq!(
            queue.push(entry("t", 100.0, now), "third"),
            Err(Refused::Full(2))
        );
        assert_eq!(queue.remove(first).expect("still queued").1, "first");
        assert!(queue.remove(first).is_none());
        assert_eq!(drain(&mut queue, now), ["second"]);
    }

    #[test]
    fn indexes_stay_bounded_while_one_job_waits_at_their_front() {
        let now = Instant::now();
        let mut queue = JobQueue::new(100, STEP);
        queue
            .push(entry("t", 0.0, now), "old cold")
            .expect("room in the queue");
        for _ in 0..50_000 {
            queue
                .push(entry("t", 10.0, now), "cold")
                .expect("room in the queue");
            // Same tenant and band: the higher score goes first, every time.
            assert_eq!(queue.pop(now).expect("a job").1, "cold");
        }
        assert!(queue.bands[COLD].arrivals.len() <= 2 * queue.len() + 1024);
        assert!(queue.deadlines.len() <= 2 * queue.len() + 1024);
        assert_eq!(drain(&mut queue, now), ["old cold"]);
    }

    #[test]
    fn jobs_past_their_queue_deadline_expire_and_never_pop() {
        let now = Instant::now();
        let mut queue = JobQueue::new(10, STEP);
        let mut short = entry("t", 200.0, now);
        short.queue_deadline = now + Duration::from_millis(100);
        queue.push(short, "short").expect("room in the queue");
        queue
            .push(entry("t", 0.0, now), "patient")
            .expect("room in the queue");
        assert_eq!(
            queue.next_deadline(),
            Some(now + Duration::from_millis(100))
        );
        assert!(queue.expire(now).is_empty());
        let expired = queue.expire(now + Duration::from_millis(100));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].1, "short");
        assert_eq!(drain(&mut queue, now), ["patient"]);
        assert_eq!(queue.next_deadline(), None);
    }
}
