-- Hand back a claim this node did not finish (shutdown, or a claim whose reply was lost):
-- the attempt is not counted, and a newer claim of the same job is never touched.
UPDATE underway_jobs
   SET state = 'available', attempt = attempt - 1, attempted_by = NULL, scheduled_at = :now
 WHERE id = :id AND attempt = :attempt AND state = 'executing' AND attempted_by = :node
