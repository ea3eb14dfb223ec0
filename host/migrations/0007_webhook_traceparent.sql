-- The W3C traceparent a webhook delivery carries: the trace of the job it reports on, so a
-- receiver's spans join the caller's trace. Null for deliveries without one.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
