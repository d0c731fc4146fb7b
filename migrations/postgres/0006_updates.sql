-- Update serving: the change feed, staged rollouts, and the signed release metadata
-- (server/src/catalogue.rs, server/src/release_metadata.rs; docs/src/adr/0005-update-serving.md).

-- Staged rollouts: a published version is offered to this percentage of install ids; a
-- paused rollout is offered to nobody new.
ALTER TABLE plugin_versions ADD COLUMN rollout_percent BIGINT NOT NULL DEFAULT 100;
ALTER TABLE plugin_versions ADD COLUMN rollout_paused BIGINT NOT NULL DEFAULT 0;

-- The change feed: a row per plugin whose offer may have changed, written by the triggers
-- below so no handler can forget it. Each replica's update-check catalogue reads it to drop
-- stale entries (woken by NOTIFY plugstore_catalogue); rows older than a day are deleted by
-- the metadata job.
CREATE TABLE catalogue_changes (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plugin_id  BIGINT NOT NULL,
    created_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now())::BIGINT)
);

-- Plugins whose release metadata must be re-signed; the metadata job deletes the rows it
-- signed in the transaction that stores the new metadata, so none is lost or done twice.
CREATE TABLE tuf_pending (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plugin_id BIGINT NOT NULL
);

CREATE FUNCTION record_catalogue_change(changed_plugin BIGINT) RETURNS void AS $$
BEGIN
    INSERT INTO catalogue_changes (plugin_id) VALUES (changed_plugin);
    INSERT INTO tuf_pending (plugin_id) VALUES (changed_plugin);
    PERFORM pg_notify('plugstore_catalogue', changed_plugin::text);
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION changes_on_version() RETURNS trigger AS $$
BEGIN
    PERFORM record_catalogue_change(NEW.plugin_id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER changes_on_version_insert AFTER INSERT ON plugin_versions
    FOR EACH ROW EXECUTE FUNCTION changes_on_version();
CREATE TRIGGER changes_on_version_update
    AFTER UPDATE OF state, rollout_percent, rollout_paused ON plugin_versions
    FOR EACH ROW EXECUTE FUNCTION changes_on_version();
CREATE TRIGGER changes_on_delta_insert AFTER INSERT ON deltas
    FOR EACH ROW WHEN (NEW.state = 'ready') EXECUTE FUNCTION changes_on_version();

CREATE FUNCTION changes_on_plugin_block() RETURNS trigger AS $$
BEGIN
    PERFORM record_catalogue_change(NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER changes_on_plugin_block AFTER UPDATE OF blocked_at ON plugins
    FOR EACH ROW EXECUTE FUNCTION changes_on_plugin_block();

CREATE FUNCTION changes_on_certificate_revoke() RETURNS trigger AS $$
BEGIN
    PERFORM record_catalogue_change(signed.plugin_id)
        FROM (SELECT DISTINCT plugin_id FROM plugin_versions
              WHERE signer_fingerprint = NEW.fingerprint) AS signed;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER changes_on_certificate_revoke AFTER UPDATE OF revoked_at ON certificates
    FOR EACH ROW EXECUTE FUNCTION changes_on_certificate_revoke();

CREATE INDEX plugin_versions_signer ON plugin_versions (signer_fingerprint);
-- A plugin's patches, read whenever the catalogue or the metadata job loads the plugin.
CREATE INDEX deltas_by_plugin ON deltas (plugin_id, state);

-- Signed metadata files. Every file but the timestamp is immutable under its name
-- (`{version}.{role}.json`); timestamps are kept as `{version}.timestamp.json` and the newest
-- is served as `timestamp.json`.
CREATE TABLE tuf_files (
    name       TEXT   PRIMARY KEY,
    role       TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    length     BIGINT NOT NULL,
    sha256     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    bytes      BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);

-- Which plugins each of the 4096 hash bins holds (a bin's file lists all their targets).
CREATE TABLE tuf_bin_members (
    bin       BIGINT NOT NULL,
    plugin_id BIGINT NOT NULL REFERENCES plugins (id),
    PRIMARY KEY (bin, plugin_id)
);

-- The current file of each bin.
CREATE TABLE tuf_bins (
    bin       BIGINT PRIMARY KEY,
    file_name TEXT   NOT NULL REFERENCES tuf_files (name)
);

-- The repository's current top-level files, and the lease of the replica signing them.
CREATE TABLE tuf_repository (
    id               BIGINT PRIMARY KEY CHECK (id = 1),
    root_file        TEXT   NOT NULL REFERENCES tuf_files (name),
    targets_file     TEXT   NOT NULL REFERENCES tuf_files (name),
    snapshot_file    TEXT   NOT NULL REFERENCES tuf_files (name),
    timestamp_file   TEXT   NOT NULL REFERENCES tuf_files (name),
    bins_key         TEXT   NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT
);
