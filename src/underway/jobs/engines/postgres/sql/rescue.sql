-- Return executing jobs of silent nodes to their queue, or discard them when out of
-- attempts; notify the queues that got jobs back. An errors column that is not an array
-- starts again from the rescue entry. The attempts ended by the rescue are added to the
-- per-minute counters (failed, or discarded) in the same statement, in key order, after
-- every job is changed; a late ack of the silent node changes nothing and counts nothing.
WITH rescued AS (
    UPDATE {schema}.underway_jobs AS j
       SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'discarded' ELSE 'available' END,
           discarded_at = CASE WHEN j.attempt >= j.max_attempts THEN to_timestamp(%(now)s)
                          ELSE j.discarded_at END,
           scheduled_at = to_timestamp(%(now)s),
           errors = CASE WHEN jsonb_typeof(j.errors) = 'array' THEN j.errors ELSE '[]' END
                    || jsonb_build_array(jsonb_build_object(
                        'attempt', j.attempt, 'at', %(now)s::float8,
                        'error', 'rescued: node ' || COALESCE(j.attempted_by, '?')
                                 || ' stopped heartbeating',
                        'traceback', NULL))
     WHERE j.state = 'executing'
       AND (j.attempted_by IS NULL OR NOT EXISTS (
            SELECT 1 FROM {schema}.underway_nodes AS n
             WHERE n.name = j.attempted_by
               AND n.heartbeat_at >= statement_timestamp() - make_interval(secs => %(window)s)))
    RETURNING j.queue, j.worker, j.state
), counted AS (
    INSERT INTO {schema}.underway_counters AS c (minute, queue, worker, failed, discarded)
    SELECT to_timestamp(floor(%(now)s::float8 / 60) * 60), queue, worker,
           count(*) FILTER (WHERE state = 'available'),
           count(*) FILTER (WHERE state = 'discarded')
      FROM rescued GROUP BY queue, worker ORDER BY queue, worker
        ON CONFLICT (minute, queue, worker) DO UPDATE
       SET failed = c.failed + excluded.failed, discarded = c.discarded + excluded.discarded
)
SELECT queue, state, pg_notify({channel}, queue) FROM rescued
