SELECT {columns} FROM underway_jobs WHERE unique_key IN ({keys})
