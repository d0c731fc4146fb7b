//! Moderation by reviewers: the review queue, a version's detail as a reviewer needs it, claims,
//! approve and reject, blocking a version or a whole plugin (the kill switch) and unblocking.
//! Every action is written to the audit log.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, Query, State};
use futures_util::TryStreamExt;
use plugstore_format::manifest::Manifest;
use plugstore_format::package::{PackageFile, read_package};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::audit;
use super::plugins::VersionPath;
use super::scan_jobs::Severity;
use super::{Page, PageQuery, PluginPath, checked_reason, rfc3339};
use crate::app::AppState;
use crate::auth::{Caller, Principal, Require, Role};
use crate::blobs::BlobDigest;
use crate::db;
use crate::error::{ApiError, ApiResult, Problem};

/// How long a claim keeps other reviewers off a version.
pub const CLAIM_TTL_SECS: i64 = 3600;

/// States a version can be listed in by the queue.
const QUEUE_STATES: &[&str] = &[
    "uploaded",
    "scanning",
    "published",
    "pending_review",
    "rejected",
    "yanked",
    "blocked",
];

/// Order of the review queue.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueOrder {
    /// Worst scan finding first, then oldest upload first.
    #[default]
    Risk,
    /// Oldest upload first.
    Age,
}

/// `?state=…&publisher=…&severity=…&order=…` plus pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Version state to list (default `pending_review`).
    pub state: Option<String>,
    /// Only versions of this publisher.
    pub publisher: Option<String>,
    /// Only versions whose latest scan found at least this severity.
    #[param(inline)]
    pub severity: Option<Severity>,
    /// `risk` (default) or `age`.
    #[param(inline)]
    pub order: Option<QueueOrder>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Items per page (1–100, default 20).
    pub limit: Option<u32>,
}

/// A version in the review queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueItem {
    /// Position in the queue's order (cursor key).
    #[serde(skip)]
    pub sort_key: i64,
    /// `publisher/name`.
    pub plugin: String,
    /// Semver version.
    pub version: String,
    /// Lifecycle state.
    pub state: String,
    /// Why it is in that state (e.g. the scan verdict's reason).
    pub state_reason: Option<String>,
    /// Worst finding of the latest scan report; `null` when it was never scanned.
    pub max_severity: Option<String>,
    /// Upload time (RFC 3339).
    pub uploaded_at: String,
    /// Reviewer holding an unexpired claim.
    pub claimed_by: Option<String>,
    /// When that claim was made (RFC 3339).
    pub claimed_at: Option<String>,
}

/// Why a reviewer acts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModerationRequest {
    /// Recorded in the audit log; for approve, reject and block also the version's
    /// `state_reason`, which its publisher can read.
    pub reason: String,
}

/// The certificate that signed a version.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignerView {
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
    /// Subject, when the certificate is known to the store.
    pub subject: Option<String>,
    /// Issuer.
    pub issuer: Option<String>,
    /// `store-ca` or `external`.
    pub origin: Option<String>,
    /// Whether the certificate has since been revoked.
    pub revoked: bool,
    /// When it was revoked (RFC 3339).
    pub revoked_at: Option<String>,
}

/// The latest scan report of a version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScanReportView {
    /// The verdict the report led to.
    pub verdict: String,
    /// Worst finding.
    pub max_severity: String,
    /// Scanner version.
    pub scanner_version: String,
    /// Worker that posted it.
    pub worker: String,
    /// When it was posted (RFC 3339).
    pub created_at: String,
    /// The report as the worker posted it: findings, metrics, durations.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

/// Files that differ between two packages.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileChanges {
    /// Paths only in this version.
    pub added: Vec<String>,
    /// Paths only in the previous version.
    pub removed: Vec<String>,
    /// Paths in both with different contents or mode.
    pub changed: Vec<String>,
}

