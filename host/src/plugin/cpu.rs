//! [`CpuSlots`]: who may run plugin code now. There is one slot per plugin worker thread; a job's
//! plugin code runs only while its [`CpuTurn`] holds one, and waiting jobs get free slots in priority
//! order.
//!
//! - **Off the CPU while blocked.** A call blocked in the host (a page operation waiting on
//!   Chromium, a sleep) gives its slot up and takes one again, in priority order, before its plugin
//!   code continues, so page work never holds a CPU slot.
//! - **Cooperative preemption.** Plugin code yields every `FUEL_YIELD_INTERVAL` units of fuel. At
//!   each yield, a job that has used its slice ([`SLICE_FUEL`]) while a job of equal or higher
//!   priority waits gives its slot to that job and waits its turn again. Among equals this is round
//!   robin; a higher-priority job gets the CPU within one slice. A job that gave its slot up waits
//!   behind jobs that have not used a slice yet (those coming back from Chromium, or starting), so a
//!   plugin that spins cannot slow the ones that mostly wait on the page.
//! - **Aging.** A waiting job rises one band per [`CPU_AGING_STEP`], so cold plugin code finishes
//!   under a stream of hotter plugin code. Waiting for the CPU holds the job's run slot and page, hence the
//!   short step.
//!
//! Waiters are few (at most the jobs holding run slots, plus scorer and upload checks), so they are
//! kept in a vector and scanned: aging changes their order while they wait, which a heap cannot
//! follow.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::sched::Priority;

/// Fuel a job may use before it gives its slot to a waiting job of equal or higher priority: ten of
/// the plugin host's yield intervals (100k each). A tight loop burns ~1.7e10 units per CPU-second
/// here, so a slice is 60 µs of such a loop and up to a few milliseconds of interpreter code: short
/// enough that a waiting job gets the CPU at once, long enough that handing over (~1 µs) is noise.
pub const SLICE_FUEL: u64 = 1_000_000;

/// A job waiting this long for a CPU slot counts as one band higher.
pub const CPU_AGING_STEP: Duration = Duration::from_secs(1);

/// `priority` after waiting `waited` for the CPU: one band up per [`CPU_AGING_STEP`].
fn aged(priority: Priority, waited: Duration) -> Priority {
    let steps = (waited.as_millis() / CPU_AGING_STEP.as_millis()).min(u128::from(u8::MAX)) as u8;
    Priority {
        band: priority.band.saturating_sub(steps),
        ..priority
    }
}

/// CPU slot figures at one moment, for `/v1/status`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct CpuStatus {
    pub slots: usize,
    pub busy: usize,
    pub waiting: usize,
    /// Turns given up at a yield to a waiting job since start.
    pub preemptions: u64,
}

impl CpuStatus {
    /// The figures of several groups of slots, added up.
    pub fn sum(statuses: impl IntoIterator<Item = Self>) -> Self {
        statuses
            .into_iter()
            .fold(Self::default(), |sum, status| Self {
                slots: sum.slots + status.slots,
                busy: sum.busy + status.busy,
                waiting: sum.waiting + status.waiting,
                preemptions: sum.preemptions + status.preemptions,
            })
    }
}

/// The CPU slots. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CpuSlots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    slots: usize,
    state: Mutex<State>,
    metrics: Metrics,
}

#[derive(Debug)]
struct State {
    free: usize,
    waiting: Vec<Waiter>,
    next_seq: u64,
    preemptions: u64,
}

#[derive(Debug)]
struct Waiter {
    priority: Priority,
    /// Gave its slot up at a yield: it waits behind those that have not used a slice.
    preempted: bool,
    seq: u64,
    since: Instant,
    grant: oneshot::Sender<()>,
}

impl Waiter {
    /// `Greater` when `self` goes first at `now`.
    fn rank(&self, other: &Self, now: Instant) -> Ordering {
        let mine = aged(self.priority, now.saturating_duration_since(self.since));
        let theirs = aged(other.priority, now.saturating_duration_since(other.since));
        mine.rank(&theirs)
            .then(other.preempted.cmp(&self.preempted))
            .then(other.seq.cmp(&self.seq))
    }
}

impl State {
    /// Hands a freed slot to the waiter that goes first, or keeps it free. A waiter that left
    /// (its call was cancelled) is skipped.
    fn hand_over(&mut self) {
        let now = Instant::now();
        while let Some(best) = self.best(now) {
            let waiter = self.waiting.swap_remove(best);
            if waiter.grant.send(()).is_ok() {
                return;
            }
        }
        self.free += 1;
    }

    fn best(&self, now: Instant) -> Option<usize> {
        (0..self.waiting.len()).max_by(|&a, &b| self.waiting[a].rank(&self.waiting[b], now))
    }

    /// Whether a job of `priority` waits for a slot now (aging included).
    fn someone_at_least(&self, priority: Priority, now: Instant) -> bool {
        self.waiting.iter().any(|waiter| {
            !waiter.grant.is_closed()
                && aged(waiter.priority, now.saturating_duration_since(waiter.since))
                    .rank(&priority)
                    != Ordering::Less
        })
    }
}

