-- Cancel a job that has not finished (an errors column that is not JSON starts again); its
-- queue and worker come back for the per-minute counters.
UPDATE underway_jobs
   SET state = 'cancelled', cancelled_at = :now,
       errors = json_insert(
           CASE WHEN json_valid(errors) THEN errors ELSE '[]' END, '$[#]', json_object(
               'attempt', attempt, 'at', :now, 'error', 'cancelled: by request', 'traceback', NULL))
 WHERE id = :id AND state IN ('scheduled', 'available', 'executing', 'retryable')
RETURNING queue, worker
