-- Remove a node's heartbeat (on a clean stop).
DELETE FROM underway_nodes WHERE name = :node
