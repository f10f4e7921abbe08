-- Split underway_jobs into two partitions by state, so that the hot path never works
-- against the history:
--   underway_jobs_live  scheduled, available, executing, retryable: small, churned by every
--                       claim and ack, vacuumed often (by the leader and by autovacuum with
--                       the thresholds below, which do not grow with the table);
--   underway_jobs_done  completed, discarded, cancelled: written once by the ack that
--                       finishes a job (a move between partitions), then only read and pruned.
-- Every statement still names underway_jobs; a state literal in its WHERE clause lets
-- PostgreSQL plan against one partition only.
--
-- A unique index of a partitioned table must contain its partition key, and a unique key
-- must hold across states, so unique keys live in underway_unique, one row per key held:
-- the job holding it and the end of its period. The insert takes the key there (ON
-- CONFLICT DO NOTHING, so a key another transaction is taking is waited for), the trigger
-- below gives it back when its job leaves its unique states, the pruner when it deletes the
-- job, and an insert of the same key when the period is over. Giving a key back never
-- writes to a job row that another statement may be moving, so an application's own
-- transaction never has to retry it.
--
-- The existing table becomes the done partition in place (its live rows move first), so
-- the history is not copied; its indexes are built anew. The whole migration holds an
-- exclusive lock on the table: nodes wait for it.

CREATE TABLE underway_unique (
    key    text PRIMARY KEY,
    job_id bigint NOT NULL,
    until  timestamptz  -- the end of the period; NULL: while the job is in its unique states
);
INSERT INTO underway_unique (key, job_id, until)
    SELECT unique_key, id, unique_until FROM underway_jobs WHERE unique_key IS NOT NULL;

DROP TRIGGER underway_jobs_unique_release ON underway_jobs;
DROP INDEX underway_jobs_fetch, underway_jobs_stage, underway_jobs_executing,
    underway_jobs_unique, underway_jobs_finished;
-- New ids continue after every id the old sequence handed out (pruned jobs included), so an
-- id an application stored never names another job.
DO $$
DECLARE
    last bigint;
BEGIN
    EXECUTE format('SELECT last_value FROM %s', pg_get_serial_sequence('underway_jobs', 'id'))
       INTO last;
    ALTER TABLE underway_jobs ALTER COLUMN id DROP IDENTITY;
    CREATE SEQUENCE underway_jobs_id_seq AS bigint;
    PERFORM setval('underway_jobs_id_seq',
                   GREATEST(last, (SELECT COALESCE(max(id), 0) FROM underway_jobs), 1));
END;
$$;
ALTER TABLE underway_jobs RENAME TO underway_jobs_done;
ALTER INDEX underway_jobs_pkey RENAME TO underway_jobs_done_pkey;

-- The same columns, defaults and checks as the old table (ATTACH below matches the checks by
-- name); ids come from the new sequence.
CREATE TABLE underway_jobs (LIKE underway_jobs_done INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY LIST (state);
ALTER TABLE underway_jobs ALTER COLUMN id SET DEFAULT nextval('underway_jobs_id_seq');
ALTER SEQUENCE underway_jobs_id_seq OWNED BY underway_jobs.id;

-- Live rows are updated twice and then leave, so the partition is mostly dead tuples
-- between vacuums: autovacuum runs after a fixed number of them, however many rows wait,
-- and without cost-based sleeps (the partition is small; a slow vacuum is what lets the
-- fetch index fill with entries of jobs that left).
CREATE TABLE underway_jobs_live PARTITION OF underway_jobs
    FOR VALUES IN ('scheduled', 'available', 'executing', 'retryable')
    WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
          autovacuum_vacuum_insert_scale_factor = 0,
          autovacuum_vacuum_insert_threshold = 5000,
          autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000,
          autovacuum_vacuum_cost_delay = 0);
ALTER TABLE underway_jobs_live ADD CONSTRAINT underway_jobs_live_pkey PRIMARY KEY (id);

WITH moved AS (
    DELETE FROM underway_jobs_done
     WHERE state IN ('scheduled', 'available', 'executing', 'retryable')
    RETURNING *
)
INSERT INTO underway_jobs_live SELECT * FROM moved;

-- The check makes ATTACH skip its own scan; the history is pruned by deletes, so vacuum it
-- after a twentieth of it is dead rather than a fifth.
ALTER TABLE underway_jobs_done ADD CONSTRAINT underway_jobs_done_states
    CHECK (state IN ('completed', 'discarded', 'cancelled'));
ALTER TABLE underway_jobs_done SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE underway_jobs ATTACH PARTITION underway_jobs_done
    FOR VALUES IN ('completed', 'discarded', 'cancelled');

-- Fetch: the next available jobs of one queue by priority, time, insertion.
CREATE INDEX underway_jobs_fetch ON underway_jobs (queue, priority, scheduled_at, id)
    WHERE state = 'available';

-- Staging: scheduled and retryable jobs by due time.
CREATE INDEX underway_jobs_stage ON underway_jobs (scheduled_at)
    WHERE state IN ('scheduled', 'retryable');

-- Executing jobs, by id (acks find their jobs through the primary key; the lifeline and the
-- reconciler scan this).
CREATE INDEX underway_jobs_executing ON underway_jobs (id)
    WHERE state = 'executing';

-- Pruner: finished jobs by finish time, one index per state on a plain column (PostgreSQL
-- keeps no statistics for an expression inside a partial index and guessed a third of the
-- table; the pruner walks these in order and stops at the first job not yet due).
CREATE INDEX underway_jobs_completed ON underway_jobs (completed_at, id)
    WHERE state = 'completed';
CREATE INDEX underway_jobs_discarded ON underway_jobs (discarded_at, id)
    WHERE state = 'discarded';
CREATE INDEX underway_jobs_cancelled ON underway_jobs (cancelled_at, id)
    WHERE state = 'cancelled';

-- Give a unique key back when its job moves to a state outside its unique states (bits as
-- JobState.bit). Only the job's own key row goes: after its period a key may be held by a
-- newer job.
CREATE OR REPLACE FUNCTION underway_jobs_unique_release() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF (NEW.unique_states & (CASE NEW.state
        WHEN 'scheduled' THEN 1 WHEN 'available' THEN 2 WHEN 'executing' THEN 4
        WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32
        ELSE 64 END)) = 0 THEN
        DELETE FROM underway_unique WHERE key = OLD.unique_key AND job_id = OLD.id;
        NEW.unique_key := NULL;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER underway_jobs_unique_release
BEFORE UPDATE OF state ON underway_jobs
FOR EACH ROW
WHEN (OLD.unique_key IS NOT NULL)
EXECUTE FUNCTION underway_jobs_unique_release();

-- The roles that could use the old table may use what replaces it.
DO $$
DECLARE
    grant_ record;
BEGIN
    FOR grant_ IN
        SELECT DISTINCT a.privilege_type, quote_ident(r.rolname) AS grantee
          FROM pg_class AS c, aclexplode(c.relacl) AS a
          JOIN pg_roles AS r ON r.oid = a.grantee
         WHERE c.oid = 'underway_jobs_done'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON underway_jobs, underway_jobs_live, underway_jobs_done, '
                       'underway_unique TO %s', grant_.privilege_type, grant_.grantee);
        IF grant_.privilege_type = 'INSERT' THEN
            EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE underway_jobs_id_seq TO %s',
                           grant_.grantee);
        END IF;
    END LOOP;
END;
$$;
