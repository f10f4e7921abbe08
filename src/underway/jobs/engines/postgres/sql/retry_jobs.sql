-- Make the jobs matching a JobFilter available now, with at least one attempt left (as
-- retry_job), and notify their queues. Executing jobs are left to their run; available
-- ones are already waiting.
WITH retried AS (
    UPDATE {schema}.underway_jobs
       SET state = 'available', scheduled_at = to_timestamp(%(now)s), completed_at = NULL,
           discarded_at = NULL, cancelled_at = NULL,
           max_attempts = GREATEST(max_attempts, attempt + 1)
     WHERE state IN ('scheduled', 'retryable', 'completed', 'discarded', 'cancelled')
       AND {job_filter}
    RETURNING queue
)
SELECT queue, count(*), pg_notify({channel}, queue) FROM retried GROUP BY queue
