//! A plugin's releases as hosts see them: the versions that were ever offered (published,
//! yanked, blocked), each with its effective state, and the patches to it.
//!
//! One loader serves both readers of the catalogue: the update check ([`crate::catalogue`])
//! and the signed release metadata ([`crate::release_metadata`]), so the two can never
//! disagree on which versions exist or which are revoked.

use std::collections::HashMap;

use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{Manifest, PluginId};
use semver::Version;
use sqlx::{AnyPool, Row as _};

/// Why a host must not run a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// A moderator blocked this version.
    VersionBlocked,
    /// A moderator blocked the whole plugin.
    PluginBlocked,
    /// The certificate that signed this version was revoked.
    CertificateRevoked,
}

impl Revocation {
    /// The stable code in API answers.
    pub fn code(self) -> &'static str {
        match self {
            Self::VersionBlocked => "version-blocked",
            Self::PluginBlocked => "plugin-blocked",
            Self::CertificateRevoked => "certificate-revoked",
        }
    }
}

/// Where a release stands for hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseState {
    /// Offered as an update.
    Published,
    /// Installable by digest, never offered.
    Yanked,
    /// Never served; hosts should disable it.
    Revoked {
        /// Why.
        revocation: Revocation,
        /// The moderator's or revoker's reason, when one was given.
        detail: Option<String>,
    },
}

/// A patch to a release from an older package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasePatch {
    /// The package the patch applies to.
    pub from: PackageDigest,
    /// The patch blob.
    pub digest: PackageDigest,
    /// Its length.
    pub size: u64,
}

/// One version of a plugin that hosts may know of.
#[derive(Clone, Debug)]
pub struct Release {
    /// The version.
    pub version: Version,
    /// Published, yanked or revoked.
    pub state: ReleaseState,
    /// The package.
    pub digest: PackageDigest,
    /// Its length.
    pub size: u64,
    /// Its manifest.
    pub manifest: Manifest,
    /// The developer's signature envelope (JSON, with the certificate chain); empty when
    /// loaded with [`Signatures::Skip`].
    pub envelope_json: String,
    /// Bare-hex SHA-256 of the signer's leaf certificate.
    pub signer_fingerprint: String,
    /// When the store accepted the upload, and so checked the signature (Unix seconds).
    pub accepted_at: i64,
    /// Percentage of install ids the version is offered to.
    pub rollout_percent: u8,
    /// Whether the rollout is paused (offered to nobody new).
    pub rollout_paused: bool,
    /// Ready patches to this version (only for published versions).
    pub patches: Vec<ReleasePatch>,
}

/// A plugin and its releases, newest version first.
#[derive(Clone, Debug)]
pub struct PluginReleases {
    /// The database id.
    pub plugin_db_id: i64,
    /// `publisher/name`.
    pub id: PluginId,
    /// Newest first.
    pub releases: Vec<Release>,
    /// The version of the snapshot whose metadata signs the plugin as loaded, or `None` while
    /// a change to it waits for the metadata job (or before its first round). Update checks
    /// offer nothing of a plugin until then, so a host is never offered what it cannot verify.
    pub signed_in_snapshot: Option<u64>,
}

/// Which plugins to load at once.
#[derive(Clone, Copy, Debug)]
pub enum PluginKeys<'a> {
    /// By database id.
    DbIds(&'a [i64]),
    /// By publisher and name.
    Names(&'a [PluginId]),
}

/// Whether to read the developers' signature envelopes, a few kilobytes per version with
/// their certificate chains: the signed metadata carries them, update checks do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signatures {
    /// Read them into [`Release::envelope_json`].
    Load,
    /// Leave [`Release::envelope_json`] empty.
    Skip,
}

/// Most plugins one round of queries loads: each name takes two bound parameters, far below
/// either engine's limit.
const PLUGINS_PER_QUERY: usize = 500;

/// Loads the releases of every plugin `keys` names that exists, in three queries per 500
/// plugins rather than three per plugin: a replica's first update checks ask for dozens of
/// plugins it has not cached, and a TUF bin is re-signed from all of its members.
///
/// # Errors
/// Database failures, or a stored row that no longer parses (a bug, reported as such).
pub async fn load_many(
    pool: &AnyPool,
    keys: PluginKeys<'_>,
    signatures: Signatures,
) -> anyhow::Result<Vec<PluginReleases>> {
    let mut loaded = Vec::new();
    match keys {
        PluginKeys::DbIds(ids) => {
            for chunk in ids.chunks(PLUGINS_PER_QUERY) {
                let plugins = sqlx::query(&format!(
                    "{PLUGINS} WHERE p.id IN ({})",
                    join_numbers(chunk)
                ))
                .persistent(false)
                .fetch_all(pool)
                .await?;
                loaded.extend(releases_of(pool, plugins, signatures).await?);
            }
        }
        PluginKeys::Names(names) => {
            for chunk in names.chunks(PLUGINS_PER_QUERY) {
                // A list of names joined to the tables, so each is found through the
                // publishers' and plugins' name indexes.
                let sql = plugins_by_name_sql(chunk.len());
                // Not kept as a prepared statement: the text changes with the list's length.
                let mut query = sqlx::query(&sql).persistent(false);
                for id in chunk {
                    query = query.bind(id.publisher()).bind(id.name());
                }
                let plugins = query.fetch_all(pool).await?;
                loaded.extend(releases_of(pool, plugins, signatures).await?);
            }
        }
    }
    Ok(loaded)
}

