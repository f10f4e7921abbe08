-- The per-minute counters of the minutes in [:since, :until), optionally of some queues and
-- workers only (JSON arrays; NULL: all), in key order: a range of the primary key, read in
-- order.
SELECT minute, queue, worker, completed, failed, discarded, cancelled, snoozed
  FROM underway_counters
 WHERE minute >= :since AND minute < :until
   AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
   AND (:workers IS NULL OR worker IN (SELECT value FROM json_each(:workers)))
 ORDER BY minute, queue, worker
