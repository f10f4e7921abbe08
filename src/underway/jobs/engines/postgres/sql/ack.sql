-- The acks of one batch in one statement: completed, failed (retryable, discarded or
-- cancelled) and snoozed attempts, each kind a CTE over one array per column (a kind absent
-- from the batch has empty arrays and finds no row). Each ack changes the job only if it
-- still belongs to the run that claimed it; the jobs are found by primary key (id = ANY),
-- whatever else the node has executing.
--
-- The jobs each ack changed (RETURNING: a late ack that changed nothing is not counted) are
-- added to underway_counters in the same statement, aggregated by minute, queue and worker
-- into one upsert, in key order (concurrent nodes adding to the same rows never deadlock).
WITH completed AS (
    UPDATE {schema}.underway_jobs AS j
       SET state = 'completed', completed_at = to_timestamp(a.at), result = a.result::jsonb
      FROM unnest(%(c_id)b::int8[], %(c_at)b::float8[], %(c_result)b::text[],
                  %(c_attempt)b::int4[]) AS a(id, at, result, attempt)
     WHERE j.id = ANY(%(c_id)b::int8[]) AND j.id = a.id AND j.state = 'executing'
       AND j.attempted_by = %(node)s AND j.attempt = a.attempt
    RETURNING j.queue, j.worker, a.at, 'completed'::text AS kind
), failed AS (
    -- An errors column that is not an array starts again from this entry rather than
    -- failing the batch.
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
), snoozed AS (
    -- Back to scheduled, the attempt not counted, meta.snoozed counted up (meta that is not
    -- an object is kept as is).
    UPDATE {schema}.underway_jobs AS j
       SET state = 'scheduled', scheduled_at = to_timestamp(a.scheduled_at),
           attempt = j.attempt - 1,
           meta = CASE WHEN jsonb_typeof(j.meta) = 'object' THEN
                      j.meta || jsonb_build_object('snoozed',
                          CASE WHEN jsonb_typeof(j.meta -> 'snoozed') = 'number'
                               THEN (j.meta ->> 'snoozed')::numeric ELSE 0 END + 1)
                  ELSE j.meta END
      FROM unnest(%(s_id)b::int8[], %(s_at)b::float8[], %(s_scheduled_at)b::float8[],
                  %(s_attempt)b::int4[]) AS a(id, at, scheduled_at, attempt)
     WHERE j.id = ANY(%(s_id)b::int8[]) AND j.id = a.id AND j.state = 'executing'
       AND j.attempted_by = %(node)s AND j.attempt = a.attempt
    RETURNING j.queue, j.worker, a.at, 'snoozed'::text AS kind
), acked AS (
    SELECT * FROM completed UNION ALL SELECT * FROM failed UNION ALL SELECT * FROM snoozed
)
INSERT INTO {schema}.underway_counters AS c
       (minute, queue, worker, completed, failed, discarded, cancelled, snoozed)
SELECT to_timestamp(floor(at / 60) * 60) AS minute, queue, worker,
       count(*) FILTER (WHERE kind = 'completed'), count(*) FILTER (WHERE kind = 'retryable'),
       count(*) FILTER (WHERE kind = 'discarded'), count(*) FILTER (WHERE kind = 'cancelled'),
       count(*) FILTER (WHERE kind = 'snoozed')
  FROM acked
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3
    ON CONFLICT (minute, queue, worker) DO UPDATE
   SET completed = c.completed + excluded.completed, failed = c.failed + excluded.failed,
       discarded = c.discarded + excluded.discarded,
       cancelled = c.cancelled + excluded.cancelled, snoozed = c.snoozed + excluded.snoozed
