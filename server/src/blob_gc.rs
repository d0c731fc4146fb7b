//! Collecting blobs that nothing refers to.
//!
//! A blob is stored before the row that names it, so that no row ever names a missing blob.
//! A writer that stops between the two (a replica that crashed, an upload that lost the race
//! for its version number, a database that refused the insert) leaves a blob that no row
//! names. [`collect_unreferenced`] finds and deletes those.
//!
//! What refers to a blob: a version's package (`plugin_versions.package_digest`), a ready
//! patch (`deltas.patch_digest`), and a certificate chain that signed metadata names
//! (`chain_blobs`). Metadata signed before that table existed named chains that only the
//! versions' signatures record; the first collection derives them and records them in
//! `chain_blobs`, once ([`record_signature_chains`]).
//!
//! Deleting races with writers: a writer may find a blob already stored (content addressing
//! makes a second upload of the same bytes a no-op) just before the collector deletes it,
//! and then record a reference to a blob that is gone. The two take turns on a fence
//! instead ([`take_turn`]). A writer takes its turn in the transaction that records the
//! reference and, holding it, confirms the blob is still stored ([`confirm_stored`]); the
//! collector takes its turn, re-checks that its candidates are still unreferenced and deletes
//! them before giving it back. Writers share the fence with each other and only a collection
//! holds it alone, so uploads on PostgreSQL do not queue behind each other's storage checks. Whichever goes first, a committed reference names a stored
//! blob: a writer that comes second finds its blob gone and fails, to be retried, instead of
//! committing. Only blobs older than a minimum age are candidates, so a blob being written
//! and about to be named is left alone, and such failures need a blob that had been orphaned
//! for that long to be uploaded again at the moment it is collected.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use plugstore_format::signing::SignatureEnvelope;
use sqlx::{AnyConnection, Row as _};

use crate::blobs::{BlobDigest, BlobError, BlobStore, ListedBlob};
use crate::db::{Database, Engine};
use crate::release_metadata::chain_pem;

/// Blobs written more recently than this are not collected by default. Writers name their
/// blobs within seconds (an upload within `publish.upload_timeout_secs` of starting), so a
/// day leaves a wide margin for clocks and for processes paused mid-write.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Blobs listed per page of the walk over storage.
const LIST_PAGE: usize = 1000;

/// Candidates re-checked and deleted per turn on the fence: writers wait for a turn, so turns
/// are kept short.
const BATCH: usize = 100;

/// Why a writer could not confirm its blobs.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    /// The blob was collected as unreferenced before the writer recorded its reference; the
    /// writer should store it again (or ask its client to).
    #[error("blob {0} was removed as unreferenced before it was recorded; store it again")]
    Collected(BlobDigest),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The blob store failed.
    #[error(transparent)]
    Blobs(#[from] BlobError),
}

/// Who takes a turn on the fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// A transaction recording references to stored blobs. Writers do not wait for each
    /// other, only for a collection.
    Writer,
    /// A collection deleting blobs: it waits for every writer and every writer waits for it.
    Collection,
}

/// Takes this transaction's turn on the fence; the turn lasts until the transaction ends.
///
/// On PostgreSQL the fence is a transaction-scoped advisory lock, shared by writers and
/// exclusive for a collection. Every upload's final transaction takes a turn, and a row lock
/// (which is exclusive) would queue all of them behind one another's storage checks. SQLite
/// runs one writing transaction at a time anyway, so there the turn is an update of the
/// `blob_fence` row, which takes the database's write lock at once.
///
/// # Errors
/// Database failures.
pub async fn take_turn(
    tx: &mut AnyConnection,
    engine: Engine,
    turn: Turn,
) -> Result<(), sqlx::Error> {
    let statement = match (engine, turn) {
        (Engine::Sqlite, _) => "UPDATE blob_fence SET turns = turns + 1 WHERE id = 1",
        // `count(*)` because the `Any` driver cannot decode the functions' `void`.
        (Engine::Postgres, Turn::Writer) => {
            "SELECT count(*) FROM (SELECT pg_advisory_xact_lock_shared(hashtextextended('plugstore blob fence', 0))) AS turn"
        }
        (Engine::Postgres, Turn::Collection) => {
            "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended('plugstore blob fence', 0))) AS turn"
        }
    };
    sqlx::query(statement).execute(&mut *tx).await?;
    Ok(())
}

/// Called in the transaction that records references to `digests`, before it commits: waits
/// for a collection in progress to finish, then confirms each blob is still stored. Until
/// the transaction ends no collection can delete them, and once it commits they are named.
///
/// # Errors
/// [`ConfirmError::Collected`] when a blob is gone; database and storage failures.
pub async fn confirm_stored(
    tx: &mut AnyConnection,
    engine: Engine,
    blobs: &dyn BlobStore,
    digests: impl IntoIterator<Item = &BlobDigest>,
) -> Result<(), ConfirmError> {
    take_turn(tx, engine, Turn::Writer).await?;
    for digest in digests {
        if blobs.size_of(digest).await?.is_none() {
            return Err(ConfirmError::Collected(*digest));
        }
    }
    Ok(())
}

/// What a collection found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CollectionReport {
    /// Blobs in storage.
    pub examined: u64,
    /// Kept because something names them.
    pub referenced: u64,
    /// Kept because they are younger than the minimum age.
    pub young: u64,
    /// Deleted (or, in a dry run, that would have been).
    pub collected: u64,
    /// Their total size in bytes.
    pub collected_bytes: u64,
}

