//! jobs: asynchronous jobs, kept in the store from submission to a kept result and a webhook, so a
//! restart, a crash or another host loses none.
//!
//! `POST /v1/jobs` scores the job and writes it to the store, `queued`, before its 202
//! ([`Jobs::submit`]; a full store queue is a 429). Every host's claimer (`runner.rs`) claims queued
//! jobs in the farm's order whenever its scheduler has room for more, queues each claimed job in
//! the scheduler at the standing it was given at submission, and runs it through the executor like
//! any other job. A claimed job is `running` under a lease the host renews; a host that stops
//! renewing (it died) loses its jobs to the others. The run's end (state, result or error, and
//! the webhook delivery) is one transaction; the webhook worker (`webhook.rs`) delivers from the
//! store's outbox. Results are kept for a while and within a byte budget.
//!
//! What is known of a job is its [`Record`] (`record.rs`), read from the store; its document is
//! `document.rs`.

mod batches;
mod crawl;
mod document;
mod intake;
mod record;
mod runner;
mod webhook;

pub use batches::{BatchRecord, BatchSubmission, MAX_BATCH_PAGES};
pub use crawl::CrawlSubmission;
pub use record::{
    JobError, JobFailure, JobResult, JobState, JobsSettings, JobsStatus, Outcome, Record,
    Submission, WebhookStatus, now_ms,
};
pub use webhook::{SIGNATURE_HEADER, install_tls_provider};

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, watch};
use tokio::task::{AbortHandle, JoinHandle};

use crate::exec::{ExecError, Executor};
use crate::job::Job;
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::{Cancelled, Event, Store, StoreError};
use crate::tasks::supervise;
use intake::Intake;
use webhook::Webhooks;

/// Starts one of the background loops of [`Jobs`], for `tasks::supervise` to run (and restart).
type StartLoop = fn(Jobs) -> BoxFuture<'static, ()>;

/// How a failed job's error is kept: as the synchronous endpoint would have answered it. The API
/// knows that mapping and hands it to [`Jobs::start`].
pub type DescribeFailure = fn(ExecError) -> JobFailure;

/// The async jobs of this host. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: JobsSettings,
    store: Store,
    executor: Executor,
    /// This host's name in the store: what its claims and leases carry.
    host: Arc<str>,
    describe_failure: DescribeFailure,
    metrics: Metrics,
    webhooks: Webhooks,
    /// Where submissions go into the store, together.
    intake: Intake,
    /// Crawls' robots.txt and sitemaps.
    site_files: crawl::SiteFiles,
    /// The jobs this host runs, by id.
    running: Mutex<HashMap<String, Run>>,
    /// Woken when a run here ends (shutdown waits on it).
    run_ended: Notify,
    /// Woken when jobs may have been queued: claim now rather than at the next poll.
    queued: Notify,
    /// Woken when this host queued jobs: the other hosts are told (at most every
    /// [`TELL_FARM_EVERY`]).
    queued_here: Notify,
    /// The farm's queued jobs as the upkeep last counted them, plus the jobs this host queued and
    /// less those it claimed since: what a submission checks the queue's capacity against.
    queued_estimate: AtomicI64,
    /// Set at shutdown: claim nothing more, take no more submissions.
    draining: watch::Sender<bool>,
    /// Set once the runs are over: the heartbeat, upkeep and webhook tasks end.
    stopped: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// How often at most a host tells the others it queued jobs: one notification stands for all the
/// jobs queued meanwhile, so a burst of submissions does not wake every host once per job.
const TELL_FARM_EVERY: Duration = Duration::from_millis(10);

/// A job running on this host.
#[derive(Debug)]
struct Run {
    /// The claim's attempt number: finishing names it.
    attempt: i64,
    task: AbortHandle,
}

