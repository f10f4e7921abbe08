-- The per-minute counters of the minutes in [:since, :until) added up per bucket of :bucket
-- seconds counted from :since (the start of a minute), and by queue and worker only when
-- :by_queue and :by_worker (the other is NULL); optionally of some queues and workers only
-- (NULL: all). The rows are a range of the primary key; the sums are ordered by bucket,
-- queue and worker.
SELECT %(since)s::float8 + floor((date_part('epoch', minute) - %(since)s::float8)
                                 / %(bucket)s::float8) * %(bucket)s::float8,
       CASE WHEN %(by_queue)s::boolean THEN queue END,
       CASE WHEN %(by_worker)s::boolean THEN worker END,
       sum(completed)::bigint, sum(failed)::bigint, sum(discarded)::bigint,
       sum(cancelled)::bigint, sum(snoozed)::bigint
  FROM {schema}.underway_counters
 WHERE minute >= to_timestamp(%(since)s) AND minute < to_timestamp(%(until)s)
   AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
   AND (%(workers)s::text[] IS NULL OR worker = ANY(%(workers)s::text[]))
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3
