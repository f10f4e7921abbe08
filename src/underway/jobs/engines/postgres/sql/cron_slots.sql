-- The last slot recorded for each of the cron entries :names (by primary key).
SELECT name, date_part('epoch', slot) FROM {schema}.underway_cron
 WHERE name = ANY(%(names)s)
