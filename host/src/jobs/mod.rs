//! jobs: asynchronous jobs, from submission to a kept result and a webhook.
//!
//! `POST /v1/jobs` admits the job into the scheduler's queue before answering (a full queue is still
//! a 429 at once), then [`Jobs::submit`] records it and runs it in a task of its own through the
//! executor, like any other job. The [`Record`] (`records.rs`) goes `queued` → `running` (when it
//! gets its run slot) → `succeeded`, `failed` (with the error the endpoint would have answered) or
//! `cancelled`; a finished job's document (`document.rs`) is posted to its webhook, if it named one
//! (`webhook.rs`). Results are kept for a while and within a byte budget.

mod document;
mod records;
mod webhook;

pub use records::{
    JobError, JobFailure, JobId, JobResult, JobState, JobsSettings, JobsStatus, Outcome, Record,
    Submission, WebhookStatus,
};
pub use webhook::{SIGNATURE_HEADER, install_tls_provider};

use bytes::Bytes;

use crate::exec::{Admitted, ExecError, Rendered};
use crate::metrics::Metrics;
use crate::plugin::Usage;
use records::Records;
use webhook::Webhooks;

/// How a failed job's error is kept: as the synchronous endpoint would have answered it. The API
/// knows that mapping and hands it to [`Jobs::new`].
pub type DescribeFailure = fn(ExecError) -> JobFailure;

/// The async jobs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Jobs {
    records: Records,
    webhooks: Webhooks,
    describe_failure: DescribeFailure,
}

impl Jobs {
    /// The job table (and its task that forgets expired jobs) and the webhook sender.
    pub fn new(
        settings: JobsSettings,
        describe_failure: DescribeFailure,
        metrics: Metrics,
    ) -> Self {
        let secret = settings.webhook_secret.clone();
        let records = Records::new(settings);
        let webhooks = Webhooks::new(
            records.clone(),
            secret.as_ref().map(|secret| secret.expose()),
            metrics,
        );
        Self {
            records,
            webhooks,
            describe_failure,
        }
    }

    /// Records a job already in the queue and runs it in a task of its own; its record as it
    /// starts (or, should it have finished and been forgotten already, why it is not there).
    pub fn submit(&self, admitted: Admitted, submission: Submission) -> Result<Record, JobError> {
        let id = self.records.submit(submission);
        let task = tokio::spawn({
            let (jobs, id) = (self.clone(), id.clone());
            async move {
                let rendered = admitted.run(|| jobs.records.started(&id)).await;
                let outcome = match rendered {
                    Ok(rendered) => Outcome::Succeeded(JobResult::from(rendered)),
                    Err(error) => Outcome::Failed((jobs.describe_failure)(error)),
                };
                if let Some(record) = jobs.records.finish(&id, outcome)
                    && let Some(webhook) = &record.submission.webhook
                {
                    let body = record.document().to_string().into_bytes();
                    jobs.webhooks.deliver(&id, webhook, body);
                }
            }
        });
        self.records.attach(&id, task.abort_handle());
        self.records.get(&id)
    }

    pub fn get(&self, id: &str) -> Result<Record, JobError> {
        self.records.get(id)
    }

    /// Cancels a queued or running job, or forgets a finished one; the record as it was left.
    pub fn cancel(&self, id: &str) -> Result<Record, JobError> {
        self.records.cancel(id)
    }

    pub fn status(&self) -> JobsStatus {
        self.records.status()
    }
}

impl From<Rendered> for JobResult {
    fn from(rendered: Rendered) -> Self {
        Self {
            content_type: rendered.produced.content_type().to_owned(),
            body: Bytes::from(rendered.produced.into_bytes()),
            page_status: rendered.navigation.status,
            page_url: rendered.navigation.url,
            plugin_fuel: rendered.usage.map(|usage| usage.fuel),
            plugin_ms: rendered.usage.as_ref().map(Usage::wall_ms),
        }
    }
}
