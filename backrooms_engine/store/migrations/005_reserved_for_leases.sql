-- Placeholder: number 005 belongs to the leases (branch `lease`), and migration numbers may have
-- no gap. Whoever merges both keeps the lease branch's 005 and deletes this file.
SELECT 1;
