-- On the server's clock, like the heartbeats.
DELETE FROM {schema}.underway_nodes
 WHERE heartbeat_at < statement_timestamp() - make_interval(secs => %(window)s)
