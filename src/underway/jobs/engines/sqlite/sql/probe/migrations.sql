-- The migrations recorded in the file, in version order.
SELECT version, name FROM underway_migrations ORDER BY version
