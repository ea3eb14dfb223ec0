//! A host's part in running the stored jobs: claiming them into the scheduler's room, running and
//! finishing them, renewing their leases, and the upkeep every host shares (expired leases,
//! overdue jobs, old results), plus hearing the farm's events.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::record::{JobFailure, JobState, Outcome, Record};
use super::{JobResult, Jobs, Run, TELL_FARM_EVERY, now_ms};
use crate::exec::{Admitted, Rendered};
use crate::job::Job;
use crate::metrics::BandLabels;
use crate::plugin::Usage;
use crate::sched::{BAND_NAMES, Standing};
use crate::store::{
    ClaimedJob, Delivery, ErrorRow, Event, Finish, JobRow, Listener, ResultMeta, StoreError,
};
use crate::telemetry;

/// Jobs claimed at most in one claim.
const CLAIM_BATCH: usize = 64;
/// How long a claimer with room for fewer than half its slots waits for more before claiming:
/// jobs end in bunches, and one claim for several jobs costs about what one for a single job does
/// (a claim a job would make the store the bottleneck of short jobs). Small beside a render.
const CLAIM_GATHER: Duration = Duration::from_millis(2);
/// How often a host with room looks for queued jobs when nothing told it of one (another host's
/// notification lost, or a SQLite store's job whose lease ran out).
const CLAIM_POLL: Duration = Duration::from_secs(1);
/// How often the upkeep runs.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);
/// Waits between attempts at a store that failed: the first, and the most it doubles to.
const STORE_RETRY: Duration = Duration::from_millis(500);
const MAX_STORE_RETRY: Duration = Duration::from_secs(5);

impl Jobs {
    /// Claims queued jobs whenever the scheduler has room, until `draining`.
    pub(super) async fn claim(self, mut draining: watch::Receiver<bool>) {
        let scheduler = self.inner.executor.scheduler().clone();
        // Whether the last claim found fewer jobs than it had room for: then only news of queued
        // jobs (or the poll) is worth another claim, not more room.
        let mut drained = false;
        loop {
            let room_changed = scheduler.room_changed();
            let queued = self.inner.queued.notified();
            tokio::pin!(room_changed, queued);
            room_changed.as_mut().enable();
            queued.as_mut().enable();
            if *draining.borrow() {
                return;
            }
            let mut room = scheduler.room().min(CLAIM_BATCH);
            if room > 0 && !drained {
                if room < (scheduler.limit() / 2).clamp(1, CLAIM_BATCH) {
                    tokio::time::sleep(CLAIM_GATHER).await;
                    room = scheduler.room().min(CLAIM_BATCH);
                }
                match self.claim_into(room).await {
                    Ok(claimed) if claimed == room => continue,
                    Ok(_) => drained = true,
                    Err(error) => {
                        tracing::warn!(%error, "claiming jobs failed; retrying");
                        tokio::time::sleep(STORE_RETRY).await;
                        continue;
                    }
                }
            }
            tokio::select! {
                () = &mut room_changed, if room == 0 => {}
                () = &mut queued => drained = false,
                () = tokio::time::sleep(CLAIM_POLL) => drained = false,
                _ = draining.changed() => {}
            }
        }
    }

