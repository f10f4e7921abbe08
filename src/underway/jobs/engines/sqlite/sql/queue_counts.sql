-- Waiting and running jobs by queue and state, through the (state, queue, id) index: only the
-- entries of these states are read, never the history.
SELECT queue, state, COUNT(*) FROM underway_jobs
 WHERE state IN ('scheduled', 'available', 'executing', 'retryable')
 GROUP BY queue, state
