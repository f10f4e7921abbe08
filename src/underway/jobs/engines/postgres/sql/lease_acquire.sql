-- Take the lease if it is free or expired, or renew it if :node holds it; a row comes back
-- only when :node holds it afterwards. Expiry is on the server's clock, so two nodes whose
-- clocks disagree never both hold it.
INSERT INTO {schema}.underway_leases AS l (name, node, expires_at)
VALUES (%(name)s, %(node)s, statement_timestamp() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE
   SET node = excluded.node, expires_at = excluded.expires_at
 WHERE l.node = excluded.node OR l.expires_at <= statement_timestamp()
RETURNING node
