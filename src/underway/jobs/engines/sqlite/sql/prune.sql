-- Delete up to :limit jobs in finished state :state that finished before :before.
-- SQLite uses a partial index only when the query repeats the index's condition word for
-- word (it cannot prove that state = 'completed' implies it), hence the IN term; INDEXED
-- BY makes sure the delete never falls back to scanning the whole table.
DELETE FROM underway_jobs WHERE id IN (
    SELECT id FROM underway_jobs INDEXED BY underway_jobs_finished
     WHERE state IN ('completed', 'cancelled', 'discarded') AND state = :state
       AND COALESCE(completed_at, cancelled_at, discarded_at) < :before
     LIMIT :limit)
