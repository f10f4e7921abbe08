-- A failed attempt: retryable (with its next time), discarded or cancelled. An errors
-- column that is not JSON starts again from this entry rather than failing the batch. The
-- job comes back, if changed, for the per-minute counters.
UPDATE underway_jobs
   SET state = :state,
       scheduled_at = COALESCE(:scheduled_at, scheduled_at),
       discarded_at = CASE WHEN :state = 'discarded' THEN :at ELSE discarded_at END,
       cancelled_at = CASE WHEN :state = 'cancelled' THEN :at ELSE cancelled_at END,
       errors = json_insert(
           CASE WHEN json_valid(errors) THEN errors ELSE '[]' END, '$[#]', json_object(
               'attempt', :attempt, 'at', :at, 'error', :error, 'traceback', :traceback))
 WHERE id = :id AND state = 'executing' AND attempted_by = :node AND attempt = :attempt
RETURNING queue, worker
