-- The per-minute counters of the minutes in [:since, :until), optionally of some queues and
-- workers only (NULL: all), in key order: a range of the primary key, read in order.
SELECT date_part('epoch', minute), queue, worker, completed, failed, discarded, cancelled,
       snoozed
  FROM {schema}.underway_counters
 WHERE minute >= to_timestamp(%(since)s) AND minute < to_timestamp(%(until)s)
   AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
   AND (%(workers)s::text[] IS NULL OR worker = ANY(%(workers)s::text[]))
 ORDER BY minute, queue, worker
