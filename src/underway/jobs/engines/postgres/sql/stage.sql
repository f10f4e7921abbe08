-- Make due scheduled and retryable jobs available and notify their queues. A "now" beyond
-- PostgreSQL's timestamps (a test drain of everything passes 1e18) is clamped to 1e12.
WITH staged AS (
    UPDATE {schema}.underway_jobs SET state = 'available'
     WHERE state IN ('scheduled', 'retryable')
       AND scheduled_at <= to_timestamp(LEAST(%(now)s, 1e12))
       AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    RETURNING queue
)
SELECT queue, count(*), pg_notify({channel}, queue) FROM staged GROUP BY queue
