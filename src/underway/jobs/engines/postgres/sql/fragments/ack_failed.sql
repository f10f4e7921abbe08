-- The failed attempts of a batch of acks (retryable with their next time, discarded or
-- cancelled), as a CTE of sql/ack. An errors column that is not an array starts again from
-- this entry rather than failing the batch.
failed AS (
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
      FROM unnest(%(f_id)b::int8[], %(f_state)b::text[], %(f_at)b::float8[],
                  %(f_attempt)b::int4[], %(f_scheduled_at)b::float8[], %(f_error)b::text[],
                  %(f_traceback)b::text[])
           AS a(id, state, at, attempt, scheduled_at, error, traceback)
     WHERE j.id = ANY(%(f_id)b::int8[]) AND j.id = a.id AND j.state = 'executing'
       AND j.attempted_by = %(node)s AND j.attempt = a.attempt
    RETURNING j.queue, j.worker, a.at, a.state AS kind
)
