-- The first schema: runs, their participants and replies, delivery cursors, chat posts, run metadata.
--
-- One file for both dialects: only INTEGER and TEXT columns, timestamps as ISO-8601 UTC text with
-- fixed precision, booleans as integers, ON CONFLICT upserts, so both stores share statements and
-- row mapping (rows.py) and a copy between them moves values unchanged. The one SQLite-ism is
-- `id INTEGER PRIMARY KEY` (a rowid alias); schema.py spells it for PostgreSQL as an identity
-- column. Both give 1, 2, 3, ... to new runs.

CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
);

CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    models         TEXT NOT NULL,              -- JSON array of the aliases the run was started with
    template       TEXT NOT NULL,
    max_turns      INTEGER,
    token_budget   INTEGER,
    started_by     TEXT NOT NULL,
    surface        TEXT NOT NULL,
    space          TEXT,
    place          TEXT,
    status         TEXT NOT NULL CHECK (status IN ('running', 'ended')),
    end_reason     TEXT,
    end_actor      TEXT,
    end_by         TEXT,
    end_detail     TEXT,
    end_turns      INTEGER,
    end_max_turns  INTEGER,                    -- RunEnd.max_turns, for the closing line
    created_at     TEXT NOT NULL,
    ended_at       TEXT,
    log_path       TEXT NOT NULL
);

-- list_runs filters by status and by space, newest (highest id) first.
CREATE INDEX runs_status_id ON runs (status, id);
CREATE INDEX runs_space_id ON runs (space, id);

CREATE TABLE participants (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    alias    TEXT NOT NULL,
    actor    TEXT NOT NULL,
    api_id   TEXT NOT NULL,
    provider TEXT NOT NULL,
    PRIMARY KEY (run_id, position)
);

-- One row per reply. The primary key is what refuses a second copy of the same reply.
CREATE TABLE replies (
    run_id        INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL CHECK (seq >= 0),
    turn          INTEGER NOT NULL,
    position      INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    text          TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT NOT NULL,
    input_tokens  INTEGER,                     -- NULL: the API did not say
    output_tokens INTEGER,
    PRIMARY KEY (run_id, seq)
);

-- Each observer's delivery cursor: how many replies (by seq) it has fully received.
CREATE TABLE deliveries (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    observer TEXT NOT NULL,
    count    INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (run_id, observer)
);

-- Which chat message carries which part of which reply, so a second delivery edits, not duplicates.
CREATE TABLE posts (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    part        INTEGER NOT NULL,
    surface     TEXT NOT NULL,
    external_id TEXT NOT NULL,
    PRIMARY KEY (run_id, seq, part, surface)
);

-- Surface data kept per run: a Discord thread id, a webhook id, a Slack thread ts.
CREATE TABLE run_meta (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
