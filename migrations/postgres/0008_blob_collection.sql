-- Collecting unreferenced blobs (docs/src/operator/production.md#unreferenced-blobs).

-- The collector and the writers that record a reference to a blob take turns on this row:
-- a writer updates it in the transaction that records the reference, after checking that
-- the blob is still stored; the collector holds it while it re-checks and deletes. So a blob
-- is never deleted between a writer's check and its commit.
CREATE TABLE blob_fence (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    turns BIGINT  NOT NULL
);
INSERT INTO blob_fence (id, turns) VALUES (1, 0);

-- Certificate chain blobs named by signed metadata (ADR 0005), recorded by the signer.
-- Chains signed before this table existed are found from the versions' signatures.
CREATE TABLE chain_blobs (
    digest TEXT PRIMARY KEY
);
