//! The internal API scan workers use: claim a job with a lease, keep it alive, post the report
//! (which decides the version's state) or give up on it.
//!
//! Workers authenticate with the store's worker token (`scan.worker_token`), not as users. A
//! worker that dies loses nothing: its lease expires and the next claim takes the job again;
//! after `scan.max_attempts` claims the version goes to review as `scan_failed`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::audit;
use crate::app::AppState;
use crate::db::{self, Engine};
use crate::error::{ApiError, ApiResult, Problem};

/// Longest report accepted, in findings.
pub const MAX_FINDINGS: usize = 1000;
/// Longest text of one finding field.
pub const MAX_FINDING_TEXT: usize = 4096;

/// A caller holding the worker token.
pub struct ScanWorker;

impl FromRequestParts<AppState> for ScanWorker {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("scan workers send `Authorization: Bearer <worker token>`")
            })?;
        let hash = crate::secrets::sha256_hex(presented.trim());
        // Digests are compared, not tokens: an early mismatch in the comparison tells an
        // attacker about a hash they cannot steer, not about the secret.
        if hash != app.worker_token_hash {
            return Err(ApiError::unauthorized("the worker token is not valid"));
        }
        Ok(Self)
    }
}

/// Who is asking for work.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// A name for the worker (host and process), recorded with the lease.
    pub worker: String,
}

/// A job handed to a worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimedJob {
    /// Job id.
    pub job_id: i64,
    /// `publisher/name`.
    pub plugin: String,
    /// Version.
    pub version: String,
    /// SHA-256 of the package, `sha256:<hex>`.
    pub package_digest: String,
    /// Package size in bytes.
    pub package_size: i64,
    /// Where to fetch the package.
    pub package_url: String,
    /// The manifest as uploaded.
    pub manifest: String,
    /// Which claim of this job this is (1-based).
    pub attempt: i64,
    /// When the lease ends unless renewed (Unix seconds).
    pub lease_expires_at: i64,
}

/// One finding of a scan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Stable rule id, e.g. `wasm.undeclared-capability`.
    pub rule: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: Severity,
    /// What was found.
    pub message: String,
    /// What triggered it (bounded).
    #[serde(default)]
    pub evidence: Option<String>,
    /// Where (file, section, offset).
    #[serde(default)]
    pub location: Option<String>,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Inventory.
    Info,
    /// Worth a look.
    Low,
    /// Suspicious.
    Medium,
    /// Dangerous unless explained: holds the version for review.
    High,
    /// Malicious: rejects the version.
    Critical,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// A worker's report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanReport {
    /// The worker that ran the scan.
    pub worker: String,
    /// Everything found.
    pub findings: Vec<Finding>,
    /// Measurements (fuel used, peak memory, entropy, …).
    #[serde(default)]
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// Scanner version.
    pub scanner_version: String,
    /// Time the scan took.
    pub duration_ms: u64,
}

/// A worker giving up on a job.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The worker holding the lease.
    pub worker: String,
    /// Why the scan could not complete.
    pub error: String,
}

/// What a report decided.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScanOutcome {
    /// The version's new state.
    pub state: String,
    /// The worst finding.
    pub max_severity: Severity,
}

/// `/internal/v1/scan-jobs/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// Job id.
    pub id: i64,
}

