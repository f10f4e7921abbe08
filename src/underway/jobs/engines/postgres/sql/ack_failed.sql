-- A failed attempt: retryable (with its next time), discarded or cancelled. An errors
-- column that is not an array starts again from this entry rather than failing the batch.
UPDATE {schema}.underway_jobs AS j
   SET state = a.state,
       scheduled_at = COALESCE(to_timestamp(a.scheduled_at), j.scheduled_at),
       discarded_at = CASE WHEN a.state = 'discarded' THEN to_timestamp(a.at)
                      ELSE j.discarded_at END,
       cancelled_at = CASE WHEN a.state = 'cancelled' THEN to_timestamp(a.at)
                      ELSE j.cancelled_at END,
       errors = CASE WHEN jsonb_typeof(j.errors) = 'array' THEN j.errors ELSE '[]' END
                || jsonb_build_array(jsonb_build_object('attempt', a.attempt, 'at', a.at,
                                     'error', a.error, 'traceback', a.traceback))
  FROM unnest(%(id)b::int8[], %(state)b::text[], %(at)b::float8[], %(attempt)b::int4[],
              %(scheduled_at)b::float8[], %(error)b::text[], %(traceback)b::text[])
       AS a(id, state, at, attempt, scheduled_at, error, traceback)
 WHERE j.id = ANY(%(id)b::int8[]) AND j.id = a.id AND j.state = 'executing' AND j.attempted_by = %(node)s
   AND j.attempt = a.attempt
