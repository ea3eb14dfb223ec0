//! The async jobs' rows: submitting, claiming in the farm's order, leases, finishing (state, result
//! and webhook in one transaction), cancelling, and keeping results within their time and bytes.
//!
//! A job is `queued` until a host claims it (`running`, with the claiming host and a lease that host
//! renews), then `succeeded`, `failed` or `cancelled`. A host that stops renewing loses its leases:
//! its jobs go back to `queued` and run again, each claim counting an attempt. Finishing checks that
//! the lease is still the finisher's, so a job re-claimed elsewhere is finished once.
//!
//! Claims follow the scheduler's order across every host: band (cold jobs waiting past the aging
//! step count as hot), then the tenant furthest behind its fair share (each tenant's virtual clock
//! advances by the predicted cost of its claimed jobs, start-time fair queuing), then score, then
//! age. On PostgreSQL the candidates are locked `FOR UPDATE SKIP LOCKED`, so hosts claiming at once
//! take different jobs; SQLite has one writer.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Backend, Store, StoreError};

/// A job to store as queued.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    /// The job itself, as JSON.
    pub spec: String,
    pub plugin: String,
    pub tenant: String,
    pub class: String,
    pub number: i64,
    pub url: Option<String>,
    pub webhook: Option<String>,
    pub band: i64,
    pub score: f64,
    /// Predicted render time in milliseconds: what the job's turn costs its tenant.
    pub cost: f64,
    /// Unix milliseconds.
    pub submitted_at: i64,
    pub queue_deadline: i64,
    /// The batch it is a page of, and its place there.
    pub batch: Option<(String, i64)>,
}

/// A stored job, as its document shows it.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub state: String,
    pub plugin: String,
    pub tenant: String,
    pub class: String,
    pub number: i64,
    pub url: Option<String>,
    pub webhook: Option<String>,
    pub submitted_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub attempts: i64,
    /// The host running it, while it runs.
    pub host: Option<String>,
    pub error: Option<ErrorRow>,
    pub webhook_state: Option<String>,
    pub webhook_attempts: i64,
    pub webhook_error: Option<String>,
    /// What a succeeded job produced, without its bytes.
    pub result: Option<ResultMeta>,
}

/// A failed job's error, as the endpoint would have answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRow {
    pub status: i64,
    pub code: String,
    pub message: String,
}

/// A result's description; `kept` is false once its bytes were evicted.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultMeta {
    pub content_type: String,
    pub bytes: i64,
    pub kept: bool,
    pub page_status: i64,
    pub page_url: String,
    /// The dialogs the page opened, a JSON array.
    pub page_dialogs: String,
    /// What did not go as asked without failing the job, a JSON array of messages.
    pub page_warnings: String,
    pub plugin_fuel: Option<i64>,
    pub plugin_ms: Option<f64>,
}

/// A job a host claimed: what it needs to run it, and its row as the claim left it (its
/// `attempts` are this run's number: finishing names it, so a run whose lease was lost finishes
/// nothing), from which its document is written when it ends without reading it again.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub spec: String,
    pub score: f64,
    /// Predicted render time in milliseconds, as when it was submitted.
    pub cost: f64,
    pub row: JobRow,
}

/// How a run ended, to store.
#[derive(Debug, Clone)]
pub enum Finish {
    Succeeded { meta: ResultMeta, body: Vec<u8> },
    Failed(ErrorRow),
}

/// A webhook delivery to make, stored with the job's end.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub job_id: String,
    pub url: String,
    pub body: Vec<u8>,
    /// Deliveries made so far.
    pub attempts: i64,
    /// The W3C `traceparent` to send with it, if the job had a trace.
    pub traceparent: Option<String>,
}

/// Jobs by state, and the bytes of the results kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobCounts {
    pub queued: i64,
    /// The queued ones by band: urgent, hot, cold.
    pub queued_by_band: [i64; 3],
    pub running: i64,
    pub finished: i64,
    pub result_bytes: i64,
}

/// What cancelling found.
#[derive(Debug)]
pub enum Cancelled {
    NotFound,
    /// It was queued or running and is cancelled now; the host that was running it, if any.
    Stopped {
        host: Option<String>,
    },
    /// It had finished: it is forgotten now, result and all. Its row as it was.
    Forgotten(Box<JobRow>),
}

/// The farm's virtual clock: the latest tenant's turn that started. A tenant behind it starts level
/// with it (no credit for idle time).
const FARM_CLOCK: &str = "COALESCE((SELECT farm.vtime FROM tenants farm WHERE farm.name = ''), 0)";

