-- Insert many jobs; the values list is repeated once per job.
INSERT INTO underway_jobs
    (state, queue, worker, args, meta, tags, priority, max_attempts,
     inserted_at, scheduled_at, unique_key, unique_states, unique_until)
VALUES {values}
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING id, unique_key
