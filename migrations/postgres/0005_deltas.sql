-- Delta patches between versions of a plugin (server/src/deltas.rs).

-- Set once every patch to the version is recorded (made or skipped).
ALTER TABLE plugin_versions ADD COLUMN deltas_done INTEGER NOT NULL DEFAULT 0;

CREATE TABLE deltas (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plugin_id         BIGINT  NOT NULL REFERENCES plugins (id),
    base_version_id   BIGINT  NOT NULL REFERENCES plugin_versions (id),
    target_version_id BIGINT  NOT NULL REFERENCES plugin_versions (id),
    base_digest       TEXT    NOT NULL,
    target_digest     TEXT    NOT NULL,
    -- ready: patch_digest and patch_size are set; skipped: reason says why no patch is kept.
    state             TEXT    NOT NULL CHECK (state IN ('ready', 'skipped')),
    patch_digest      TEXT,
    patch_size        BIGINT,
    reason            TEXT,
    created_at        BIGINT  NOT NULL,
    UNIQUE (base_version_id, target_version_id)
);

CREATE INDEX deltas_by_target ON deltas (target_version_id);
CREATE INDEX versions_without_deltas ON plugin_versions (deltas_done, state);
