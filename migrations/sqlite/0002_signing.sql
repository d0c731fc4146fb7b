-- Code-signing certificates, signed versions, and the audit log.

CREATE TABLE certificates (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    publisher_id    INTEGER NOT NULL REFERENCES publishers (id),
    fingerprint     TEXT    NOT NULL UNIQUE,
    serial          TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    issuer          TEXT    NOT NULL,
    not_before      INTEGER NOT NULL,
    not_after       INTEGER NOT NULL,
    -- 'store-ca' for certificates this store issued, 'external' for ones first seen on upload.
    origin          TEXT    NOT NULL CHECK (origin IN ('store-ca', 'external')),
    issued_to       INTEGER REFERENCES users (id),
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    revoked_by      INTEGER REFERENCES users (id),
    revoked_reason  TEXT
);
CREATE INDEX certificates_publisher ON certificates (publisher_id);

ALTER TABLE plugin_versions ADD COLUMN manifest TEXT NOT NULL DEFAULT '';
ALTER TABLE plugin_versions ADD COLUMN signature TEXT NOT NULL DEFAULT '';
ALTER TABLE plugin_versions ADD COLUMN signer_fingerprint TEXT;
ALTER TABLE plugin_versions ADD COLUMN published_by INTEGER REFERENCES users (id);
ALTER TABLE plugin_versions ADD COLUMN state_reason TEXT;
ALTER TABLE plugin_versions ADD COLUMN state_changed_at INTEGER;

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor_id    INTEGER REFERENCES users (id),
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    reason      TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target);
