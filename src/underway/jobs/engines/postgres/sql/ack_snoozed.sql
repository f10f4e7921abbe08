-- Snoozed: back to scheduled, the attempt not counted, meta.snoozed counted up (meta that
-- is not an object is kept as is).
UPDATE {schema}.underway_jobs AS j
   SET state = 'scheduled', scheduled_at = to_timestamp(a.scheduled_at),
       attempt = j.attempt - 1,
       meta = CASE WHEN jsonb_typeof(j.meta) = 'object' THEN
                  j.meta || jsonb_build_object('snoozed',
                      CASE WHEN jsonb_typeof(j.meta -> 'snoozed') = 'number'
                           THEN (j.meta ->> 'snoozed')::numeric ELSE 0 END + 1)
              ELSE j.meta END
  FROM unnest(%(id)b::int8[], %(scheduled_at)b::float8[], %(attempt)b::int4[])
       AS a(id, scheduled_at, attempt)
 WHERE j.id = ANY(%(id)b::int8[]) AND j.id = a.id AND j.state = 'executing' AND j.attempted_by = %(node)s
   AND j.attempt = a.attempt
