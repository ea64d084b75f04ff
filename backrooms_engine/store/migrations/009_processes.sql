-- The live driving processes (issue 15: `backrooms workers`; `backrooms start` says when none
-- runs). Each registers when it opens the store, beats every third of its lease and deletes
-- its row on a clean exit; a row whose heartbeat lapsed is a process that died or froze.
--
-- owner:      as leases name it, "host:pid:random" (runs.owner holds the same text)
-- role:       the command it runs: bot, worker, discord, slack, serve, run, ...
-- started_at: when it registered, seconds since 1970 by the database's clock
-- seen_until: its heartbeat: alive until then, by the database's clock (never a process's)
CREATE TABLE processes (
    owner      TEXT NOT NULL PRIMARY KEY,
    role       TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    seen_until DOUBLE PRECISION NOT NULL
);

-- Who holds how many runs is counted from runs.owner.
CREATE INDEX runs_owner ON runs (owner);
