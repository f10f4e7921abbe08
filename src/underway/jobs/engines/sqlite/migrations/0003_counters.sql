-- Finished attempts per minute, queue and worker. The transaction that acks a batch adds its
-- counts here (aggregated by minute, queue and worker, one upsert), as do the cancellations
-- by request, so charts of throughput never read the jobs. The primary key serves both the
-- upsert and a read of a range of minutes; the pruner deletes the oldest minutes through it.
--
-- A node of an earlier version, running beside while nodes are upgraded, knows nothing of
-- this table: it goes on working and its acks are not counted.
CREATE TABLE underway_counters (
    minute    INTEGER NOT NULL,  -- the start of the minute, epoch seconds (the ack's time)
    queue     TEXT    NOT NULL,
    worker    TEXT    NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0,
    failed    INTEGER NOT NULL DEFAULT 0,  -- errored, to be retried
    discarded INTEGER NOT NULL DEFAULT 0,  -- errored out of attempts
    cancelled INTEGER NOT NULL DEFAULT 0,
    snoozed   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, worker)
) WITHOUT ROWID;
