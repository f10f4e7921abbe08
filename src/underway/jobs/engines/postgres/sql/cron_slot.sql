-- Record that cron entry :name fires for :slot; a row comes back only for a slot later
-- than the last one recorded (the row stays locked until the transaction ends).
INSERT INTO {schema}.underway_cron AS c (name, slot)
VALUES (%(name)s, to_timestamp(%(slot)s))
ON CONFLICT (name) DO UPDATE
   SET slot = excluded.slot, fired_at = now()
 WHERE c.slot < excluded.slot
RETURNING name
