-- The conditions of a JobFilter, shared by list_jobs and the bulk actions as {job_filter}
-- (a NULL parameter is no condition). :tags, :args and :meta are JSON (jsonb containment).
-- :before_id is the cursor of a newest-first page (the primary keys serve it).
    (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
AND (%(workers)s::text[] IS NULL OR worker = ANY(%(workers)s::text[]))
AND (%(node)s::text IS NULL OR attempted_by = %(node)s::text)
AND (%(inserted_after)s::float8 IS NULL
     OR inserted_at >= to_timestamp(%(inserted_after)s::float8))
AND (%(inserted_before)s::float8 IS NULL
     OR inserted_at < to_timestamp(%(inserted_before)s::float8))
AND (%(finished_after)s::float8 IS NULL
     OR COALESCE(completed_at, cancelled_at, discarded_at)
        >= to_timestamp(%(finished_after)s::float8))
AND (%(finished_before)s::float8 IS NULL
     OR COALESCE(completed_at, cancelled_at, discarded_at)
        < to_timestamp(%(finished_before)s::float8))
AND (%(tags)s::jsonb IS NULL OR tags @> %(tags)s::jsonb)
AND (%(args)s::jsonb IS NULL OR args @> %(args)s::jsonb)
AND (%(meta)s::jsonb IS NULL OR meta @> %(meta)s::jsonb)
AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
