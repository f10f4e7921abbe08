-- Delete the finished jobs matching a JobFilter (their unique keys go with their rows).
-- Waiting and executing jobs are never deleted.
DELETE FROM underway_jobs
 WHERE state IN ('completed', 'discarded', 'cancelled') AND {job_filter}
RETURNING queue
