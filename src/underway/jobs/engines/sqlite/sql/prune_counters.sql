-- Delete up to :limit per-minute counters of minutes before :before, oldest first, found
-- through the primary key (which starts with the minute): a run with nothing to delete
-- reads one index entry, however many minutes are kept.
DELETE FROM underway_counters WHERE (minute, queue, worker) IN (
    SELECT minute, queue, worker FROM underway_counters
     WHERE minute < :before
     ORDER BY minute
     LIMIT :limit)
