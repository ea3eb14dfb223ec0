//! sched: the scheduler between the API and the shards: admission into a bounded queue, priorities
//! (classes, numbers, a scorer), aging, fairness across tenants, queue-wait deadlines, and how many
//! jobs may run at once.
//!
//! - `queue.rs`: [`JobQueue`], the ordering itself, without I/O;
//! - `scheduler.rs`: [`Scheduler`], which admits jobs into the queue and hands out run [`RunSlot`]s;
//! - `scoring.rs`: the built-in score and the [`Scorer`] trait (the plugin host implements it for
//!   scorer plugins);
//! - `priority.rs`: [`Priority`], a running job's standing, which the plugin host's CPU slots go by;
//! - `limit.rs`: [`ConcurrencyLimit`], how many renders may run at once, adapted to the CPUs' load;
//! - `origins.rs`: [`Statistics`], per-origin render times and failure rates and per-key demand.

mod limit;
mod origins;
mod priority;
mod queue;
mod scheduler;
mod scoring;

#[cfg(test)]
mod tests;

pub use limit::ConcurrencyLimit;
pub use origins::{KeyDemand, OriginFigures, Statistics};
pub use priority::Priority;
pub use queue::{BAND_NAMES, JobQueue, QueueEntry, Refused, Ticket};
pub use scheduler::{
    OTHERS_DURING_FAVOURED, Queued, RunSlot, SchedError, SchedSettings, SchedStatus, Scheduler,
    Standing, URGENT_HEADROOM, origin_of,
};
pub use scoring::{SCORER_BUDGET, ScoreRequest, Scorer};
