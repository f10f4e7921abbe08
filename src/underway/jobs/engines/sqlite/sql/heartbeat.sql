INSERT INTO underway_nodes (name, started_at, heartbeat_at, meta)
VALUES (:node, :now, :now, :meta)
ON CONFLICT (name) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, meta = excluded.meta
