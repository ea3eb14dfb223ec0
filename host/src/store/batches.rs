//! Batches: many pages under one id. A batch's row says who it is for and how many pages it has;
//! each page is a job (`jobs.batch_id`, `jobs.batch_index`), claimed, run and finished like any
//! other. A batch is done when none of its jobs is queued or running; the upkeep of any host then
//! finishes it, once (a conditional update), with its webhook delivery in the same transaction.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::jobs::{Delivery, NewJob, query};
use super::{Store, StoreError};

/// Jobs inserted in one statement when a batch is created (16 parameters each, well under
/// SQLite's and PostgreSQL's limits).
const INSERT_CHUNK: usize = 256;

/// A batch to store, with its jobs.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: String,
    pub tenant: String,
    pub plugin: String,
    pub webhook: Option<String>,
    pub submitted_at: i64,
    /// A crawl's rules, as JSON.
    pub crawl: Option<String>,
}

/// A stored batch.
#[derive(Debug, Clone)]
pub struct BatchRow {
    pub id: String,
    pub tenant: String,
    pub plugin: String,
    pub pages: i64,
    pub webhook: Option<String>,
    pub submitted_at: i64,
    pub finished_at: Option<i64>,
    pub webhook_state: Option<String>,
    pub webhook_attempts: i64,
    pub webhook_error: Option<String>,
    /// A crawl's rules (JSON); `None` for a batch of given URLs.
    pub crawl: Option<String>,
}

/// One page of a batch: its job's state and what it produced.
#[derive(Debug, Clone)]
pub struct BatchPage {
    pub index: i64,
    pub job_id: String,
    pub url: Option<String>,
    pub state: String,
    pub error_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Option<i64>,
}

/// A batch's jobs by state.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchCounts {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
}

impl Store {
    /// Stores a batch and its jobs, queued: all of them or none.
    pub async fn create_batch(&self, batch: &NewBatch, jobs: &[NewJob]) -> Result<(), StoreError> {
        let mut transaction = self
            .pool()
            .begin()
            .await
            .map_err(query("begin storing a batch"))?;
        sqlx::query(
            "INSERT INTO batches (id, tenant, plugin, pages, webhook, submitted_at, webhook_state, \
             crawl) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&batch.id)
        .bind(&batch.tenant)
        .bind(&batch.plugin)
        .bind(i64::try_from(jobs.len()).unwrap_or(i64::MAX))
        .bind(&batch.webhook)
        .bind(batch.submitted_at)
        .bind(batch.webhook.as_ref().map(|_| "pending"))
        .bind(&batch.crawl)
        .execute(&mut *transaction)
        .await
        .map_err(query("store a batch"))?;
        for chunk in jobs.chunks(INSERT_CHUNK) {
            Self::insert_jobs(&mut *transaction, chunk).await?;
        }
        if batch.crawl.is_some() {
            for url in jobs.iter().filter_map(|job| job.url.as_deref()) {
                sqlx::query(
                    "INSERT INTO batch_urls (batch_id, url) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(&batch.id)
                .bind(url)
                .execute(&mut *transaction)
                .await
                .map_err(query("store a crawl's URL"))?;
            }
        }
        transaction.commit().await.map_err(query("commit a batch"))
    }

    pub async fn batch(&self, id: &str) -> Result<Option<BatchRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, tenant, plugin, pages, webhook, submitted_at, finished_at, webhook_state, \
             webhook_attempts, webhook_error, crawl FROM batches WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query("read a batch"))?;
        row.map(|row| batch_row(&row)).transpose()
    }

    /// A crawl's rules (JSON); `None` for a batch of given URLs, or one that is gone.
    pub async fn batch_crawl(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT crawl FROM batches WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(query("read a crawl's rules"))?;
        Ok(row.and_then(|(crawl,)| crawl))
    }

    /// Adds to a crawl the pages whose URLs it has not taken in yet, while it has fewer than
    /// `max_pages`, in order; each gets the next place. How many were added. One transaction: a
    /// page found by two hosts at once is added once.
    pub async fn extend_crawl(
        &self,
        id: &str,
        max_pages: i64,
        pages: Vec<NewJob>,
    ) -> Result<usize, StoreError> {
        let mut transaction = self
            .pool()
            .begin()
            .await
            .map_err(query("begin extending a crawl"))?;
        let mut added = 0;
        for mut page in pages {
            let Some(url) = page.url.clone() else {
                continue;
            };
            let taken = sqlx::query(
                "INSERT INTO batch_urls (batch_id, url) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(&url)
            .execute(&mut *transaction)
            .await
            .map_err(query("take in a crawl's URL"))?;
            if taken.rows_affected() == 0 {
                continue;
            }
            // The count and the place in one statement, which holds the batch's row to the
            // commit: two hosts extending one crawl take turns, and it never passes its limit.
            let counted: Option<(i64,)> = sqlx::query_as(
                "UPDATE batches SET pages = pages + 1 WHERE id = $1 AND pages < $2 RETURNING pages",
            )
            .bind(id)
            .bind(max_pages)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(query("count a crawl's page"))?;
            let Some((count,)) = counted else {
                break;
            };
            page.batch = Some((id.to_owned(), count - 1));
            Self::insert_jobs(&mut *transaction, std::slice::from_ref(&page)).await?;
            added += 1;
        }
        transaction
            .commit()
            .await
            .map_err(query("commit a crawl's new pages"))?;
        Ok(added)
    }

    /// The batch's jobs by state.
    pub async fn batch_counts(&self, id: &str) -> Result<BatchCounts, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, CAST(COUNT(*) AS BIGINT) FROM jobs WHERE batch_id = $1 GROUP BY state",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(query("count a batch's jobs"))?;
        let mut counts = BatchCounts::default();
        for (state, count) in rows {
            match state.as_str() {
                "queued" => counts.queued = count,
                "running" => counts.running = count,
                "succeeded" => counts.succeeded = count,
                "failed" => counts.failed = count,
                _ => counts.cancelled += count,
            }
        }
        Ok(counts)
    }

