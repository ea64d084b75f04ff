-- One way in (issue 14) and runs that any worker can drive (issue 15).
--
-- template_jsonl: the run's template as it was loaded when the run was created, in the upstream
--                 JSONL shape (one participant a line, placeholders unfilled: they are filled
--                 from the stored actors), so a process without that templates folder rebuilds it
-- model_specs:    JSON list of each participant's resolved model spec (alias, api_id, provider
--                 kind, base URL and the NAMES of the variables holding its URL and key; never a
--                 key), so a process without the same models.toml drives it
-- Both NULL for runs created before this migration: those are rebuilt from the templates folder
-- and the registry, as before.
ALTER TABLE runs ADD COLUMN template_jsonl TEXT;
ALTER TABLE runs ADD COLUMN model_specs TEXT;

-- 1 from its creation by a process that drives nothing (`backrooms serve`'s form) until a driving
-- process claims it: the run state `queued` (ARCHITECTURE.md, run states). Status stays
-- 'running' meanwhile, like a paused run's, so every claim query finds it as before.
ALTER TABLE runs ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;
