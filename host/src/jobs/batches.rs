//! Batches (`POST /v1/batches`): many pages with the same options under one id. Each page is an
//! async job of its own, submitted with the others in one transaction, claimed and run by any host
//! like any job, with its own document and result (`/v1/jobs/{id}`); the batch's document counts
//! them by state and lists them in order. The upkeep of any host finishes a batch once none of its
//! pages is queued or running, and its webhook (the batch's document) is delivered from the outbox
//! like a job's.

use serde_json::{Value, json};

use super::{JobError, Jobs, Submission, new_id, now_ms};
use crate::job::Job;
use crate::store::{BatchCounts, BatchPage, BatchRow, Delivery, NewBatch, NewJob, StoreError};

/// The most pages one batch may have.
pub const MAX_BATCH_PAGES: usize = 10_000;
/// Batches the upkeep finishes at most per round.
const FINISH_PER_ROUND: i64 = 100;

/// What a batch is for, beside its pages.
#[derive(Debug, Clone)]
pub struct BatchSubmission {
    pub tenant: String,
    /// As the request named it.
    pub plugin: String,
    pub webhook: Option<String>,
}

/// A batch as its document shows it: the stored row, its counts and (a window of) its pages.
#[derive(Debug, Clone)]
pub struct BatchRecord {
    pub row: BatchRow,
    pub counts: BatchCounts,
    pub pages: Vec<BatchPage>,
    /// Where `pages` starts.
    pub offset: i64,
}

impl Jobs {
    /// Scores every page's job and stores the batch and its jobs, queued, in one transaction.
    pub async fn submit_batch(
        &self,
        pages: Vec<(Job, Submission)>,
        batch: BatchSubmission,
    ) -> Result<BatchRecord, JobError> {
        let inner = &self.inner;
        self.make_room(pages.len())?;
        let id = format!("b{}", new_id());
        let submitted_at = now_ms();
        let mut jobs = Vec::with_capacity(pages.len());
        for (index, (job, submission)) in pages.into_iter().enumerate() {
            let mut new = self.new_job(&job, &submission).await;
            new.batch = Some((id.clone(), index as i64));
            jobs.push(new);
        }
        let count = jobs.len();
        let new_batch = NewBatch {
            id: id.clone(),
            tenant: batch.tenant,
            plugin: batch.plugin,
            webhook: batch.webhook,
            submitted_at,
            crawl: None,
        };
        inner.store.create_batch(&new_batch, &jobs).await?;
        self.queued_more(count);
        self.batch(&id, 0, i64::from(u16::MAX)).await
    }

    /// A batch's record with pages `offset..offset + limit`.
    pub async fn batch(&self, id: &str, offset: i64, limit: i64) -> Result<BatchRecord, JobError> {
        let store = &self.inner.store;
        let row = store
            .batch(id)
            .await?
            .ok_or_else(|| JobError::NotFound(id.to_owned()))?;
        let counts = store.batch_counts(id).await?;
        let pages = store.batch_pages(id, offset, limit).await?;
        Ok(BatchRecord {
            row,
            counts,
            pages,
            offset,
        })
    }

