-- Update serving: the change feed, staged rollouts, and the signed release metadata
-- (server/src/catalogue.rs, server/src/release_metadata.rs; docs/src/adr/0005-update-serving.md).

-- Staged rollouts: a published version is offered to this percentage of install ids; a
-- paused rollout is offered to nobody new.
ALTER TABLE plugin_versions ADD COLUMN rollout_percent INTEGER NOT NULL DEFAULT 100;
ALTER TABLE plugin_versions ADD COLUMN rollout_paused INTEGER NOT NULL DEFAULT 0;

-- The change feed: a row per plugin whose offer may have changed, written by the triggers
-- below so no handler can forget it. Each replica's update-check catalogue reads it to drop
-- stale entries; rows older than a day are deleted by the metadata job.
CREATE TABLE catalogue_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin_id  INTEGER NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
);

-- Plugins whose release metadata must be re-signed; the metadata job deletes the rows it
-- signed in the transaction that stores the new metadata, so none is lost or done twice.
CREATE TABLE tuf_pending (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin_id INTEGER NOT NULL
);

CREATE TRIGGER changes_on_version_insert AFTER INSERT ON plugin_versions BEGIN
    INSERT INTO catalogue_changes (plugin_id) VALUES (NEW.plugin_id);
    INSERT INTO tuf_pending (plugin_id) VALUES (NEW.plugin_id);
END;

CREATE TRIGGER changes_on_version_update
AFTER UPDATE OF state, rollout_percent, rollout_paused ON plugin_versions BEGIN
    INSERT INTO catalogue_changes (plugin_id) VALUES (NEW.plugin_id);
    INSERT INTO tuf_pending (plugin_id) VALUES (NEW.plugin_id);
END;

CREATE TRIGGER changes_on_delta_insert AFTER INSERT ON deltas WHEN NEW.state = 'ready' BEGIN
    INSERT INTO catalogue_changes (plugin_id) VALUES (NEW.plugin_id);
    INSERT INTO tuf_pending (plugin_id) VALUES (NEW.plugin_id);
END;

CREATE TRIGGER changes_on_plugin_block AFTER UPDATE OF blocked_at ON plugins BEGIN
    INSERT INTO catalogue_changes (plugin_id) VALUES (NEW.id);
    INSERT INTO tuf_pending (plugin_id) VALUES (NEW.id);
END;

CREATE TRIGGER changes_on_certificate_revoke AFTER UPDATE OF revoked_at ON certificates BEGIN
    INSERT INTO catalogue_changes (plugin_id)
        SELECT DISTINCT plugin_id FROM plugin_versions WHERE signer_fingerprint = NEW.fingerprint;
    INSERT INTO tuf_pending (plugin_id)
        SELECT DISTINCT plugin_id FROM plugin_versions WHERE signer_fingerprint = NEW.fingerprint;
END;

CREATE INDEX plugin_versions_signer ON plugin_versions (signer_fingerprint);
-- A plugin's patches, read whenever the catalogue or the metadata job loads the plugin.
CREATE INDEX deltas_by_plugin ON deltas (plugin_id, state);

-- Signed metadata files. Every file but the timestamp is immutable under its name
-- (`{version}.{role}.json`); timestamps are kept as `{version}.timestamp.json` and the newest
-- is served as `timestamp.json`.
CREATE TABLE tuf_files (
    name       TEXT    PRIMARY KEY,
    role       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    length     INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    bytes      BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Which plugins each of the 4096 hash bins holds (a bin's file lists all their targets).
CREATE TABLE tuf_bin_members (
    bin       INTEGER NOT NULL,
    plugin_id INTEGER NOT NULL REFERENCES plugins (id),
    PRIMARY KEY (bin, plugin_id)
);

-- The current file of each bin.
CREATE TABLE tuf_bins (
    bin       INTEGER PRIMARY KEY,
    file_name TEXT    NOT NULL REFERENCES tuf_files (name)
);

-- The repository's current top-level files, and the lease of the replica signing them.
CREATE TABLE tuf_repository (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    root_file        TEXT    NOT NULL REFERENCES tuf_files (name),
    targets_file     TEXT    NOT NULL REFERENCES tuf_files (name),
    snapshot_file    TEXT    NOT NULL REFERENCES tuf_files (name),
    timestamp_file   TEXT    NOT NULL REFERENCES tuf_files (name),
    bins_key         TEXT    NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER
);
