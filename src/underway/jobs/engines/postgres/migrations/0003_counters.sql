-- Finished attempts per minute, queue and worker. The statement that acks a batch adds its
-- counts here (aggregated by minute, queue and worker, one upsert in the same statement), as
-- do the cancellations by request, so charts of throughput never read the jobs. The primary
-- key serves both the upsert and a read of a range of minutes; the pruner deletes the oldest
-- minutes through it. Only the counts change, so updates stay on their page (HOT).
--
-- A node of an earlier version, running beside while nodes are upgraded, knows nothing of
-- this table: it goes on working and its acks are not counted.

CREATE TABLE underway_counters (
    minute    timestamptz NOT NULL,  -- the start of the minute (the ack's time, truncated)
    queue     text        NOT NULL,
    worker    text        NOT NULL,
    completed bigint      NOT NULL DEFAULT 0,
    failed    bigint      NOT NULL DEFAULT 0,  -- errored, to be retried
    discarded bigint      NOT NULL DEFAULT 0,  -- errored out of attempts
    cancelled bigint      NOT NULL DEFAULT 0,
    snoozed   bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, worker)
) WITH (fillfactor = 80);

-- A role that may change jobs may count what it changes; one that may read them, read this.
DO $$
DECLARE
    grant_ record;
BEGIN
    FOR grant_ IN
        SELECT DISTINCT a.privilege_type, quote_ident(r.rolname) AS grantee
          FROM pg_class AS c, aclexplode(c.relacl) AS a
          JOIN pg_roles AS r ON r.oid = a.grantee
         WHERE c.oid = 'underway_jobs'::regclass AND a.grantee <> c.relowner
           AND a.privilege_type IN ('SELECT', 'UPDATE', 'DELETE')
    LOOP
        IF grant_.privilege_type = 'UPDATE' THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE ON underway_counters TO %s',
                           grant_.grantee);
        ELSE
            EXECUTE format('GRANT %s ON underway_counters TO %s', grant_.privilege_type,
                           grant_.grantee);
        END IF;
    END LOOP;
END;
$$;
