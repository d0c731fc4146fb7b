//! The signed release metadata (TUF) that hosts verify every update against.
//!
//! The producer is `plugstore_tuf::repository`; this module feeds it from the database and
//! keeps its state there, so any replica can sign and every replica can serve:
//!
//! - `tuf_pending` (filled by triggers on versions, patches, plugin blocks and certificate
//!   revocations) says which plugins changed. The job signs their bins, then a snapshot and a
//!   timestamp, stores the files, moves the current pointers and deletes the pending rows it
//!   handled, all in one transaction.
//! - One replica signs at a time, holding a lease row in `tuf_repository`.
//! - Between changes the job re-signs what nears expiry: the timestamp every few hours, the
//!   snapshot daily, bins and targets a month ahead (`plugstore_tuf::repository`).
//!
//! A version's state in the metadata is its effective state for hosts: blocked when the
//! version or its plugin is blocked or its signing certificate is revoked, so hosts learn of
//! every revocation from signed data. Targets carry the developer's signature; the certificate
//! chain is a content-addressed blob (PEM, leaf first) that the target references by hash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::num::NonZeroU64;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use plugstore_format::certs::CertFingerprint;
use plugstore_format::signing::SignatureEnvelope;
use plugstore_tuf::custom::{
    ChainReference, DeveloperSignature, PackageTarget, PatchTarget, PluginTarget, TargetDetail,
    VersionState,
};
use plugstore_tuf::digest::Sha256;
use plugstore_tuf::error::RoleName;
use plugstore_tuf::keys::KeyId;
use plugstore_tuf::keys_dir::{KeysDir, StoreKeys};
use plugstore_tuf::layout::{BinName, Shard, TargetPath};
use plugstore_tuf::repository::{
    MetadataFile, RepositoryState, RoleRecord, SignedFile, TargetEntry,
};
use plugstore_tuf::root::VerifiedRoot;
use plugstore_tuf::time::UnixTime;
use sqlx::{AnyConnection, Row as _};

use crate::app::AppState;
use crate::blobs::BlobDigest;
use crate::db;
use crate::releases::{self, PluginKeys, PluginReleases, ReleaseState, Signatures};

/// How long a replica holds the signing lease without renewing it.
const LEASE_SECS: i64 = 60;

/// How long change-feed rows are kept: far longer than any replica lags.
const FEED_RETENTION_SECS: i64 = 24 * 60 * 60;

/// How long superseded metadata files are kept: far longer than a client takes to update
/// or a cache keeps `timestamp.json`.
const METADATA_RETENTION_SECS: i64 = 24 * 60 * 60;

/// Pending changes signed per round (one snapshot and timestamp per round).
const PENDING_PER_ROUND: i64 = 1000;

/// The keys directory a store uses, created for a one-command store when it is the default
/// one and still empty. A `bins.next.pk8` left by `keys rotate --role bins` is what the bins
/// are signed with from now on: [`ensure_repository`] moves every bin to it, then makes it
/// `bins.pk8`.
///
/// # Errors
/// A keys directory that cannot be read or created; the message says which file and why.
pub fn load_keys(keys_dir: &Path, default_dir: bool) -> anyhow::Result<ReleaseKeys> {
    if default_dir && !keys_dir.join("root").exists() {
        KeysDir::create_embedded(keys_dir, UnixTime::now()).with_context(|| {
            format!(
                "creating the TUF keys in {} (tuf.keys_dir)",
                keys_dir.display()
            )
        })?;
        tracing::warn!(
            dir = %keys_dir.display(),
            "created TUF keys for a one-command store; the root key is kept beside the online keys. \
             For production, generate keys with `plugstore-server keys generate` and keep root keys offline"
        );
    }
    let context = || {
        format!(
            "loading the TUF keys from {} (tuf.keys_dir)",
            keys_dir.display()
        )
    };
    let mut keys = KeysDir::open(keys_dir)
        .and_then(|dir| dir.load())
        .with_context(context)?;
    let promote_next_bins = match keys.next_bins.take() {
        Some(next) => {
            keys.online.bins = next;
            true
        }
        None => false,
    };
    Ok(ReleaseKeys {
        keys,
        dir: keys_dir.to_owned(),
        promote_next_bins,
    })
}