/// The tenants with queued jobs, found by skipping through the index of queued jobs by tenant
/// (one look per tenant, however many jobs each has queued), for a `WITH RECURSIVE`.
const QUEUED_TENANTS: &str = "queued_tenants (name) AS ( \
    SELECT (SELECT tenant FROM jobs WHERE state = 'queued' ORDER BY tenant LIMIT 1) \
    UNION ALL \
    SELECT (SELECT tenant FROM jobs WHERE state = 'queued' AND tenant > queued_tenants.name \
            ORDER BY tenant LIMIT 1) \
    FROM queued_tenants WHERE queued_tenants.name IS NOT NULL)";

/// A job's own columns, as [`job_row`] reads them.
const ROW_COLUMNS: &str = "jobs.id, jobs.state, jobs.plugin, jobs.tenant, jobs.class, jobs.number, \
    jobs.url, jobs.webhook, jobs.submitted_at, jobs.started_at, jobs.finished_at, jobs.attempts, \
    jobs.host, jobs.error_status, jobs.error_code, jobs.error_message, jobs.webhook_state, \
    jobs.webhook_attempts, jobs.webhook_error";

/// A job's result's columns, as [`job_row`] reads them after [`ROW_COLUMNS`].
const RESULT_COLUMNS: &str = "results.content_type, results.bytes, \
    CAST(CASE WHEN results.body IS NULL THEN 0 ELSE 1 END AS BIGINT) AS kept, \
    results.page_status, results.page_url, results.page_dialogs, results.page_warnings, \
    results.plugin_fuel, results.plugin_ms";

/// A job's end: its state and error, if it is still in the state it must be in (`running` under
/// this run's host `$7` and attempt `$8`, or `queued` with no run).
const FINISH: &str = "UPDATE jobs SET state = $1, finished_at = $2, host = NULL, lease_until = NULL, \
    error_status = $3, error_code = $4, error_message = $5 \
    WHERE id = $6 AND ((state = 'running' AND host = $7 AND attempts = $8) \
        OR (state = 'queued' AND $7 IS NULL))";

impl Store {
    /// Stores a queued job. (The queue's capacity is the submitting host's to check: counting the
    /// queue on every submission would read all of it each time.)
    pub async fn submit_job(&self, job: &NewJob) -> Result<(), StoreError> {
        self.submit_jobs(std::slice::from_ref(job)).await
    }

    /// Stores queued jobs in one statement: all of them or, if it fails, none.
    pub async fn submit_jobs(&self, jobs: &[NewJob]) -> Result<(), StoreError> {
        Self::insert_jobs(self.pool(), jobs).await
    }

