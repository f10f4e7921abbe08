-- The conditions of a JobFilter, shared by list_jobs and the bulk actions as {job_filter}.
-- Each block below, headed by its parameter, is used only when that parameter is given
-- (see sqlite/_filter.py), so the planner sees plain conditions and the indexes on state,
-- queue and finish time serve. Lists are JSON arrays. :contains is a JSON array of
-- [column, path, kind, value, in_array]: the value at path of args or meta has JSON type
-- kind ('number' for integer or real) and, for text and numbers, equals value; with
-- in_array, some element of the array at path does. A column that is not valid JSON is
-- read as NULL, which matches no such condition (and fails no statement).
-- :states
state IN (SELECT value FROM json_each(:states))
-- :queues
queue IN (SELECT value FROM json_each(:queues))
-- :workers
worker IN (SELECT value FROM json_each(:workers))
-- :node
attempted_by = :node
-- :ids
id IN (SELECT value FROM json_each(:ids))
-- :before_id
id < :before_id
-- :inserted_after
inserted_at >= :inserted_after
-- :inserted_before
inserted_at < :inserted_before
-- :finished_after
COALESCE(completed_at, cancelled_at, discarded_at) >= :finished_after
-- :finished_before
COALESCE(completed_at, cancelled_at, discarded_at) < :finished_before
-- :tags
NOT EXISTS (
    SELECT 1 FROM json_each(:tags) AS want
     WHERE NOT EXISTS (SELECT 1 FROM json_each(iif(json_valid(tags), tags, '[]')) AS have
                        WHERE typeof(have.key) = 'integer'  -- elements of an array only
                          AND have.type = 'text' AND have.atom = want.value))
-- :contains
NOT EXISTS (
    SELECT 1 FROM json_each(:contains) AS want
     WHERE NOT EXISTS (
        SELECT 1 FROM (
            SELECT json_type(doc, path) AS type, json_extract(doc, path) AS atom
              FROM (SELECT CASE WHEN json_extract(want.value, '$[0]') = 'args'
                                THEN iif(json_valid(args), args, NULL)
                                ELSE iif(json_valid(meta), meta, NULL) END AS doc,
                           json_extract(want.value, '$[1]') AS path)
             WHERE NOT json_extract(want.value, '$[4]')
            UNION ALL
            SELECT have.type, have.atom
              FROM (SELECT CASE WHEN json_extract(want.value, '$[0]') = 'args'
                                THEN iif(json_valid(args), args, NULL)
                                ELSE iif(json_valid(meta), meta, NULL) END AS doc,
                           json_extract(want.value, '$[1]') AS path) AS at,
                   json_each(at.doc, at.path) AS have
             WHERE json_extract(want.value, '$[4]') AND json_type(at.doc, at.path) = 'array'
        ) AS found
         WHERE CASE found.type WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number'
                               ELSE found.type END = json_extract(want.value, '$[2]')
           AND (json_extract(want.value, '$[2]') NOT IN ('text', 'number')
                OR found.atom = json_extract(want.value, '$[3]'))))
