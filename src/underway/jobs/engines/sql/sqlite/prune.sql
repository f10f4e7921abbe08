-- Delete finished jobs of one state older than :before; {state} is a JobState literal.
DELETE FROM underway_jobs WHERE id IN (
    SELECT id FROM underway_jobs
     WHERE state = '{state}' AND COALESCE(completed_at, cancelled_at, discarded_at) < :before
     LIMIT :limit)
