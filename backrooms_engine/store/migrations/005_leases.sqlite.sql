-- Runs owned by leases (ARCHITECTURE.md, "Runs owned by leases"): any number of processes share
-- one file, and the process that drives a run holds its lease.
--
-- owner:       the driving process, "host:pid:random" (NULL: nobody drives it; queued or released)
-- lease_until: seconds since 1970 by the database's clock (never a process's), as REAL
-- epoch:       goes up on every claim; each write a driver makes for a run is fenced by it
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until REAL;
ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;

-- Waiting runs (running, lease lapsed) are found by status and expiry.
CREATE INDEX runs_status_lease ON runs (status, lease_until);

-- The reply being streamed, as its driver last wrote it (at most once a second): how viewers in
-- other processes follow a run live. One small row per run, overwritten in place.
CREATE TABLE live_text (
    run_id     INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    text       TEXT NOT NULL,
    written_at REAL NOT NULL
);
