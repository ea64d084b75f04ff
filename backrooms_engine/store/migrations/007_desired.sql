-- A run's desired state (ARCHITECTURE.md, "Runs owned by leases": stop and pause requests are
-- rows), so that any process can ask for a stop of a run another process drives; the driver
-- polls these columns for the runs it holds and ends the run as a local stop would.
--
-- desired:    'stop' (room for 'pause' later); NULL: nothing asked
-- desired_by: who asked (the end's "stopped by")
-- desired_at: when, as the other timestamps (ISO 8601 text, UTC)
-- A reopening (`continue`, a resume of a paused run) clears them. Not fenced: any process asks.
ALTER TABLE runs ADD COLUMN desired TEXT;
ALTER TABLE runs ADD COLUMN desired_by TEXT;
ALTER TABLE runs ADD COLUMN desired_at TEXT;
