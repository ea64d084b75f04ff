-- Runs owned by leases, as 005_leases.sqlite.sql (read its comments): the same columns and table,
-- with PostgreSQL's types. lease_until is seconds since 1970 by the server's clock; REAL there
-- is four bytes (about 128 s of precision at today's times), so it is double precision here.
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;

CREATE INDEX runs_status_lease ON runs (status, lease_until);

CREATE TABLE live_text (
    run_id     INTEGER NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    text       TEXT NOT NULL,
    written_at DOUBLE PRECISION NOT NULL
);
