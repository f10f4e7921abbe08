-- Whether :queue has an available job: an index-backed read, so an idle producer looks
-- without taking the write lock.
SELECT 1 FROM underway_jobs WHERE state = 'available' AND queue = :queue LIMIT 1