impl CpuSlots {
    pub fn new(slots: usize, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                slots,
                state: Mutex::new(State {
                    free: slots,
                    waiting: Vec::new(),
                    next_seq: 0,
                    preemptions: 0,
                }),
                metrics,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A turn for a job of `priority`, holding no slot yet.
    pub fn turn(&self, priority: Priority) -> CpuTurn {
        CpuTurn {
            slots: self.clone(),
            priority,
            held: Arc::new(AtomicBool::new(false)),
            fuel_at_start: 0,
        }
    }

    pub fn status(&self) -> CpuStatus {
        let state = self.lock();
        CpuStatus {
            slots: self.inner.slots,
            busy: self.inner.slots - state.free,
            waiting: state.waiting.len(),
            preemptions: state.preemptions,
        }
    }

    /// Waits for a slot. Dropping the future gives back a slot granted but not yet seen.
    async fn acquire(&self, priority: Priority, preempted: bool) {
        let receiver = {
            let mut state = self.lock();
            if state.free > 0 {
                state.free -= 1;
                return;
            }
            let (grant, receiver) = oneshot::channel();
            let seq = state.next_seq;
            state.next_seq += 1;
            state.waiting.push(Waiter {
                priority,
                preempted,
                seq,
                since: Instant::now(),
                grant,
            });
            receiver
        };
        let mut pending = PendingGrant {
            slots: self,
            receiver: Some(receiver),
        };
        if let Some(receiver) = pending.receiver.as_mut() {
            // The sender lives in `waiting` until it grants, so this only ends with a grant.
            let _ = receiver.await;
        }
        pending.receiver = None;
    }

    fn release(&self) {
        self.lock().hand_over();
    }
}

/// A wait for a grant; if dropped after the grant was sent but before it was seen, the slot goes on
/// to the next waiter instead of being lost.
struct PendingGrant<'a> {
    slots: &'a CpuSlots,
    receiver: Option<oneshot::Receiver<()>>,
}

impl Drop for PendingGrant<'_> {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

/// One plugin call's claim on the CPU. It holds a slot while the call runs plugin code and none
/// while the call is blocked in the host; dropping it gives back a slot it holds.
#[derive(Debug)]
pub struct CpuTurn {
    slots: CpuSlots,
    priority: Priority,
    /// Shared with [`CpuTurn::handle`], so the future driving the call can give the slot up when
    /// the call blocks.
    held: Arc<AtomicBool>,
    /// The store's fuel when this slice began.
    fuel_at_start: u64,
}

/// Gives a [`CpuTurn`]'s slot up from outside the store, for the future that drives the call.
#[derive(Debug, Clone)]
pub struct CpuTurnHandle {
    slots: CpuSlots,
    held: Arc<AtomicBool>,
}

impl CpuTurnHandle {
    /// Gives the slot up if the turn holds one; the turn takes one again before plugin code runs.
    pub fn release(&self) {
        if self.held.swap(false, AtomicOrdering::Relaxed) {
            self.slots.release();
        }
    }
}

impl CpuTurn {
    /// The handle that lets the driver of the call give the slot up.
    pub fn handle(&self) -> CpuTurnHandle {
        CpuTurnHandle {
            slots: self.slots.clone(),
            held: self.held.clone(),
        }
    }

    fn held(&self) -> bool {
        self.held.load(AtomicOrdering::Relaxed)
    }

    /// Waits for a slot unless the turn holds one; `fuel` is the store's fuel now, where a new slice
    /// starts.
    pub async fn hold(&mut self, fuel: u64) {
        if !self.held() {
            self.slots.acquire(self.priority, false).await;
            self.held.store(true, AtomicOrdering::Relaxed);
            self.fuel_at_start = fuel;
        }
    }

    /// Gives the slot up (when the plugin returns).
    pub fn release(&mut self) {
        self.handle().release();
    }

    /// At a yield with `fuel` left: takes a slot if the turn has none, and gives it up to a waiting
    /// job of equal or higher priority once this slice is used. True if it gave the slot up.
    pub async fn at_yield(&mut self, fuel: u64) -> bool {
        if !self.held() {
            self.hold(fuel).await;
            return false;
        }
        if self.fuel_at_start.saturating_sub(fuel) < SLICE_FUEL {
            return false;
        }
        {
            let mut state = self.slots.lock();
            if !state.someone_at_least(self.priority, Instant::now()) {
                // Nobody to give way to: a new slice starts here.
                drop(state);
                self.fuel_at_start = fuel;
                return false;
            }
            state.preemptions += 1;
            self.held.store(false, AtomicOrdering::Relaxed);
            state.hand_over();
        }
        self.slots.inner.metrics.sched_preemptions.inc();
        self.slots.acquire(self.priority, true).await;
        self.held.store(true, AtomicOrdering::Relaxed);
        self.fuel_at_start = fuel;
        true
    }
}

