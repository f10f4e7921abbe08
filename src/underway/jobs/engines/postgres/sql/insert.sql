-- Insert many jobs in one statement, in the order given (ids rise with the ordinality), and
-- notify the queues that got available jobs (delivered when the transaction commits).
-- Parameters (positional): one value per column, used where that column's array is NULL (a
-- column with the same value for every job is sent once), the insertion time, then one
-- array per column. Times are sent as timestamps, so the stored ones are exactly those of
-- the jobs returned to the caller.
-- A unique job is inserted only if its key could be taken in underway_unique (the first
-- job of the batch with that key; a key another transaction holds is waited for, as a
-- unique index would); the others come back missing, and the caller looks up the holder.
-- Ids are drawn here, in the order given, so that a key row names its job.
WITH src AS (
    SELECT nextval('{schema}.underway_jobs_id_seq') AS id,
           COALESCE(j.state, %b::text) AS state, COALESCE(j.queue, %b::text) AS queue,
           COALESCE(j.worker, %b::text) AS worker, j.args::jsonb AS args,
           COALESCE(j.meta, %b::text)::jsonb AS meta, COALESCE(j.tags, %b::text)::jsonb AS tags,
           COALESCE(j.priority, %b::int2) AS priority,
           COALESCE(j.max_attempts, %b::int4) AS max_attempts, %b::timestamptz AS inserted_at,
           COALESCE(j.at, %b::timestamptz) AS scheduled_at,
           COALESCE(j.unique_key, %b::text) AS unique_key,
           COALESCE(j.unique_states, %b::int4) AS unique_states,
           COALESCE(j.unique_until, %b::timestamptz) AS unique_until, j.ord
      FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                  %b::int2[], %b::int4[], %b::timestamptz[], %b::text[], %b::int4[],
                  %b::timestamptz[])
           WITH ORDINALITY AS j(state, queue, worker, args, meta, tags, priority,
                                max_attempts, at, unique_key, unique_states, unique_until, ord)
), firsts AS (
    SELECT DISTINCT ON (unique_key) unique_key, id, unique_until FROM src
     WHERE unique_key IS NOT NULL ORDER BY unique_key, ord
), taken AS (
    INSERT INTO {schema}.underway_unique (key, job_id, until)
    SELECT unique_key, id, unique_until FROM firsts ORDER BY id
    ON CONFLICT DO NOTHING
    RETURNING job_id
), ins AS (
    INSERT INTO {schema}.underway_jobs
        (id, state, queue, worker, args, meta, tags, priority, max_attempts,
         inserted_at, scheduled_at, unique_key, unique_states, unique_until)
    SELECT id, state, queue, worker, args, meta, tags, priority, max_attempts,
           inserted_at, scheduled_at, unique_key, unique_states, unique_until
      FROM src
     WHERE unique_key IS NULL OR id IN (SELECT job_id FROM taken)
     ORDER BY ord
    RETURNING id, unique_key, queue, state
), woke AS (
    SELECT pg_notify({channel}, q.queue)
      FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q
)
SELECT id, unique_key FROM ins WHERE (SELECT count(*) FROM woke) >= 0
