-- Which of the tables a probe reads exist (none in a file no engine has migrated).
SELECT name FROM sqlite_master
 WHERE type = 'table' AND name IN ('underway_migrations', 'underway_nodes')
