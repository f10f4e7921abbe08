-- Snoozed: back to scheduled, the attempt not counted.
UPDATE underway_jobs
   SET state = 'scheduled', scheduled_at = :scheduled_at, attempt = attempt - 1,
       meta = json_set(meta, '$.snoozed', COALESCE(json_extract(meta, '$.snoozed'), 0) + 1)
 WHERE id = :id AND state = 'executing' AND attempted_by = :node AND attempt = :attempt
