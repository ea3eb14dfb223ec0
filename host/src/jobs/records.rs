//! [`Records`]: what is known of every async job, from submission to a kept result.
//!
//! A [`Record`] moves from `queued` to `running` when its job gets a run slot and ends `succeeded`,
//! `failed` or `cancelled`. Cancelling aborts the job's task wherever it is: a queued job leaves the
//! queue, a running one drops its plugin call (the plugin stops) and its page lease (the pool resets
//! or closes the page).
//!
//! Finished jobs are kept for `result_ttl`, and their results for as long as the bytes of all kept
//! results stay within `max_result_bytes`: past it, the oldest results are dropped first (the
//! record stays, saying so). Records beyond `max_records` finished jobs go oldest first. Ids are 128
//! random bits, so one user cannot guess another's.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::job::Class;
use crate::secret::Secret;

/// A job's id: 32 hex digits.
pub type JobId = Arc<str>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// How long finished jobs are kept, and how much.
#[derive(Debug, Clone)]
pub struct JobsSettings {
    pub result_ttl: Duration,
    pub max_result_bytes: usize,
    /// Finished jobs kept at most, whatever their age.
    pub max_records: usize,
    /// Signs webhook posts; unsigned without one.
    pub webhook_secret: Option<Secret>,
}

impl JobsSettings {
    /// Ten minutes: long enough to poll for a result, short enough not to hoard them.
    pub const RESULT_TTL: Duration = Duration::from_secs(600);
    /// 256 MiB holds ~2,500 full-HD screenshots.
    pub const MAX_RESULT_MIB: usize = 256;
    /// Finished records are ~1 KB without their results: 100k is ~100 MB at most.
    pub const MAX_RECORDS: usize = 100_000;
}

impl Default for JobsSettings {
    fn default() -> Self {
        Self {
            result_ttl: Self::RESULT_TTL,
            max_result_bytes: Self::MAX_RESULT_MIB << 20,
            max_records: Self::MAX_RECORDS,
            webhook_secret: None,
        }
    }
}

/// What a job was asked to do, as its record shows it.
#[derive(Debug, Clone)]
pub struct Submission {
    pub plugin: String,
    pub tenant: Arc<str>,
    pub class: Class,
    pub number: i8,
    /// The page's URL; `None` for inline HTML.
    pub url: Option<String>,
    /// Where the result is posted when the job ends.
    pub webhook: Option<String>,
}

/// A successful job's output.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub content_type: String,
    pub body: Bytes,
    pub page_status: u16,
    pub page_url: String,
    /// What the plugins cost: fuel and wall time in milliseconds.
    pub plugin_fuel: Option<u64>,
    pub plugin_ms: Option<f64>,
}

/// A failed job's error, as the API would have answered it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// How a job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded(JobResult),
    /// The result was dropped to keep within the results' memory; its size is remembered.
    Evicted {
        content_type: String,
        bytes: usize,
    },
    Failed(JobFailure),
    Cancelled,
}

/// Where a job's webhook delivery stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookStatus {
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub state: &'static str,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One job, as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: JobId,
    pub state: JobState,
    pub submission: Submission,
    pub submitted_at: SystemTime,
    /// Monotonic twins of the times, for the durations.
    submitted: Instant,
    pub started: Option<(SystemTime, Instant)>,
    pub finished: Option<(SystemTime, Instant)>,
    pub outcome: Option<Outcome>,
    pub webhook: Option<WebhookStatus>,
}

impl Record {
    /// Milliseconds from submission to a run slot (so far, while queued).
    pub fn queued_ms(&self) -> f64 {
        let until = self
            .started
            .or(self.finished)
            .map_or_else(Instant::now, |(_, at)| at);
        millis(until.saturating_duration_since(self.submitted))
    }