/// What the store signs release metadata with.
#[derive(Debug)]
pub struct ReleaseKeys {
    /// The root chain and the online keys (a pending bins key already in place).
    pub keys: StoreKeys,
    /// The keys directory they came from.
    pub dir: std::path::PathBuf,
    /// The bins key came from `bins.next.pk8`: make it `bins.pk8` once the bins are re-signed.
    pub promote_next_bins: bool,
}

/// Creates the repository on first start, and on later starts takes in a newer root from the
/// keys directory and re-signs what a key change requires.
///
/// # Errors
/// Database, blob-store or signing failures.
pub async fn ensure_repository(app: &AppState) -> anyhow::Result<()> {
    let keys = &app.release_keys.keys;
    let now = UnixTime::now();
    let Some(mut state) = load_state(app).await? else {
        let (state, files) = RepositoryState::create(keys.current_root.clone(), &keys.online, now)
            .context("signing the first release metadata")?;
        let mut tx = app.db.pool.begin().await?;
        for (index, root) in keys.roots.iter().enumerate() {
            let root = VerifiedRoot::from_pinned(root)
                .with_context(|| format!("root file {} in the keys directory", index + 1))?;
            insert_root(&mut tx, &root).await?;
        }
        store_files(&mut tx, &state, &files).await?;
        for bin in BinName::all() {
            let record = state.bins[&bin];
            sqlx::query("INSERT INTO tuf_bins (bin, file_name) VALUES ($1, $2)")
                .bind(bin_key(bin))
                .bind(RoleName::Bin(bin).file_name(record.version.get()))
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO tuf_repository (id, root_file, targets_file, snapshot_file, timestamp_file, bins_key) \
             VALUES (1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(state.root.file_name())
        .bind(RoleName::Targets.file_name(state.targets.record.version.get()))
        .bind(RoleName::Snapshot.file_name(state.snapshot.record.version.get()))
        .bind(timestamp_name(state.timestamp.record.version))
        .bind(state.bins_key.to_string())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // Another replica created it first; its metadata stands.
            return Ok(());
        }
        // A store that had plugins before it signed metadata lists them all now.
        sqlx::query("INSERT INTO tuf_pending (plugin_id) SELECT id FROM plugins")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        app.latest_timestamp.forget();
        tracing::info!(
            root = state.root.version(),
            "created the signed release metadata"
        );
        return promote_next_bins(app);
    };

    let mut files = Vec::new();
    let newer_roots: Vec<&Vec<u8>> = keys
        .roots
        .iter()
        .skip(usize::try_from(state.root.version())?)
        .collect();
    for root in &newer_roots {
        files.push(state.install_root(root).context("taking in a newer root")?);
    }
    if state.bins_key != keys.online.bins.id() {
        let all_bins = all_bin_entries(app).await?;
        files.extend(
            state
                .rotate_bins_key(&keys.online, &all_bins, now)
                .context("moving the bins to the new bins key")?,
        );
    } else if !newer_roots.is_empty() {
        files.extend(
            state
                .resign_targets(&keys.online, now)
                .context("re-signing after a root change")?,
        );
    }
    if files.is_empty() {
        return promote_next_bins(app);
    }
    let mut tx = app.db.pool.begin().await?;
    for root in &newer_roots {
        insert_root(&mut tx, &VerifiedRoot::from_pinned(root)?).await?;
    }
    let files: Vec<MetadataFile> = files
        .into_iter()
        .filter(|file| file.role != RoleName::Root)
        .collect();
    commit_round(&mut tx, &state, &files).await?;
    tx.commit().await?;
    app.latest_timestamp.forget();
    tracing::info!(
        root = state.root.version(),
        "took in new TUF keys and re-signed the metadata"
    );
    promote_next_bins(app)
}

/// Once every bin is signed with `bins.next.pk8`, it becomes `bins.pk8` (the old key is kept
/// beside it), so the next start loads it as the current key.
fn promote_next_bins(app: &AppState) -> anyhow::Result<()> {
    if app.release_keys.promote_next_bins {
        KeysDir::open(&app.release_keys.dir)
            .and_then(|dir| dir.promote_next_bins_key(UnixTime::now()))
            .context("making bins.next.pk8 the bins key")?;
    }
    Ok(())
}

/// Runs the signing job until the process ends. It first creates the repository (or takes in
/// new keys), in the background: signing the first 4096 bins takes a moment, and the store
/// serves everything else meanwhile (`/tuf/` answers 404 until then).
pub fn spawn(app: &AppState) {
    if !app.settings.tuf.enabled {
        return;
    }
    let app = app.clone();
    let owner = format!("replica-{}", crate::secrets::random_token(8));
    tokio::spawn(async move {
        let interval = Duration::from_secs(app.settings.tuf.interval_secs.max(1));
        while let Err(error) = ensure_repository(&app).await {
            tracing::error!(
                error = format!("{error:#}"),
                "preparing the signed release metadata failed; retrying"
            );
            tokio::time::sleep(interval * 5).await;
        }
        loop {
            match run_once(&app, &owner).await {
                Ok(0) => tokio::time::sleep(interval).await,
                Ok(signed) => tracing::debug!(plugins = signed, "signed release metadata"),
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "signing release metadata failed; retrying"
                    );
                    tokio::time::sleep(interval).await;
                }
            }
        }
    });
}

