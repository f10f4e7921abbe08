-- Jobs matching the filters that are not NULL, newest first.
SELECT {columns} FROM {schema}.underway_jobs
 WHERE (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(worker)s::text IS NULL OR worker = %(worker)s::text)
 ORDER BY id DESC
 LIMIT %(limit)s OFFSET %(offset)s
