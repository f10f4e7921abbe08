UPDATE underway_jobs
   SET state = 'cancelled', cancelled_at = :now,
       errors = json_insert(errors, '$[#]', json_object(
           'attempt', attempt, 'at', :now, 'error', 'cancelled: by request', 'traceback', NULL))
 WHERE id = :id AND state IN ('scheduled', 'available', 'executing', 'retryable')
