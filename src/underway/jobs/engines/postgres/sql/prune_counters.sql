-- Delete up to :limit per-minute counters of minutes before :before, oldest first. The
-- rows are found through the primary key (which starts with the minute) and deleted by
-- their physical address, so a run with nothing to delete reads one index entry, however
-- many minutes are kept (rows another pruner holds are left to it).
WITH gone AS (
    DELETE FROM {schema}.underway_counters WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM {schema}.underway_counters
         WHERE minute < to_timestamp(%(before)s)
         ORDER BY minute
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED))
    RETURNING 1
)
SELECT count(*) FROM gone