    /// The one insert of queued jobs, on the pool or in a transaction.
    pub(super) async fn insert_jobs<'c>(
        executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
        jobs: &[NewJob],
    ) -> Result<(), StoreError> {
        const COLUMNS: usize = 16;
        // `($1, 'queued', $2, ..., $16), ($17, 'queued', ...)`: as many statements as batch sizes,
        // each prepared once per connection.
        let rows: Vec<String> = (0..jobs.len())
            .map(|row| {
                let values: Vec<String> = (1..=COLUMNS)
                    .map(|column| format!("${}", row * COLUMNS + column))
                    .collect();
                format!("({}, 'queued', {})", values[0], values[1..].join(", "))
            })
            .collect();
        let insert = format!(
            "INSERT INTO jobs (id, state, spec, plugin, tenant, class, number, url, webhook, band, \
             score, cost, submitted_at, queue_deadline, webhook_state, batch_id, batch_index) \
             VALUES {}",
            rows.join(", ")
        );
        // Placeholders only: no input reaches the text.
        let mut statement = sqlx::query(AssertSqlSafe(insert));
        for job in jobs {
            statement = statement
                .bind(&job.id)
                .bind(&job.spec)
                .bind(&job.plugin)
                .bind(&job.tenant)
                .bind(&job.class)
                .bind(job.number)
                .bind(&job.url)
                .bind(&job.webhook)
                .bind(job.band)
                .bind(job.score)
                .bind(job.cost)
                .bind(job.submitted_at)
                .bind(job.queue_deadline)
                .bind(job.webhook.as_ref().map(|_| "pending"))
                .bind(job.batch.as_ref().map(|(id, _)| id.as_str()))
                .bind(job.batch.as_ref().map(|&(_, index)| index));
        }
        statement
            .execute(executor)
            .await
            .map_err(query("store a job"))?;
        Ok(())
    }

    /// Claims up to `limit` queued jobs for `host` in the farm's order, with a lease until
    /// `lease_until`. All times are Unix ms.
    pub async fn claim_jobs(
        &self,
        host: &str,
        limit: i64,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        // A tenant's turn: its virtual clock, or the farm's if that is ahead.
        let update = format!(
            "UPDATE jobs SET state = 'running', host = $1, lease_until = $2, started_at = $3, \
                 attempts = attempts + 1 \
             FROM chosen WHERE jobs.id = chosen.id AND jobs.state = 'queued' \
             RETURNING {ROW_COLUMNS}, CAST(NULL AS TEXT) AS content_type, \
                 jobs.spec, jobs.score, jobs.cost"
        );
        let claim = match self.backend() {
            // Each tenant with queued jobs (found by skipping through the index, not by reading
            // the queue) offers its best jobs, from the index; the best offers in the farm's order
            // (a tenant's turn is the same for all its jobs, so the best of each tenant's best are
            // the best of all) are locked, skipping those another host is locking now, so hosts
            // claiming at once take different jobs. Four times as many are ranked as asked for:
            // when another host holds the best, this one takes the next. The ranking is an array
            // the lock looks up by primary key (joined to the offers instead, or with the state
            // as an index condition, the planner may read the whole queue); the state is checked
            // again on the row locked, which may have been claimed since the offers were read.
            //
            // The tenants are charged in the same statement (one round trip a claim): each
            // tenant's clock advances by its claimed jobs' costs from its turn, as its row stands
            // when this host's lock on it is granted (so hosts charging at once both count), and
            // the farm's clock moves to the latest turn that started.
            Backend::Postgres => format!(
                "WITH RECURSIVE farm (vtime) AS (SELECT {FARM_CLOCK}), \
                 {QUEUED_TENANTS}, \
                 offers AS MATERIALIZED (SELECT offer.id, offer.band, offer.aged, offer.score, \
                         offer.submitted_at, {turn} AS turn \
                     FROM queued_tenants CROSS JOIN farm \
                     LEFT JOIN tenants ON tenants.name = queued_tenants.name \
                     CROSS JOIN LATERAL (SELECT id, band, aged, score, submitted_at FROM jobs \
                         WHERE state = 'queued' AND tenant = queued_tenants.name \
                         ORDER BY band, aged DESC, score DESC, submitted_at LIMIT $4 * 4) offer \
                     WHERE queued_tenants.name IS NOT NULL), \
                 ranked (ids) AS (SELECT ARRAY(SELECT id FROM offers \
                     ORDER BY band, turn, aged DESC, score DESC, submitted_at LIMIT $4 * 4)), \
                 chosen AS (SELECT candidate.id FROM jobs candidate \
                     WHERE candidate.id = ANY((SELECT ids FROM ranked)::TEXT[]) \
                         AND (candidate.state = 'queued') IS TRUE \
                     ORDER BY array_position((SELECT ids FROM ranked), candidate.id) \
                     LIMIT $4 FOR UPDATE OF candidate SKIP LOCKED), \
                 claimed AS ({update}), \
                 charges AS (SELECT claimed.tenant AS name, SUM(claimed.cost) AS cost, \
                         MAX({turn}) AS turn \
                     FROM claimed CROSS JOIN farm \
                     LEFT JOIN tenants ON tenants.name = claimed.tenant \
                     GROUP BY claimed.tenant), \
                 charged AS (INSERT INTO tenants (name, vtime) \
                     SELECT name, turn + cost FROM charges \
                     ON CONFLICT (name) DO UPDATE SET vtime = \
                         (SELECT cost FROM charges WHERE charges.name = excluded.name) + \
                         CASE WHEN tenants.vtime > (SELECT vtime FROM farm) THEN tenants.vtime \
                         ELSE (SELECT vtime FROM farm) END), \
                 farm_moved AS (INSERT INTO tenants (name, vtime) \
                     SELECT '', MAX(turn) FROM charges HAVING COUNT(*) > 0 \
                     ON CONFLICT (name) DO UPDATE SET vtime = CASE \
                         WHEN tenants.vtime > excluded.vtime THEN tenants.vtime \
                         ELSE excluded.vtime END) \
                 SELECT * FROM claimed",
                turn = "CASE WHEN COALESCE(tenants.vtime, 0) > farm.vtime THEN tenants.vtime \
                        ELSE farm.vtime END",
            ),
            // SQLite has one writer, so no lock, and no LATERAL: each tenant's offers are the rows
            // whose rowids its index range gives.
            Backend::Sqlite => format!(
                "WITH RECURSIVE {QUEUED_TENANTS}, \
                 offers AS (SELECT offer.id, offer.band, offer.aged, offer.score, \
                         offer.submitted_at, offer.tenant \
                     FROM queued_tenants JOIN jobs offer ON offer.rowid IN (SELECT rowid FROM jobs \
                         WHERE state = 'queued' AND tenant = queued_tenants.name \
                         ORDER BY band, aged DESC, score DESC, submitted_at LIMIT $4)), \
                 chosen AS (SELECT offers.id FROM offers \
                     LEFT JOIN tenants ON tenants.name = offers.tenant \
                     ORDER BY offers.band, \
                         CASE WHEN COALESCE(tenants.vtime, 0) > {FARM_CLOCK} THEN tenants.vtime \
                         ELSE {FARM_CLOCK} END, \
                         offers.aged DESC, offers.score DESC, offers.submitted_at \
                     LIMIT $4) \
                 {update}"
            ),
        };
        // Composed of this file's constants only: no input reaches the text.
        let statement = sqlx::query(AssertSqlSafe(claim))
            .bind(host)
            .bind(lease_until)
            .bind(now)
            .bind(limit);
        let mut claimed = match self.backend() {
            Backend::Postgres => claimed_jobs(
                statement
                    .fetch_all(self.pool())
                    .await
                    .map_err(query("claim jobs"))?,
            )?,
            // The claim and the tenants' charges in one transaction: one commit (one flush to
            // disk) a claim.
            Backend::Sqlite => {
                let mut transaction = self
                    .pool()
                    .begin()
                    .await
                    .map_err(query("begin claiming jobs"))?;
                let claimed = claimed_jobs(
                    statement
                        .fetch_all(&mut *transaction)
                        .await
                        .map_err(query("claim jobs"))?,
                )?;
                let costs: Vec<(String, f64)> = claimed
                    .iter()
                    .map(|job| (job.row.tenant.clone(), job.cost))
                    .collect();
                if !costs.is_empty() {
                    charge_tenants(&mut transaction, &costs).await?;
                }
                transaction
                    .commit()
                    .await
                    .map_err(query("commit a claim"))?;
                claimed
            }
        };
        // RETURNING follows no order: best first, as they would start.
        claimed.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.row.submitted_at.cmp(&b.row.submitted_at))
        });
        Ok(claimed)
    }

    /// Moves the queued cold jobs submitted before `aged_before` (Unix ms) into the hot band, ahead
    /// of their tenant's other hot jobs, as the scheduler ages them; how many.
    pub async fn age_cold_jobs(&self, aged_before: i64) -> Result<u64, StoreError> {
        let aged = sqlx::query(
            "UPDATE jobs SET band = 1, aged = 1 \
             WHERE state = 'queued' AND band = 2 AND submitted_at <= $1",
        )
        .bind(aged_before)
        .execute(self.pool())
        .await
        .map_err(query("age cold jobs"))?;
        Ok(aged.rows_affected())
    }

    /// Extends the leases of `ids`, which `host` runs; the ids of those it still holds. One not
    /// among them was cancelled, or re-claimed after its lease ran out. Only the runs a host knows
    /// of are renewed: a row it holds without a run (its end could not be stored) runs out.
    pub async fn renew_leases(
        &self,
        host: &str,
        ids: &[String],
        lease_until: i64,
    ) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Placeholders only ($3, $4, ...): no input reaches the text.
        let list: Vec<String> = (0..ids.len()).map(|n| format!("${}", n + 3)).collect();
        let renew = format!(
            "UPDATE jobs SET lease_until = $1 WHERE host = $2 AND state = 'running' \
             AND id IN ({}) RETURNING id",
            list.join(", ")
        );
        let mut statement = sqlx::query_as(AssertSqlSafe(renew))
            .bind(lease_until)
            .bind(host);
        for id in ids {
            statement = statement.bind(id);
        }
        let held: Vec<(String,)> = statement
            .fetch_all(self.pool())
            .await
            .map_err(query("renew leases"))?;
        Ok(held.into_iter().map(|(id,)| id).collect())
    }

    /// Puts running jobs whose lease ran out before `now` back in the queue (their host died or
    /// stopped renewing); how many.
    pub async fn requeue_expired(&self, now: i64) -> Result<u64, StoreError> {
        let requeued = sqlx::query(
            "UPDATE jobs SET state = 'queued', host = NULL, lease_until = NULL \
             WHERE state = 'running' AND lease_until < $1",
        )
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(query("requeue jobs whose lease expired"))?;
        Ok(requeued.rows_affected())
    }

    /// Puts the running jobs of `host` (every host's, if `None`) back in the queue: at shutdown,
    /// for the jobs it lets go, and at the start of an embedded store, which no other host shares.
    pub async fn requeue_running(&self, host: Option<&str>) -> Result<u64, StoreError> {
        let requeued = sqlx::query(
            "UPDATE jobs SET state = 'queued', host = NULL, lease_until = NULL \
             WHERE state = 'running' AND ($1 IS NULL OR host = $1)",
        )
        .bind(host)
        .execute(self.pool())
        .await
        .map_err(query("requeue running jobs"))?;
        Ok(requeued.rows_affected())
    }

    /// The ids of queued jobs whose queue deadline passed before `now`.
    pub async fn overdue_jobs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM jobs WHERE state = 'queued' AND queue_deadline < $1 LIMIT 1000",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await
        .map_err(query("find jobs past their queue deadline"))?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Ends a run: the job's state, its result or error, and its webhook delivery, in one
    /// transaction. `from` is the state it must still be in: `running` with this `host` and
    /// `attempt` for a run (a job re-claimed elsewhere or cancelled meanwhile is left alone), or
    /// `queued` for a job that never started. `delivery` is built from the job's final document.
    /// Whether it was finished here.
    pub async fn finish_job(
        &self,
        id: &str,
        run: Option<(&str, i64)>,
        finished_at: i64,
        finish: &Finish,
        delivery: Option<&Delivery>,
    ) -> Result<bool, StoreError> {
        match self.backend() {
            Backend::Postgres => {
                self.finish_job_in_one_statement(id, run, finished_at, finish, delivery)
                    .await
            }
            Backend::Sqlite => {
                self.finish_job_in_a_transaction(id, run, finished_at, finish, delivery)
                    .await
            }
        }
    }

    /// [`Store::finish_job`] on PostgreSQL: one statement (its parts are one transaction), so one
    /// round trip a job rather than five; a farm's store is shared by every host's jobs.
    async fn finish_job_in_one_statement(
        &self,
        id: &str,
        run: Option<(&str, i64)>,
        finished_at: i64,
        finish: &Finish,
        delivery: Option<&Delivery>,
    ) -> Result<bool, StoreError> {
        let result = match finish {
            Finish::Succeeded { meta, body } => Some((meta, body.as_slice())),
            Finish::Failed(_) => None,
        };
        let statement = sqlx::query(AssertSqlSafe(format!(
            "WITH finished AS ({FINISH} RETURNING id), \
             kept AS (INSERT INTO results (job_id, content_type, body, bytes, page_status, \
                     page_url, page_dialogs, page_warnings, plugin_fuel, plugin_ms, finished_at) \
                 SELECT id, $9, $10, $11, $12, $13, $14, $15, $16, $17, $2 FROM finished \
                 WHERE $9 IS NOT NULL), \
             delivery AS (INSERT INTO outbox (job_id, url, body, next_at) \
                 SELECT id, $18, $19, $2 FROM finished WHERE $18 IS NOT NULL) \
             SELECT COUNT(*) FROM finished"
        )));
        let finished: i64 = bind_finish(statement, id, run, finished_at, finish)
            .bind(result.map(|(meta, _)| meta.content_type.as_str()))
            .bind(result.map(|(_, body)| body))
            .bind(result.map(|(meta, _)| meta.bytes))
            .bind(result.map(|(meta, _)| meta.page_status))
            .bind(result.map(|(meta, _)| meta.page_url.as_str()))
            .bind(result.map(|(meta, _)| meta.page_dialogs.as_str()))
            .bind(result.map(|(meta, _)| meta.page_warnings.as_str()))
            .bind(result.and_then(|(meta, _)| meta.plugin_fuel))
            .bind(result.and_then(|(meta, _)| meta.plugin_ms))
            .bind(delivery.map(|delivery| delivery.url.as_str()))
            .bind(delivery.map(|delivery| delivery.body.as_slice()))
            .fetch_one(self.pool())
            .await
            .and_then(|row| row.try_get(0))
            .map_err(query("finish a job"))?;
        Ok(finished == 1)
    }

    /// [`Store::finish_job`] on SQLite, which has no data-modifying CTEs: a transaction (its
    /// statements are calls in this process, not round trips).
    async fn finish_job_in_a_transaction(
        &self,
        id: &str,
        run: Option<(&str, i64)>,
        finished_at: i64,
        finish: &Finish,
        delivery: Option<&Delivery>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self
            .pool()
            .begin()
            .await
            .map_err(query("begin finishing a job"))?;
        let updated = bind_finish(sqlx::query(FINISH), id, run, finished_at, finish)
            .execute(&mut *transaction)
            .await
            .map_err(query("finish a job"))?;
        if updated.rows_affected() == 0 {
            transaction
                .rollback()
                .await
                .map_err(query("roll back finishing a job"))?;
            return Ok(false);
        }
        if let Finish::Succeeded { meta, body } = finish {
            sqlx::query(
                "INSERT INTO results (job_id, content_type, body, bytes, page_status, page_url, \
                 page_dialogs, page_warnings, plugin_fuel, plugin_ms, finished_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(id)
            .bind(&meta.content_type)
            .bind(body.as_slice())
            .bind(meta.bytes)
            .bind(meta.page_status)
            .bind(&meta.page_url)
            .bind(&meta.page_dialogs)
            .bind(&meta.page_warnings)
            .bind(meta.plugin_fuel)
            .bind(meta.plugin_ms)
            .bind(finished_at)
            .execute(&mut *transaction)
            .await
            .map_err(query("store a job's result"))?;
        }
        if let Some(delivery) = delivery {
            Self::insert_delivery(&mut *transaction, delivery, finished_at).await?;
        }
        transaction
            .commit()
            .await
            .map_err(query("commit a finished job"))?;
        Ok(true)
    }

    /// Puts a webhook delivery in the outbox, due at `next_at`: a job's, or a batch's (keyed by
    /// what the webhook is about; batch ids and job ids never meet).
    pub(super) async fn insert_delivery<'c>(
        executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
        delivery: &Delivery,
        next_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO outbox (job_id, url, body, next_at, traceparent) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&delivery.job_id)
        .bind(&delivery.url)
        .bind(delivery.body.as_slice())
        .bind(next_at)
        .bind(delivery.traceparent.as_deref())
            .execute(executor)
            .await
            .map_err(query("store a webhook delivery"))?;
        Ok(())
    }

    /// A job by id.
    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ROW_COLUMNS}, {RESULT_COLUMNS} FROM jobs LEFT JOIN results ON results.job_id = jobs.id \
             WHERE jobs.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query("read a job"))?;
        row.map(|row| job_row(&row)).transpose()
    }

    /// A succeeded job's output, if it is kept.
    pub async fn result_body(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Option<Vec<u8>>,)> =
            sqlx::query_as("SELECT body FROM results WHERE job_id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(query("read a job's result"))?;
        Ok(row.and_then(|(body,)| body))
    }

    /// Cancels a queued or running job, or forgets a finished one.
    pub async fn cancel_job(&self, id: &str, now: i64) -> Result<Cancelled, StoreError> {
        // The host first: the update clears it.
        let host: Option<(Option<String>, String)> =
            sqlx::query_as("SELECT host, state FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(query("read a job to cancel"))?;
        let Some((host, _)) = host else {
            return Ok(Cancelled::NotFound);
        };
        let cancelled = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1, host = NULL, \
             lease_until = NULL, \
             webhook_state = CASE WHEN webhook IS NULL THEN NULL ELSE 'cancelled' END \
             WHERE id = $2 AND state IN ('queued', 'running')",
        )
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(query("cancel a job"))?;
        if cancelled.rows_affected() == 1 {
            return Ok(Cancelled::Stopped { host });
        }
        let Some(row) = self.job(id).await? else {
            return Ok(Cancelled::NotFound);
        };
        self.forget(&[id.to_owned()]).await?;
        Ok(Cancelled::Forgotten(Box::new(row)))
    }

    /// Removes jobs, their results and any webhook delivery still to make.
    async fn forget(&self, ids: &[String]) -> Result<(), StoreError> {
        let mut transaction = self
            .pool()
            .begin()
            .await
            .map_err(query("begin forgetting jobs"))?;
        for id in ids {
            for table in [
                "DELETE FROM outbox WHERE job_id = $1",
                "DELETE FROM results WHERE job_id = $1",
                "DELETE FROM jobs WHERE id = $1",
            ] {
                sqlx::query(table)
                    .bind(id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(query("forget a job"))?;
            }
        }
        transaction
            .commit()
            .await
            .map_err(query("commit forgetting jobs"))
    }

    /// Forgets jobs that finished before `cutoff` (and whose webhook is not still being
    /// delivered); how many.
    pub async fn forget_finished_before(&self, cutoff: i64) -> Result<usize, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM jobs WHERE finished_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.job_id = jobs.id) LIMIT 1000",
        )
        .bind(cutoff)
        .fetch_all(self.pool())
        .await
        .map_err(query("find expired jobs"))?;
        let ids: Vec<String> = rows.into_iter().map(|(id,)| id).collect();
        if !ids.is_empty() {
            self.forget(&ids).await?;
        }
        Ok(ids.len())
    }

    /// Drops the bytes of the oldest kept results until those kept fit in `max_bytes`; how many.
    pub async fn evict_results(&self, max_bytes: i64) -> Result<usize, StoreError> {
        let (kept,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM results WHERE body IS NOT NULL",
        )
        .fetch_one(self.pool())
        .await
        .map_err(query("sum the kept results"))?;
        let mut excess = kept - max_bytes;
        if excess <= 0 {
            return Ok(0);
        }
        let oldest: Vec<(String, i64)> = sqlx::query_as(
            "SELECT job_id, bytes FROM results WHERE body IS NOT NULL ORDER BY finished_at LIMIT 1000",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query("find the oldest results"))?;
        let mut evicted = 0;
        for (id, bytes) in oldest {
            if excess <= 0 {
                break;
            }
            sqlx::query("UPDATE results SET body = NULL WHERE job_id = $1")
                .bind(&id)
                .execute(self.pool())
                .await
                .map_err(query("evict a result"))?;
            excess -= bytes;
            evicted += 1;
        }
        Ok(evicted)
    }

    /// The queued jobs by band (urgent, hot, cold): from the queue's index, cheap enough to read
    /// every second however many finished jobs are kept.
    pub async fn queued_by_band(&self) -> Result<[i64; 3], StoreError> {
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT band, COUNT(*) FROM jobs WHERE state = 'queued' GROUP BY band")
                .fetch_all(self.pool())
                .await
                .map_err(query("count queued jobs"))?;
        let mut queued = [0; 3];
        for (band, count) in rows {
            if let Some(slot) = usize::try_from(band)
                .ok()
                .and_then(|band| queued.get_mut(band))
            {
                *slot += count;
            }
        }
        Ok(queued)
    }

    /// Jobs by state and the bytes of the kept results.
    pub async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT state, band, COUNT(*) FROM jobs GROUP BY state, band")
                .fetch_all(self.pool())
                .await
                .map_err(query("count jobs"))?;
        let mut counts = JobCounts::default();
        for (state, band, count) in rows {
            match state.as_str() {
                "queued" => {
                    counts.queued += count;
                    if let Some(queued) = usize::try_from(band)
                        .ok()
                        .and_then(|band| counts.queued_by_band.get_mut(band))
                    {
                        *queued += count;
                    }
                }
                "running" => counts.running += count,
                _ => counts.finished += count,
            }
        }
        let (bytes,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM results WHERE body IS NOT NULL",
        )
        .fetch_one(self.pool())
        .await
        .map_err(query("sum the kept results"))?;
        counts.result_bytes = bytes;
        Ok(counts)
    }
}