    /// Claims up to `room` jobs and starts them; how many.
    async fn claim_into(&self, room: usize) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let now = now_ms();
        let began = Instant::now();
        let claimed = inner
            .store
            .claim_jobs(
                &inner.host,
                room as i64,
                now,
                now + inner.settings.lease.as_millis() as i64,
            )
            .await?;
        inner
            .metrics
            .jobs_claim_seconds
            .observe(began.elapsed().as_secs_f64());
        inner.metrics.jobs_claimed.inc_by(claimed.len() as u64);
        let count = claimed.len();
        inner
            .queued_estimate
            .fetch_sub(count as i64, Ordering::Relaxed);
        for job in claimed {
            self.start_run(job);
        }
        Ok(count)
    }

    /// Queues a claimed job in the scheduler at once (so the next look at the room counts it) and
    /// runs it in a task of its own.
    fn start_run(&self, claimed: ClaimedJob) {
        let (admitted, crawl_page) = match self.admit(&claimed) {
            Ok((admitted, crawl_page)) => (Ok(admitted), crawl_page),
            Err(failure) => (Err(failure), None),
        };
        let mut running = self.running();
        let (id, attempt) = (claimed.row.id.clone(), claimed.row.attempts);
        let task = tokio::spawn(self.clone().run(claimed.row, admitted, crawl_page));
        running.insert(
            id,
            Run {
                attempt,
                task: task.abort_handle(),
            },
        );
    }

    /// The claimed job, read back and queued at its standing, with its queue clock started when it
    /// was submitted, and a copy of it if it is a crawl's page (its links are followed from it);
    /// or why it cannot run.
    fn admit(&self, claimed: &ClaimedJob) -> Result<(Admitted, Option<Job>), JobFailure> {
        let mut job: Job = serde_json::from_str(&claimed.spec).map_err(|error| JobFailure {
            status: 500,
            code: "invalid_job".into(),
            message: format!("the stored job could not be read back: {error}"),
        })?;
        let waited =
            Duration::from_millis(u64::try_from(now_ms() - claimed.row.submitted_at).unwrap_or(0));
        job.received_at = Instant::now()
            .checked_sub(waited)
            .unwrap_or_else(Instant::now);
        let standing = Standing {
            score: claimed.score,
            cost: claimed.cost,
        };
        let crawl_page = job.crawl.is_some().then(|| job.clone());
        self.inner
            .executor
            .admit_at(job, standing)
            .map(|admitted| (admitted, crawl_page))
            .map_err(self.inner.describe_failure)
    }

    /// Runs a claimed job (`claimed`: its row as claimed) and stores how it ended, in a span that
    /// continues the trace of the request that stored it; its webhook carries that span's context.
    async fn run(
        self,
        claimed: JobRow,
        admitted: Result<Admitted, JobFailure>,
        crawl_page: Option<Job>,
    ) {
        let stored = admitted
            .as_ref()
            .ok()
            .and_then(|admitted| admitted.job().traceparent.clone());
        let span = tracing::info_span!("async job", job.id = %claimed.id);
        telemetry::continue_trace(&span, stored.as_deref());
        let traceparent = telemetry::traceparent_of(&span, stored.as_deref());
        self.run_in_span(claimed, admitted, crawl_page, traceparent)
            .instrument(span)
            .await;
    }

    async fn run_in_span(
        self,
        claimed: JobRow,
        admitted: Result<Admitted, JobFailure>,
        crawl_page: Option<Job>,
        traceparent: Option<String>,
    ) {
        let finish = match admitted {
            Ok(admitted) => match admitted.run(|| {}).await {
                Ok(rendered) => {
                    if let Some(page) = &crawl_page
                        && !rendered.links.is_empty()
                        && let Err(error) = self
                            .extend_crawl(page, &claimed.plugin, &rendered.links)
                            .await
                    {
                        // The page itself succeeded; what it leads to is lost to this crawl.
                        tracing::warn!(job = %claimed.id, %error, "following a crawl page's links failed");
                    }
                    finish_rendered(rendered)
                }
                Err(error) => Finish::Failed(error_row((self.inner.describe_failure)(error))),
            },
            Err(failure) => Finish::Failed(error_row(failure)),
        };
        self.finish(&claimed.id, Some(&claimed), finish, traceparent.as_deref())
            .await;
        let ended = self.running().remove(&claimed.id);
        if ended.is_some() {
            self.inner.run_ended.notify_waiters();
        }
    }

    /// Stores a job's end with its webhook delivery. A run (`claimed`, the job's row as its claim
    /// left it) retries a store that fails
    /// for as long as it lives: its lease is renewed meanwhile, so once the store is back the end
    /// is stored, unless the lease was lost (then the renewal stops the run and the job runs
    /// again elsewhere). A job that never left the queue (`None`) is tried once; the upkeep that
    /// ends it comes back a second later.
    pub(super) async fn finish(
        &self,
        id: &str,
        claimed: Option<&JobRow>,
        finish: Finish,
        traceparent: Option<&str>,
    ) {
        let inner = &self.inner;
        let mut retry = STORE_RETRY;
        loop {
            let finished_at = now_ms();
            let stored = async {
                let delivery = self
                    .delivery(id, claimed, finished_at, &finish, traceparent)
                    .await?;
                let run = claimed.map(|claimed| (&*inner.host, claimed.attempts));
                inner
                    .store
                    .finish_job(id, run, finished_at, &finish, delivery.as_ref())
                    .await
                    .map(|finished| (finished, delivery.is_some()))
            };
            match stored.await {
                Ok((true, delivery)) => {
                    if delivery {
                        inner.webhooks.wake();
                    }
                    return;
                }
                Ok((false, _)) => {
                    // Cancelled meanwhile, or its lease was lost and it runs elsewhere: that run
                    // finishes it.
                    tracing::debug!(
                        job = id,
                        "a job's end was not stored: it is no longer this run's"
                    );
                    return;
                }
                Err(error) if claimed.is_some() => {
                    tracing::warn!(job = id, %error, ?retry, "storing a job's end failed; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_STORE_RETRY);
                }
                Err(error) => {
                    tracing::warn!(job = id, %error, "storing a job's end failed; the upkeep tries again");
                    return;
                }
            }
        }
    }

    /// The webhook delivery of a job ending with `finish`, if it has a webhook: its document as it
    /// will read once finished, from its row as claimed (or as stored, for a job that never ran).
    async fn delivery(
        &self,
        id: &str,
        claimed: Option<&JobRow>,
        finished_at: i64,
        finish: &Finish,
        traceparent: Option<&str>,
    ) -> Result<Option<Delivery>, StoreError> {
        let row = match claimed {
            Some(claimed) if claimed.webhook.is_none() => return Ok(None),
            Some(claimed) => claimed.clone(),
            None => match self.inner.store.job(id).await? {
                Some(row) => row,
                None => return Ok(None),
            },
        };
        let Some(url) = row.webhook.clone() else {
            return Ok(None);
        };
        let mut record = Record::from(row);
        record.finished_at = Some(finished_at);
        (record.state, record.outcome) = match finish {
            Finish::Succeeded { meta, body } => {
                let mut result = JobResult::from(meta);
                if result.is_inline() {
                    result.inline = Some(bytes::Bytes::copy_from_slice(body));
                }
                (JobState::Succeeded, Some(Outcome::Succeeded(result)))
            }
            Finish::Failed(error) => (
                JobState::Failed,
                Some(Outcome::Failed(JobFailure::from(error))),
            ),
        };
        Ok(Some(Delivery {
            job_id: id.to_owned(),
            url,
            body: record.document().to_string().into_bytes(),
            attempts: 0,
            traceparent: traceparent.map(str::to_owned),
        }))
    }

    /// Renews this host's leases every third of a lease, and stops the runs it no longer holds
    /// (cancelled through another host whose notification was missed, or re-claimed after the
    /// store was out of reach for longer than a lease).
    pub(super) async fn renew_leases(self, mut stopped: watch::Receiver<bool>) {
        let inner = &self.inner;
        let every = inner.settings.lease / 3;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stopped.changed() => return,
            }
            // The runs before the renewal: a job claimed while it is under way is not in its answer.
            let ours: Vec<(String, i64)> = self
                .running()
                .iter()
                .map(|(id, run)| (id.clone(), run.attempt))
                .collect();
            let lease_until = now_ms() + inner.settings.lease.as_millis() as i64;
            let ids: Vec<String> = ours.iter().map(|(id, _)| id.clone()).collect();
            let held: HashSet<String> = match inner
                .store
                .renew_leases(&inner.host, &ids, lease_until)
                .await
            {
                Ok(held) => held.into_iter().collect(),
                Err(error) => {
                    tracing::warn!(%error, "renewing leases failed; retrying");
                    continue;
                }
            };
            for (id, attempt) in ours {
                if held.contains(&id) {
                    continue;
                }
                // Not held: cancelled, or its end was stored just now (the run is on its way
                // out), or lost to another host.
                let lost = match inner.store.job(&id).await {
                    Ok(Some(row)) => match row.state.as_str() {
                        "cancelled" => false,
                        "succeeded" | "failed" if row.attempts == attempt => continue,
                        _ => true,
                    },
                    Ok(None) => false,
                    Err(_) => continue,
                };
                if lost {
                    inner.metrics.jobs_leases_lost.inc();
                    tracing::warn!(job = %id, attempt, "this host lost a job's lease; it stops here");
                }
                self.stop_run(&id);
            }
        }
    }

    /// Tells the other hosts that jobs were queued here, at most every [`TELL_FARM_EVERY`].
    pub(super) async fn tell_farm_of_queued(self, mut stopped: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = self.inner.queued_here.notified() => {}
                _ = stopped.changed() => return,
            }
            if let Err(error) = self.inner.store.notify(&Event::Queued).await {
                // The other hosts find the jobs at their next poll.
                tracing::debug!(%error, "telling the farm of queued jobs failed");
            }
            tokio::time::sleep(TELL_FARM_EVERY).await;
        }
    }

    /// Once a second: queues again the jobs of hosts that stopped renewing, fails jobs that waited
    /// past their queue deadline, forgets expired jobs, keeps results within their bytes, and
    /// publishes the queue's depth. Every host runs it; each step is safe to run twice.
    pub(super) async fn upkeep(self, mut stopped: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(UPKEEP_EVERY) => {}
                _ = stopped.changed() => return,
            }
            if let Err(error) = self.upkeep_once().await {
                tracing::warn!(%error, "the async jobs' upkeep failed; retrying");
            }
        }
    }

    async fn upkeep_once(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let store = &inner.store;
        let now = now_ms();
        let requeued = store.requeue_expired(now).await?;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "jobs whose host stopped renewing their lease are queued again"
            );
            inner.queued.notify_one();
        }
        if store
            .age_cold_jobs(now - inner.settings.aging_step.as_millis() as i64)
            .await?
            > 0
        {
            inner.queued.notify_one();
        }
        for id in store.overdue_jobs(now).await? {
            let failure = JobFailure {
                status: 503,
                code: "queue_timeout".into(),
                message: "the job waited in the queue longer than its queue_timeout_ms without a free render slot".into(),
            };
            self.finish(&id, None, Finish::Failed(error_row(failure)), None)
                .await;
        }
        store
            .forget_finished_before(now - inner.settings.result_ttl.as_millis() as i64)
            .await?;
        store
            .evict_results(inner.settings.max_result_bytes as i64)
            .await?;
        self.finish_batches().await?;
        let queued = store.queued_by_band().await?;
        inner
            .queued_estimate
            .store(queued.iter().sum(), Ordering::Relaxed);
        for (band, queued) in BAND_NAMES.iter().zip(queued) {
            inner
                .metrics
                .jobs_queued
                .get_or_create(&BandLabels { band })
                .set(queued);
        }
        Ok(())
    }

    /// Acts on the farm's events (PostgreSQL): claims at once when jobs are queued, stops a job
    /// cancelled through another host. Nothing to hear on SQLite.
    pub(super) async fn hear(self, listener: Option<Listener>, mut stopped: watch::Receiver<bool>) {
        let Some(mut listener) = listener else {
            return;
        };
        loop {
            let event = tokio::select! {
                event = listener.next() => event,
                _ = stopped.changed() => return,
            };
            match event {
                Some(Event::Queued) => self.inner.queued.notify_one(),
                Some(Event::Cancelled(id)) => self.stop_run(&id),
                // What was missed is caught up by claiming now (and by the lease renewal, for
                // cancellations).
                Some(Event::Missed) => self.inner.queued.notify_one(),
                Some(Event::Plugins) => {}
                None => return,
            }
        }
    }
}

/// A rendered job's end, to store.
fn finish_rendered(rendered: Rendered) -> Finish {
    let meta = ResultMeta {
        content_type: rendered.produced.content_type().to_owned(),
        bytes: 0,
        kept: true,
        page_status: i64::from(rendered.navigation.status),
        page_url: rendered.navigation.url,
        page_dialogs: serde_json::to_string(&rendered.dialogs).unwrap_or_else(|_| "[]".into()),
        page_warnings: serde_json::to_string(&rendered.navigation.warnings)
            .unwrap_or_else(|_| "[]".into()),
        plugin_fuel: rendered
            .usage
            .as_ref()
            .and_then(|usage| i64::try_from(usage.fuel).ok()),
        plugin_ms: rendered.usage.as_ref().map(Usage::wall_ms),
    };
    let body = rendered.produced.into_bytes();
    Finish::Succeeded {
        meta: ResultMeta {
            bytes: body.len() as i64,
            ..meta
        },
        body,
    }
}

fn error_row(failure: JobFailure) -> ErrorRow {
    ErrorRow {
        status: i64::from(failure.status),
        code: failure.code,
        message: failure.message,
    }
}
