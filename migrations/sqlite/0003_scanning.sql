-- Scan jobs claimed by workers with leases, and the reports they post.

CREATE TABLE scan_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    version_id       INTEGER NOT NULL UNIQUE REFERENCES plugin_versions (id),
    state            TEXT    NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX scan_jobs_claimable ON scan_jobs (state, id);

CREATE TABLE scan_reports (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    version_id      INTEGER NOT NULL REFERENCES plugin_versions (id),
    job_id          INTEGER NOT NULL REFERENCES scan_jobs (id),
    verdict         TEXT    NOT NULL,
    max_severity    TEXT    NOT NULL,
    report          TEXT    NOT NULL,
    scanner_version TEXT    NOT NULL,
    worker          TEXT    NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX scan_reports_version ON scan_reports (version_id);