/// One round: signs the pending changes (or re-signs what nears expiry) when this replica
/// holds the lease. Returns how many plugins it signed.
///
/// # Errors
/// Database, blob-store or signing failures; nothing is half-stored.
pub async fn run_once(app: &AppState, owner: &str) -> anyhow::Result<usize> {
    let now_db = db::now();
    let leased = sqlx::query(
        "UPDATE tuf_repository SET lease_owner = $1, lease_expires_at = $2 \
         WHERE id = 1 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_expires_at < $3)",
    )
    .bind(owner)
    .bind(now_db + LEASE_SECS)
    .bind(now_db)
    .execute(&app.db.pool)
    .await?;
    if leased.rows_affected() == 0 {
        return Ok(0);
    }
    let Some(mut state) = load_state(app).await? else {
        return Ok(0);
    };
    prune_hourly(app, now_db).await?;
    let keys = &app.release_keys.keys.online;
    let now = UnixTime::now();
    let pending: Vec<(i64, i64)> =
        sqlx::query_as("SELECT seq, plugin_id FROM tuf_pending ORDER BY seq LIMIT $1")
            .bind(PENDING_PER_ROUND)
            .fetch_all(&app.db.pool)
            .await?;
    let plan = state.due_for_refresh(now);
    let mut changed_bins: BTreeSet<BinName> = plan.bins.iter().copied().collect();
    // Each plugin once, however many of its changes are pending.
    let changed_plugins: Vec<i64> = pending
        .iter()
        .map(|(_, plugin)| *plugin)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut round = RoundCache::default();
    for plugin in releases::load_many(
        &app.db.pool,
        PluginKeys::DbIds(&changed_plugins),
        Signatures::Load,
    )
    .await?
    {
        let bin = Shard::of(&plugin.id).bin();
        sqlx::query(
            "INSERT INTO tuf_bin_members (bin, plugin_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(bin_key(bin))
        .bind(plugin.plugin_db_id)
        .execute(&app.db.pool)
        .await?;
        changed_bins.insert(bin);
        round.plugins.insert(plugin.plugin_db_id, plugin);
    }

    let mut files = Vec::new();
    if !changed_bins.is_empty() {
        let bins: Vec<BinName> = changed_bins.iter().copied().collect();
        let contents = bins_entries(app, &bins, &mut round).await?;
        files.extend(state.update_bins(keys, &contents, now)?);
    }
    if plan.targets {
        files.extend(state.resign_targets(keys, now)?);
    } else if plan.snapshot && files.is_empty() {
        files.extend(state.resign_snapshot(keys, now)?);
    } else if plan.timestamp && files.is_empty() {
        files.push(state.refresh_timestamp(keys, now)?);
    }
    if files.is_empty() {
        return Ok(0);
    }
    let mut tx = app.db.pool.begin().await?;
    record_chains(&mut tx, app, &round.chains).await?;
    commit_round(&mut tx, &state, &files).await?;
    for chunk in pending.chunks(500) {
        let seqs: Vec<String> = chunk.iter().map(|(seq, _)| seq.to_string()).collect();
        // Exact sequence numbers, not a range: a change that commits late with a lower number
        // must stay pending until a round has read it.
        sqlx::query(&format!(
            "DELETE FROM tuf_pending WHERE seq IN ({})",
            seqs.join(",")
        ))
        .execute(&mut *tx)
        .await?;
    }
    // Update checks offer these plugins again, naming the snapshot hosts need to confirm them
    // (a trigger tells every replica's catalogue). A plugin changed since it was read above
    // still has a pending row, and stays unoffered until a round signs that change too.
    for chunk in changed_plugins.chunks(500) {
        sqlx::query(&format!(
            "UPDATE plugins SET signed_snapshot = $1 WHERE id IN ({})",
            releases::join_numbers(chunk)
        ))
        .persistent(false)
        .bind(i64::try_from(state.snapshot.record.version.get())?)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    app.latest_timestamp.forget();
    app.catalogue.wake();
    Ok(changed_plugins.len().max(1))
}

/// Hourly housekeeping: feed rows every replica has long read, and metadata files no client
/// can still need.
async fn prune_hourly(app: &AppState, now: i64) -> anyhow::Result<()> {
    static LAST_PRUNE: AtomicI64 = AtomicI64::new(0);
    if now - LAST_PRUNE.load(Ordering::Relaxed) < 3600 {
        return Ok(());
    }
    LAST_PRUNE.store(now, Ordering::Relaxed);
    sqlx::query("DELETE FROM catalogue_changes WHERE created_at < $1")
        .bind(now - FEED_RETENTION_SECS)
        .execute(&app.db.pool)
        .await?;
    let pruned = prune_metadata(app, now - METADATA_RETENTION_SECS).await?;
    if pruned > 0 {
        tracing::info!(files = pruned, "pruned superseded release metadata");
    }
    Ok(())
}

/// Deletes the metadata files written before `cutoff` that the current metadata no longer
/// names: superseded bins, targets, snapshots and timestamps. A client always starts from the
/// newest `timestamp.json` and follows the versions it names, so an older file is only read by
/// a client that was mid-update (or a cache) when it was superseded; the retention covers
/// them. Roots are kept forever: a host pinned to root 1 walks every root to the current one.
///
/// # Errors
/// Database failures.
pub async fn prune_metadata(app: &AppState, cutoff: i64) -> anyhow::Result<u64> {
    let pruned = sqlx::query(
        "DELETE FROM tuf_files WHERE role <> 'root' AND created_at < $1          AND name NOT IN (SELECT file_name FROM tuf_bins)          AND name NOT IN (SELECT targets_file FROM tuf_repository)          AND name NOT IN (SELECT snapshot_file FROM tuf_repository)          AND name NOT IN (SELECT timestamp_file FROM tuf_repository)",
    )
    .bind(cutoff)
    .execute(&app.db.pool)
    .await?;
    Ok(pruned.rows_affected())
}

/// What one signing round has read or stored, so a plugin is loaded once and a certificate
/// chain shared by many versions is checked in the blob store once, not per version and bin.
#[derive(Default)]
struct RoundCache {
    plugins: HashMap<i64, PluginReleases>,
    chains: HashMap<BlobDigest, ChainReference>,
}

/// The whole content of each of `bins`: every target of every plugin in them. The members of
/// all the bins are read and loaded together, so a round that re-signs many bins (a key change
/// re-signs all 4096) costs a few queries per 500 plugins rather than four per bin.
async fn bins_entries(
    app: &AppState,
    bins: &[BinName],
    round: &mut RoundCache,
) -> anyhow::Result<BTreeMap<BinName, Vec<TargetEntry>>> {
    let mut members: BTreeMap<BinName, Vec<i64>> =
        bins.iter().map(|bin| (*bin, Vec::new())).collect();
    for chunk in bins.chunks(500) {
        let by_key: HashMap<i64, BinName> = chunk.iter().map(|bin| (bin_key(*bin), *bin)).collect();
        let keys: Vec<i64> = by_key.keys().copied().collect();
        let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT bin, plugin_id FROM tuf_bin_members WHERE bin IN ({}) ORDER BY bin, plugin_id",
            releases::join_numbers(&keys)
        ))
        .persistent(false)
        .fetch_all(&app.db.pool)
        .await?;
        for (key, plugin) in rows {
            if let Some(listed) = by_key.get(&key).and_then(|bin| members.get_mut(bin)) {
                listed.push(plugin);
            }
        }
    }
    let not_loaded: Vec<i64> = members
        .values()
        .flatten()
        .copied()
        .filter(|member| !round.plugins.contains_key(member))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for plugin in releases::load_many(
        &app.db.pool,
        PluginKeys::DbIds(&not_loaded),
        Signatures::Load,
    )
    .await?
    {
        round.plugins.insert(plugin.plugin_db_id, plugin);
    }
    let mut contents = BTreeMap::new();
    for (bin, plugin_ids) in members {
        let mut entries = Vec::new();
        for plugin_db_id in plugin_ids {
            if let Some(plugin) = round.plugins.get(&plugin_db_id) {
                entries.extend(plugin_entries(app, plugin, &mut round.chains).await?);
            }
        }
        contents.insert(bin, entries);
    }
    Ok(contents)
}