/// The plugins' columns, as [`releases_of`] reads them.
const PLUGINS: &str = "SELECT p.id, pb.name, p.name, p.blocked_at, p.blocked_reason, p.signed_snapshot, \
     (SELECT COUNT(*) FROM tuf_pending t WHERE t.plugin_id = p.id) \
     FROM plugins p JOIN publishers pb ON pb.id = p.publisher_id";

/// [`PLUGINS`] for `count` names, bound as publisher and name in turn.
fn plugins_by_name_sql(count: usize) -> String {
    let wanted: Vec<String> = (0..count)
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    format!(
        "WITH wanted (publisher, name) AS (VALUES {}) {PLUGINS} \
         JOIN wanted ON pb.name = wanted.publisher AND p.name = wanted.name",
        wanted.join(", ")
    )
}

/// The versions of the plugins `plugin_ids` lists (comma-separated), with their
/// certificates' revocations; the plugin's id last.
fn versions_sql(plugin_ids: &str, signatures: Signatures) -> String {
    let signature = match signatures {
        Signatures::Load => "v.signature",
        Signatures::Skip => "''",
    };
    format!(
        "SELECT v.id, v.version, v.state, v.state_reason, v.package_digest, v.package_size, v.manifest, \
                {signature}, v.signer_fingerprint, v.created_at, v.rollout_percent, v.rollout_paused, \
                c.revoked_at, c.revoked_reason, v.plugin_id \
         FROM plugin_versions v LEFT JOIN certificates c ON c.fingerprint = v.signer_fingerprint \
         WHERE v.plugin_id IN ({plugin_ids})"
    )
}

/// The ready patches of the plugins `plugin_ids` lists (comma-separated).
fn patches_sql(plugin_ids: &str) -> String {
    format!(
        "SELECT plugin_id, target_version_id, base_digest, patch_digest, patch_size FROM deltas \
         WHERE plugin_id IN ({plugin_ids}) AND state = 'ready'"
    )
}

