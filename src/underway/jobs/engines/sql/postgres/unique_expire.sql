-- Free unique keys whose period is over, so a new job may take them (the trigger gives the
-- key back), and keys that no job holds any more (a job deleted by hand). Parameters: keys,
-- now.
WITH keys AS (
    SELECT unnest(%b::text[]) AS key
), expired AS (
    UPDATE {schema}.underway_jobs SET unique_key = NULL
     WHERE unique_key IN (SELECT key FROM keys) AND unique_until IS NOT NULL
       AND unique_until <= to_timestamp(%s)
)
DELETE FROM {schema}.underway_unique AS u USING keys AS k
 WHERE u.key = k.key
   AND NOT EXISTS (SELECT 1 FROM {schema}.underway_jobs AS j WHERE j.unique_key = u.key)
