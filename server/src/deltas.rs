//! Delta patches between versions of a plugin, made in the background.
//!
//! For each published version, the store makes a patch from each of the last
//! [`DeltaSettings::bases`] versions a host may have installed (published or yanked, older by
//! semver) to it, in the `bsdiff4z` format ([`plugstore_format::delta`]; the choice and its
//! measurements are in docs/src/adr/0003-binary-deltas.md). A patch is stored as a blob, by
//! its SHA-256 like packages, and recorded in `deltas`; a pair whose patch is not worth it
//! (larger than half the new package, or inputs above the size limit) is recorded as
//! `skipped`, so it is not tried again.
//!
//! The job is idempotent: a pair is recorded once (a unique key), blobs are content-addressed,
//! and a version is marked done only after all its pairs are recorded. Two replicas may make
//! the same patch at the same time; one insert wins and the other's blob is the same blob.
//! One patch at a time per replica bounds memory to about 7 × the larger input + 100 MiB.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use plugstore_format::delta::make_patch;

use crate::app::AppState;
use crate::blobs::{BlobDigest, BlobError};
use crate::config::DeltaSettings;

/// A patch is kept only when it is at most this fraction of the new package: below it, the
/// download saved is worth a second request and the host's patching work.
const MAX_PATCH_FRACTION: f64 = 0.5;

/// A published version that needs patches.
#[derive(Debug)]
struct Target {
    version_id: i64,
    digest: String,
    size: u64,
}

/// Runs the delta job every `settings.interval_secs` until the process ends.
pub fn spawn(app: &AppState) {
    let settings = app.settings.deltas.clone();
    if !settings.enabled {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(settings.interval_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match run_once(&app, &settings).await {
                Ok(0) => {}
                Ok(made) => tracing::info!(pairs = made, "delta job recorded patches"),
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "delta job failed; retrying at the next interval"
                ),
            }
        }
    });
}

/// Makes the missing patches of every published version not yet done; returns how many pairs
/// it recorded.
///
/// # Errors
/// Database or blob-store failures; what was recorded before stays.
pub async fn run_once(app: &AppState, settings: &DeltaSettings) -> anyhow::Result<usize> {
    let pending: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, plugin_id, version, package_digest, package_size FROM plugin_versions \
         WHERE state = 'published' AND deltas_done = 0 ORDER BY id LIMIT 100",
    )
    .fetch_all(&app.db.pool)
    .await?;
    let mut recorded = 0;
    for (version_id, plugin_id, version, digest, size) in pending {
        let target = Target {
            version_id,
            digest,
            size: u64::try_from(size).unwrap_or(0),
        };
        let bases = bases(app, plugin_id, &version, settings.bases).await?;
        for (base_id, base_digest, base_size) in bases {
            recorded += make_pair(
                app,
                settings,
                plugin_id,
                &target,
                base_id,
                &base_digest,
                base_size,
            )
            .await
            .with_context(|| format!("patch from version {base_id} to {version_id}"))?;
        }
        sqlx::query("UPDATE plugin_versions SET deltas_done = 1 WHERE id = $1")
            .bind(version_id)
            .execute(&app.db.pool)
            .await?;
    }
    Ok(recorded)
}

/// The last `count` versions older than `version` (by semver) that hosts may have installed.
async fn bases(
    app: &AppState,
    plugin_id: i64,
    version: &str,
    count: usize,
) -> anyhow::Result<Vec<(i64, String, u64)>> {
    let Ok(target) = semver::Version::parse(version) else {
        return Ok(Vec::new());
    };
    let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, version, package_digest, package_size FROM plugin_versions \
         WHERE plugin_id = $1 AND state IN ('published', 'yanked')",
    )
    .bind(plugin_id)
    .fetch_all(&app.db.pool)
    .await?;
    let mut older: Vec<(semver::Version, i64, String, u64)> = rows
        .into_iter()
        .filter_map(|(id, v, digest, size)| {
            let parsed = semver::Version::parse(&v).ok()?;
            (parsed < target).then(|| (parsed, id, digest, u64::try_from(size).unwrap_or(0)))
        })
        .collect();
    older.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(older
        .into_iter()
        .take(count)
        .map(|(_, id, digest, size)| (id, digest, size))
        .collect())
}

