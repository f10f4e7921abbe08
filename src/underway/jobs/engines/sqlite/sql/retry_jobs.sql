-- Make the jobs matching a JobFilter available now, with at least one attempt left (as
-- retry_job). Executing jobs are left to their run; available ones are already waiting.
UPDATE underway_jobs
   SET state = 'available', scheduled_at = :now, completed_at = NULL, discarded_at = NULL,
       cancelled_at = NULL, max_attempts = MAX(max_attempts, attempt + 1)
 WHERE state IN ('scheduled', 'retryable', 'completed', 'discarded', 'cancelled')
   AND {job_filter}
RETURNING queue
