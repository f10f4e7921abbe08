-- Cancel a job that has not finished (an errors column that is not an array starts again).
UPDATE {schema}.underway_jobs
   SET state = 'cancelled', cancelled_at = to_timestamp(%(now)s),
       errors = CASE WHEN jsonb_typeof(errors) = 'array' THEN errors ELSE '[]' END
                || jsonb_build_array(jsonb_build_object(
                    'attempt', attempt, 'at', %(now)s::float8,
                    'error', 'cancelled: by request', 'traceback', NULL))
 WHERE id = %(id)s AND state IN ('scheduled', 'available', 'executing', 'retryable')
