DELETE FROM {schema}.underway_nodes WHERE heartbeat_at < to_timestamp(%(stale_before)s)