/// The error of a failed `step`.
pub(super) fn query(step: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { step, source }
}

/// Advances the virtual clock of each claimed job's tenant by its claimed jobs' cost, from its
/// turn: its clock, or the farm's clock if that is ahead (the latest turn that started, kept
/// as tenant `''`, which no request can name), so a tenant that had nothing queued starts
/// level with the others instead of with credit for its idle time. SQLite's claims, in the
/// claim's transaction: one statement per tenant in the claim and one for the farm's clock.
async fn charge_tenants(
    connection: &mut sqlx::AnyConnection,
    costs: &[(String, f64)],
) -> Result<(), StoreError> {
    let mut charges: Vec<(&str, f64)> = Vec::new();
    for (tenant, cost) in costs {
        match charges.iter_mut().find(|(name, _)| name == tenant) {
            Some((_, total)) => *total += cost,
            None => charges.push((tenant, *cost)),
        }
    }
    let mut farm_clock = f64::MIN;
    for (tenant, total) in charges {
        let (end,): (f64,) = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO tenants (name, vtime) VALUES ($1, {FARM_CLOCK} + $2) \
             ON CONFLICT (name) DO UPDATE SET vtime = $2 + CASE \
                 WHEN tenants.vtime > {FARM_CLOCK} THEN tenants.vtime ELSE {FARM_CLOCK} END \
             RETURNING vtime"
        )))
        .bind(tenant)
        .bind(total)
        .fetch_one(&mut *connection)
        .await
        .map_err(query("advance a tenant's clock"))?;
        farm_clock = farm_clock.max(end - total);
    }
    sqlx::query(
        "INSERT INTO tenants (name, vtime) VALUES ('', $1) \
         ON CONFLICT (name) DO UPDATE SET vtime = CASE \
             WHEN tenants.vtime > $1 THEN tenants.vtime ELSE $1 END",
    )
    .bind(farm_clock)
    .execute(&mut *connection)
    .await
    .map_err(query("advance the farm's clock"))?;
    Ok(())
}

