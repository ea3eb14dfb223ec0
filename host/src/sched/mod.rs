//! sched: the scheduler between the API and the pool: admission into a bounded queue, priorities
//! (classes, numbers, a scorer plugin), aging, fairness across tenants and queue-wait deadlines.
//!
//! - `queue.rs`: [`JobQueue`], the ordering itself, without I/O.

mod queue;

pub use queue::{Class, JobQueue, Placement, Refused, Ticket};
