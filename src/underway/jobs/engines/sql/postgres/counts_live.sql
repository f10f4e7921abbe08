-- Waiting and running jobs by queue and state (the stats line): the live partition only,
-- whatever the history.
SELECT queue, state, count(*) FROM {schema}.underway_jobs
 WHERE state IN ('scheduled', 'available', 'executing', 'retryable')
 GROUP BY queue, state