/// What changed against the previous published version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionChanges {
    /// The highest published version below this one.
    pub previous_version: String,
    /// Capabilities requested now but not before.
    pub capabilities_added: Vec<String>,
    /// Capabilities requested before but not now.
    pub capabilities_removed: Vec<String>,
    /// Package size of the previous version in bytes.
    pub previous_package_size: i64,
    /// This size minus the previous size, in bytes.
    pub package_size_change: i64,
    /// File-level changes; `null` when a package could not be read from the blob store.
    pub files: Option<FileChanges>,
}

/// A version as a reviewer sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewDetail {
    /// `publisher/name`.
    pub plugin: String,
    /// Semver version.
    pub version: String,
    /// Lifecycle state.
    pub state: String,
    /// Why it is in that state.
    pub state_reason: Option<String>,
    /// SHA-256 of the package bytes, `sha256:<hex>`.
    pub package_digest: String,
    /// Package size in bytes.
    pub package_size: i64,
    /// Upload time (RFC 3339).
    pub uploaded_at: String,
    /// Who uploaded it.
    pub uploaded_by: Option<String>,
    /// `plugin.toml` exactly as uploaded.
    pub manifest: String,
    /// The signing certificate.
    pub signer: Option<SignerView>,
    /// The latest scan report.
    pub scan_report: Option<ScanReportView>,
    /// Changes against the previous published version; `null` for a plugin's first.
    pub changes: Option<VersionChanges>,
    /// Reviewer holding an unexpired claim.
    pub claimed_by: Option<String>,
    /// When that claim was made (RFC 3339).
    pub claimed_at: Option<String>,
}

/// A plugin's moderation state after a kill-switch action.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginBlockView {
    /// `publisher/name`.
    pub plugin: String,
    /// Whether the plugin is blocked (no versions served, no uploads accepted).
    pub blocked: bool,
    /// The moderators' reason, while blocked.
    pub blocked_reason: Option<String>,
    /// Versions whose state this action changed.
    pub versions_changed: u64,
}

/// A version's moderation state after an action.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModeratedVersion {
    /// `publisher/name`.
    pub plugin: String,
    /// Semver version.
    pub version: String,
    /// Lifecycle state.
    pub state: String,
    /// Why it is in that state.
    pub state_reason: Option<String>,
    /// Reviewer holding an unexpired claim.
    pub claimed_by: Option<String>,
    /// When that claim was made (RFC 3339).
    pub claimed_at: Option<String>,
}

/// One version row with what moderation needs.
struct VersionRecord {
    id: i64,
    plugin_id: i64,
    plugin: String,
    version: String,
    state: String,
    claimed_by_id: Option<i64>,
    claimed_by: Option<String>,
    claimed_at: Option<i64>,
}

impl VersionRecord {
    fn target(&self) -> String {
        format!("version:{}@{}", self.plugin, self.version)
    }

    /// The claim, unless it has lapsed.
    fn live_claim(&self, now: i64) -> Option<(i64, i64)> {
        match (self.claimed_by_id, self.claimed_at) {
            (Some(by), Some(at)) if at > now - CLAIM_TTL_SECS => Some((by, at)),
            _ => None,
        }
    }
}

async fn find_version(app: &AppState, path: &VersionPath) -> ApiResult<VersionRecord> {
    let row = sqlx::query(
        "SELECT v.id, v.plugin_id, v.version, v.state, v.claimed_by, v.claimed_at, u.username AS claimer \
         FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id JOIN publishers pb ON pb.id = p.publisher_id \
         LEFT JOIN users u ON u.id = v.claimed_by \
         WHERE pb.name = $1 AND p.name = $2 AND v.version = $3",
    )
    .bind(&path.publisher)
    .bind(&path.name)
    .bind(&path.version)
    .fetch_optional(&app.db.pool)
    .await?
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "no version {} of `{}/{}`",
            path.version, path.publisher, path.name
        ))
    })?;
    Ok(VersionRecord {
        id: row.try_get("id")?,
        plugin_id: row.try_get("plugin_id")?,
        plugin: format!("{}/{}", path.publisher, path.name),
        version: row.try_get("version")?,
        state: row.try_get("state")?,
        claimed_by_id: row.try_get("claimed_by")?,
        claimed_by: row.try_get("claimer")?,
        claimed_at: row.try_get("claimed_at")?,
    })
}

