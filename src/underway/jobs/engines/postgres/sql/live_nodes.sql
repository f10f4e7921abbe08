-- The nodes that heartbeated within the window (on the server's clock), with their meta.
SELECT name, meta FROM {schema}.underway_nodes
 WHERE heartbeat_at >= statement_timestamp() - make_interval(secs => %(window)s)
