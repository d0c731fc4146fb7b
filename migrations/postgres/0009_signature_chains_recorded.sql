-- Chains named by metadata signed before `chain_blobs` existed (0008) are found in the
-- versions' signatures. The first collection of unreferenced blobs records them in
-- `chain_blobs` and sets this flag, so that later collections do not read every signature.
ALTER TABLE blob_fence ADD COLUMN signature_chains_recorded INTEGER NOT NULL DEFAULT 0;
