-- The completed attempts of a batch of acks, as a CTE of sql/ack (one array per column).
completed AS (
    UPDATE {schema}.underway_jobs AS j
       SET state = 'completed', completed_at = to_timestamp(a.at), result = a.result::jsonb
      FROM unnest(%(c_id)b::int8[], %(c_at)b::float8[], %(c_result)b::text[],
                  %(c_attempt)b::int4[]) AS a(id, at, result, attempt)
     WHERE j.id = ANY(%(c_id)b::int8[]) AND j.id = a.id AND j.state = 'executing'
       AND j.attempted_by = %(node)s AND j.attempt = a.attempt
    RETURNING j.queue, j.worker, a.at, 'completed'::text AS kind
)
