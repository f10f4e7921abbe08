-- The claims (id, attempt) recorded as executing on one node (the reconciler compares them).
SELECT id, attempt FROM {schema}.underway_jobs
 WHERE state = 'executing' AND attempted_by = %(node)s
