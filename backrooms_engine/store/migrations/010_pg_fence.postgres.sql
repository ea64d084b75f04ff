-- The fence on PostgreSQL (ARCHITECTURE.md, "Runs owned by leases"; store/postgres/leases.py):
-- every write a driving process makes for a run (a reply, a delivery cursor, a post record, live
-- text, the end) is refused unless that process still holds the run.
--
-- Who is asking. A driving process's connections set `backrooms.owner` (its "host:pid:random",
-- unique to one open store) and `backrooms.lease_seconds` when they connect, again after every
-- reconnection. A session without them (a viewer, `serve`, `db copy`, psql) is not fenced and
-- writes as it always did.
--
-- What "holds" means. Every claim sets `owner` to the claimer and raises `epoch`; a release sets
-- `owner` to NULL. So `runs.owner = backrooms.owner` holds exactly while the run's current epoch is
-- one this session claimed and has not let go: the epoch fence, with the owner as its token. A
-- reconnected session needs nothing restored to keep its runs, and a session that lost a run can
-- never write for it again, even after a reconnection.
--
-- Why no takeover can slip between the check and the write, under READ COMMITTED:
-- - a write to replies, deliveries, posts or live_text: the BEFORE INSERT trigger reads the run's
--   owner `FOR SHARE`. That row lock conflicts with the claim's UPDATE of the run (which takes
--   FOR NO KEY UPDATE; the foreign key's own FOR KEY SHARE would not). If a claim is in flight,
--   the trigger waits for it to commit and then reads the new owner (a locking read sees the
--   latest committed row): refused. If the trigger locks first, the claim waits until the write
--   has committed: the write is ordered before the takeover, never after it. An upsert (ON
--   CONFLICT DO UPDATE) fires BEFORE INSERT first, so one trigger covers both ways.
-- - the end or a reopening (UPDATE of runs.status): a BEFORE UPDATE row trigger sees OLD as the
--   row the UPDATE has locked, after READ COMMITTED's recheck of a concurrent update, so OLD.owner
--   is the committed owner and stays so until this transaction ends.
-- A refusal raises SQLSTATE 23L01 (class 23, integrity: the store reports it as LeaseLost).
--
-- A run a fenced session creates is its own from the start (BEFORE INSERT sets its lease), as the
-- SQLite `own_new_run` trigger does, so no other process can claim it before its first claim.

CREATE FUNCTION backrooms_fence_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    me text := NULLIF(current_setting('backrooms.owner', true), '');
    holder text;
BEGIN
    IF me IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT owner INTO holder FROM runs WHERE id = NEW.run_id FOR SHARE;
    IF NOT FOUND THEN
        RETURN NEW;  -- no such run: the foreign key refuses the row, naming the run unknown
    END IF;
    IF holder IS DISTINCT FROM me THEN
        RAISE EXCEPTION 'backrooms: lease lost (run %)', NEW.run_id USING ERRCODE = '23L01';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION backrooms_fence_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    me text := NULLIF(current_setting('backrooms.owner', true), '');
BEGIN
    -- A claim that also sets the status (a queued run starting) is this session taking the run.
    IF me IS NULL OR OLD.owner = me OR (NEW.owner = me AND NEW.epoch > OLD.epoch) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'backrooms: lease lost (run %)', OLD.id USING ERRCODE = '23L01';
END
$$;

CREATE FUNCTION backrooms_own_new_run() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    me text := NULLIF(current_setting('backrooms.owner', true), '');
BEGIN
    -- A queued run (migration 008) is left for whichever driving process claims it.
    IF me IS NOT NULL AND NEW.queued = 0 THEN
        NEW.owner := me;
        NEW.epoch := 1;
        NEW.lease_until := EXTRACT(EPOCH FROM clock_timestamp())
            + current_setting('backrooms.lease_seconds')::double precision;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER fence_replies BEFORE INSERT ON replies
    FOR EACH ROW EXECUTE FUNCTION backrooms_fence_write();
CREATE TRIGGER fence_deliveries BEFORE INSERT ON deliveries
    FOR EACH ROW EXECUTE FUNCTION backrooms_fence_write();
CREATE TRIGGER fence_posts BEFORE INSERT ON posts
    FOR EACH ROW EXECUTE FUNCTION backrooms_fence_write();
CREATE TRIGGER fence_live_text BEFORE INSERT ON live_text
    FOR EACH ROW EXECUTE FUNCTION backrooms_fence_write();
CREATE TRIGGER fence_runs_status BEFORE UPDATE OF status ON runs
    FOR EACH ROW EXECUTE FUNCTION backrooms_fence_status();
CREATE TRIGGER own_new_run BEFORE INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION backrooms_own_new_run();

-- Renewals find a process's runs by owner: migration 009's index runs_owner.
