SELECT queue, state, count(*) FROM {schema}.underway_jobs GROUP BY queue, state