/// Every bin's content, for moving the bins to a new key.
async fn all_bin_entries(app: &AppState) -> anyhow::Result<BTreeMap<BinName, Vec<TargetEntry>>> {
    let all: Vec<BinName> = BinName::all().collect();
    bins_entries(app, &all, &mut RoundCache::default()).await
}

/// The targets of one plugin: each release's package, and the patches to published ones.
async fn plugin_entries(
    app: &AppState,
    plugin: &PluginReleases,
    chains: &mut HashMap<BlobDigest, ChainReference>,
) -> anyhow::Result<Vec<TargetEntry>> {
    let mut entries = Vec::new();
    for release in &plugin.releases {
        match release_entries(app, plugin, release, chains).await {
            Ok(release_entries) => entries.extend(release_entries),
            // A stored row that no longer parses is a bug; the plugin's other versions are
            // still signed rather than none, and the round is not stuck on it.
            Err(error) => tracing::error!(
                plugin = %plugin.id,
                version = %release.version,
                error = format!("{error:#}"),
                "leaving a version out of the signed metadata"
            ),
        }
    }
    Ok(entries)
}

/// A release's package target and the patch targets to it.
async fn release_entries(
    app: &AppState,
    plugin: &PluginReleases,
    release: &crate::releases::Release,
    chains: &mut HashMap<BlobDigest, ChainReference>,
) -> anyhow::Result<Vec<TargetEntry>> {
    let mut entries = Vec::new();
    let state = match release.state {
        ReleaseState::Published => VersionState::Published,
        ReleaseState::Yanked => VersionState::Yanked,
        ReleaseState::Revoked { .. } => VersionState::Blocked,
    };
    let envelope =
        SignatureEnvelope::from_json(release.envelope_json.as_bytes()).with_context(|| {
            format!(
                "the stored signature of {}@{} does not parse",
                plugin.id, release.version
            )
        })?;
    let chain = store_chain(app, &envelope.certificate_chain, chains).await?;
    let leaf_sha256: CertFingerprint = release.signer_fingerprint.parse().map_err(|_| {
        anyhow::anyhow!(
            "the stored signer fingerprint of {}@{} does not parse",
            plugin.id,
            release.version
        )
    })?;
    let manifest = &release.manifest;
    let package = PackageTarget {
        state,
        plugin_kind: manifest.kind(),
        platforms: manifest.targets().to_vec(),
        host: manifest.host_compatibility().clone(),
        capabilities: manifest.capabilities().to_vec(),
        developer: DeveloperSignature {
            algorithm: envelope.algorithm,
            signature: envelope.signature,
            leaf_sha256,
            chain,
        },
        published_at: UnixTime::from_seconds(release.accepted_at),
    };
    entries.push(TargetEntry {
        path: TargetPath::package(plugin.id.clone(), release.version.clone()),
        length: release.size,
        sha256: Sha256::from_bytes(*release.digest.as_bytes()),
        custom: PluginTarget {
            plugin: plugin.id.clone(),
            version: release.version.clone(),
            detail: TargetDetail::Package(package),
        },
    });
    for patch in &release.patches {
        entries.push(TargetEntry {
            path: TargetPath::patch(plugin.id.clone(), release.version.clone(), patch.from),
            length: patch.size,
            sha256: Sha256::from_bytes(*patch.digest.as_bytes()),
            custom: PluginTarget {
                plugin: plugin.id.clone(),
                version: release.version.clone(),
                detail: TargetDetail::Patch(PatchTarget {
                    from: patch.from,
                    to: release.digest,
                    format: plugstore_format::delta::FORMAT_ID.to_owned(),
                }),
            },
        });
    }
    Ok(entries)
}

