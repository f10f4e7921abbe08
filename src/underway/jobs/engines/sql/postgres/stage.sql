-- Make due scheduled and retryable jobs available and notify their queues.
WITH staged AS (
    UPDATE {schema}.underway_jobs SET state = 'available'
     WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= to_timestamp(%(now)s)
       AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    RETURNING queue
)
SELECT queue, count(*), pg_notify({channel}, queue) FROM staged GROUP BY queue
