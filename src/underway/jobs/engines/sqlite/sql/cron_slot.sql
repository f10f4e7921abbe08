-- Record that cron entry :name fires for :slot, only if :slot is newer than the last one
-- recorded: a row comes back only when the slot was recorded (and the job may be inserted).
INSERT INTO underway_cron (name, last_slot) VALUES (:name, :slot)
ON CONFLICT (name) DO UPDATE SET last_slot = excluded.last_slot
 WHERE excluded.last_slot > underway_cron.last_slot
RETURNING last_slot
