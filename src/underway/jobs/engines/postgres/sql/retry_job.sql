-- Make a job that is not executing available now, with at least one attempt left.
WITH retried AS (
    UPDATE {schema}.underway_jobs
       SET state = 'available', scheduled_at = to_timestamp(%(now)s), completed_at = NULL,
           discarded_at = NULL, cancelled_at = NULL,
           max_attempts = GREATEST(max_attempts, attempt + 1)
     WHERE id = %(id)s AND state <> 'executing'
    RETURNING queue
)
SELECT pg_notify({channel}, queue) FROM retried
