-- Async jobs, their results and their webhook deliveries. Portable SQL: the same file migrates
-- SQLite and PostgreSQL (types by their PostgreSQL names, which SQLite maps to its affinities:
-- BIGINT to INTEGER, DOUBLE PRECISION to REAL, BYTEA keeps blobs as blobs). Times are Unix
-- milliseconds in BIGINT.

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    -- queued | running | succeeded | failed | cancelled
    state TEXT NOT NULL,
    -- The job itself (JSON), to run it on any host, again after a restart.
    spec TEXT NOT NULL,
    -- As the request named them, for the job's document.
    plugin TEXT NOT NULL,
    tenant TEXT NOT NULL,
    class TEXT NOT NULL,
    number BIGINT NOT NULL,
    url TEXT,
    webhook TEXT,
    -- Its place in the farm's order: band (0 urgent, 1 hot, 2 cold), score, predicted cost (ms).
    band BIGINT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    submitted_at BIGINT NOT NULL,
    queue_deadline BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    -- Runs so far; a job that was running when its host died runs again.
    attempts BIGINT NOT NULL DEFAULT 0,
    -- The host running it, and until when its lease holds without renewal.
    host TEXT,
    lease_until BIGINT,
    -- A failed job's error, as the endpoint would have answered it.
    error_status BIGINT,
    error_code TEXT,
    error_message TEXT,
    -- pending | delivered | failed | cancelled, for jobs with a webhook.
    webhook_state TEXT,
    webhook_attempts BIGINT NOT NULL DEFAULT 0,
    webhook_error TEXT
);

CREATE INDEX jobs_queued ON jobs (band, score DESC, submitted_at) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (host, lease_until) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- A succeeded job's output; `body` is NULL once evicted to keep results within their byte budget.
CREATE TABLE results (
    job_id TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    body BYTEA,
    bytes BIGINT NOT NULL,
    page_status BIGINT NOT NULL,
    page_url TEXT NOT NULL,
    plugin_fuel BIGINT,
    plugin_ms DOUBLE PRECISION,
    finished_at BIGINT NOT NULL
);

CREATE INDEX results_kept ON results (finished_at) WHERE body IS NOT NULL;

-- Webhook deliveries still to make: written with the job's result, in the same transaction, so a
-- restart loses none.
CREATE TABLE outbox (
    job_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BYTEA NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT
);

-- Tenants' virtual clocks, for fair shares across the farm (start-time fair queuing).
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    vtime DOUBLE PRECISION NOT NULL
);
