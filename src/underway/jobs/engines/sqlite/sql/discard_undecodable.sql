-- Set aside a job this node just claimed whose row cannot be decoded. When the errors
-- column itself is the broken one (:reset_errors), it starts again from this entry.
UPDATE underway_jobs
   SET state = 'discarded', discarded_at = :now,
       errors = json_insert(CASE WHEN :reset_errors THEN '[]' ELSE errors END, '$[#]',
           json_object('attempt', attempt, 'at', :now, 'error', :error, 'traceback', NULL))
 WHERE id = :id AND state = 'executing' AND attempted_by = :node
