-- Free unique keys whose period is over, so a new job may take them. Parameters: keys, now.
UPDATE {schema}.underway_jobs SET unique_key = NULL
 WHERE unique_key = ANY(%b::text[]) AND unique_until IS NOT NULL
   AND unique_until <= to_timestamp(%s)
