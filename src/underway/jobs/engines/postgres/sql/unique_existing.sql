-- The jobs holding unique keys (the key table names them; found by primary key). Parameter:
-- keys.
SELECT {columns}, unique_key FROM {schema}.underway_jobs
 WHERE id = ANY(ARRAY(SELECT job_id FROM {schema}.underway_unique
                       WHERE key = ANY(%b::text[])))