/// The jobs a claim returned.
fn claimed_jobs(rows: Vec<AnyRow>) -> Result<Vec<ClaimedJob>, StoreError> {
    let read = query("read a claimed job");
    rows.iter()
        .map(|row| {
            Ok(ClaimedJob {
                spec: row.try_get("spec").map_err(&read)?,
                score: row.try_get("score").map_err(&read)?,
                cost: row.try_get("cost").map_err(&read)?,
                row: job_row(row)?,
            })
        })
        .collect()
}

/// Binds [`FINISH`]'s parameters (`$1` to `$8`) to `statement`, which starts with it: the same for
/// both backends' ways of finishing a job.
fn bind_finish<'q>(
    statement: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    id: &'q str,
    run: Option<(&'q str, i64)>,
    finished_at: i64,
    finish: &'q Finish,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let (state, error) = match finish {
        Finish::Succeeded { .. } => ("succeeded", None),
        Finish::Failed(error) => ("failed", Some(error)),
    };
    statement
        .bind(state)
        .bind(finished_at)
        .bind(error.map(|error| error.status))
        .bind(error.map(|error| error.code.as_str()))
        .bind(error.map(|error| error.message.as_str()))
        .bind(id)
        .bind(run.map(|(host, _)| host))
        .bind(run.map_or(0, |(_, attempt)| attempt))
}

