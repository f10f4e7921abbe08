-- Delete the finished jobs matching a JobFilter and give back the unique keys they still
-- held (as prune does). Waiting and executing jobs are never deleted.
WITH gone AS (
    DELETE FROM {schema}.underway_jobs
     WHERE state IN ('completed', 'discarded', 'cancelled') AND {job_filter}
    RETURNING id, queue, unique_key
), freed AS (
    DELETE FROM {schema}.underway_unique AS u
     USING gone WHERE u.key = gone.unique_key AND u.job_id = gone.id
)
SELECT queue, count(*) FROM gone GROUP BY queue