/// Marks jobs whose last lease ran out after their final attempt as failed, and sends their
/// versions to review, in one transaction: a failed job's version never stays `scanning`.
async fn expire_exhausted(app: &AppState, now: i64) -> ApiResult<()> {
    let max = i64::from(app.settings.scan.max_attempts);
    let mut tx = app.db.pool.begin().await?;
    let exhausted: Vec<i64> = sqlx::query_scalar(
        "UPDATE scan_jobs SET state = 'failed', last_error = 'lease expired on the last attempt', updated_at = $1 \
         WHERE state = 'leased' AND lease_expires_at < $1 AND attempts >= $2 RETURNING version_id",
    )
    .bind(now)
    .bind(max)
    .fetch_all(&mut *tx)
    .await?;
    for version_id in exhausted {
        send_to_review(
            &mut tx,
            version_id,
            "scan_failed: every attempt ended without a report",
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Sends a version whose scan failed for good to review, where a person decides.
async fn send_to_review(
    tx: &mut sqlx::AnyConnection,
    version_id: i64,
    reason: &str,
) -> ApiResult<()> {
    sqlx::query("UPDATE plugin_versions SET state = 'pending_review', state_reason = $1, state_changed_at = $2 WHERE id = $3 AND state = 'scanning'")
        .bind(reason)
        .bind(db::now())
        .bind(version_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// Claims the oldest job that is queued or whose lease ran out. `204` when there is none.
#[utoipa::path(post, path = "/internal/v1/scan-jobs/claim", tag = "internal", security(("worker" = [])), request_body = ClaimRequest,
    responses((status = 200, body = ClaimedJob), (status = 204, description = "no job waiting"), (status = 401, body = Problem)))]
pub async fn claim_scan_job(
    State(app): State<AppState>,
    _worker: ScanWorker,
    Json(body): Json<ClaimRequest>,
) -> ApiResult<Response> {
    let worker = checked_worker(&body.worker)?;
    let now = db::now();
    expire_exhausted(&app, now).await?;
    let expires = now + app.settings.scan.lease_secs as i64;
    // On PostgreSQL several replicas claim at once; SKIP LOCKED lets each take a different
    // row without waiting. SQLite runs one writer at a time, so the plain form is safe there.
    let lock = match app.db.engine {
        Engine::Postgres => "FOR UPDATE SKIP LOCKED",
        Engine::Sqlite => "",
    };
    let claimed = sqlx::query(&format!(
        "UPDATE scan_jobs SET state = 'leased', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id = (SELECT id FROM scan_jobs WHERE (state = 'queued' OR (state = 'leased' AND lease_expires_at < $3)) \
                     AND attempts < $4 ORDER BY id LIMIT 1 {lock}) \
         RETURNING id, version_id, attempts"
    ))
    .bind(worker)
    .bind(expires)
    .bind(now)
    .bind(i64::from(app.settings.scan.max_attempts))
    .fetch_optional(&app.db.pool)
    .await?;
    let Some(job) = claimed else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let version_id: i64 = job.try_get("version_id")?;
    let row = sqlx::query(
        "SELECT pb.name AS publisher, p.name, v.version, v.package_digest, v.package_size, v.manifest FROM plugin_versions v \
         JOIN plugins p ON p.id = v.plugin_id JOIN publishers pb ON pb.id = p.publisher_id WHERE v.id = $1",
    )
    .bind(version_id)
    .fetch_one(&app.db.pool)
    .await?;
    let digest: String = row.try_get("package_digest")?;
    let claimed = ClaimedJob {
        job_id: job.try_get("id")?,
        plugin: format!(
            "{}/{}",
            row.try_get::<String, _>("publisher")?,
            row.try_get::<String, _>("name")?
        ),
        version: row.try_get("version")?,
        package_url: format!("{}/blobs/sha256/{digest}", app.settings.http.public_url),
        package_digest: format!("sha256:{digest}"),
        package_size: row.try_get("package_size")?,
        manifest: row.try_get("manifest")?,
        attempt: job.try_get("attempts")?,
        lease_expires_at: expires,
    };
    Ok(Json(claimed).into_response())
}

fn checked_worker(worker: &str) -> ApiResult<&str> {
    let worker = worker.trim();
    if worker.is_empty() || worker.len() > 200 {
        return Err(ApiError::invalid(
            "worker must name the worker in 1 to 200 characters",
        ));
    }
    Ok(worker)
}

/// Extends the lease of a job the caller holds.
#[utoipa::path(post, path = "/internal/v1/scan-jobs/{id}/heartbeat", tag = "internal", security(("worker" = [])), params(JobPath), request_body = ClaimRequest,
    responses((status = 200, body = ClaimedJob), (status = 401, body = Problem), (status = 409, body = Problem)))]
pub async fn heartbeat_scan_job(
    State(app): State<AppState>,
    _worker: ScanWorker,
    Path(path): Path<JobPath>,
    Json(body): Json<ClaimRequest>,
) -> ApiResult<StatusCode> {
    let worker = checked_worker(&body.worker)?;
    let now = db::now();
    let renewed = sqlx::query("UPDATE scan_jobs SET lease_expires_at = $1, updated_at = $2 WHERE id = $3 AND state = 'leased' AND lease_owner = $4 AND lease_expires_at >= $2")
        .bind(now + app.settings.scan.lease_secs as i64)
        .bind(now)
        .bind(path.id)
        .bind(worker)
        .execute(&app.db.pool)
        .await?;
    if renewed.rows_affected() == 0 {
        return Err(lost_lease(path.id));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn lost_lease(id: i64) -> ApiError {
    ApiError::conflict(format!(
        "job {id} is not leased to this worker (the lease may have expired); drop it and claim again"
    ))
}

/// The state a report leads to: critical → rejected; high → review; a clean first version of
/// a new plugin → review when `scan.first_version_review`; otherwise published.
fn verdict(
    max: Severity,
    first_version: bool,
    first_version_review: bool,
) -> (&'static str, &'static str) {
    match max {
        Severity::Critical => ("rejected", "scan found a critical problem"),
        Severity::High => ("pending_review", "scan found a high-severity problem"),
        _ if first_version && first_version_review => {
            ("pending_review", "first version of a new plugin")
        }
        _ => ("published", "scan clean"),
    }
}

/// Posts the report of a job the caller holds; the report decides the version's state.
#[utoipa::path(post, path = "/internal/v1/scan-jobs/{id}/report", tag = "internal", security(("worker" = [])), params(JobPath), request_body = ScanReport,
    responses((status = 200, body = ScanOutcome), (status = 401, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn report_scan_job(
    State(app): State<AppState>,
    _worker: ScanWorker,
    Path(path): Path<JobPath>,
    Json(report): Json<ScanReport>,
) -> ApiResult<Json<ScanOutcome>> {
    let worker = checked_worker(&report.worker)?.to_owned();
    if report.findings.len() > MAX_FINDINGS {
        return Err(ApiError::invalid(format!(
            "a report may hold at most {MAX_FINDINGS} findings"
        )));
    }
    let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_FINDING_TEXT);
    if report.findings.iter().any(|f| {
        f.rule.len() > 200
            || f.message.len() > MAX_FINDING_TEXT
            || too_long(&f.evidence)
            || too_long(&f.location)
    }) {
        return Err(ApiError::invalid(format!(
            "finding fields are limited to {MAX_FINDING_TEXT} bytes"
        )));
    }
    let max = report
        .findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Info);
    let now = db::now();
    let mut tx = app.db.pool.begin().await?;
    // A lease that has run out is over even before another worker claims the job.
    let done = sqlx::query("UPDATE scan_jobs SET state = 'done', updated_at = $1 WHERE id = $2 AND state = 'leased' AND lease_owner = $3 AND lease_expires_at >= $1 RETURNING version_id")
        .bind(now)
        .bind(path.id)
        .bind(&worker)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| lost_lease(path.id))?;
    let version_id: i64 = done.try_get("version_id")?;
    let earlier: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM plugin_versions v WHERE v.plugin_id = (SELECT plugin_id FROM plugin_versions WHERE id = $1) \
         AND v.id <> $1 AND v.state IN ('published', 'yanked')",
    )
    .bind(version_id)
    .fetch_one(&mut *tx)
    .await?;
    let (state, reason) = verdict(max, earlier == 0, app.settings.scan.first_version_review);
    sqlx::query("INSERT INTO scan_reports (version_id, job_id, verdict, max_severity, report, scanner_version, worker, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(version_id)
        .bind(path.id)
        .bind(state)
        .bind(max.as_str())
        .bind(serde_json::to_string(&report).map_err(ApiError::internal)?)
        .bind(&report.scanner_version)
        .bind(&worker)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE plugin_versions SET state = $1, state_reason = $2, state_changed_at = $3 WHERE id = $4 AND state = 'scanning'")
        .bind(state)
        .bind(reason)
        .bind(now)
        .bind(version_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(ScanOutcome {
        state: state.to_owned(),
        max_severity: max,
    }))
}

/// Gives a job back after a failure; after the last attempt the version goes to review.
#[utoipa::path(post, path = "/internal/v1/scan-jobs/{id}/fail", tag = "internal", security(("worker" = [])), params(JobPath), request_body = FailRequest,
    responses((status = 204), (status = 401, body = Problem), (status = 409, body = Problem)))]