fn job_row(row: &AnyRow) -> Result<JobRow, StoreError> {
    let read = query("read a job");
    let error_status: Option<i64> = row.try_get("error_status").map_err(&read)?;
    let content_type: Option<String> = row.try_get("content_type").map_err(&read)?;
    Ok(JobRow {
        id: row.try_get("id").map_err(&read)?,
        state: row.try_get("state").map_err(&read)?,
        plugin: row.try_get("plugin").map_err(&read)?,
        tenant: row.try_get("tenant").map_err(&read)?,
        class: row.try_get("class").map_err(&read)?,
        number: row.try_get("number").map_err(&read)?,
        url: row.try_get("url").map_err(&read)?,
        webhook: row.try_get("webhook").map_err(&read)?,
        submitted_at: row.try_get("submitted_at").map_err(&read)?,
        started_at: row.try_get("started_at").map_err(&read)?,
        finished_at: row.try_get("finished_at").map_err(&read)?,
        attempts: row.try_get("attempts").map_err(&read)?,
        host: row.try_get("host").map_err(&read)?,
        error: match error_status {
            Some(status) => Some(ErrorRow {
                status,
                code: row.try_get("error_code").map_err(&read)?,
                message: row.try_get("error_message").map_err(&read)?,
            }),
            None => None,
        },
        webhook_state: row.try_get("webhook_state").map_err(&read)?,
        webhook_attempts: row.try_get("webhook_attempts").map_err(&read)?,
        webhook_error: row.try_get("webhook_error").map_err(&read)?,
        result: match content_type {
            Some(content_type) => Some(ResultMeta {
                content_type,
                bytes: row.try_get("bytes").map_err(&read)?,
                kept: row.try_get::<i64, _>("kept").map_err(&read)? == 1,
                page_status: row.try_get("page_status").map_err(&read)?,
                page_url: row.try_get("page_url").map_err(&read)?,
                page_dialogs: row.try_get("page_dialogs").map_err(&read)?,
                page_warnings: row.try_get("page_warnings").map_err(&read)?,
                plugin_fuel: row.try_get("plugin_fuel").map_err(&read)?,
                plugin_ms: row.try_get("plugin_ms").map_err(&read)?,
            }),
            None => None,
        },
    })
}
