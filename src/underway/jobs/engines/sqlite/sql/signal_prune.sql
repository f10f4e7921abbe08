-- Forget signals older than the retention every node is expected to read within.
DELETE FROM underway_signals WHERE at < :before
