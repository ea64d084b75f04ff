-- A terminal run stopped by SIGTERM is paused: it stays resumable (status 'running'), but nobody
-- claims it until someone resumes it (ARCHITECTURE.md, run states). NULL: not paused.
ALTER TABLE runs ADD COLUMN paused_at TEXT;
