-- Make a job that is not executing available now, with at least one attempt left.
UPDATE underway_jobs
   SET state = 'available', scheduled_at = :now, completed_at = NULL, discarded_at = NULL,
       cancelled_at = NULL, max_attempts = MAX(max_attempts, attempt + 1)
 WHERE id = :id AND state != 'executing'
