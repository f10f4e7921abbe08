-- Every node with a heartbeat row: its times, its heartbeat's age on the server's clock (the
-- one liveness is judged by), its meta, and whether it holds an unexpired :lease.
SELECT n.name, date_part('epoch', n.started_at), date_part('epoch', n.heartbeat_at),
       date_part('epoch', statement_timestamp() - n.heartbeat_at), n.meta::text,
       l.node IS NOT NULL
  FROM {schema}.underway_nodes AS n
  LEFT JOIN {schema}.underway_leases AS l
    ON l.name = %(lease)s AND l.node = n.name AND l.expires_at > statement_timestamp()
 ORDER BY n.name
