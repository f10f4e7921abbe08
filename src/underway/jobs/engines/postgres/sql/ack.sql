-- The acks of one batch in one statement: {acks} is the CTE of each kind of outcome present
-- in the batch (sql/fragments/ack_completed, ack_failed, ack_snoozed, each over one array
-- per column) and {acked} the union of their rows. Each ack changes its job only if the job
-- still belongs to the run that claimed it; the jobs are found by primary key (id = ANY),
-- whatever else the node has executing.
--
-- The jobs the acks changed (RETURNING: a late ack that changed nothing is not counted) are
-- added to underway_counters in the same statement, aggregated by minute, queue and worker
-- into one upsert, in key order (concurrent nodes adding to the same rows never deadlock).
WITH {acks}
INSERT INTO {schema}.underway_counters AS c
       (minute, queue, worker, completed, failed, discarded, cancelled, snoozed)
SELECT to_timestamp(m * 60), queue, worker, count(*) FILTER (WHERE kind = 'completed'),
       count(*) FILTER (WHERE kind = 'retryable'), count(*) FILTER (WHERE kind = 'discarded'),
       count(*) FILTER (WHERE kind = 'cancelled'), count(*) FILTER (WHERE kind = 'snoozed')
  FROM (SELECT floor(at / 60) AS m, queue, worker, kind FROM ({acked}) AS acked) AS a
 GROUP BY m, queue, worker
 ORDER BY m, queue, worker
    ON CONFLICT (minute, queue, worker) DO UPDATE
   SET completed = c.completed + excluded.completed, failed = c.failed + excluded.failed,
       discarded = c.discarded + excluded.discarded,
       cancelled = c.cancelled + excluded.cancelled, snoozed = c.snoozed + excluded.snoozed
