-- Code-signing certificates, signed versions, and the audit log.

CREATE TABLE certificates (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    publisher_id    BIGINT  NOT NULL REFERENCES publishers (id),
    fingerprint     TEXT    NOT NULL UNIQUE,
    serial          TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    issuer          TEXT    NOT NULL,
    not_before      BIGINT  NOT NULL,
    not_after       BIGINT  NOT NULL,
    -- 'store-ca' for certificates this store issued, 'external' for ones first seen on upload.
    origin          TEXT    NOT NULL CHECK (origin IN ('store-ca', 'external')),
    issued_to       BIGINT  REFERENCES users (id),
    created_at      BIGINT  NOT NULL,
    revoked_at      BIGINT,
    revoked_by      BIGINT  REFERENCES users (id),
    revoked_reason  TEXT
);
CREATE INDEX certificates_publisher ON certificates (publisher_id);

ALTER TABLE plugin_versions ADD COLUMN manifest TEXT NOT NULL DEFAULT '';
ALTER TABLE plugin_versions ADD COLUMN signature TEXT NOT NULL DEFAULT '';
ALTER TABLE plugin_versions ADD COLUMN signer_fingerprint TEXT;
ALTER TABLE plugin_versions ADD COLUMN published_by BIGINT  REFERENCES users (id);
ALTER TABLE plugin_versions ADD COLUMN state_reason TEXT;
ALTER TABLE plugin_versions ADD COLUMN state_changed_at BIGINT;

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id    BIGINT  REFERENCES users (id),
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    reason      TEXT,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target);
