-- Give back unique keys whose period is over, so a new job may take them, and keys whose
-- job is gone (deleted by hand). Only key rows change: the job that held a key keeps its
-- row as it is. Parameters: keys, now.
DELETE FROM {schema}.underway_unique AS u
 WHERE u.key = ANY(%b::text[])
   AND (u.until <= to_timestamp(%s)
        OR (SELECT j.id FROM {schema}.underway_jobs AS j WHERE j.id = u.job_id LIMIT 1) IS NULL)
