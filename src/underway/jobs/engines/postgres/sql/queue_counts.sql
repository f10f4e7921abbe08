-- Waiting and running jobs by queue and state. The state list keeps the plan on the live
-- partition: the history is never read, whatever it holds.
SELECT queue, state, count(*) FROM {schema}.underway_jobs
 WHERE state IN ('scheduled', 'available', 'executing', 'retryable')
 GROUP BY queue, state
