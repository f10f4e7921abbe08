-- Stamped with the server's clock: liveness never depends on the nodes' clocks agreeing.
INSERT INTO {schema}.underway_nodes (name, started_at, heartbeat_at, meta)
VALUES (%(node)s, statement_timestamp(), statement_timestamp(), %(meta)s::jsonb)
ON CONFLICT (name) DO UPDATE
   SET heartbeat_at = excluded.heartbeat_at, meta = excluded.meta