    /// Pages `offset..offset + limit` of a batch, in order.
    pub async fn batch_pages(
        &self,
        id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<BatchPage>, StoreError> {
        let rows = sqlx::query(
            "SELECT jobs.batch_index, jobs.id, jobs.url, jobs.state, jobs.error_status, \
             jobs.error_code, jobs.error_message, results.content_type, results.bytes \
             FROM jobs LEFT JOIN results ON results.job_id = jobs.id \
             WHERE jobs.batch_id = $1 ORDER BY jobs.batch_index LIMIT $2 OFFSET $3",
        )
        .bind(id)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await
        .map_err(query("read a batch's pages"))?;
        let read = query("read a batch's page");
        rows.iter()
            .map(|row| {
                Ok(BatchPage {
                    index: row.try_get(0).map_err(&read)?,
                    job_id: row.try_get(1).map_err(&read)?,
                    url: row.try_get(2).map_err(&read)?,
                    state: row.try_get(3).map_err(&read)?,
                    error_status: row.try_get(4).map_err(&read)?,
                    error_code: row.try_get(5).map_err(&read)?,
                    error_message: row.try_get(6).map_err(&read)?,
                    content_type: row.try_get(7).map_err(&read)?,
                    bytes: row.try_get(8).map_err(&read)?,
                })
            })
            .collect()
    }

    /// Unfinished batches none of whose jobs is queued or running, at most `limit`.
    pub async fn done_batches(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM batches WHERE finished_at IS NULL AND NOT EXISTS \
             (SELECT 1 FROM jobs WHERE jobs.batch_id = batches.id \
              AND jobs.state IN ('queued', 'running')) \
             ORDER BY submitted_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(query("find finished batches"))?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Marks a done batch finished and stores its webhook delivery, in one transaction; false if
    /// another host finished it first.
    pub async fn finish_batch(
        &self,
        id: &str,
        finished_at: i64,
        delivery: Option<&Delivery>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self
            .pool()
            .begin()
            .await
            .map_err(query("begin finishing a batch"))?;
        let updated = sqlx::query(
            "UPDATE batches SET finished_at = $1 WHERE id = $2 AND finished_at IS NULL",
        )
        .bind(finished_at)
        .bind(id)
        .execute(&mut *transaction)
        .await
        .map_err(query("finish a batch"))?;
        if updated.rows_affected() == 0 {
            transaction
                .rollback()
                .await
                .map_err(query("roll back finishing a batch"))?;
            return Ok(false);
        }
        if let Some(delivery) = delivery {
            Self::insert_delivery(&mut *transaction, delivery, finished_at).await?;
        }
        transaction
            .commit()
            .await
            .map_err(query("commit a finished batch"))?;
        Ok(true)
    }

    /// Cancels a batch's queued jobs; the ids of those still running, for the caller to cancel
    /// where they run.
    pub async fn cancel_batch(&self, id: &str, now: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1 \
             WHERE batch_id = $2 AND state = 'queued'",
        )
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(query("cancel a batch's queued jobs"))?;
        let running: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM jobs WHERE batch_id = $1 AND state = 'running'")
                .bind(id)
                .fetch_all(self.pool())
                .await
                .map_err(query("find a batch's running jobs"))?;
        Ok(running.into_iter().map(|(id,)| id).collect())
    }

    /// Forgets batches that finished before `cutoff` and whose webhook is not still being
    /// delivered (their jobs go by the jobs' own expiry); how many.
    pub async fn forget_batches_finished_before(&self, cutoff: i64) -> Result<u64, StoreError> {
        sqlx::query(
            "DELETE FROM batch_urls WHERE batch_id IN (SELECT id FROM batches \
             WHERE finished_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.job_id = batches.id))",
        )
        .bind(cutoff)
        .execute(self.pool())
        .await
        .map_err(query("forget expired crawls' URLs"))?;
        let forgotten = sqlx::query(
            "DELETE FROM batches WHERE finished_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.job_id = batches.id)",
        )
        .bind(cutoff)
        .execute(self.pool())
        .await
        .map_err(query("forget expired batches"))?;
        Ok(forgotten.rows_affected())
    }
}

fn batch_row(row: &AnyRow) -> Result<BatchRow, StoreError> {
    let read = query("read a batch");
    Ok(BatchRow {
        id: row.try_get("id").map_err(&read)?,
        tenant: row.try_get("tenant").map_err(&read)?,
        plugin: row.try_get("plugin").map_err(&read)?,
        pages: row.try_get("pages").map_err(&read)?,
        webhook: row.try_get("webhook").map_err(&read)?,
        submitted_at: row.try_get("submitted_at").map_err(&read)?,
        finished_at: row.try_get("finished_at").map_err(&read)?,
        webhook_state: row.try_get("webhook_state").map_err(&read)?,
        webhook_attempts: row.try_get("webhook_attempts").map_err(&read)?,
        webhook_error: row.try_get("webhook_error").map_err(&read)?,
        crawl: row.try_get("crawl").map_err(&read)?,
    })
}
