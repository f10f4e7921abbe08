-- Make due scheduled and retryable jobs available.
UPDATE underway_jobs SET state = 'available'
 WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= :now
   AND (:queue IS NULL OR queue = :queue)
RETURNING queue
