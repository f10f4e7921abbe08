-- The jobs holding unique keys. Parameter: keys.
SELECT {columns}, unique_key FROM {schema}.underway_jobs WHERE unique_key = ANY(%b::text[])
