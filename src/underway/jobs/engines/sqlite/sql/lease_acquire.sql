-- Take the lease when it is free or expired, renew it when :node holds it, and otherwise
-- change nothing: a row comes back only when :node holds the lease afterwards.
INSERT INTO underway_leases (name, node, expires_at) VALUES (:name, :node, :expires_at)
ON CONFLICT (name) DO UPDATE SET node = excluded.node, expires_at = excluded.expires_at
 WHERE underway_leases.node = excluded.node OR underway_leases.expires_at <= :now
RETURNING node
