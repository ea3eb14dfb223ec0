//! What is known of an async job, as its document shows it: [`Record`], read from the store's row,
//! and the settings and errors of the async jobs.

use std::sync::Arc;
use std::time::Duration;

use crate::job::Class;
use crate::secret::Secret;
use crate::store::{ErrorRow, JobRow, ResultMeta, StoreError};

/// How async jobs are queued, leased and kept.
#[derive(Debug, Clone)]
pub struct JobsSettings {
    /// Queued jobs at most, over every host; beyond it, 429.
    pub queue_capacity: usize,
    /// A cold job waiting this long is claimed as hot.
    pub aging_step: Duration,
    /// How long a claimed job is a host's without the host renewing it; a host that dies loses its
    /// jobs to the others after this.
    pub lease: Duration,
    /// How long a finished job and its result are kept.
    pub result_ttl: Duration,
    /// Bytes of results kept, over every job; past it the oldest go first.
    pub max_result_bytes: usize,
    /// Signs webhook posts; unsigned without one.
    pub webhook_secret: Option<Secret>,
    /// The egress proxy webhook posts go through (`egress`), once the server has started it.
    pub egress_proxy: Option<String>,
}

impl JobsSettings {
    /// Queued jobs are rows on disk: a million is a few hundred MB of store.
    pub const QUEUE_CAPACITY: usize = 1_000_000;
    /// Ten minutes: long enough to poll for a result, short enough not to hoard them.
    pub const RESULT_TTL: Duration = Duration::from_secs(600);
    /// 256 MiB holds ~2,500 full-HD screenshots.
    pub const MAX_RESULT_MIB: usize = 256;
    /// Long enough that a host busy for a few seconds keeps its jobs (it renews every third of
    /// it), short enough that a dead host's jobs wait at most this before another host runs them.
    pub const LEASE: Duration = Duration::from_secs(30);
}

impl Default for JobsSettings {
    fn default() -> Self {
        Self {
            queue_capacity: Self::QUEUE_CAPACITY,
            aging_step: crate::sched::SchedSettings::AGING_STEP,
            lease: Self::LEASE,
            result_ttl: Self::RESULT_TTL,
            max_result_bytes: Self::MAX_RESULT_MIB << 20,
            webhook_secret: None,
            egress_proxy: None,
        }
    }
}

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
    fn parse(state: &str) -> Self {
        match state {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => Self::Cancelled,
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

/// A successful job's output, described; its bytes come from the store on request.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub content_type: String,
    pub bytes: usize,
    /// The output itself, where the document shows it inline (small JSON or text).
    pub inline: Option<bytes::Bytes>,
    pub page_status: u16,
    pub page_url: String,
    /// The dialogs the page opened, a JSON array.
    pub page_dialogs: String,
    /// What did not go as asked without failing the job, a JSON array of messages.
    pub page_warnings: String,
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
    /// The result was dropped to keep results within their byte budget; its size is remembered.
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
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub state: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One job, as `GET /v1/jobs/{id}` shows it. Times are Unix milliseconds.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub state: JobState,
    pub submission: Submission,
    pub submitted_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Runs so far: more than one when a host running it died.
    pub attempts: u32,
    /// The host running it, while it runs.
    pub host: Option<String>,
    pub outcome: Option<Outcome>,
    pub webhook: Option<WebhookStatus>,
}

impl Record {
    /// Milliseconds from submission to the start of its run (so far, while queued).
    pub fn queued_ms(&self) -> f64 {
        let until = self.started_at.or(self.finished_at).unwrap_or_else(now_ms);
        (until - self.submitted_at).max(0) as f64
    }

    /// Milliseconds from the start of its run to its end (so far, while running).
    pub fn run_ms(&self) -> Option<f64> {
        let started = self.started_at?;
        let until = self.finished_at.unwrap_or_else(now_ms);
        Some((until - started).max(0) as f64)
    }
}

impl From<JobRow> for Record {
    fn from(row: JobRow) -> Self {
        let state = JobState::parse(&row.state);
        let outcome = match state {
            JobState::Queued | JobState::Running => None,
            JobState::Cancelled => Some(Outcome::Cancelled),
            JobState::Failed => Some(Outcome::Failed(match &row.error {
                Some(error) => JobFailure::from(error),
                None => JobFailure {
                    status: 500,
                    code: "internal_error".into(),
                    message: "the job failed without a recorded error".into(),
                },
            })),
            JobState::Succeeded => row.result.as_ref().map(|result| {
                if result.kept {
                    Outcome::Succeeded(JobResult::from(result))
                } else {
                    Outcome::Evicted {
                        content_type: result.content_type.clone(),
                        bytes: usize::try_from(result.bytes).unwrap_or(0),
                    }
                }
            }),
        };
        let webhook = row.webhook.clone().map(|url| WebhookStatus {
            url,
            state: row
                .webhook_state
                .clone()
                .unwrap_or_else(|| "pending".into()),
            attempts: u32::try_from(row.webhook_attempts).unwrap_or(0),
            last_error: row.webhook_error.clone(),
        });
        Self {
            id: row.id,
            state,
            submission: Submission {
                plugin: row.plugin,
                tenant: Arc::from(row.tenant.as_str()),
                class: serde_json::from_value(serde_json::Value::String(row.class))
                    .unwrap_or(Class::Hot),
                number: i8::try_from(row.number).unwrap_or(0),
                url: row.url,
                webhook: row.webhook,
            },
            submitted_at: row.submitted_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            host: row.host,
            outcome,
            webhook,
        }
    }
}

impl From<&ErrorRow> for JobFailure {
    fn from(error: &ErrorRow) -> Self {
        Self {
            status: u16::try_from(error.status).unwrap_or(500),
            code: error.code.clone(),
            message: error.message.clone(),
        }
    }
}

impl From<&ResultMeta> for JobResult {
    fn from(meta: &ResultMeta) -> Self {
        Self {
            content_type: meta.content_type.clone(),
            bytes: usize::try_from(meta.bytes).unwrap_or(0),
            inline: None,
            page_status: u16::try_from(meta.page_status).unwrap_or(0),
            page_url: meta.page_url.clone(),
            page_dialogs: meta.page_dialogs.clone(),
            page_warnings: meta.page_warnings.clone(),
            plugin_fuel: meta.plugin_fuel.and_then(|fuel| u64::try_from(fuel).ok()),
            plugin_ms: meta.plugin_ms,
        }
    }
}

/// Why a job could not be submitted, looked up or changed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no job {0}: it never existed, or it finished longer ago than results are kept")]
    NotFound(String),
    #[error("the queue is full ({capacity} jobs waiting); retry later")]
    QueueFull { capacity: usize },
    #[error("the server is shutting down and takes no more async jobs")]
    ShuttingDown,
    /// A request the jobs layer found wrong (a crawl's rules, say).
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{0} is disallowed for pagewright by its site's robots.txt (set crawl.robots to false to crawl it anyway)"
    )]
    RobotsDisallowed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Async job counts and result memory, for `/v1/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobsStatus {
    pub queued: i64,
    pub running: i64,
    pub finished: i64,
    /// This host's name in the store (what a running job's `host` says).
    pub host: String,
    /// Jobs this host runs now.
    pub running_here: usize,
    pub result_bytes: i64,
    pub max_result_bytes: usize,
    pub result_ttl_ms: u64,
}

/// Now, in Unix milliseconds: what the store's times are.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}
