-- Give up a lease, only if :node holds it.
DELETE FROM underway_leases WHERE name = :name AND node = :node
