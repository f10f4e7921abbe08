-- Vacuum the live partition (a lock another vacuum holds is skipped, not waited for).
VACUUM (SKIP_LOCKED) {schema}.underway_jobs_live
