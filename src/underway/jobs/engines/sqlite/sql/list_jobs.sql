-- Jobs matching a JobFilter, newest first.
SELECT {columns} FROM underway_jobs
 WHERE {job_filter}
 ORDER BY id DESC
 LIMIT :limit OFFSET :offset
