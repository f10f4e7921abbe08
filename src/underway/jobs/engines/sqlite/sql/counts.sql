SELECT queue, state, COUNT(*) FROM underway_jobs GROUP BY queue, state
