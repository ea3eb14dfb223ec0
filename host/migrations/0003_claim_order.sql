-- Claims read each tenant's best queued jobs from an index instead of sorting the whole queue.
-- A cold job that waited past the aging step is moved into the hot band (`aged` = 1, ahead of
-- its tenant's other hot jobs, as the scheduler's queue has it) by the upkeep, so the order a
-- claim needs is in the index, with no expression over the time.
ALTER TABLE jobs ADD COLUMN aged BIGINT NOT NULL DEFAULT 0;

CREATE INDEX jobs_queued_by_tenant ON jobs (tenant, band, aged DESC, score DESC, submitted_at)
    WHERE state = 'queued';

-- The queue's first index ordered it without the tenant; nothing reads it that way now, and every
-- index is one more write per submission and claim.
DROP INDEX jobs_queued;
