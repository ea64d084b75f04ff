-- What a reply cost (issue 16): the prompt cache's reads and writes beside input_tokens (which is
-- the uncached remainder), the cost in USD computed when the reply was made (so a later price
-- change does not rewrite the past), and whether the API cut the reply at max_tokens (0 or 1).
-- NULL: not reported, or unpriced; never zero.
ALTER TABLE replies ADD COLUMN cache_read_tokens INTEGER;
ALTER TABLE replies ADD COLUMN cache_write_tokens INTEGER;
ALTER TABLE replies ADD COLUMN cost_usd DOUBLE PRECISION;
ALTER TABLE replies ADD COLUMN cut_off INTEGER NOT NULL DEFAULT 0;
-- The run's dollar budget (NULL: none), kept like token_budget.
ALTER TABLE runs ADD COLUMN budget_usd DOUBLE PRECISION;
-- A space's spend per UTC day sums its replies by finish time.
CREATE INDEX replies_finished ON replies (finished_at);
