-- When node :node last heartbeated (epoch seconds of the node's clock), if it has a row.
SELECT heartbeat_at FROM underway_nodes WHERE name = :node