async fn moderated(app: &AppState, path: &VersionPath) -> ApiResult<Json<ModeratedVersion>> {
    let record = find_version(app, path).await?;
    let reason: Option<String> =
        sqlx::query_scalar("SELECT state_reason FROM plugin_versions WHERE id = $1")
            .bind(record.id)
            .fetch_one(&app.db.pool)
            .await?;
    let claim = record.live_claim(db::now());
    Ok(Json(ModeratedVersion {
        plugin: record.plugin,
        version: record.version,
        state: record.state,
        state_reason: reason,
        claimed_by: claim.and(record.claimed_by),
        claimed_at: claim.map(|(_, at)| rfc3339(at)),
    }))
}

fn reviewer() -> Require {
    Require::role(Role::Reviewer)
}

/// Rank of a stored severity for ordering: 0 when never scanned.
const RISK_RANK: &str = "CASE q.max_severity WHEN 'critical' THEN 5 WHEN 'high' THEN 4 WHEN 'medium' THEN 3 \
     WHEN 'low' THEN 2 WHEN 'info' THEN 1 ELSE 0 END";

/// Versions waiting for a reviewer, worst scan result first (or oldest first).
#[utoipa::path(get, path = "/api/v1/review/queue", tag = "review", security(("bearer" = [])), params(QueueQuery),
    responses((status = 200, body = QueuePage), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn review_queue(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<QueueQuery>,
) -> ApiResult<Json<Page<QueueItem>>> {
    caller.require(&app, reviewer()).await?;
    let page = PageQuery {
        cursor: query.cursor.clone(),
        limit: query.limit,
    }
    .parse()?;
    let state = query.state.as_deref().unwrap_or("pending_review");
    if !QUEUE_STATES.contains(&state) {
        return Err(ApiError::invalid(format!(
            "state must be one of {}",
            QUEUE_STATES.join(", ")
        )));
    }
    // One integer key per order so the usual `after` cursor works: the risk rank (inverted,
    // worst first) in the high bits, the row id (upload order) in the low ones.
    let sort_key = match query.order.unwrap_or_default() {
        QueueOrder::Risk => "(5 - r.risk) * 1099511627776 + r.id",
        QueueOrder::Age => "r.id",
    };
    let min_risk = query.severity.map_or(0, |s| s as i64 + 1);
    let rows = sqlx::query(&format!(
        "SELECT r.*, {sort_key} AS sort_key FROM ( \
           SELECT q.*, {RISK_RANK} AS risk FROM ( \
             SELECT v.id, pb.name AS publisher, p.name AS plugin_name, v.version, v.state, v.state_reason, v.created_at, \
                    v.claimed_at, u.username AS claimer, \
                    (SELECT s.max_severity FROM scan_reports s WHERE s.version_id = v.id ORDER BY s.id DESC LIMIT 1) AS max_severity \
             FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id JOIN publishers pb ON pb.id = p.publisher_id \
             LEFT JOIN users u ON u.id = v.claimed_by \
             WHERE v.state = $1 AND ($2 = '' OR pb.name = $2) \
           ) q \
         ) r WHERE r.risk >= $3 AND {sort_key} > $4 ORDER BY {sort_key} LIMIT $5"
    ))
    .bind(state)
    .bind(query.publisher.as_deref().unwrap_or_default())
    .bind(min_risk)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(&app.db.pool)
    .await?;
    let now = db::now();
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let claimed_at: Option<i64> = row.try_get("claimed_at")?;
        let live = claimed_at.filter(|at| *at > now - CLAIM_TTL_SECS);
        items.push(QueueItem {
            sort_key: row.try_get("sort_key")?,
            plugin: format!(
                "{}/{}",
                row.try_get::<String, _>("publisher")?,
                row.try_get::<String, _>("plugin_name")?
            ),
            version: row.try_get("version")?,
            state: row.try_get("state")?,
            state_reason: row.try_get("state_reason")?,
            max_severity: row.try_get("max_severity")?,
            uploaded_at: rfc3339(row.try_get("created_at")?),
            claimed_by: live.and(row.try_get("claimer")?),
            claimed_at: live.map(rfc3339),
        });
    }
    Ok(Json(page.finish(items, |i| i.sort_key)))
}

