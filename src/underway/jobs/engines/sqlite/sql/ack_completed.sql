-- Completed attempts, all in one statement: :acks is a JSON array of [id, at, attempt,
-- result] (one statement instead of one per ack: the database thread hands the GIL back
-- and forth once, not once per row). Each ack changes the job only if it still belongs
-- to the run that claimed it. The unary + keeps the planner from walking this node's
-- executing jobs and scanning the acks for each: the acks drive, each job found by its id.
-- The jobs changed come back for the per-minute counters (a late ack changes none).
UPDATE underway_jobs
   SET state = 'completed', completed_at = a.at, result = a.result
  FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at,
               json_extract(value, '$[2]') AS attempt, json_extract(value, '$[3]') AS result
          FROM json_each(:acks)) AS a
 WHERE underway_jobs.id = a.id AND +underway_jobs.state = 'executing'
   AND +underway_jobs.attempted_by = :node AND underway_jobs.attempt = a.attempt
RETURNING queue, worker, completed_at
