-- Jobs matching a JobFilter, newest first.
SELECT {columns} FROM {schema}.underway_jobs
 WHERE {job_filter}
 ORDER BY id DESC
 LIMIT %(limit)s OFFSET %(offset)s
