//! Webhook deliveries still to make (the outbox): written with a job's end, in the same
//! transaction; claimed by one host at a time for a while; removed once delivered or given up on,
//! which the job's row records.

use sqlx::{AssertSqlSafe, Row};

use super::jobs::{Delivery, query};
use super::{Backend, Store, StoreError};

impl Store {
    /// Claims up to `limit` deliveries due at `now` for `host` until `claimed_until`.
    pub async fn claim_deliveries(
        &self,
        host: &str,
        limit: i64,
        now: i64,
        claimed_until: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // The candidates in a CTE, run once (see `claim_jobs`).
        let claim = format!(
            "WITH due AS (SELECT job_id FROM outbox \
                 WHERE next_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3) \
                 ORDER BY next_at LIMIT $4 {lock}) \
             UPDATE outbox SET claimed_by = $1, claimed_until = $2 \
             FROM due WHERE outbox.job_id = due.job_id \
             RETURNING outbox.job_id, outbox.url, outbox.body, outbox.attempts, outbox.traceparent"
        );
        // Composed of constants only: no input reaches the text.
        let rows = sqlx::query(AssertSqlSafe(claim))
            .bind(host)
            .bind(claimed_until)
            .bind(now)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(query("claim webhook deliveries"))?;
        let read = query("read a webhook delivery");
        rows.iter()
            .map(|row| {
                Ok(Delivery {
                    job_id: row.try_get("job_id").map_err(&read)?,
                    url: row.try_get("url").map_err(&read)?,
                    body: row.try_get("body").map_err(&read)?,
                    attempts: row.try_get("attempts").map_err(&read)?,
                    traceparent: row.try_get("traceparent").map_err(&read)?,
                })
            })
            .collect()
    }

    /// Records a delivery attempt: `delivered`, or failed with `error` and, if another attempt
    /// follows, when (`retry_at`). A delivery delivered or given up on leaves the outbox.
    pub async fn delivery_attempted(
        &self,
        job_id: &str,
        error: Option<&str>,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let state = match (error, retry_at) {
            (None, _) => "delivered",
            (Some(_), Some(_)) => "pending",
            (Some(_), None) => "failed",
        };
        let retry = retry_at.filter(|_| error.is_some());
        let record = "UPDATE jobs SET webhook_state = $1, webhook_attempts = webhook_attempts + 1, \
             webhook_error = $2 WHERE id = $3 AND webhook_state <> 'cancelled'";
        // A delivery is a job's or a batch's: the other statement changes nothing.
        let record_batch = "UPDATE batches SET webhook_state = $1, \
             webhook_attempts = webhook_attempts + 1, webhook_error = $2 WHERE id = $3";
        if self.backend() == Backend::Postgres {
            // One statement (its parts are one transaction): one round trip a delivery.
            let outbox = match retry {
                Some(_) => {
                    "UPDATE outbox SET attempts = attempts + 1, next_at = $4, claimed_by = NULL, \
                     claimed_until = NULL WHERE job_id = $3"
                }
                None => "DELETE FROM outbox WHERE job_id = $3",
            };
            let mut statement = sqlx::query(AssertSqlSafe(format!(
                "WITH outbox_changed AS ({outbox}), batch_changed AS ({record_batch}) {record}"
            )))
            .bind(state)
            .bind(error)
            .bind(job_id);
            if let Some(retry) = retry {
                statement = statement.bind(retry);
            }
            statement
                .execute(self.pool())
                .await
                .map_err(query("record a webhook attempt"))?;
            return Ok(());
        }
        // SQLite has no data-modifying CTEs: a transaction, whose statements are calls in this
        // process rather than round trips.
        let mut transaction = self
            .pool()
            .begin()
            .await
            .map_err(query("begin recording a webhook attempt"))?;
        for record in [record, record_batch] {
            sqlx::query(record)
                .bind(state)
                .bind(error)
                .bind(job_id)
                .execute(&mut *transaction)
                .await
                .map_err(query("record a webhook attempt"))?;
        }
        match retry {
            Some(retry) => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_at = $1, claimed_by = NULL, \
                 claimed_until = NULL WHERE job_id = $2",
            )
            .bind(retry)
            .bind(job_id),
            None => sqlx::query("DELETE FROM outbox WHERE job_id = $1").bind(job_id),
        }
        .execute(&mut *transaction)
        .await
        .map_err(query("update the webhook outbox"))?;
        transaction
            .commit()
            .await
            .map_err(query("commit a webhook attempt"))
    }

    /// Lets go of the deliveries `host` took (every host's, if `None`), so they are made at once
    /// rather than when the hold runs out: at shutdown, and at the start of an embedded store.
    pub async fn release_deliveries(&self, host: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL \
             WHERE claimed_by IS NOT NULL AND ($1 IS NULL OR claimed_by = $1)",
        )
        .bind(host)
        .execute(self.pool())
        .await
        .map_err(query("release webhook deliveries"))?;
        Ok(())
    }
}
