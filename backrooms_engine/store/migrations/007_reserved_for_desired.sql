-- Placeholder on branch `worker` only: number 007 belongs to branch `desired`, built in parallel.
-- Migrations may have no gap (schema.py), so 009 needs 007 here; the merge replaces this file
-- with desired's own 007 (delete this one then: two files for one number are refused).
SELECT 1;
