-- Claim up to :limit available jobs of :queue for :node; rows locked by another claim
-- are skipped, so concurrent fetches never take a job twice. Only jobs of the node's
-- workers are taken (unless :any_worker): another node that has the worker runs the rest.
-- The claimed ids are updated through the primary key whatever the size of the table; the
-- live partition's states name that partition alone without matching the fetch index's
-- condition (which would tempt the planner to read the whole queue's index to AND it in).
UPDATE {schema}.underway_jobs AS j
   SET state = 'executing', attempt = j.attempt + 1, attempted_at = to_timestamp(%(now)s),
       attempted_by = %(node)s
 WHERE j.state IN ('scheduled', 'available', 'executing', 'retryable')
   AND j.id = ANY(ARRAY(
       SELECT id FROM {schema}.underway_jobs
        WHERE state = 'available' AND queue = %(queue)s
          AND (%(any_worker)s OR worker = ANY(%(workers)s::text[]))
        ORDER BY priority, scheduled_at, id
        LIMIT %(limit)s
          FOR UPDATE SKIP LOCKED))
RETURNING {j_columns}
