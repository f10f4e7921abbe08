-- The workers of the next :sample available jobs of :queue, with their counts: the head of
-- the queue, where jobs that no node can claim gather. Bounded by the fetch index.
SELECT worker, count(*)
  FROM (SELECT worker FROM underway_jobs
         WHERE state = 'available' AND queue = :queue
         ORDER BY priority, scheduled_at, id
         LIMIT :sample)
 GROUP BY worker
