-- Hand back a job this node claimed but did not finish (shutdown): the attempt is not counted.
UPDATE underway_jobs
   SET state = 'available', attempt = attempt - 1, attempted_by = NULL, scheduled_at = :now
 WHERE id = :id AND state = 'executing' AND attempted_by = :node
