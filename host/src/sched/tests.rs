//! The scheduler without a browser: priorities, favoured jobs, headroom, full queues, deadlines and
//! callers that go away.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::job::{Class, Job, NativeOutput, Output, Target};
use crate::metrics::Metrics;
use crate::testing::eventually;

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
    )
}

/// A job of `tenant` and `class` that may wait `wait` in the queue.
fn admission(tenant: &str, class: Class, wait: Duration) -> Job {
    let output = Output::Native(NativeOutput::Content);
    let mut job = Job::new(Target::Html(String::new()), output, wait, wait);
    job.tenant = Arc::from(tenant);
    job.class = class;
    job
}

/// Takes a one-slot scheduler's slot, and queues one more job with `wait` as its queue budget.
async fn busy_with_one_waiting(
    scheduler: &Scheduler,
    wait: Duration,
) -> (
    RunSlot,
    tokio::task::JoinHandle<Result<RunSlot, SchedError>>,
) {
    let busy = scheduler
        .admit(&admission("t", Class::Hot, Duration::from_secs(5)))
        .await
        .expect("a free slot");
    let waiting = {
        let scheduler = scheduler.clone();
        tokio::spawn(async move { scheduler.admit(&admission("t", Class::Hot, wait)).await })
    };
    until_queued(scheduler, 1).await;
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
    until_queued(&scheduler, 3).await;
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
    )
}

/// Admits a job in a task of its own, returning its slot (or error) when it gets one.
fn admit_later(
    scheduler: &Scheduler,
    tenant: &'static str,
    class: Class,
) -> tokio::task::JoinHandle<Result<RunSlot, SchedError>> {
    let scheduler = scheduler.clone();
    tokio::spawn(async move {
        scheduler
            .admit(&admission(tenant, class, Duration::from_secs(5)))
            .await
    })
}

/// Waits until `n` jobs wait in the queue.
async fn until_queued(scheduler: &Scheduler, n: usize) {
    eventually("the jobs queue", Duration::from_secs(5), || async {
        (scheduler.status().queued >= n).then_some(())
    })
    .await;
}

/// Lets the spawned tasks run as far as they can without a timer: for checking that something
/// does not happen.
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