/// Stores a certificate chain as a PEM blob (leaf first) and returns its reference. Every
/// version signed with one certificate shares the blob; `stored` holds the chains this round
/// already made sure of.
async fn store_chain(
    app: &AppState,
    chain: &[Vec<u8>],
    stored: &mut HashMap<BlobDigest, ChainReference>,
) -> anyhow::Result<ChainReference> {
    let pem = chain_pem(chain);
    let digest = BlobDigest::of(pem.as_bytes());
    if let Some(reference) = stored.get(&digest) {
        return Ok(*reference);
    }
    if app.blobs.size_of(&digest).await?.is_none() {
        app.blobs
            .put(&mut pem.as_bytes(), Some(&digest), None)
            .await
            .context("storing a certificate chain blob")?;
    }
    let reference = ChainReference {
        sha256: Sha256::from_bytes(*digest.as_bytes()),
        length: pem.len() as u64,
    };
    stored.insert(digest, reference);
    Ok(reference)
}

/// Records the certificate chain blobs a round's metadata names (`chain_blobs`), so that the
/// collector of unreferenced blobs keeps them, after confirming on its fence that they are
/// still stored (`blob_gc`).
async fn record_chains(
    tx: &mut AnyConnection,
    app: &AppState,
    chains: &HashMap<BlobDigest, ChainReference>,
) -> anyhow::Result<()> {
    let digests: Vec<BlobDigest> = chains.keys().copied().collect();
    let mut unrecorded = Vec::new();
    for chunk in digests.chunks(500) {
        let hex: Vec<String> = chunk.iter().map(BlobDigest::to_hex).collect();
        // Recorded chains are never collected, so they need no second look.
        let recorded = crate::db::strings_among(
            &mut *tx,
            "SELECT digest FROM chain_blobs WHERE digest IN ({list})",
            &hex,
        )
        .await?;
        unrecorded.extend(
            chunk
                .iter()
                .zip(&hex)
                .filter(|(_, hex)| !recorded.contains(*hex))
                .map(|(digest, _)| *digest),
        );
    }
    if unrecorded.is_empty() {
        return Ok(());
    }
    crate::blob_gc::confirm_stored(tx, app.db.engine, app.blobs.as_ref(), &unrecorded).await?;
    for digest in &unrecorded {
        sqlx::query("INSERT INTO chain_blobs (digest) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(digest.to_hex())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// PEM text of DER certificates, 64 characters a line as RFC 7468 asks.
pub fn chain_pem(chain: &[Vec<u8>]) -> String {
    let mut pem = String::new();
    for der in chain {
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in text.as_bytes().chunks(64) {
            // Base64 output is ASCII.
            let _ = writeln!(pem, "{}", String::from_utf8_lossy(line));
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

fn bin_key(bin: BinName) -> i64 {
    bin.index() as i64
}

/// Timestamps are kept under versioned names; only the newest is served, as `timestamp.json`.
fn timestamp_name(version: NonZeroU64) -> String {
    format!("{version}.timestamp.json")
}

fn stored_name(file: &MetadataFile, state: &RepositoryState) -> String {
    match file.role {
        RoleName::Timestamp => timestamp_name(state.timestamp.record.version),
        _ => file.name.clone(),
    }
}

fn record_of(role: RoleName, state: &RepositoryState) -> Option<RoleRecord> {
    match role {
        RoleName::Root => None,
        RoleName::Timestamp => Some(state.timestamp.record),
        RoleName::Snapshot => Some(state.snapshot.record),
        RoleName::Targets => Some(state.targets.record),
        RoleName::Bin(bin) => state.bins.get(&bin).copied(),
    }
}

async fn insert_root(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    root: &VerifiedRoot,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO tuf_files (name, role, version, length, sha256, expires_at, bytes, created_at) \
         VALUES ($1, 'root', $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
    )
    .bind(root.file_name())
    .bind(i64::try_from(root.version())?)
    .bind(root.bytes().len() as i64)
    .bind(Sha256::of(root.bytes()).to_hex())
    .bind(root.expires().as_seconds())
    .bind(root.bytes().to_vec())
    .bind(db::now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores the signed files of a round (not roots) under their names.
async fn store_files(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    state: &RepositoryState,
    files: &[MetadataFile],
) -> anyhow::Result<()> {
    for file in files {
        let record = record_of(file.role, state)
            .with_context(|| format!("no record for the signed file {}", file.name))?;
        sqlx::query(
            "INSERT INTO tuf_files (name, role, version, length, sha256, expires_at, bytes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(stored_name(file, state))
        .bind(file.role.to_string())
        .bind(i64::try_from(record.version.get())?)
        .bind(i64::try_from(record.length)?)
        .bind(record.sha256.to_hex())
        .bind(record.expires.as_seconds())
        .bind(file.bytes.clone())
        .bind(db::now())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Stores a round's files and moves the current pointers to them.
async fn commit_round(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    state: &RepositoryState,
    files: &[MetadataFile],
) -> anyhow::Result<()> {
    store_files(tx, state, files).await?;
    for file in files {
        if let RoleName::Bin(bin) = file.role {
            sqlx::query("UPDATE tuf_bins SET file_name = $1 WHERE bin = $2")
                .bind(&file.name)
                .bind(bin_key(bin))
                .execute(&mut **tx)
                .await?;
        }
    }
    sqlx::query(
        "UPDATE tuf_repository SET root_file = $1, targets_file = $2, snapshot_file = $3, timestamp_file = $4, bins_key = $5 WHERE id = 1",
    )
    .bind(state.root.file_name())
    .bind(RoleName::Targets.file_name(state.targets.record.version.get()))
    .bind(RoleName::Snapshot.file_name(state.snapshot.record.version.get()))
    .bind(timestamp_name(state.timestamp.record.version))
    .bind(state.bins_key.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The repository's state as stored, or `None` before its first start.
async fn load_state(app: &AppState) -> anyhow::Result<Option<RepositoryState>> {
    let Some(row) = sqlx::query(
        "SELECT root_file, targets_file, snapshot_file, timestamp_file, bins_key FROM tuf_repository WHERE id = 1",
    )
    .fetch_optional(&app.db.pool)
    .await?
    else {
        return Ok(None);
    };
    let root = stored_file(app, &row.try_get::<String, _>(0)?).await?;
    let root = VerifiedRoot::from_pinned(&root.bytes).context("the stored root")?;
    let targets = stored_file(app, &row.try_get::<String, _>(1)?).await?;
    let snapshot = stored_file(app, &row.try_get::<String, _>(2)?).await?;
    let timestamp = stored_file(app, &row.try_get::<String, _>(3)?).await?;
    let bins_key: KeyId = row.try_get::<String, _>(4)?.parse()?;
    let rows = sqlx::query(
        "SELECT b.bin, f.version, f.length, f.sha256, f.expires_at FROM tuf_bins b JOIN tuf_files f ON f.name = b.file_name",
    )
    .fetch_all(&app.db.pool)
    .await?;
    let mut bins = BTreeMap::new();
    for row in rows {
        let bin = usize::try_from(row.try_get::<i64, _>(0)?)?;
        let bin = BinName::from_index(bin).context("a stored bin number is out of range")?;
        bins.insert(
            bin,
            record(
                row.try_get(1)?,
                row.try_get(2)?,
                &row.try_get::<String, _>(3)?,
                row.try_get(4)?,
            )?,
        );
    }
    Ok(Some(RepositoryState {
        root,
        bins_key,
        targets,
        bins,
        snapshot,
        timestamp,
    }))
}

fn record(version: i64, length: i64, sha256: &str, expires: i64) -> anyhow::Result<RoleRecord> {
    Ok(RoleRecord {
        version: NonZeroU64::new(u64::try_from(version)?).context("a stored version is 0")?,
        length: u64::try_from(length)?,
        sha256: sha256.parse()?,
        expires: UnixTime::from_seconds(expires),
    })
}

async fn stored_file(app: &AppState, name: &str) -> anyhow::Result<SignedFile> {
    let row = sqlx::query(
        "SELECT version, length, sha256, expires_at, bytes FROM tuf_files WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&app.db.pool)
    .await?
    .with_context(|| format!("the stored metadata file {name} is missing"))?;
    Ok(SignedFile {
        record: record(
            row.try_get(0)?,
            row.try_get(1)?,
            &row.try_get::<String, _>(2)?,
            row.try_get(3)?,
        )?,
        bytes: row.try_get(4)?,
    })
}

/// A file to serve under `/tuf/`: the newest timestamp for `timestamp.json`, otherwise the
/// immutable file of that name. `None` when there is none.
///
/// # Errors
/// Database failures.
pub async fn served_file(app: &AppState, name: &str) -> anyhow::Result<Option<ServedFile>> {
    let is_timestamp = name == "timestamp.json";
    if is_timestamp && let Some(kept) = app.latest_timestamp.get() {
        return Ok(Some(kept));
    }
    let row = if is_timestamp {
        sqlx::query(
            "SELECT f.sha256, f.bytes FROM tuf_repository r JOIN tuf_files f ON f.name = r.timestamp_file WHERE r.id = 1",
        )
        .fetch_optional(&app.db.pool)
        .await?
    } else {
        sqlx::query("SELECT sha256, bytes FROM tuf_files WHERE name = $1 AND role <> 'timestamp'")
            .bind(name)
            .fetch_optional(&app.db.pool)
            .await?
    };
    let Some(row) = row else { return Ok(None) };
    let served = ServedFile {
        sha256: row.try_get(0)?,
        bytes: Bytes::from(row.try_get::<Vec<u8>, _>(1)?),
    };
    if is_timestamp {
        app.latest_timestamp.keep(&served);
    }
    Ok(Some(served))
}

/// A metadata file and its hash (the ETag).
#[derive(Debug, Clone)]
pub struct ServedFile {
    /// Bare-hex SHA-256.
    pub sha256: String,
    /// The bytes.
    pub bytes: Bytes,
}

/// How long a replica answers `timestamp.json` from memory before reading the database again.
pub const TIMESTAMP_MEMORY: Duration = Duration::from_secs(1);

/// The newest `timestamp.json`, kept for [`TIMESTAMP_MEMORY`]. Every host fetches it on every
/// update check, so without a CDN in front (which keeps it 30 s) each fetch would be a
/// database read. A replica that signs a new timestamp forgets its copy at once; the others
/// serve the new one at most [`TIMESTAMP_MEMORY`] later.
#[derive(Debug, Default)]
pub struct LatestTimestamp(Mutex<Option<(Instant, ServedFile)>>);

impl LatestTimestamp {
    fn get(&self) -> Option<ServedFile> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.as_ref()
            .filter(|(read_at, _)| read_at.elapsed() < TIMESTAMP_MEMORY)
            .map(|(_, file)| file.clone())
    }

    fn keep(&self, file: &ServedFile) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), file.clone()));
    }

    /// Drops the copy, after this replica committed a new timestamp.
    pub fn forget(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
