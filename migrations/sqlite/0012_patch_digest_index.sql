-- Every blob download checks whether the blob is a patch to a withdrawn version, and blob
-- collection asks which patches it names: both look patches up by digest.
CREATE INDEX deltas_patch_digest ON deltas (patch_digest);