pub async fn fail_scan_job(
    State(app): State<AppState>,
    _worker: ScanWorker,
    Path(path): Path<JobPath>,
    Json(body): Json<FailRequest>,
) -> ApiResult<StatusCode> {
    let worker = checked_worker(&body.worker)?;
    let error: String = body.error.chars().take(MAX_FINDING_TEXT).collect();
    let now = db::now();
    let mut tx = app.db.pool.begin().await?;
    let row = sqlx::query(
        "UPDATE scan_jobs SET state = CASE WHEN attempts >= $1 THEN 'failed' ELSE 'queued' END, lease_owner = NULL, \
         lease_expires_at = NULL, last_error = $2, updated_at = $3 \
         WHERE id = $4 AND state = 'leased' AND lease_owner = $5 AND lease_expires_at >= $3 RETURNING state, version_id",
    )
    .bind(i64::from(app.settings.scan.max_attempts))
    .bind(&error)
    .bind(now)
    .bind(path.id)
    .bind(worker)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| lost_lease(path.id))?;
    if row.try_get::<String, _>("state")? == "failed" {
        let version_id: i64 = row.try_get("version_id")?;
        send_to_review(&mut tx, version_id, &format!("scan_failed: {error}")).await?;
        audit(
            &mut tx,
            None,
            "scan.failed",
            &format!("scan-job:{}", path.id),
            Some(&error),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_policy() {
        assert_eq!(verdict(Severity::Critical, false, true).0, "rejected");
        assert_eq!(verdict(Severity::High, false, false).0, "pending_review");
        assert_eq!(verdict(Severity::Medium, true, true).0, "pending_review");
        assert_eq!(verdict(Severity::Medium, true, false).0, "published");
        assert_eq!(verdict(Severity::Info, false, true).0, "published");
    }
}
