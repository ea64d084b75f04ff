-- PLACEHOLDER on branch `queue` only: number 007 belongs to the `desired` branch (stop requests
-- as rows). Migrations must be numbered without gaps, so this stands in for it until that
-- branch is merged; DELETE THIS FILE when merging (its 007 replaces it).
SELECT 1;
