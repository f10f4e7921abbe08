-- Snoozed: back to scheduled, the attempt not counted (meta that is not JSON is kept as is).
-- The job comes back, if changed, for the per-minute counters.
UPDATE underway_jobs
   SET state = 'scheduled', scheduled_at = :scheduled_at, attempt = attempt - 1,
       meta = CASE WHEN json_valid(meta) THEN
           json_set(meta, '$.snoozed', COALESCE(json_extract(meta, '$.snoozed'), 0) + 1)
           ELSE meta END
 WHERE id = :id AND state = 'executing' AND attempted_by = :node AND attempt = :attempt
RETURNING queue, worker
