-- Seconds since node %(node)s last heartbeated, on the server's clock (as heartbeats are
-- stamped and as the lifeline judges them), if it has a row.
SELECT date_part('epoch', statement_timestamp() - heartbeat_at)
  FROM {schema}.underway_nodes
 WHERE name = %(node)s
