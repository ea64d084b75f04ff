-- Placeholder on branch `worker` only: number 008 belongs to branch `queue`, built in parallel.
-- Migrations may have no gap (schema.py), so 009 needs 008 here; the merge replaces this file
-- with queue's own 008 (delete this one then: two files for one number are refused).
SELECT 1;
