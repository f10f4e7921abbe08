-- Whether :queue has an available job this node can run: an index-backed read, so an idle
-- producer looks without taking the write lock.
SELECT 1 FROM underway_jobs
 WHERE state = 'available' AND queue = :queue
   AND (:workers IS NULL OR worker IN (SELECT value FROM json_each(:workers)))
 LIMIT 1
