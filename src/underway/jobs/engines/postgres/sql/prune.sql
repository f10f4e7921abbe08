-- Delete finished jobs of one state that finished before :before, oldest first, and give
-- back the unique keys they still held (rows another pruner holds are left to it). {state}
-- is a JobState literal and {finished_at} its time column, so the plan walks that state's
-- index in order and stops at the first job not yet due: a run with nothing to delete
-- reads one index entry, whatever the history.
WITH gone AS (
    DELETE FROM {schema}.underway_jobs WHERE state = {state} AND id = ANY(ARRAY(
        SELECT id FROM {schema}.underway_jobs
         WHERE state = {state} AND {finished_at} < to_timestamp(%(before)s)
         ORDER BY {finished_at}, id
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED))
    RETURNING id, unique_key
), freed AS (
    DELETE FROM {schema}.underway_unique
     WHERE key = ANY(ARRAY(SELECT unique_key FROM gone WHERE unique_key IS NOT NULL))
       AND job_id = ANY(ARRAY(SELECT id FROM gone WHERE unique_key IS NOT NULL))
)
SELECT count(*) FROM gone
