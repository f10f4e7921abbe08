-- Set aside a job this node just claimed whose row cannot be decoded. When the errors
-- column itself is the broken one (:reset_errors), it starts again from this entry.
UPDATE {schema}.underway_jobs
   SET state = 'discarded', discarded_at = to_timestamp(%(now)s),
       errors = CASE WHEN %(reset_errors)s OR jsonb_typeof(errors) <> 'array' THEN '[]'
                ELSE errors END
                || jsonb_build_array(jsonb_build_object('attempt', attempt,
                    'at', %(now)s::float8, 'error', %(error)s::text, 'traceback', NULL))
 WHERE id = %(id)s AND state = 'executing' AND attempted_by = %(node)s
