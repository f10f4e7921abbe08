-- Claim up to :limit available jobs of :queue for :node.
UPDATE underway_jobs
   SET state = 'executing', attempt = attempt + 1, attempted_at = :now, attempted_by = :node
 WHERE id IN (SELECT id FROM underway_jobs
               WHERE state = 'available' AND queue = :queue
               ORDER BY priority, scheduled_at, id
               LIMIT :limit)
RETURNING {columns}
