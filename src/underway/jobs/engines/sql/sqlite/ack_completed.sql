-- Each ack changes the job only if it still belongs to the run that claimed it.
UPDATE underway_jobs
   SET state = 'completed', completed_at = :at, result = :result
 WHERE id = :id AND state = 'executing' AND attempted_by = :node AND attempt = :attempt
