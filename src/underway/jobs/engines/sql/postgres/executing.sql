-- Ids of the jobs recorded as executing on one node (the reconciler compares them).
SELECT id FROM {schema}.underway_jobs WHERE state = 'executing' AND attempted_by = %(node)s
