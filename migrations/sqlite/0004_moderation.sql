-- Moderation: review claims, blocks (of versions and of whole plugins), abuse reports.

-- A reviewer's claim on a version waiting for review; a claim older than an hour lapses.
ALTER TABLE plugin_versions ADD COLUMN claimed_by INTEGER REFERENCES users (id);
ALTER TABLE plugin_versions ADD COLUMN claimed_at INTEGER;
-- The state a blocked version returns to when it is unblocked.
ALTER TABLE plugin_versions ADD COLUMN state_before_block TEXT;
-- 1 when the block came from the plugin's kill switch (lifted with it), 0 for a version block.
ALTER TABLE plugin_versions ADD COLUMN blocked_with_plugin INTEGER NOT NULL DEFAULT 0;

-- The kill switch: a blocked plugin has every version blocked and accepts no uploads.
ALTER TABLE plugins ADD COLUMN blocked_at INTEGER;
ALTER TABLE plugins ADD COLUMN blocked_reason TEXT;

CREATE TABLE abuse_reports (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin_id    INTEGER NOT NULL REFERENCES plugins (id),
    version      TEXT,
    reporter_id  INTEGER NOT NULL REFERENCES users (id),
    reason       TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('open', 'resolved')),
    resolution   TEXT,
    resolved_by  INTEGER REFERENCES users (id),
    resolved_at  INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE INDEX abuse_reports_state ON abuse_reports (state, id);

CREATE INDEX audit_log_actor ON audit_log (actor_id);
CREATE INDEX plugin_versions_state ON plugin_versions (state, id);
-- Downloads check whether a package belongs to a blocked version.
CREATE INDEX plugin_versions_package_digest ON plugin_versions (package_digest);
