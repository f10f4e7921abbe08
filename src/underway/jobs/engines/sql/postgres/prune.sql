-- Delete finished jobs of one state older than :before (rows another pruner holds are
-- left to it). {state} is a JobState literal, so the partial index applies to every plan.
DELETE FROM {schema}.underway_jobs WHERE id = ANY(ARRAY(
    SELECT id FROM {schema}.underway_jobs
     WHERE state = {state}
       AND COALESCE(completed_at, cancelled_at, discarded_at) < to_timestamp(%(before)s)
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED))
