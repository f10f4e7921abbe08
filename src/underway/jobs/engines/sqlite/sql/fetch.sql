-- Claim up to :limit available jobs of :queue for :node: only jobs of the node's workers
-- (:workers, a JSON array; NULL takes any), so another node that has the worker runs the rest.
UPDATE underway_jobs
   SET state = 'executing', attempt = attempt + 1, attempted_at = :now, attempted_by = :node
 WHERE id IN (SELECT id FROM underway_jobs
               WHERE state = 'available' AND queue = :queue
                 AND (:workers IS NULL OR worker IN (SELECT value FROM json_each(:workers)))
               ORDER BY priority, scheduled_at, id
               LIMIT :limit)
RETURNING {columns}
