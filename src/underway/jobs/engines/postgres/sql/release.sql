-- Hand back claims this node did not finish (shutdown, or a claim whose reply was lost):
-- the attempt is not counted. A claim is one attempt: a newer claim of the same job (by
-- this node or another) is never touched. Their queues are notified.
WITH released AS (
    UPDATE {schema}.underway_jobs AS j
       SET state = 'available', attempt = j.attempt - 1, attempted_by = NULL,
           scheduled_at = to_timestamp(%(now)s)
      FROM unnest(%(ids)b::int8[], %(attempts)b::int4[]) AS c(id, attempt)
     WHERE j.id = ANY(%(ids)b::int8[]) AND j.id = c.id AND j.attempt = c.attempt
       AND j.state = 'executing' AND j.attempted_by = %(node)s
    RETURNING j.queue
)
SELECT queue, count(*), pg_notify({channel}, queue) FROM released GROUP BY queue
