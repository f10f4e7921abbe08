SELECT {columns} FROM {schema}.underway_jobs WHERE id = %(id)s
