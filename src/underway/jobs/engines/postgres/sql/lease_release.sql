DELETE FROM {schema}.underway_leases WHERE name = %(name)s AND node = %(node)s
