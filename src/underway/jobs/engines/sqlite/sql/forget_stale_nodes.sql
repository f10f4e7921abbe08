DELETE FROM underway_nodes WHERE heartbeat_at < :stale_before
