-- The per-minute counters of the minutes in [:since, :until) added up per bucket of :bucket
-- seconds counted from :since (the start of a minute, an integer, so that the division is
-- an integer's), and by queue and worker only when :by_queue and :by_worker (the other is
-- NULL); optionally of some queues and workers only (JSON arrays; NULL: all). The rows are
-- a range of the primary key; the sums are ordered by bucket, queue and worker.
SELECT :since + (minute - :since) / :bucket * :bucket,
       CASE WHEN :by_queue THEN queue END,
       CASE WHEN :by_worker THEN worker END,
       sum(completed), sum(failed), sum(discarded), sum(cancelled), sum(snoozed)
  FROM underway_counters
 WHERE minute >= :since AND minute < :until
   AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
   AND (:workers IS NULL OR worker IN (SELECT value FROM json_each(:workers)))
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3
