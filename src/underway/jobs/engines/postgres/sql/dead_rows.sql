-- Dead rows of the live partition, as the statistics collector last counted them (a look-up
-- of one row; no scan of the table).
SELECT COALESCE(n_dead_tup, 0) FROM pg_stat_user_tables
 WHERE relid = to_regclass(%(live)s)
