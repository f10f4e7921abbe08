-- Cancel a job that has not finished (an errors column that is not an array starts again),
-- and count it in its minute's counters in the same statement.
WITH cancelled AS (
    UPDATE {schema}.underway_jobs
       SET state = 'cancelled', cancelled_at = to_timestamp(%(now)s),
           errors = CASE WHEN jsonb_typeof(errors) = 'array' THEN errors ELSE '[]' END
                    || jsonb_build_array(jsonb_build_object(
                        'attempt', attempt, 'at', %(now)s::float8,
                        'error', 'cancelled: by request', 'traceback', NULL))
     WHERE id = %(id)s AND state IN ('scheduled', 'available', 'executing', 'retryable')
    RETURNING queue, worker
)
INSERT INTO {schema}.underway_counters AS c (minute, queue, worker, cancelled)
SELECT to_timestamp(floor(%(now)s::float8 / 60) * 60), queue, worker, 1 FROM cancelled
    ON CONFLICT (minute, queue, worker) DO UPDATE SET cancelled = c.cancelled + 1