    /// Milliseconds from the run slot to the end (so far, while running).
    pub fn run_ms(&self) -> Option<f64> {
        let (_, started) = self.started?;
        let until = self.finished.map_or_else(Instant::now, |(_, at)| at);
        Some(millis(until.saturating_duration_since(started)))
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Why a job could not be looked up or changed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no job {0}: it never existed, or it finished longer ago than results are kept")]
    NotFound(String),
}

/// The async jobs' records. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Records {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    settings: JobsSettings,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<JobId, Entry>,
    /// Finished jobs, oldest first.
    finished: VecDeque<(Instant, JobId)>,
    /// Bytes of the results kept.
    result_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    record: Record,
    task: Option<AbortHandle>,
}

impl Records {
    /// The job table, and a task that forgets finished jobs past their time once a second (it ends
    /// with the table).
    pub fn new(settings: JobsSettings) -> Self {
        let jobs = Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                settings,
            }),
        };
        tokio::spawn(forget_expired(Arc::downgrade(&jobs.inner)));
        jobs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a new, queued job and returns its id.
    pub fn submit(&self, submission: Submission) -> JobId {
        let id: JobId = new_id().into();
        let webhook = submission.webhook.clone().map(|url| WebhookStatus {
            url,
            state: "pending",
            attempts: 0,
            last_error: None,
        });
        let record = Record {
            id: id.clone(),
            state: JobState::Queued,
            submission,
            submitted_at: SystemTime::now(),
            submitted: Instant::now(),
            started: None,
            finished: None,
            outcome: None,
            webhook,
        };
        self.lock()
            .records
            .insert(id.clone(), Entry { record, task: None });
        id
    }

    /// Ties the task running job `id` to its record, for cancellation. A job cancelled before its
    /// task was attached gets its task aborted here.
    pub fn attach(&self, id: &str, task: AbortHandle) {
        let mut state = self.lock();
        match state.records.get_mut(id) {
            Some(entry) if !entry.record.state.is_finished() => entry.task = Some(task),
            _ => task.abort(),
        }
    }

    /// The job got its run slot.
    pub fn started(&self, id: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.records.get_mut(id)
            && entry.record.state == JobState::Queued
        {
            entry.record.state = JobState::Running;
            entry.record.started = Some((SystemTime::now(), Instant::now()));
        }
    }

    /// The job ended with `outcome`. A job cancelled meanwhile stays cancelled. Returns the record
    /// as it ends, for the webhook.
    pub fn finish(&self, id: &str, outcome: Outcome) -> Option<Record> {
        let mut state = self.lock();
        let entry = state.records.get_mut(id)?;
        if entry.record.state.is_finished() {
            return None;
        }
        entry.record.state = match outcome {
            Outcome::Succeeded(_) | Outcome::Evicted { .. } => JobState::Succeeded,
            Outcome::Failed(_) => JobState::Failed,
            Outcome::Cancelled => JobState::Cancelled,
        };
        let bytes = match &outcome {
            Outcome::Succeeded(result) => result.body.len(),
            _ => 0,
        };
        entry.record.outcome = Some(outcome);
        entry.record.finished = Some((SystemTime::now(), Instant::now()));
        entry.task = None;
        let record = entry.record.clone();
        state.result_bytes += bytes;
        state
            .finished
            .push_back((Instant::now(), record.id.clone()));
        self.keep_within_limits(&mut state);
        Some(record)
    }

    /// Cancels job `id`: a queued or running job ends `cancelled` and its task is aborted; a
    /// finished job is forgotten, result and all. Returns the record as it was left.
    pub fn cancel(&self, id: &str) -> Result<Record, JobError> {
        let mut state = self.lock();
        let entry = state
            .records
            .get_mut(id)
            .ok_or_else(|| JobError::NotFound(id.to_owned()))?;
        if entry.record.state.is_finished() {
            let entry = state.records.remove(id).expect("looked up above");
            if let Some(Outcome::Succeeded(result)) = &entry.record.outcome {
                state.result_bytes -= result.body.len();
            }
            return Ok(entry.record);
        }
        if let Some(task) = entry.task.take() {
            task.abort();
        }
        entry.record.state = JobState::Cancelled;
        entry.record.outcome = Some(Outcome::Cancelled);
        entry.record.finished = Some((SystemTime::now(), Instant::now()));
        if let Some(webhook) = &mut entry.record.webhook {
            // Nothing is posted for a job its owner cancelled.
            webhook.state = "cancelled";
        }
        let record = entry.record.clone();
        state
            .finished
            .push_back((Instant::now(), record.id.clone()));
        self.keep_within_limits(&mut state);
        Ok(record)
    }

    pub fn get(&self, id: &str) -> Result<Record, JobError> {
        self.lock()
            .records
            .get(id)
            .map(|entry| entry.record.clone())
            .ok_or_else(|| JobError::NotFound(id.to_owned()))
    }

    /// Records how a webhook delivery attempt went.
    pub fn webhook_attempt(&self, id: &str, state: &'static str, error: Option<String>) {
        if let Some(entry) = self.lock().records.get_mut(id)
            && let Some(webhook) = &mut entry.record.webhook
        {
            webhook.attempts += 1;
            webhook.state = state;
            webhook.last_error = error;
        }
    }

    /// Jobs by state, and the bytes of results kept, for `/v1/status`.
    pub fn status(&self) -> JobsStatus {
        let state = self.lock();
        let mut status = JobsStatus {
            result_bytes: state.result_bytes,
            max_result_bytes: self.inner.settings.max_result_bytes,
            result_ttl_ms: self.inner.settings.result_ttl.as_millis() as u64,
            ..JobsStatus::default()
        };
        for entry in state.records.values() {
            match entry.record.state {
                JobState::Queued => status.queued += 1,
                JobState::Running => status.running += 1,
                _ => status.finished += 1,
            }
        }
        status
    }

    /// Drops the oldest results past the bytes limit and the oldest records past the count limit.
    fn keep_within_limits(&self, state: &mut State) {
        let settings = &self.inner.settings;
        while state.finished.len() > settings.max_records {
            let Some((_, id)) = state.finished.pop_front() else {
                break;
            };
            forget(state, &id);
        }
        let mut index = 0;
        while state.result_bytes > settings.max_result_bytes && index < state.finished.len() {
            let id = state.finished[index].1.clone();
            index += 1;
            if let Some(entry) = state.records.get_mut(&id)
                && let Some(Outcome::Succeeded(result)) = &entry.record.outcome
            {
                let (content_type, bytes) = (result.content_type.clone(), result.body.len());
                entry.record.outcome = Some(Outcome::Evicted {
                    content_type,
                    bytes,
                });
                state.result_bytes -= bytes;
            }
        }
    }

    fn forget_expired(&self, now: Instant) {
        let mut state = self.lock();
        while let Some(&(finished, _)) = state.finished.front() {
            if now.saturating_duration_since(finished) < self.inner.settings.result_ttl {
                break;
            }
            let (_, id) = state.finished.pop_front().expect("peeked");
            forget(&mut state, &id);
        }
    }
}

