-- Uploads look revoked certificates up by serial and issuer as well as by fingerprint:
-- another encoding of a revoked certificate has another fingerprint (controllers/versions.rs,
-- `revoked_among`).
CREATE INDEX certificates_serial ON certificates (serial);
