//! sched: the scheduler between the API and the pool: admission into a bounded queue, priorities
//! (classes, numbers, a scorer plugin), aging, fairness across tenants and queue-wait deadlines.
//!
//! - `queue.rs`: [`JobQueue`], the ordering itself, without I/O;
//! - `admission.rs`: [`Scheduler`], which admits jobs into the queue and hands out run [`Slot`]s.

mod admission;
mod queue;

pub use admission::{Admission, SchedError, SchedSettings, SchedStatus, Scheduler, Slot};
pub use queue::{Class, JobQueue, Placement, Refused, Ticket};
