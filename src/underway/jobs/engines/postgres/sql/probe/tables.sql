-- Which of the tables a probe reads exist (none in a schema no engine has migrated).
SELECT to_regclass(%(migrations)s) IS NOT NULL, to_regclass(%(nodes)s) IS NOT NULL