/// Deletes every stored blob that nothing names and that was written at least `min_age`
/// ago; with `dry_run`, only counts them. Safe to run beside serving replicas (see the
/// [module](self)); runs that overlap each other only repeat work.
///
/// # Errors
/// Database and storage failures; what was deleted before one stays deleted, and a later run
/// carries on.
pub async fn collect_unreferenced(
    db: &Database,
    blobs: &dyn BlobStore,
    min_age: Duration,
    dry_run: bool,
) -> anyhow::Result<CollectionReport> {
    let cutoff = SystemTime::now()
        .checked_sub(min_age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    // Read before listing: a reference recorded later is found when a candidate is
    // re-checked on the fence.
    let mut referenced = referenced_blobs(db).await?;
    if !signature_chains_recorded(db).await? {
        referenced.extend(record_signature_chains(db, dry_run).await?);
    }
    let mut report = CollectionReport::default();
    let mut after: Option<BlobDigest> = None;
    loop {
        let page = blobs
            .list(after.as_ref(), LIST_PAGE)
            .await
            .context("listing stored blobs")?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.digest);
        report.examined += page.len() as u64;
        let mut candidates = Vec::new();
        for blob in page {
            if referenced.contains(&blob.digest) {
                report.referenced += 1;
            } else if blob.modified > cutoff {
                report.young += 1;
            } else {
                candidates.push(blob);
            }
        }
        for batch in candidates.chunks(BATCH) {
            collect_batch(db, blobs, batch, dry_run, &mut report).await?;
        }
    }
    Ok(report)
}

/// One turn on the fence: re-checks `batch` against references recorded since the walk
/// began, and deletes what is still unnamed.
async fn collect_batch(
    db: &Database,
    blobs: &dyn BlobStore,
    batch: &[ListedBlob],
    dry_run: bool,
    report: &mut CollectionReport,
) -> anyhow::Result<()> {
    let mut tx = db.pool.begin().await?;
    take_turn(&mut tx, db.engine, Turn::Collection).await?;
    let hex: Vec<String> = batch.iter().map(|blob| blob.digest.to_hex()).collect();
    let named = named_among(&mut tx, &hex).await?;
    for blob in batch {
        if named.contains(&blob.digest.to_hex()) {
            report.referenced += 1;
            continue;
        }
        if !dry_run {
            blobs
                .delete(&blob.digest)
                .await
                .with_context(|| format!("deleting unreferenced blob {}", blob.digest))?;
            tracing::info!(digest = %blob.digest, size = blob.size, "collected an unreferenced blob");
        }
        report.collected += 1;
        report.collected_bytes += blob.size;
    }
    tx.commit().await?;
    Ok(())
}

/// Which of `hex` (bare hex digests) a row names now.
async fn named_among(
    tx: &mut AnyConnection,
    hex: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    crate::db::strings_among(
        tx,
        "SELECT package_digest FROM plugin_versions WHERE package_digest IN ({list}) \
         UNION SELECT patch_digest FROM deltas WHERE patch_digest IN ({list}) \
         UNION SELECT digest FROM chain_blobs WHERE digest IN ({list})",
        hex,
    )
    .await
}

/// Every blob a row names, read as one pass over the tables.
async fn referenced_blobs(db: &Database) -> anyhow::Result<HashSet<BlobDigest>> {
    let mut referenced = HashSet::new();
    let mut named = sqlx::query_scalar::<_, String>(
        "SELECT package_digest FROM plugin_versions \
         UNION SELECT patch_digest FROM deltas WHERE patch_digest IS NOT NULL \
         UNION SELECT digest FROM chain_blobs",
    )
    .fetch(&db.pool);
    while let Some(hex) = named.try_next().await? {
        referenced.insert(
            hex.parse()
                .with_context(|| format!("a stored blob reference `{hex}`"))?,
        );
    }
    Ok(referenced)
}

async fn signature_chains_recorded(db: &Database) -> Result<bool, sqlx::Error> {
    let recorded: i64 =
        sqlx::query_scalar("SELECT signature_chains_recorded FROM blob_fence WHERE id = 1")
            .fetch_one(&db.pool)
            .await?;
    Ok(recorded != 0)
}

/// The chain in every version's signature, as the signer stores it: what metadata signed
/// before `chain_blobs` existed names. Unless `dry_run`, they are recorded in `chain_blobs`
/// and the walk is not made again. Recording a chain that is not stored (its version was
/// never signed) is harmless: a name only keeps a blob, and the signer stores the chain when
/// it first signs it.
///
/// Reading every signature costs a few kilobytes per version; once is enough, because the
/// signer records every chain it names since `chain_blobs` was kept. A replica of an older
/// release still signing during a rolling upgrade does not record its chains, but those are
/// stored fresh, within the minimum age, unless the upgrade takes longer than it.
async fn record_signature_chains(
    db: &Database,
    dry_run: bool,
) -> anyhow::Result<HashSet<BlobDigest>> {
    let mut chains = HashSet::new();
    let mut signatures =
        sqlx::query("SELECT id, signature FROM plugin_versions WHERE signature <> ''")
            .fetch(&db.pool);
    while let Some(row) = signatures.try_next().await? {
        let (id, signature): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        // A name that cannot be read could be a blob's only one: stop rather than guess.
        let envelope = SignatureEnvelope::from_json(signature.as_bytes())
            .with_context(|| format!("version {id} has a signature that does not parse"))?;
        chains.insert(BlobDigest::of(
            chain_pem(&envelope.certificate_chain).as_bytes(),
        ));
    }
    drop(signatures);
    if dry_run {
        return Ok(chains);
    }
    let mut tx = db.pool.begin().await?;
    for digest in &chains {
        sqlx::query("INSERT INTO chain_blobs (digest) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(digest.to_hex())
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("UPDATE blob_fence SET signature_chains_recorded = 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(
        chains = chains.len(),
        "recorded the certificate chains named by signatures; later collections skip them"
    );
    Ok(chains)
}
