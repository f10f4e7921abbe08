-- The migrations recorded in the schema, in version order.
SELECT version, name FROM {schema}.underway_migrations ORDER BY version
