-- The dialogs a job's page opened (each answered at once), as a JSON array for the job's document.
ALTER TABLE results ADD COLUMN page_dialogs TEXT NOT NULL DEFAULT '[]';
