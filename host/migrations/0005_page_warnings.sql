-- What did not go as asked but did not fail the job (a wait cut short under goto.best_attempt), as
-- a JSON array of messages for the job's document and its result's headers.
ALTER TABLE results ADD COLUMN page_warnings TEXT NOT NULL DEFAULT '[]';