impl Drop for CpuTurn {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::eventually;

    const HOT: Priority = Priority::DEFAULT;
    const URGENT: Priority = Priority {
        band: 0,
        score: 200.0,
    };
    const COLD: Priority = Priority {
        band: 2,
        score: 0.0,
    };

    fn slots(n: usize) -> CpuSlots {
        CpuSlots::new(n, Metrics::new())
    }

    /// Spawns a turn that waits for a slot, then reports `name` and keeps the slot until told.
    fn waiter(
        slots: &CpuSlots,
        priority: Priority,
        name: &'static str,
        order: &tokio::sync::mpsc::UnboundedSender<&'static str>,
    ) -> tokio::task::JoinHandle<()> {
        let (slots, order) = (slots.clone(), order.clone());
        tokio::spawn(async move {
            let mut turn = slots.turn(priority);
            turn.hold(0).await;
            order.send(name).expect("send");
            turn.release();
        })
    }

    async fn until_waiting(slots: &CpuSlots, n: usize) {
        eventually("the turns wait", Duration::from_secs(5), || async {
            (slots.status().waiting >= n).then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn free_slots_go_to_the_highest_priority_first() {
        let slots = slots(1);
        let mut busy = slots.turn(HOT);
        busy.hold(0).await;
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let tasks = [
            waiter(&slots, COLD, "cold", &order_tx),
            waiter(&slots, URGENT, "urgent", &order_tx),
            waiter(&slots, HOT, "hot", &order_tx),
        ];
        until_waiting(&slots, 3).await;
        busy.release();
        for task in tasks {
            task.await.expect("task");
        }
        let seen: Vec<_> = std::iter::from_fn(|| order.try_recv().ok()).collect();
        assert_eq!(seen, ["urgent", "hot", "cold"]);
        assert_eq!(slots.status().busy, 0);
    }

    #[tokio::test]
    async fn a_turn_that_used_its_slice_gives_way_to_an_equal_or_better_waiter() {
        let slots = slots(1);
        let mut running = slots.turn(HOT);
        running.hold(10 * SLICE_FUEL).await;
        // Within its slice, it keeps the slot whoever waits.
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let urgent = waiter(&slots, URGENT, "urgent", &order_tx);
        until_waiting(&slots, 1).await;
        assert!(!running.at_yield(10 * SLICE_FUEL - SLICE_FUEL / 2).await);
        // Past it, it hands the slot over and waits for it to come back.
        assert!(running.at_yield(9 * SLICE_FUEL).await);
        urgent.await.expect("task");
        assert_eq!(order.try_recv().expect("the urgent turn ran"), "urgent");
        assert_eq!(slots.status().preemptions, 1);
        // With only a lower priority waiting, a used slice just starts again.
        let cold = waiter(&slots, COLD, "cold", &order_tx);
        until_waiting(&slots, 1).await;
        assert!(!running.at_yield(7 * SLICE_FUEL).await);
        running.release();
        cold.await.expect("task");
        assert_eq!(slots.status().preemptions, 1);
    }

    #[tokio::test]
    async fn a_preempted_turn_waits_behind_fresh_ones_of_its_priority() {
        let slots = slots(1);
        let mut hog = slots.turn(HOT);
        hog.hold(10 * SLICE_FUEL).await;
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let fresh = waiter(&slots, HOT, "fresh", &order_tx);
        until_waiting(&slots, 1).await;
        let hog_task = tokio::spawn(async move {
            assert!(hog.at_yield(0).await);
            order_tx.send("hog").expect("send");
        });
        fresh.await.expect("task");
        hog_task.await.expect("task");
        let seen: Vec<_> = std::iter::from_fn(|| order.try_recv().ok()).collect();
        assert_eq!(seen, ["fresh", "hog"]);
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_no_slot() {
        let slots = slots(1);
        let mut busy = slots.turn(HOT);
        busy.hold(0).await;
        let cancelled = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.turn(URGENT).hold(0).await })
        };
        until_waiting(&slots, 1).await;
        cancelled.abort();
        let _ = cancelled.await;
        busy.release();
        assert_eq!(slots.status().busy, 0, "the slot came back");
        let mut next = slots.turn(COLD);
        next.hold(0).await;
        drop(next);
        assert_eq!(
            slots.status().busy,
            0,
            "dropping a turn gives its slot back"
        );
    }

    #[test]
    fn waiting_lifts_a_priority_one_band_per_step() {
        assert_eq!(aged(COLD, CPU_AGING_STEP / 2).band, 2);
        assert_eq!(aged(COLD, CPU_AGING_STEP).band, 1);
        assert_eq!(aged(COLD, CPU_AGING_STEP * 5).band, 0);
        assert_eq!(URGENT.rank(&HOT), Ordering::Greater);
        assert_eq!(
            HOT.rank(&Priority {
                band: 1,
                score: 150.0
            }),
            Ordering::Less
        );
    }
}
