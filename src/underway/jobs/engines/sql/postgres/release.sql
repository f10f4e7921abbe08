-- Hand back jobs this node claimed but did not finish (shutdown): the attempt is not
-- counted; their queues are notified.
WITH released AS (
    UPDATE {schema}.underway_jobs
       SET state = 'available', attempt = attempt - 1, attempted_by = NULL,
           scheduled_at = to_timestamp(%(now)s)
     WHERE id = ANY(%(ids)b::int8[]) AND state = 'executing' AND attempted_by = %(node)s
    RETURNING queue
)
SELECT queue, count(*), pg_notify({channel}, queue) FROM released GROUP BY queue
