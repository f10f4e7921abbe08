-- Add counts to the per-minute counters: :counts is a JSON array of [minute, queue, worker,
-- completed, failed, discarded, cancelled, snoozed], one per (minute, queue, worker) of a
-- batch, aggregated before (one upsert per batch, each row found by its primary key).
-- WHERE true keeps the parser from reading ON CONFLICT as a join constraint.
INSERT INTO underway_counters
       (minute, queue, worker, completed, failed, discarded, cancelled, snoozed)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
       json_extract(value, '$[6]'), json_extract(value, '$[7]')
  FROM json_each(:counts) WHERE true
    ON CONFLICT (minute, queue, worker) DO UPDATE
   SET completed = completed + excluded.completed, failed = failed + excluded.failed,
       discarded = discarded + excluded.discarded, cancelled = cancelled + excluded.cancelled,
       snoozed = snoozed + excluded.snoozed
