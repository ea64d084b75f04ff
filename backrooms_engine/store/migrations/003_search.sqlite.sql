-- Full-text search over reply text, for the web viewer's search box (SQLite FTS5).
--
-- SQLite only: a PostgreSQL store does the same with a tsvector column and a GIN index.
--
-- The index keeps its own copy of each reply's text rather than pointing at `replies` as an
-- external-content table: `replies` has a composite primary key, so its rowids are not aliased
-- and VACUUM may renumber them, which would silently detach an external-content index from its
-- rows. `run_id` and `seq` are stored but not indexed: they lead from a match back to its reply.
-- unicode61 with remove_diacritics 2 matches "cafe" against "café".

CREATE VIRTUAL TABLE reply_search USING fts5(
    text,
    run_id UNINDEXED,
    seq UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Kept in sync by triggers, so every writer of `replies` (the engine, a future tool) is covered.
CREATE TRIGGER reply_search_insert AFTER INSERT ON replies BEGIN
    INSERT INTO reply_search (text, run_id, seq) VALUES (new.text, new.run_id, new.seq);
END;

-- Replies are append-only today; these two keep the index right if that ever changes (a run
-- deleted with ON DELETE CASCADE fires the delete trigger for each of its replies).
CREATE TRIGGER reply_search_delete AFTER DELETE ON replies BEGIN
    DELETE FROM reply_search WHERE run_id = old.run_id AND seq = old.seq;
END;

CREATE TRIGGER reply_search_update AFTER UPDATE OF text, run_id, seq ON replies BEGIN
    DELETE FROM reply_search WHERE run_id = old.run_id AND seq = old.seq;
    INSERT INTO reply_search (text, run_id, seq) VALUES (new.text, new.run_id, new.seq);
END;

-- Backfill: the replies stored before this migration.
INSERT INTO reply_search (text, run_id, seq) SELECT text, run_id, seq FROM replies;
