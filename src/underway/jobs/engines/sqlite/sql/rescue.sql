-- Return executing jobs of silent nodes to their queue, or discard them when out of attempts.
-- An errors column that is not JSON starts again from the rescue entry. Each job comes back
-- with its new state for the per-minute counters (its attempt failed, or was discarded).
UPDATE underway_jobs
   SET state = CASE WHEN attempt >= max_attempts THEN 'discarded' ELSE 'available' END,
       discarded_at = CASE WHEN attempt >= max_attempts THEN :now ELSE discarded_at END,
       scheduled_at = :now,
       errors = json_insert(
           CASE WHEN json_valid(errors) THEN errors ELSE '[]' END, '$[#]', json_object(
               'attempt', attempt, 'at', :now,
               'error', 'rescued: node ' || COALESCE(attempted_by, '?') || ' stopped heartbeating',
               'traceback', NULL))
 WHERE state = 'executing'
   AND (attempted_by IS NULL OR attempted_by NOT IN
        (SELECT name FROM underway_nodes WHERE heartbeat_at >= :stale_before))
RETURNING queue, worker, state
