-- Insert many jobs in one statement, in the order given (ids rise with the ordinality), and
-- notify the queues that got available jobs (delivered when the transaction commits).
-- Parameters (positional): one value per column, used where that column's array is NULL (a
-- column with the same value for every job is sent once), the insertion time, then one
-- array per column. Times are sent as timestamps, so the stored ones are exactly those of
-- the jobs returned to the caller.
WITH ins AS (
    INSERT INTO {schema}.underway_jobs
        (state, queue, worker, args, meta, tags, priority, max_attempts,
         inserted_at, scheduled_at, unique_key, unique_states, unique_until)
    SELECT COALESCE(j.state, %b::text), COALESCE(j.queue, %b::text),
           COALESCE(j.worker, %b::text), j.args::jsonb, COALESCE(j.meta, %b::text)::jsonb,
           COALESCE(j.tags, %b::text)::jsonb, COALESCE(j.priority, %b::int2),
           COALESCE(j.max_attempts, %b::int4), %b::timestamptz,
           COALESCE(j.at, %b::timestamptz), COALESCE(j.unique_key, %b::text),
           COALESCE(j.unique_states, %b::int4), COALESCE(j.unique_until, %b::timestamptz)
      FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                  %b::int2[], %b::int4[], %b::timestamptz[], %b::text[], %b::int4[],
                  %b::timestamptz[])
           WITH ORDINALITY AS j(state, queue, worker, args, meta, tags, priority,
                                max_attempts, at, unique_key, unique_states, unique_until, ord)
     ORDER BY j.ord
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id, unique_key, queue, state
), woke AS (
    SELECT pg_notify({channel}, q.queue)
      FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q
)
SELECT id, unique_key FROM ins WHERE (SELECT count(*) FROM woke) >= 0
