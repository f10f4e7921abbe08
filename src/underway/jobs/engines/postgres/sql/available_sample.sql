-- The workers of the next :sample available jobs of each queue, with their counts: the head
-- of a queue, where jobs that no node can claim gather. Bounded by the fetch index per queue,
-- whatever the backlog or the history.
SELECT q.queue, s.worker, count(*)
  FROM unnest(%(queues)s::text[]) AS q(queue)
 CROSS JOIN LATERAL (
       SELECT worker FROM {schema}.underway_jobs
        WHERE state = 'available' AND queue = q.queue
        ORDER BY priority, scheduled_at, id
        LIMIT %(sample)s) AS s
 GROUP BY q.queue, s.worker
