//! Submissions written to the store together: while one insert is on its way, the submissions
//! that arrive meanwhile wait and go in the next, as one statement. One round trip (and one
//! commit) for many jobs under load, and no added wait when a submission comes alone.

use tokio::sync::{mpsc, oneshot};

use crate::store::{NewJob, Store, StoreError};

/// Jobs written in one statement at most.
const MAX_BATCH: usize = 32;
/// Submissions waiting for the writer at most; more wait for room.
const BACKLOG: usize = 4096;

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// The way into the store for this host's submissions. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Intake {
    sender: mpsc::Sender<(NewJob, Reply)>,
}

impl Intake {
    /// Starts the writer; it ends when the last `Intake` is dropped.
    pub fn start(store: Store) -> Self {
        let (sender, receiver) = mpsc::channel(BACKLOG);
        tokio::spawn(write(store, receiver));
        Self { sender }
    }

    /// Stores `job` as queued, with whatever other submissions are waiting.
    pub async fn submit(&self, job: NewJob) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((job, reply))
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

async fn write(store: Store, mut receiver: mpsc::Receiver<(NewJob, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (jobs, replies): (Vec<NewJob>, Vec<Reply>) = batch.drain(..).unzip();
        match store.submit_jobs(&jobs).await {
            Ok(()) => {
                for reply in replies {
                    let _ = reply.send(Ok(()));
                }
            }
            // One by one, so that each submission gets its own answer (and one the store
            // refuses fails alone).
            Err(_) => {
                for (job, reply) in jobs.iter().zip(replies) {
                    let _ = reply.send(store.submit_job(job).await);
                }
            }
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::Query {
        step: "store a job",
        source: sqlx::Error::PoolClosed,
    }
}