    /// Cancels a batch's pages that have not finished, wherever they run; the record as it was
    /// left.
    pub async fn cancel_batch(&self, id: &str) -> Result<BatchRecord, JobError> {
        let store = &self.inner.store;
        if store.batch(id).await?.is_none() {
            return Err(JobError::NotFound(id.to_owned()));
        }
        for running in store.cancel_batch(id, now_ms()).await? {
            match self.cancel(&running).await {
                Ok(_) | Err(JobError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        self.batch(id, 0, i64::from(u16::MAX)).await
    }

    /// Finishes the batches none of whose pages is queued or running, each with its webhook
    /// delivery; run by every host's upkeep, and a batch finishes once whoever gets there first.
    pub(super) async fn finish_batches(&self) -> Result<(), StoreError> {
        let store = &self.inner.store;
        for id in store.done_batches(FINISH_PER_ROUND).await? {
            let Some(row) = store.batch(&id).await? else {
                // Forgotten meanwhile.
                continue;
            };
            let finished_at = now_ms();
            // Only a webhook needs the whole document, every page of it.
            let delivery = match &row.webhook {
                None => None,
                Some(url) => {
                    let mut finished = match self.batch(&id, 0, i64::MAX).await {
                        Ok(record) => record,
                        Err(JobError::Store(error)) => return Err(error),
                        // Forgotten meanwhile.
                        Err(_) => continue,
                    };
                    finished.row.finished_at = Some(finished_at);
                    Some(Delivery {
                        job_id: id.clone(),
                        url: url.clone(),
                        body: finished.document().to_string().into_bytes(),
                        attempts: 0,
                        traceparent: None,
                    })
                }
            };
            if store
                .finish_batch(&id, finished_at, delivery.as_ref())
                .await?
            {
                tracing::info!(batch = %id, pages = row.pages, "batch finished");
                if delivery.is_some() {
                    self.inner.webhooks.wake();
                }
            }
        }
        store
            .forget_batches_finished_before(
                now_ms() - self.inner.settings.result_ttl.as_millis() as i64,
            )
            .await?;
        Ok(())
    }

    /// The stored form of a job with its place in the farm's order, as [`Jobs::submit`] scores it.
    pub(super) async fn new_job(&self, job: &Job, submission: &Submission) -> NewJob {
        let standing = self.inner.executor.scheduler().standing(job).await;
        let submitted_at = now_ms() - job.received_at.elapsed().as_millis() as i64;
        NewJob {
            id: new_id(),
            // A job is plain values: it always serializes.
            spec: serde_json::to_string(job).expect("a job serializes as JSON"),
            plugin: submission.plugin.clone(),
            tenant: submission.tenant.to_string(),
            class: serde_json::to_value(submission.class)
                .ok()
                .and_then(|class| class.as_str().map(str::to_owned))
                .unwrap_or_default(),
            number: i64::from(submission.number),
            url: submission.url.clone(),
            webhook: submission.webhook.clone(),
            band: standing.band() as i64,
            score: standing.score,
            cost: standing.cost,
            submitted_at,
            queue_deadline: submitted_at + job.queue_timeout.as_millis() as i64,
            batch: None,
        }
    }
}

impl BatchRecord {
    /// The batch's JSON document: `GET /v1/batches/{id}`, and its webhook's body.
    pub fn document(&self) -> Value {
        let row = &self.row;
        let counts = &self.counts;
        let finished = counts.succeeded + counts.failed + counts.cancelled;
        let state = if row.finished_at.is_some() || counts.queued + counts.running == 0 {
            "finished"
        } else if counts.running > 0 || finished > 0 {
            "running"
        } else {
            "queued"
        };
        let pages: Vec<Value> = self
            .pages
            .iter()
            .map(|page| {
                let mut shown = json!({
                    "index": page.index,
                    "id": page.job_id,
                    "url": page.url,
                    "state": page.state,
                    "href": format!("/v1/jobs/{}", page.job_id),
                });
                if let Some(content_type) = &page.content_type {
                    shown["result"] = json!({
                        "content_type": content_type,
                        "bytes": page.bytes,
                        "href": format!("/v1/jobs/{}/result", page.job_id),
                    });
                }
                if let Some(code) = &page.error_code {
                    shown["error"] = json!({
                        "status": page.error_status,
                        "code": code,
                        "message": page.error_message,
                    });
                }
                shown
            })
            .collect();
        // A crawl shows its start origin and rules.
        let crawl = row
            .crawl
            .as_deref()
            .and_then(|crawl| serde_json::from_str::<Value>(crawl).ok());
        json!({
            "id": row.id,
            "kind": if crawl.is_some() { "crawl" } else { "batch" },
            "crawl": crawl,
            "state": state,
            "plugin": row.plugin,
            "tenant": row.tenant,
            "submitted_at": row.submitted_at,
            "finished_at": row.finished_at,
            "pages": row.pages,
            "progress": {
                "queued": counts.queued,
                "running": counts.running,
                "succeeded": counts.succeeded,
                "failed": counts.failed,
                "cancelled": counts.cancelled,
                "finished": finished,
                "fraction": if row.pages > 0 { finished as f64 / row.pages as f64 } else { 1.0 },
            },
            "offset": self.offset,
            "items": pages,
            "webhook": row.webhook.as_ref().map(|url| json!({
                "url": url,
                "state": row.webhook_state,
                "attempts": row.webhook_attempts,
                "last_error": row.webhook_error,
            })),
        })
    }
}