/// Database ids inlined as SQL list text (`3,1,2`): numbers cannot inject anything, and the
/// statement needs no parameter per id.
pub(crate) fn join_numbers(numbers: &[i64]) -> String {
    numbers
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The releases of `plugins` (rows of [`PLUGINS`]), read in two queries.
async fn releases_of(
    pool: &AnyPool,
    plugins: Vec<sqlx::any::AnyRow>,
    signatures: Signatures,
) -> anyhow::Result<Vec<PluginReleases>> {
    if plugins.is_empty() {
        return Ok(Vec::new());
    }
    let plugin_ids = plugins
        .iter()
        .map(|plugin| plugin.try_get::<i64, _>(0))
        .collect::<Result<Vec<_>, _>>()?;
    let plugin_ids = join_numbers(&plugin_ids);
    let mut versions: HashMap<i64, Vec<sqlx::any::AnyRow>> = HashMap::new();
    for row in sqlx::query(&versions_sql(&plugin_ids, signatures))
        .persistent(false)
        .fetch_all(pool)
        .await?
    {
        // Filtered here rather than in SQL: with a condition on the state beside the list of
        // plugins, SQLite's planner chose the index on states and read every published
        // version in the store (108 ms at 100k plugins, against 1 ms by plugin).
        let state: String = row.try_get(2)?;
        if matches!(state.as_str(), "published" | "yanked" | "blocked") {
            versions.entry(row.try_get(14)?).or_default().push(row);
        }
    }
    let mut patches: HashMap<i64, Vec<(i64, String, String, i64)>> = HashMap::new();
    let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(&patches_sql(&plugin_ids))
        .persistent(false)
        .fetch_all(pool)
        .await?;
    for (plugin, target, base, patch, size) in rows {
        patches
            .entry(plugin)
            .or_default()
            .push((target, base, patch, size));
    }
    plugins
        .into_iter()
        .map(|plugin| {
            let plugin_db_id: i64 = plugin.try_get(0)?;
            plugin_releases(
                &plugin,
                versions.remove(&plugin_db_id).unwrap_or_default(),
                &patches.remove(&plugin_db_id).unwrap_or_default(),
            )
        })
        .collect()
}

/// One plugin's releases from its row, its version rows and its ready patches.
fn plugin_releases(
    plugin: &sqlx::any::AnyRow,
    rows: Vec<sqlx::any::AnyRow>,
    patches: &[(i64, String, String, i64)],
) -> anyhow::Result<PluginReleases> {
    let plugin_db_id: i64 = plugin.try_get(0)?;
    let id = PluginId::new(
        &plugin.try_get::<String, _>(1)?,
        &plugin.try_get::<String, _>(2)?,
    )?;
    let plugin_blocked: Option<i64> = plugin.try_get(3)?;
    let plugin_block_reason: Option<String> = plugin.try_get(4)?;
    let signed_snapshot: Option<i64> = plugin.try_get(5)?;
    let changes_to_sign: i64 = plugin.try_get(6)?;
    let signed_in_snapshot = match signed_snapshot {
        Some(snapshot) if changes_to_sign == 0 => Some(u64::try_from(snapshot)?),
        _ => None,
    };

    let mut releases = Vec::with_capacity(rows.len());
    for row in rows {
        let version_db_id: i64 = row.try_get(0)?;
        let version: String = row.try_get(1)?;
        let state: String = row.try_get(2)?;
        let state_reason: Option<String> = row.try_get(3)?;
        let cert_revoked: Option<i64> = row.try_get(12)?;
        let cert_reason: Option<String> = row.try_get(13)?;
        // The strongest revocation wins: a plugin block covers every version.
        let state = if plugin_blocked.is_some() {
            ReleaseState::Revoked {
                revocation: Revocation::PluginBlocked,
                detail: plugin_block_reason.clone(),
            }
        } else if state == "blocked" {
            ReleaseState::Revoked {
                revocation: Revocation::VersionBlocked,
                detail: state_reason,
            }
        } else if cert_revoked.is_some() {
            ReleaseState::Revoked {
                revocation: Revocation::CertificateRevoked,
                detail: cert_reason,
            }
        } else if state == "yanked" {
            ReleaseState::Yanked
        } else {
            ReleaseState::Published
        };
        let parsed = parse_release(&row, state, version, version_db_id, patches);
        match parsed {
            Ok(release) => releases.push(release),
            // A stored row that no longer parses is a bug; the plugin's other versions are
            // still served rather than none.
            Err(error) => tracing::error!(
                plugin = %id,
                version_id = version_db_id,
                error = format!("{error:#}"),
                "a stored version does not parse; leaving it out of updates and metadata"
            ),
        }
    }
    releases.sort_by(|a, b| b.version.cmp(&a.version));
    Ok(PluginReleases {
        plugin_db_id,
        id,
        releases,
        signed_in_snapshot,
    })
}

/// The parts of a release row that can fail to parse.
fn parse_release(
    row: &sqlx::any::AnyRow,
    state: ReleaseState,
    version: String,
    version_db_id: i64,
    patches: &[(i64, String, String, i64)],
) -> anyhow::Result<Release> {
    let digest: PackageDigest = row.try_get::<String, _>(4)?.parse()?;
    let patches = if state == ReleaseState::Published {
        patches
            .iter()
            .filter(|(target, ..)| *target == version_db_id)
            .map(|(_, from, patch, size)| {
                Ok(ReleasePatch {
                    from: from.parse()?,
                    digest: patch.parse()?,
                    size: u64::try_from(*size)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let manifest_text: String = row.try_get(6)?;
    let rollout_percent: i64 = row.try_get(10)?;
    let rollout_paused: i64 = row.try_get(11)?;
    Ok(Release {
        version: Version::parse(&version)?,
        state,
        digest,
        size: u64::try_from(row.try_get::<i64, _>(5)?)?,
        manifest: Manifest::parse(&manifest_text)?,
        envelope_json: row.try_get(7)?,
        signer_fingerprint: row.try_get::<Option<String>, _>(8)?.unwrap_or_default(),
        accepted_at: row.try_get(9)?,
        rollout_percent: u8::try_from(rollout_percent.clamp(0, 100))?,
        rollout_paused: rollout_paused != 0,
        patches,
    })
}

#[cfg(test)]
mod tests {
    use sqlx::Row as _;

    use super::*;
    use crate::db::Database;

    /// Every query of a batch finds its rows through an index on what it is given. With a
    /// condition on the state beside the list of plugins, SQLite's planner once chose the
    /// index on states, which reads every published version in the store.
    #[tokio::test]
    async fn batch_queries_search_by_plugin_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(&format!("sqlite://{}/plan.db", dir.path().display()), 1)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let names = plugins_by_name_sql(3);
        let ids = join_numbers(&[3, 1, 2]);
        for (sql, parameters) in [
            (names, 6),
            (versions_sql(&ids, Signatures::Load), 0),
            (versions_sql(&ids, Signatures::Skip), 0),
            (patches_sql(&ids), 0),
        ] {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let mut plan = sqlx::query(&explain);
            for _ in 0..parameters {
                plan = plan.bind("x");
            }
            let steps: Vec<String> = plan
                .fetch_all(&db.pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.try_get::<String, _>(3).unwrap())
                .collect();
            for table in ["p", "v", "deltas", "t"] {
                let on_table: Vec<&String> = steps
                    .iter()
                    .filter(|step| step.contains(&format!(" {table} ")))
                    .collect();
                for step in on_table {
                    assert!(
                        step.starts_with("SEARCH") && !step.contains("_state"),
                        "{sql}\n{steps:#?}"
                    );
                }
            }
            assert!(
                steps
                    .iter()
                    .any(|step| step.contains("plugin_id") || step.contains("publisher_id")),
                "{sql}\n{steps:#?}"
            );
        }
    }
}
