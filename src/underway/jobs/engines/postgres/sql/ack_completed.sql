-- Each ack changes the job only if it still belongs to the run that claimed it. The jobs
-- are found by primary key (id = ANY), whatever else the node has executing.
UPDATE {schema}.underway_jobs AS j
   SET state = 'completed', completed_at = to_timestamp(a.at), result = a.result::jsonb
  FROM unnest(%(id)b::int8[], %(at)b::float8[], %(result)b::text[], %(attempt)b::int4[])
       AS a(id, at, result, attempt)
 WHERE j.id = ANY(%(id)b::int8[]) AND j.id = a.id AND j.state = 'executing' AND j.attempted_by = %(node)s
   AND j.attempt = a.attempt
