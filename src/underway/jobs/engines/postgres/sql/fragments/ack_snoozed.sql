-- The snoozed attempts of a batch of acks, as a CTE of sql/ack: back to scheduled, the
-- attempt not counted, meta.snoozed counted up (meta that is not an object is kept as is).
snoozed AS (
    UPDATE {schema}.underway_jobs AS j
       SET state = 'scheduled', scheduled_at = to_timestamp(a.scheduled_at),
           attempt = j.attempt - 1,
           meta = CASE WHEN jsonb_typeof(j.meta) = 'object' THEN
                      j.meta || jsonb_build_object('snoozed',
                          CASE WHEN jsonb_typeof(j.meta -> 'snoozed') = 'number'
                               THEN (j.meta ->> 'snoozed')::numeric ELSE 0 END + 1)
                  ELSE j.meta END
      FROM unnest(%(s_id)b::int8[], %(s_at)b::float8[], %(s_scheduled_at)b::float8[],
                  %(s_attempt)b::int4[]) AS a(id, at, scheduled_at, attempt)
     WHERE j.id = ANY(%(s_id)b::int8[]) AND j.id = a.id AND j.state = 'executing'
       AND j.attempted_by = %(node)s AND j.attempt = a.attempt
    RETURNING j.queue, j.worker, a.at, 'snoozed'::text AS kind
)
