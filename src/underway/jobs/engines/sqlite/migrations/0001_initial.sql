-- Jobs, node heartbeats, and the index-backed unique key.
CREATE TABLE underway_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    state         TEXT    NOT NULL DEFAULT 'available' CHECK (state IN
                  ('scheduled','available','executing','retryable','completed','discarded','cancelled')),
    queue         TEXT    NOT NULL,
    worker        TEXT    NOT NULL,
    args          TEXT    NOT NULL DEFAULT '{}',
    meta          TEXT    NOT NULL DEFAULT '{}',
    tags          TEXT    NOT NULL DEFAULT '[]',
    errors        TEXT    NOT NULL DEFAULT '[]',
    attempt       INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 20 CHECK (max_attempts > 0),
    priority      INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    inserted_at   REAL    NOT NULL,
    scheduled_at  REAL    NOT NULL,
    attempted_at  REAL,
    attempted_by  TEXT,
    completed_at  REAL,
    discarded_at  REAL,
    cancelled_at  REAL,
    result        TEXT,
    unique_key    TEXT,
    unique_states INTEGER NOT NULL DEFAULT 0,
    unique_until  REAL
);

-- Fetch: the next available jobs of one queue by priority, time, insertion.
CREATE INDEX underway_jobs_fetch ON underway_jobs (queue, priority, scheduled_at, id)
    WHERE state = 'available';

-- Staging: scheduled and retryable jobs by due time.
CREATE INDEX underway_jobs_stage ON underway_jobs (scheduled_at)
    WHERE state IN ('scheduled', 'retryable');

-- Lifeline: executing jobs by the node that runs them.
CREATE INDEX underway_jobs_executing ON underway_jobs (attempted_by)
    WHERE state = 'executing';

-- Pruner: finished jobs by state and finish time.
CREATE INDEX underway_jobs_finished ON underway_jobs
    (state, COALESCE(completed_at, cancelled_at, discarded_at))
    WHERE state IN ('completed', 'cancelled', 'discarded');

-- Listing by state and queue (CLI, dashboard, test helpers).
CREATE INDEX underway_jobs_state ON underway_jobs (state, queue, id);

-- Unique jobs: a key is held only while set; the trigger below clears it when the job
-- moves to a state outside its unique states.
CREATE UNIQUE INDEX underway_jobs_unique ON underway_jobs (unique_key)
    WHERE unique_key IS NOT NULL;

CREATE TRIGGER underway_jobs_unique_release
AFTER UPDATE OF state ON underway_jobs
FOR EACH ROW
WHEN NEW.unique_key IS NOT NULL
 AND (NEW.unique_states & (CASE NEW.state
        WHEN 'scheduled' THEN 1 WHEN 'available' THEN 2 WHEN 'executing' THEN 4
        WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32
        ELSE 64 END)) = 0
BEGIN
    UPDATE underway_jobs SET unique_key = NULL WHERE id = NEW.id;
END;

CREATE TABLE underway_nodes (
    name         TEXT PRIMARY KEY,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    meta         TEXT NOT NULL DEFAULT '{}'
);
