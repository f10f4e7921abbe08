UPDATE underway_jobs
   SET state = 'completed', completed_at = :at, result = :result
 WHERE id = :id AND state = 'executing'
