-- Free unique keys whose period is over, so a new job may take them.
UPDATE underway_jobs SET unique_key = NULL
 WHERE unique_key IN ({keys}) AND unique_until IS NOT NULL AND unique_until <= ?
