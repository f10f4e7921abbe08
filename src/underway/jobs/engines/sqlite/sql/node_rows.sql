-- Every node with a heartbeat row: its times, its heartbeat's age at :now, its meta, and
-- whether it holds an unexpired :lease.
SELECT n.name, n.started_at, n.heartbeat_at, :now - n.heartbeat_at, n.meta,
       l.node IS NOT NULL
  FROM underway_nodes AS n
  LEFT JOIN underway_leases AS l
    ON l.name = :lease AND l.node = n.name AND l.expires_at > :now
 ORDER BY n.name
