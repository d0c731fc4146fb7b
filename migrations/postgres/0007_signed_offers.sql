-- Offers wait for the signed metadata (docs/src/adr/0005-update-serving.md): the update check
-- offers a plugin's versions only when no change to it is waiting to be signed, and names the
-- snapshot that signed them, so a host whose metadata is older can tell "not yet" from a lie.

-- The snapshot version of the newest round that signed this plugin; NULL before its first.
ALTER TABLE plugins ADD COLUMN signed_snapshot BIGINT;

-- Whatever the store had signed before this migration is in its current snapshot.
UPDATE plugins SET signed_snapshot = (
    SELECT f.version FROM tuf_files f JOIN tuf_repository r ON f.name = r.snapshot_file
);

-- Signing a plugin's change changes what may be offered of it: every replica's catalogue
-- reloads it (not re-signed: that is what just happened).
CREATE FUNCTION changes_on_plugin_signed() RETURNS trigger AS $$
BEGIN
    INSERT INTO catalogue_changes (plugin_id) VALUES (NEW.id);
    PERFORM pg_notify('plugstore_catalogue', NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER changes_on_plugin_signed AFTER UPDATE OF signed_snapshot ON plugins
    FOR EACH ROW EXECUTE FUNCTION changes_on_plugin_signed();

-- Rollouts are not in the signed metadata (ADR 0005), so changing one re-signs nothing and
-- reaches the catalogue at once, instead of withholding the plugin's offers for a round.
DROP TRIGGER changes_on_version_update ON plugin_versions;
CREATE TRIGGER changes_on_version_update AFTER UPDATE OF state ON plugin_versions
    FOR EACH ROW EXECUTE FUNCTION changes_on_version();

CREATE FUNCTION changes_on_rollout() RETURNS trigger AS $$
BEGIN
    INSERT INTO catalogue_changes (plugin_id) VALUES (NEW.plugin_id);
    PERFORM pg_notify('plugstore_catalogue', NEW.plugin_id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER changes_on_rollout AFTER UPDATE OF rollout_percent, rollout_paused ON plugin_versions
    FOR EACH ROW EXECUTE FUNCTION changes_on_rollout();

-- Every catalogue load asks whether a plugin has changes waiting to be signed.
CREATE INDEX tuf_pending_by_plugin ON tuf_pending (plugin_id);
