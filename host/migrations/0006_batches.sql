-- Batches: many pages under one id (`POST /v1/batches`, and crawls, `POST /v1/crawls`). Each page is an async job of its own,
-- with the batch's id and its place in it; the batch is finished when none of its jobs is queued or
-- running, and its webhook (with the batch's document) goes through the outbox like a job's.
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    -- As the request named it, for the document.
    plugin TEXT NOT NULL,
    pages BIGINT NOT NULL,
    webhook TEXT,
    submitted_at BIGINT NOT NULL,
    finished_at BIGINT,
    -- pending | delivered | failed, for batches with a webhook.
    webhook_state TEXT,
    webhook_attempts BIGINT NOT NULL DEFAULT 0,
    webhook_error TEXT,
    -- A crawl's rules (JSON): what links its pages follow. NULL for a batch of given URLs.
    crawl TEXT
);

CREATE INDEX batches_unfinished ON batches (submitted_at) WHERE finished_at IS NULL;

ALTER TABLE jobs ADD COLUMN batch_id TEXT;
ALTER TABLE jobs ADD COLUMN batch_index BIGINT;

CREATE INDEX jobs_by_batch ON jobs (batch_id, batch_index) WHERE batch_id IS NOT NULL;

-- The URLs a crawl has taken in, each once, so a link found again (or by another host) is not
-- another page.
CREATE TABLE batch_urls (
    batch_id TEXT NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (batch_id, url)
);
