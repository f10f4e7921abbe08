-- The last slot recorded for each of the cron entries :names (a JSON array; by primary key).
SELECT name, last_slot FROM underway_cron
 WHERE name IN (SELECT value FROM json_each(:names))
