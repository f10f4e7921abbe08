-- Cancel the jobs matching a JobFilter that have not finished (as cancel_job); the queue and
-- worker of each come back for the result and the per-minute counters.
UPDATE underway_jobs
   SET state = 'cancelled', cancelled_at = :now,
       errors = json_insert(
           CASE WHEN json_valid(errors) THEN errors ELSE '[]' END, '$[#]', json_object(
               'attempt', attempt, 'at', :now, 'error', 'cancelled: by request', 'traceback', NULL))
 WHERE state IN ('scheduled', 'available', 'executing', 'retryable') AND {job_filter}
RETURNING queue, worker
