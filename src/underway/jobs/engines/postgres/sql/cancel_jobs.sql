-- Cancel the jobs matching a JobFilter that have not finished (as cancel_job). The rows
-- are locked first to learn which were executing: each of those gets a cancel signal in
-- the same statement (kept and notified as signal_publish does), so its node interrupts it;
-- the cancelled jobs are added to the counters of the minute, by queue and worker.
WITH target AS (
    SELECT id, state FROM {schema}.underway_jobs
     WHERE state IN ('scheduled', 'available', 'executing', 'retryable') AND {job_filter}
       FOR UPDATE
), cancelled AS (
    UPDATE {schema}.underway_jobs AS j
       SET state = 'cancelled', cancelled_at = to_timestamp(%(now)s),
           errors = CASE WHEN jsonb_typeof(j.errors) = 'array' THEN j.errors ELSE '[]' END
                    || jsonb_build_array(jsonb_build_object(
                        'attempt', j.attempt, 'at', %(now)s::float8,
                        'error', 'cancelled: by request', 'traceback', NULL))
      FROM target
     WHERE j.id = target.id AND j.state IN ('scheduled', 'available', 'executing', 'retryable')
    RETURNING j.id, j.queue, j.worker, target.state AS was
), counted AS (
    INSERT INTO {schema}.underway_counters AS c (minute, queue, worker, cancelled)
    SELECT to_timestamp(floor(%(now)s::float8 / 60) * 60), queue, worker, count(*)
      FROM cancelled GROUP BY queue, worker ORDER BY queue, worker
        ON CONFLICT (minute, queue, worker) DO UPDATE
       SET cancelled = c.cancelled + excluded.cancelled
), signalled AS (
    INSERT INTO {schema}.underway_signals (payload)
    SELECT jsonb_build_object('action', 'cancel', 'job_id', id)
      FROM cancelled WHERE was = 'executing'
    RETURNING id
)
SELECT queue, count(*),
       COALESCE(array_agg(id ORDER BY id) FILTER (WHERE was = 'executing'), '{}'),
       (SELECT pg_notify({signal_channel}, max(id)::text) FROM signalled HAVING count(*) > 0)
  FROM cancelled GROUP BY queue