/// Makes and records one pair unless it is recorded already; returns 1 when it recorded it.
async fn make_pair(
    app: &AppState,
    settings: &DeltaSettings,
    plugin_id: i64,
    target: &Target,
    base_id: i64,
    base_digest: &str,
    base_size: u64,
) -> anyhow::Result<usize> {
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM deltas WHERE base_version_id = $1 AND target_version_id = $2",
    )
    .bind(base_id)
    .bind(target.version_id)
    .fetch_optional(&app.db.pool)
    .await?;
    if exists.is_some() {
        return Ok(0);
    }
    let outcome = if base_size.max(target.size) > settings.max_input_bytes {
        Outcome::Skipped("inputs above deltas.max_input_bytes")
    } else {
        let base = read_blob(app, base_digest, base_size).await?;
        let new = read_blob(app, &target.digest, target.size).await?;
        let new_len = new.len();
        let patch = tokio::task::spawn_blocking(move || make_patch(&base, &new))
            .await
            .context("the patch thread")??;
        if patch.len() as f64 > new_len as f64 * MAX_PATCH_FRACTION {
            Outcome::Skipped("patch larger than half the package")
        } else {
            let size = patch.len() as u64;
            let stored = app
                .blobs
                .put(&mut &patch[..], None, None)
                .await
                .context("storing the patch")?;
            Outcome::Ready {
                digest: stored.digest,
                size,
            }
        }
    };
    let (state, patch_digest, patch_size, reason) = match &outcome {
        // Bare hex, as package digests are stored.
        Outcome::Ready { digest, size } => {
            ("ready", Some(digest.to_hex()), Some(*size as i64), None)
        }
        Outcome::Skipped(reason) => ("skipped", None, None, Some(*reason)),
    };
    let mut tx = app.db.pool.begin().await?;
    if let Outcome::Ready { digest, .. } = &outcome {
        // A failure here (the patch collected as unreferenced since it was stored, which
        // needs an identical patch orphaned for a day) leaves the pair for the next pass.
        crate::blob_gc::confirm_stored(&mut tx, app.db.engine, app.blobs.as_ref(), [digest])
            .await?;
    }
    // A replica that made the same pair first wins; the patch blob is the same either way.
    let inserted = sqlx::query(
        "INSERT INTO deltas (plugin_id, base_version_id, target_version_id, base_digest, \
         target_digest, state, patch_digest, patch_size, reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (base_version_id, target_version_id) DO NOTHING",
    )
    .bind(plugin_id)
    .bind(base_id)
    .bind(target.version_id)
    .bind(base_digest)
    .bind(&target.digest)
    .bind(state)
    .bind(patch_digest)
    .bind(patch_size)
    .bind(reason)
    .bind(crate::db::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(usize::from(inserted.rows_affected() > 0))
}

enum Outcome {
    Ready { digest: BlobDigest, size: u64 },
    Skipped(&'static str),
}

/// Reads a whole package blob, refusing more than its recorded size.
async fn read_blob(app: &AppState, digest: &str, size: u64) -> anyhow::Result<Vec<u8>> {
    let digest: BlobDigest = digest.parse().context("a stored digest")?;
    let object = match app.blobs.get(&digest, None).await {
        Ok(object) => object,
        Err(BlobError::NotFound) => anyhow::bail!("the package blob {digest} is missing"),
        Err(error) => return Err(error.into()),
    };
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut body = object.body;
    while let Some(chunk) = body.try_next().await? {
        anyhow::ensure!(
            (bytes.len() + chunk.len()) as u64 <= size,
            "the package blob {digest} is longer than recorded"
        );
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