/// A version with everything a reviewer decides on: manifest, signer, latest scan report and
/// the changes against the previous published version.
#[utoipa::path(get, path = "/api/v1/review/versions/{publisher}/{name}/{version}", tag = "review", security(("bearer" = [])), params(VersionPath),
    responses((status = 200, body = ReviewDetail), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn review_version(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
) -> ApiResult<Json<ReviewDetail>> {
    caller.require(&app, reviewer()).await?;
    let record = find_version(&app, &path).await?;
    let row = sqlx::query(
        "SELECT v.state_reason, v.package_digest, v.package_size, v.created_at, v.manifest, v.signer_fingerprint, u.username AS uploader, \
                c.subject, c.issuer, c.origin, c.revoked_at \
         FROM plugin_versions v LEFT JOIN users u ON u.id = v.published_by \
         LEFT JOIN certificates c ON c.fingerprint = v.signer_fingerprint WHERE v.id = $1",
    )
    .bind(record.id)
    .fetch_one(&app.db.pool)
    .await?;
    let signer = match row.try_get::<Option<String>, _>("signer_fingerprint")? {
        Some(fingerprint) => {
            let revoked_at: Option<i64> = row.try_get("revoked_at")?;
            Some(SignerView {
                fingerprint,
                subject: row.try_get("subject")?,
                issuer: row.try_get("issuer")?,
                origin: row.try_get("origin")?,
                revoked: revoked_at.is_some(),
                revoked_at: revoked_at.map(rfc3339),
            })
        }
        None => None,
    };
    let scan_report = sqlx::query(
        "SELECT verdict, max_severity, report, scanner_version, worker, created_at FROM scan_reports \
         WHERE version_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(record.id)
    .fetch_optional(&app.db.pool)
    .await?
    .map(|r| -> ApiResult<ScanReportView> {
        let text: String = r.try_get("report")?;
        Ok(ScanReportView {
            verdict: r.try_get("verdict")?,
            max_severity: r.try_get("max_severity")?,
            scanner_version: r.try_get("scanner_version")?,
            worker: r.try_get("worker")?,
            created_at: rfc3339(r.try_get("created_at")?),
            report: serde_json::from_str(&text).map_err(ApiError::internal)?,
        })
    })
    .transpose()?;
    let manifest: String = row.try_get("manifest")?;
    let digest: String = row.try_get("package_digest")?;
    let size: i64 = row.try_get("package_size")?;
    let changes = changes_since_previous(&app, &record, &manifest, &digest, size).await?;
    let claim = record.live_claim(db::now());
    Ok(Json(ReviewDetail {
        plugin: record.plugin.clone(),
        version: record.version.clone(),
        state: record.state.clone(),
        state_reason: row.try_get("state_reason")?,
        package_digest: format!("sha256:{digest}"),
        package_size: size,
        uploaded_at: rfc3339(row.try_get("created_at")?),
        uploaded_by: row.try_get("uploader")?,
        manifest,
        signer,
        scan_report,
        changes,
        claimed_by: claim.and(record.claimed_by.clone()),
        claimed_at: claim.map(|(_, at)| rfc3339(at)),
    }))
}

/// The highest published version below `record` by semver, compared with it.
async fn changes_since_previous(
    app: &AppState,
    record: &VersionRecord,
    manifest: &str,
    digest: &str,
    size: i64,
) -> ApiResult<Option<VersionChanges>> {
    let Ok(current) = semver::Version::parse(&record.version) else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT version, manifest, package_digest, package_size FROM plugin_versions \
         WHERE plugin_id = $1 AND state = 'published' AND id <> $2",
    )
    .bind(record.plugin_id)
    .bind(record.id)
    .fetch_all(&app.db.pool)
    .await?;
    let mut previous: Option<(semver::Version, &sqlx::any::AnyRow)> = None;
    for row in &rows {
        let Ok(version) = semver::Version::parse(&row.try_get::<String, _>("version")?) else {
            continue;
        };
        if version < current && previous.as_ref().is_none_or(|(best, _)| version > *best) {
            previous = Some((version, row));
        }
    }
    let Some((previous_version, row)) = previous else {
        return Ok(None);
    };
    let before = capabilities(&row.try_get::<String, _>("manifest")?);
    let after = capabilities(manifest);
    let previous_size: i64 = row.try_get("package_size")?;
    let previous_digest: String = row.try_get("package_digest")?;
    let files = match (
        package_files(app, &previous_digest).await,
        package_files(app, digest).await,
    ) {
        (Some(old), Some(new)) => Some(file_changes(&old, &new)),
        _ => None,
    };
    Ok(Some(VersionChanges {
        previous_version: previous_version.to_string(),
        capabilities_added: after.difference(&before).cloned().collect(),
        capabilities_removed: before.difference(&after).cloned().collect(),
        previous_package_size: previous_size,
        package_size_change: size - previous_size,
        files,
    }))
}

/// Requested capabilities of a stored manifest; empty when it no longer parses.
fn capabilities(manifest: &str) -> BTreeSet<String> {
    Manifest::parse(manifest)
        .map(|m| m.capabilities().iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// The file list of a stored package, read through the package parser; `None` when the blob
/// is missing or unreadable (the detail then reports sizes and capabilities only).
async fn package_files(app: &AppState, digest: &str) -> Option<Vec<PackageFile>> {
    let digest: BlobDigest = digest.parse().ok()?;
    let object = match app.blobs.get(&digest, None).await {
        Ok(object) => object,
        Err(e) => {
            tracing::info!(%digest, error = %e, "package not readable for the review diff");
            return None;
        }
    };
    let reader = tokio_util::io::StreamReader::new(object.body.map_err(std::io::Error::other));
    let limits = app.package_limits();
    tokio::task::spawn_blocking(move || {
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        read_package(bridge, &limits).ok().map(|c| c.files)
    })
    .await
    .ok()
    .flatten()
}

fn file_changes(old: &[PackageFile], new: &[PackageFile]) -> FileChanges {
    let old: BTreeMap<&str, &PackageFile> = old.iter().map(|f| (f.path.as_str(), f)).collect();
    let new: BTreeMap<&str, &PackageFile> = new.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut changes = FileChanges {
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    for (path, file) in &new {
        match old.get(path) {
            None => changes.added.push((*path).to_owned()),
            Some(before)
                if before.sha256 != file.sha256 || before.executable != file.executable =>
            {
                changes.changed.push((*path).to_owned());
            }
            Some(_) => {}
        }
    }
    changes.removed = old
        .keys()
        .filter(|p| !new.contains_key(*p))
        .map(|p| (*p).to_owned())
        .collect();
    changes
}

/// Claims a version's review for an hour, so two reviewers do not work on the same one.
/// Claiming again renews one's own claim; another reviewer's live claim is a 409.
#[utoipa::path(post, path = "/api/v1/review/versions/{publisher}/{name}/{version}/claim", tag = "review", security(("bearer" = [])), params(VersionPath),
    responses((status = 200, body = ModeratedVersion), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn claim_review(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
) -> ApiResult<Json<ModeratedVersion>> {
    let me = caller.require(&app, reviewer()).await?;
    let record = find_version(&app, &path).await?;
    if record.state != "pending_review" {
        return Err(ApiError::conflict(format!(
            "version {} is {}; only versions pending review can be claimed",
            record.version, record.state
        )));
    }
    let now = db::now();
    let mut tx = app.db.pool.begin().await?;
    let claimed = sqlx::query(
        "UPDATE plugin_versions SET claimed_by = $1, claimed_at = $2 WHERE id = $3 AND state = 'pending_review' \
         AND (claimed_by IS NULL OR claimed_by = $1 OR claimed_at <= $4)",
    )
    .bind(me.user_id)
    .bind(now)
    .bind(record.id)
    .bind(now - CLAIM_TTL_SECS)
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() == 0 {
        drop(tx);
        let current = find_version(&app, &path).await?;
        return Err(claimed_by_other(&current));
    }
    audit(
        &mut tx,
        Some(me.user_id),
        "review.claim",
        &record.target(),
        None,
    )
    .await?;
    tx.commit().await?;
    moderated(&app, &path).await
}

fn claimed_by_other(record: &VersionRecord) -> ApiError {
    ApiError::conflict(format!(
        "{} {} is claimed by {} until the claim lapses an hour after it was made",
        record.plugin,
        record.version,
        record.claimed_by.as_deref().unwrap_or("another reviewer")
    ))
}

/// Decides a version pending review: `to` is `published` or `rejected`.
async fn decide(
    app: &AppState,
    me: &Principal,
    path: &VersionPath,
    to: &str,
    reason: &str,
) -> ApiResult<Json<ModeratedVersion>> {
    let reason = checked_reason(reason)?;
    let record = find_version(app, path).await?;
    if record.state != "pending_review" {
        return Err(ApiError::conflict(format!(
            "version {} is {}; only versions pending review can be approved or rejected",
            record.version, record.state
        )));
    }
    let now = db::now();
    if record
        .live_claim(now)
        .is_some_and(|(by, _)| by != me.user_id)
    {
        return Err(claimed_by_other(&record));
    }
    let mut tx = app.db.pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE plugin_versions SET state = $1, state_reason = $2, state_changed_at = $3, claimed_by = NULL, claimed_at = NULL \
         WHERE id = $4 AND state = 'pending_review'",
    )
    .bind(to)
    .bind(reason)
    .bind(now)
    .bind(record.id)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 0 {
        return Err(ApiError::conflict(
            "the version changed state meanwhile; reload it",
        ));
    }
    let action = if to == "published" {
        "version.approve"
    } else {
        "version.reject"
    };
    audit(
        &mut tx,
        Some(me.user_id),
        action,
        &record.target(),
        Some(reason),
    )
    .await?;
    tx.commit().await?;
    moderated(app, path).await
}

/// Approves a version pending review: it becomes published.
#[utoipa::path(post, path = "/api/v1/review/versions/{publisher}/{name}/{version}/approve", tag = "review", security(("bearer" = [])), params(VersionPath), request_body = ModerationRequest,
    responses((status = 200, body = ModeratedVersion), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn approve_version(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
    Json(body): Json<ModerationRequest>,
) -> ApiResult<Json<ModeratedVersion>> {
    let me = caller.require(&app, reviewer()).await?;
    decide(&app, &me, &path, "published", &body.reason).await
}

/// Rejects a version pending review; the reason is shown to its publisher.
#[utoipa::path(post, path = "/api/v1/review/versions/{publisher}/{name}/{version}/reject", tag = "review", security(("bearer" = [])), params(VersionPath), request_body = ModerationRequest,
    responses((status = 200, body = ModeratedVersion), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn reject_version(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
    Json(body): Json<ModerationRequest>,
) -> ApiResult<Json<ModeratedVersion>> {
    let me = caller.require(&app, reviewer()).await?;
    decide(&app, &me, &path, "rejected", &body.reason).await
}

/// Blocks a version in any state: never served, listed as revoked to clients. Blocking a
/// blocked version changes nothing.
#[utoipa::path(post, path = "/api/v1/review/versions/{publisher}/{name}/{version}/block", tag = "review", security(("bearer" = [])), params(VersionPath), request_body = ModerationRequest,
    responses((status = 200, body = ModeratedVersion), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn block_version(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
    Json(body): Json<ModerationRequest>,
) -> ApiResult<Json<ModeratedVersion>> {
    let me = caller.require(&app, reviewer()).await?;
    let reason = checked_reason(&body.reason)?;
    let record = find_version(&app, &path).await?;
    if record.state == "blocked" {
        return moderated(&app, &path).await;
    }
    let mut tx = app.db.pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE plugin_versions SET state_before_block = state, state = 'blocked', state_reason = $1, state_changed_at = $2, \
         blocked_with_plugin = 0, claimed_by = NULL, claimed_at = NULL WHERE id = $3 AND state <> 'blocked'",
    )
    .bind(reason)
    .bind(db::now())
    .bind(record.id)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 1 {
        audit(
            &mut tx,
            Some(me.user_id),
            "version.block",
            &record.target(),
            Some(reason),
        )
        .await?;
    }
    tx.commit().await?;
    moderated(&app, &path).await
}

/// Lifts a version's block: it returns to the state it had before. A version blocked by its
/// plugin's kill switch is unblocked with the plugin.
#[utoipa::path(post, path = "/api/v1/review/versions/{publisher}/{name}/{version}/unblock", tag = "review", security(("bearer" = [])), params(VersionPath), request_body = ModerationRequest,
    responses((status = 200, body = ModeratedVersion), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn unblock_version(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
    Json(body): Json<ModerationRequest>,
) -> ApiResult<Json<ModeratedVersion>> {
    let me = caller.require(&app, reviewer()).await?;
    let reason = checked_reason(&body.reason)?;
    let record = find_version(&app, &path).await?;
    if record.state != "blocked" {
        return Err(ApiError::conflict(format!(
            "version {} is {}, not blocked",
            record.version, record.state
        )));
    }
    let plugin_blocked: Option<i64> =
        sqlx::query_scalar("SELECT blocked_at FROM plugins WHERE id = $1")
            .bind(record.plugin_id)
            .fetch_one(&app.db.pool)
            .await?;
    if plugin_blocked.is_some() {
        return Err(ApiError::conflict(format!(
            "plugin {} is blocked; unblock the plugin first",
            record.plugin
        )));
    }
    let mut tx = app.db.pool.begin().await?;
    let changed = sqlx::query(&format!(
        "UPDATE plugin_versions SET state = {RESTORED_STATE}, state_before_block = NULL, state_reason = $1, state_changed_at = $2 \
         WHERE id = $3 AND state = 'blocked'"
    ))
    .bind(reason)
    .bind(db::now())
    .bind(record.id)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 1 {
        audit(
            &mut tx,
            Some(me.user_id),
            "version.unblock",
            &record.target(),
            Some(reason),
        )
        .await?;
    }
    tx.commit().await?;
    moderated(&app, &path).await
}

/// The state an unblocked version returns to: the one it had before the block. A version
/// blocked while scanning whose scan finished meanwhile (the verdict was not applied to a
/// blocked version) and one without a recorded earlier state go to review instead.
const RESTORED_STATE: &str = "CASE \
     WHEN state_before_block IS NULL THEN 'pending_review' \
     WHEN state_before_block = 'scanning' AND NOT EXISTS (SELECT 1 FROM scan_jobs j \
          WHERE j.version_id = plugin_versions.id AND j.state IN ('queued', 'leased')) THEN 'pending_review' \
     ELSE state_before_block END";

async fn find_plugin(app: &AppState, path: &PluginPath) -> ApiResult<(i64, Option<String>)> {
    let row = sqlx::query(
        "SELECT p.id, p.blocked_reason, p.blocked_at FROM plugins p JOIN publishers pb ON pb.id = p.publisher_id \
         WHERE pb.name = $1 AND p.name = $2",
    )
    .bind(&path.publisher)
    .bind(&path.name)
    .fetch_optional(&app.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no plugin `{}/{}`", path.publisher, path.name)))?;
    let blocked_at: Option<i64> = row.try_get("blocked_at")?;
    let reason: Option<String> = row.try_get("blocked_reason")?;
    Ok((row.try_get("id")?, blocked_at.and(reason)))
}

/// The kill switch: blocks every version of a plugin and refuses new uploads to it.
#[utoipa::path(post, path = "/api/v1/review/plugins/{publisher}/{name}/block", tag = "review", security(("bearer" = [])), params(PluginPath), request_body = ModerationRequest,
    responses((status = 200, body = PluginBlockView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn block_plugin(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<PluginPath>,
    Json(body): Json<ModerationRequest>,
) -> ApiResult<Json<PluginBlockView>> {
    let me = caller.require(&app, reviewer()).await?;
    let reason = checked_reason(&body.reason)?;
    let (plugin_id, _) = find_plugin(&app, &path).await?;
    let now = db::now();
    let mut tx = app.db.pool.begin().await?;
    sqlx::query("UPDATE plugins SET blocked_at = $1, blocked_reason = $2 WHERE id = $3")
        .bind(now)
        .bind(reason)
        .bind(plugin_id)
        .execute(&mut *tx)
        .await?;
    let changed = sqlx::query(
        "UPDATE plugin_versions SET state_before_block = state, state = 'blocked', state_reason = $1, state_changed_at = $2, \
         blocked_with_plugin = 1, claimed_by = NULL, claimed_at = NULL WHERE plugin_id = $3 AND state <> 'blocked'",
    )
    .bind(reason)
    .bind(now)
    .bind(plugin_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let plugin = format!("{}/{}", path.publisher, path.name);
    audit(
        &mut tx,
        Some(me.user_id),
        "plugin.block",
        &format!("plugin:{plugin}"),
        Some(reason),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(PluginBlockView {
        plugin,
        blocked: true,
        blocked_reason: Some(reason.to_owned()),
        versions_changed: changed,
    }))
}

/// Lifts the kill switch: uploads are accepted again and the versions it blocked return to
/// their earlier states. Versions blocked one by one stay blocked.
#[utoipa::path(post, path = "/api/v1/review/plugins/{publisher}/{name}/unblock", tag = "review", security(("bearer" = [])), params(PluginPath), request_body = ModerationRequest,
    responses((status = 200, body = PluginBlockView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn unblock_plugin(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<PluginPath>,
    Json(body): Json<ModerationRequest>,
) -> ApiResult<Json<PluginBlockView>> {
    let me = caller.require(&app, reviewer()).await?;
    let reason = checked_reason(&body.reason)?;
    let (plugin_id, blocked) = find_plugin(&app, &path).await?;
    let plugin = format!("{}/{}", path.publisher, path.name);
    if blocked.is_none() {
        return Err(ApiError::conflict(format!(
            "plugin {plugin} is not blocked"
        )));
    }
    let now = db::now();
    let mut tx = app.db.pool.begin().await?;
    sqlx::query("UPDATE plugins SET blocked_at = NULL, blocked_reason = NULL WHERE id = $1")
        .bind(plugin_id)
        .execute(&mut *tx)
        .await?;
    let changed = sqlx::query(&format!(
        "UPDATE plugin_versions SET state = {RESTORED_STATE}, state_before_block = NULL, \
         blocked_with_plugin = 0, state_reason = $1, state_changed_at = $2 \
         WHERE plugin_id = $3 AND state = 'blocked' AND blocked_with_plugin = 1"
    ))
    .bind(reason)
    .bind(now)
    .bind(plugin_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    audit(
        &mut tx,
        Some(me.user_id),
        "plugin.unblock",
        &format!("plugin:{plugin}"),
        Some(reason),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(PluginBlockView {
        plugin,
        blocked: false,
        blocked_reason: None,
        versions_changed: changed,
    }))
}

page_schema!(QueuePage, QueueItem);
