-- A plugin's public description is that of its most recently uploaded published version, so
-- text nobody has reviewed (a version still scanning or awaiting review, or one rejected)
-- never shows on the plugin's page or in search. Versions uploaded before this migration have
-- no description of their own and leave the plugin's as it is.
ALTER TABLE plugin_versions ADD COLUMN description TEXT;

CREATE FUNCTION description_on_publish() RETURNS trigger AS $$
BEGIN
    UPDATE plugins SET description = NEW.description
    WHERE id = NEW.plugin_id AND NOT EXISTS (
        SELECT 1 FROM plugin_versions later
        WHERE later.plugin_id = NEW.plugin_id AND later.state = 'published' AND later.id > NEW.id
    );
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER description_on_version_insert AFTER INSERT ON plugin_versions
    FOR EACH ROW WHEN (NEW.state = 'published' AND NEW.description IS NOT NULL)
    EXECUTE FUNCTION description_on_publish();
CREATE TRIGGER description_on_version_publish AFTER UPDATE OF state ON plugin_versions
    FOR EACH ROW WHEN (NEW.state = 'published' AND NEW.description IS NOT NULL)
    EXECUTE FUNCTION description_on_publish();
