DELETE FROM {schema}.underway_nodes WHERE name = %(node)s
