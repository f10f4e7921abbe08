INSERT INTO {schema}.underway_nodes (name, started_at, heartbeat_at, meta)
VALUES (%(node)s, to_timestamp(%(now)s), to_timestamp(%(now)s), %(meta)s::jsonb)
ON CONFLICT (name) DO UPDATE
   SET heartbeat_at = excluded.heartbeat_at, meta = excluded.meta
