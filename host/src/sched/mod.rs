//! sched: the scheduler between the API and the pool: admission into a bounded queue, priorities
//! (classes, numbers, a scorer plugin), aging, fairness across tenants and queue-wait deadlines.
//!
//! - `queue.rs`: [`JobQueue`], the ordering itself, without I/O;
//! - `admission.rs`: [`Scheduler`], which admits jobs into the queue and hands out run [`Slot`]s;
//! - `limit.rs`: [`ConcurrencyLimit`], how many renders may run at once, adapted to the CPUs' load;
//! - `origins.rs`: [`Statistics`], per-origin render times and failure rates and per-key demand;
//! - `cpu.rs`: [`CpuSlots`], the priority-ordered CPU slots plugin code runs in, with cooperative
//!   preemption at fuel yields;
//! - `jobs.rs`: [`Jobs`], async jobs from submission to a kept result, and cancellation;
//! - `webhook.rs`: [`Webhooks`], posting a finished async job to the URL it named.

mod admission;
mod cpu;
mod jobs;
mod limit;
mod origins;
mod queue;
mod webhook;

pub use admission::{
    Admission, Queued, SchedError, SchedSettings, SchedStatus, Scheduler, Slot, origin_of,
};
pub use cpu::{CpuSlots, CpuStatus, CpuTurn, CpuTurnHandle, Priority, SLICE_FUEL};
pub use jobs::{
    JobError, JobFailure, JobId, JobResult, JobState, Jobs, JobsSettings, JobsStatus, Outcome,
    Record, Submission,
};
pub use limit::ConcurrencyLimit;
pub use origins::{KeyDemand, OriginFigures, Statistics};
pub use queue::{Class, JobQueue, Placement, Refused, Ticket};
pub use webhook::{SIGNATURE_HEADER, Webhooks};