/// Removes a finished job's record (if it is still there and finished) and its result's bytes.
fn forget(state: &mut State, id: &str) {
    let finished = state
        .records
        .get(id)
        .is_some_and(|entry| entry.record.state.is_finished());
    if finished
        && let Some(entry) = state.records.remove(id)
        && let Some(Outcome::Succeeded(result)) = &entry.record.outcome
    {
        state.result_bytes -= result.body.len();
    }
}

async fn forget_expired(jobs: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = jobs.upgrade() else {
            return;
        };
        Records { inner }.forget_expired(Instant::now());
    }
}

/// Async job counts and result memory, for `/v1/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobsStatus {
    pub queued: usize,
    pub running: usize,
    pub finished: usize,
    pub result_bytes: usize,
    pub max_result_bytes: usize,
    pub result_ttl_ms: u64,
}

/// 128 random bits as 32 hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if let Err(error) = getrandom::fill(&mut bytes) {
        // The kernel's random source does not fail on Linux; if it ever does, ids must still be
        // unique: a counter and the clock, which are not secret.
        tracing::error!(%error, "no random bytes for a job id");
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        bytes[..8].copy_from_slice(&count.to_be_bytes());
        bytes[8..].copy_from_slice(&nanos.to_be_bytes());
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(max_result_bytes: usize, ttl: Duration) -> Records {
        Records::new(JobsSettings {
            result_ttl: ttl,
            max_result_bytes,
            max_records: 100,
            webhook_secret: None,
        })
    }

    fn submission() -> Submission {
        Submission {
            plugin: "screenshot".into(),
            tenant: Arc::from("t"),
            class: Class::Hot,
            number: 0,
            url: Some("http://127.0.0.1/".into()),
            webhook: None,
        }
    }

    fn result(bytes: usize) -> Outcome {
        Outcome::Succeeded(JobResult {
            content_type: "image/png".into(),
            body: Bytes::from(vec![0; bytes]),
            page_status: 200,
            page_url: "http://127.0.0.1/".into(),
            plugin_fuel: None,
            plugin_ms: None,
        })
    }

    #[tokio::test]
    async fn a_job_goes_from_queued_to_running_to_succeeded() {
        let jobs = jobs(1 << 20, Duration::from_secs(60));
        let id = jobs.submit(submission());
        assert_eq!(id.len(), 32);
        assert_eq!(jobs.get(&id).expect("recorded").state, JobState::Queued);
        jobs.started(&id);
        assert_eq!(jobs.get(&id).expect("recorded").state, JobState::Running);
        let ended = jobs.finish(&id, result(10)).expect("it ends once");
        assert_eq!(ended.state, JobState::Succeeded);
        assert!(jobs.finish(&id, result(10)).is_none());
        assert_eq!(jobs.status().result_bytes, 10);
        let record = jobs.get(&id).expect("kept");
        assert!(record.run_ms().is_some() && record.queued_ms() >= 0.0);
    }

    #[tokio::test]
    async fn cancelling_aborts_the_task_and_a_late_finish_keeps_the_cancellation() {
        let jobs = jobs(1 << 20, Duration::from_secs(60));
        let id = jobs.submit(submission());
        let task = tokio::spawn(std::future::pending::<()>());
        jobs.attach(&id, task.abort_handle());
        let cancelled = jobs.cancel(&id).expect("known");
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert!(task.await.expect_err("aborted").is_cancelled());
        assert!(jobs.finish(&id, result(10)).is_none());
        assert_eq!(jobs.get(&id).expect("kept").state, JobState::Cancelled);
        // Cancelling a finished job forgets it.
        jobs.cancel(&id).expect("known");
        assert!(matches!(jobs.get(&id), Err(JobError::NotFound(_))));
    }

    #[tokio::test]
    async fn results_past_the_byte_limit_go_oldest_first_and_records_expire() {
        let jobs = jobs(25, Duration::from_millis(50));
        let ids: Vec<_> = (0..3)
            .map(|_| {
                let id = jobs.submit(submission());
                jobs.finish(&id, result(10));
                id
            })
            .collect();
        assert!(matches!(
            jobs.get(&ids[0]).expect("kept").outcome,
            Some(Outcome::Evicted { bytes: 10, .. })
        ));
        assert!(matches!(
            jobs.get(&ids[2]).expect("kept").outcome,
            Some(Outcome::Succeeded(_))
        ));
        assert_eq!(jobs.status().result_bytes, 20);
        jobs.forget_expired(Instant::now() + Duration::from_millis(50));
        assert!(matches!(jobs.get(&ids[2]), Err(JobError::NotFound(_))));
        assert_eq!(jobs.status().result_bytes, 0);
    }
}
