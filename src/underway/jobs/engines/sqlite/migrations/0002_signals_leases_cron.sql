-- Control signals for every node (pause, resume, scale, cancel), kept for a minute.
CREATE TABLE underway_signals (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      REAL NOT NULL,
    payload TEXT NOT NULL
);

-- Named leases (leadership): held by one node until they expire.
CREATE TABLE underway_leases (
    name       TEXT PRIMARY KEY,
    node       TEXT NOT NULL,
    expires_at REAL NOT NULL
);

-- The last slot each cron entry fired for, so a slot fires once across nodes.
CREATE TABLE underway_cron (
    name      TEXT PRIMARY KEY,
    last_slot REAL NOT NULL
);