impl Jobs {
    /// Starts the claimer, the lease heartbeat, the upkeep (expired leases, overdue jobs, old
    /// results) and the webhook worker over `store`. An embedded store has no other host: the jobs
    /// it shows running were this server's before it stopped, and are queued again now.
    pub async fn start(
        settings: JobsSettings,
        store: Store,
        executor: Executor,
        describe_failure: DescribeFailure,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        if store.backend() == crate::store::Backend::Sqlite {
            let requeued = store.requeue_running(None).await?;
            store.release_deliveries(None).await?;
            if requeued > 0 {
                tracing::info!(
                    requeued,
                    "jobs that were running when the server stopped are queued again"
                );
            }
        }
        let host = host_name();
        tracing::info!(%host, store = store.shown(), "async jobs start");
        let queued: i64 = store.queued_by_band().await?.iter().sum();
        let webhooks = Webhooks::new(
            store.clone(),
            host.clone(),
            settings.webhook_secret.as_ref(),
            settings.egress_proxy.as_deref(),
            metrics.clone(),
        );
        let intake = Intake::start(store.clone());
        let site_files = crawl::SiteFiles::new(settings.egress_proxy.as_deref());
        let jobs = Self {
            inner: Arc::new(Inner {
                settings,
                store,
                executor,
                host,
                describe_failure,
                metrics,
                webhooks,
                intake,
                site_files,
                running: Mutex::new(HashMap::new()),
                run_ended: Notify::new(),
                queued: Notify::new(),
                queued_here: Notify::new(),
                queued_estimate: AtomicI64::new(queued),
                draining: watch::channel(false).0,
                stopped: watch::channel(false).0,
                tasks: Mutex::new(Vec::new()),
            }),
        };
        // Each loop restarted if it panics (`tasks::supervise`): a job system whose claimer or
        // lease renewal stopped silently would look alive and lose its jobs to other hosts.
        let loops: [(&'static str, StartLoop); 6] = [
            ("claim jobs", |jobs| {
                let draining = jobs.inner.draining.subscribe();
                jobs.claim(draining).boxed()
            }),
            ("renew leases", |jobs| {
                let stopped = jobs.inner.stopped.subscribe();
                jobs.renew_leases(stopped).boxed()
            }),
            ("job upkeep", |jobs| {
                let stopped = jobs.inner.stopped.subscribe();
                jobs.upkeep(stopped).boxed()
            }),
            ("deliver webhooks", |jobs| {
                let stopped = jobs.inner.stopped.subscribe();
                jobs.inner.webhooks.clone().run(stopped).boxed()
            }),
            ("tell the farm of queued jobs", |jobs| {
                let stopped = jobs.inner.stopped.subscribe();
                jobs.tell_farm_of_queued(stopped).boxed()
            }),
            ("hear the farm", |jobs| {
                let (listener, stopped) =
                    (jobs.inner.store.listen(), jobs.inner.stopped.subscribe());
                jobs.hear(listener, stopped).boxed()
            }),
        ];
        let tasks = loops
            .into_iter()
            .map(|(name, start)| {
                let jobs = jobs.clone();
                supervise(name, move || start(jobs.clone()))
            })
            .collect();
        *jobs
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = tasks;
        Ok(jobs)
    }

    /// Scores `job` and stores it, queued; its record. Any host may run it from here.
    pub async fn submit(&self, job: Job, submission: Submission) -> Result<Record, JobError> {
        let inner = &self.inner;
        self.make_room(1)?;
        let new = self.new_job(&job, &submission).await;
        let submitted_at = new.submitted_at;
        let id = new.id.clone();
        inner.intake.submit(new).await?;
        self.queued_more(1);
        Ok(Record {
            webhook: submission.webhook.clone().map(|url| WebhookStatus {
                url,
                state: "pending".into(),
                attempts: 0,
                last_error: None,
            }),
            id,
            state: JobState::Queued,
            submission,
            submitted_at,
            started_at: None,
            finished_at: None,
            attempts: 0,
            host: None,
            outcome: None,
        })
    }

    /// Whether `count` more jobs may be queued: not while draining, nor past the queue's capacity.
    fn make_room(&self, count: usize) -> Result<(), JobError> {
        let inner = &self.inner;
        if *inner.draining.borrow() {
            return Err(JobError::ShuttingDown);
        }
        let capacity = inner.settings.queue_capacity;
        if inner.queued_estimate.load(Ordering::Relaxed) + count as i64 > capacity as i64 {
            inner
                .metrics
                .sched_rejections
                .get_or_create(&ReasonLabels {
                    reason: "queue_full",
                })
                .inc();
            return Err(JobError::QueueFull { capacity });
        }
        Ok(())
    }

    /// Counts `count` jobs queued from here, and wakes this host's claimer and (through it) the
    /// farm's.
    fn queued_more(&self, count: usize) {
        let inner = &self.inner;
        inner
            .queued_estimate
            .fetch_add(count as i64, Ordering::Relaxed);
        inner.queued.notify_one();
        inner.queued_here.notify_one();
    }

    /// A job's record, with a small JSON or text result inline.
    pub async fn get(&self, id: &str) -> Result<Record, JobError> {
        let (mut record, body) = self.read(id, false).await?;
        if let Some(Outcome::Succeeded(result)) = &mut record.outcome {
            result.inline = body;
        }
        Ok(record)
    }

    /// A job's record and, if it succeeded and its result is kept, the result's bytes.
    pub async fn result(&self, id: &str) -> Result<(Record, Option<Bytes>), JobError> {
        self.read(id, true).await
    }

    /// The record, and the result's bytes if `whole` or if the document shows them inline. A
    /// result evicted between the two reads shows as evicted.
    async fn read(&self, id: &str, whole: bool) -> Result<(Record, Option<Bytes>), JobError> {
        let store = &self.inner.store;
        let row = store
            .job(id)
            .await?
            .ok_or_else(|| JobError::NotFound(id.to_owned()))?;
        let mut record = Record::from(row);
        let Some(Outcome::Succeeded(result)) = &record.outcome else {
            return Ok((record, None));
        };
        if !whole && !result.is_inline() {
            return Ok((record, None));
        }
        match store.result_body(id).await? {
            Some(body) => Ok((record, Some(Bytes::from(body)))),
            None => {
                record.outcome = Some(Outcome::Evicted {
                    content_type: result.content_type.clone(),
                    bytes: result.bytes,
                });
                Ok((record, None))
            }
        }
    }

    /// Cancels a queued or running job, wherever it runs, or forgets a finished one; the record as
    /// it was left.
    pub async fn cancel(&self, id: &str) -> Result<Record, JobError> {
        let inner = &self.inner;
        match inner.store.cancel_job(id, now_ms()).await? {
            Cancelled::NotFound => Err(JobError::NotFound(id.to_owned())),
            Cancelled::Forgotten(row) => Ok(Record::from(*row)),
            Cancelled::Stopped { host } => {
                if host.as_deref() == Some(&*inner.host) {
                    self.stop_run(id);
                } else if host.is_some()
                    && let Err(error) = inner.store.notify(&Event::Cancelled(id.to_owned())).await
                {
                    // Its host finds out when it next renews its leases.
                    tracing::warn!(job = id, %error, "telling the farm of a cancellation failed");
                }
                self.get(id).await
            }
        }
    }

    /// Counts by state and the result bytes kept, for `/v1/status`.
    pub async fn status(&self) -> Result<JobsStatus, JobError> {
        let counts = self.inner.store.job_counts().await?;
        Ok(JobsStatus {
            queued: counts.queued,
            running: counts.running,
            finished: counts.finished,
            host: self.inner.host.to_string(),
            running_here: self.running().len(),
            result_bytes: counts.result_bytes,
            max_result_bytes: self.inner.settings.max_result_bytes,
            result_ttl_ms: self.inner.settings.result_ttl.as_millis() as u64,
        })
    }

    /// This host's name in the store.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Stops claiming and taking submissions at once. Part of [`Jobs::shutdown`], which a server
    /// calls as soon as it is told to stop.
    pub fn drain(&self) {
        self.inner.draining.send_replace(true);
    }

    /// Graceful shutdown: claims nothing more, lets the jobs running here finish within `grace`,
    /// then stops the rest and leaves them queued for the next start or another host. Webhook
    /// deliveries under way are let go the same way.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        self.drain();
        let finished = tokio::time::timeout(grace, async {
            loop {
                let ended = inner.run_ended.notified();
                if self.running().is_empty() {
                    return;
                }
                ended.await;
            }
        })
        .await;
        let left: Vec<Run> = self.running().drain().map(|(_, run)| run).collect();
        if finished.is_err() {
            tracing::warn!(
                jobs = left.len(),
                "grace period over: async jobs still running are queued again"
            );
        }
        for run in &left {
            run.task.abort();
        }
        inner.stopped.send_replace(true);
        let tasks =
            std::mem::take(&mut *inner.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        let host = Some(&*inner.host);
        if let Err(error) = inner.store.requeue_running(host).await {
            // Their leases run out instead, and they are queued again then.
            tracing::warn!(%error, "queueing the unfinished jobs again failed");
        }
        if let Err(error) = inner.store.release_deliveries(host).await {
            tracing::warn!(%error, "letting go of webhook deliveries failed");
        }
    }

    /// Stops job `id` if it runs here.
    fn stop_run(&self, id: &str) {
        if let Some(run) = self.running().remove(id) {
            run.task.abort();
            self.inner.run_ended.notify_waiters();
        }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, Run>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// 128 random bits as 32 hex digits: one user cannot guess another's job.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if let Err(error) = getrandom::fill(&mut bytes) {
        // The kernel's random source does not fail on Linux; if it ever does, ids must still be
        // unique: a counter and the clock, which are not secret.
        tracing::error!(%error, "no random bytes for a job id");
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        bytes[..8].copy_from_slice(&count.to_be_bytes());
        bytes[8..].copy_from_slice(&nanos.to_be_bytes());
    }
    hex(&bytes)
}

/// This host's name in the store: the machine's name (a pod's, in Kubernetes) and a random suffix,
/// so a restarted server is a new host whose predecessor's leases simply run out.
fn host_name() -> Arc<str> {
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let mut suffix = [0u8; 4];
    let _ = getrandom::fill(&mut suffix);
    Arc::from(format!("{machine}-{}", hex(&suffix)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
