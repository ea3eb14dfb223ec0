//! `sched-core`: the scheduler's queue alone (`pagewright::sched::JobQueue`), no I/O: enqueue +
//! dequeue operations per second with 100,000 jobs queued across tenants and classes, against the
//! issue's target of 1 M ops/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pagewright::sched::{JobQueue, QueueEntry};

pub fn sched_core_bench(queued: usize, operations: usize, tenants: usize) -> anyhow::Result<()> {
    let tenant_names: Vec<Arc<str>> = (0..tenants)
        .map(|i| Arc::from(format!("tenant-{i}")))
        .collect();
    let start = Instant::now();
    // A fixed pseudo-random sequence (xorshift), so every run measures the same work.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut placement = |i: usize| {
        let random = next();
        QueueEntry {
            tenant: tenant_names[random as usize % tenants].clone(),
            score: [0.0, 100.0, 200.0][(random >> 32) as usize % 3] + (random >> 48) as f64 % 50.0,
            cost: 50.0 + (random >> 40) as f64 % 500.0,
            enqueued_at: start + Duration::from_micros(i as u64),
            queue_deadline: start + Duration::from_secs(3600),
        }
    };
    let mut queue = JobQueue::new(queued * 2, Duration::from_secs(10));
    for i in 0..queued {
        queue.push(placement(i), i)?;
    }
    let now = start + Duration::from_secs(1);
    let began = Instant::now();
    for i in 0..operations / 2 {
        queue.push(placement(queued + i), i)?;
        anyhow::ensure!(queue.pop(now).is_some(), "the queue ran dry");
    }
    let elapsed = began.elapsed();
    let ops_per_second = operations as f64 / elapsed.as_secs_f64();

    println!("| measure | figure | target |");
    println!("|---|---|---|");
    println!(
        "| JobQueue push + pop, {queued} queued, {tenants} tenants, 3 bands | {:.2} M ops/s ({:.0} ns/op) | >= 1 M ops/s |",
        ops_per_second / 1e6,
        elapsed.as_secs_f64() * 1e9 / operations as f64
    );
    println!(
        "| JobQueue vs the 1 M ops/s target | {:.2}x | >= 1x |",
        ops_per_second / 1e6
    );
    Ok(())
}
