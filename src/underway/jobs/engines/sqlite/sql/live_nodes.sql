-- The nodes that heartbeated since :stale_before, with their meta.
SELECT name, meta FROM underway_nodes WHERE heartbeat_at >= :stale_before
