//! Abuse reports: any signed-in user reports a plugin or one of its versions; reviewers list
//! and resolve them.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::audit;
use super::plugins::PUBLIC_STATES;
use super::{Page, PageQuery, PluginPath, checked_reason, rfc3339};
use crate::app::AppState;
use crate::auth::{Caller, Require, Role};
use crate::db;
use crate::error::{ApiError, ApiResult, Problem};

/// A user's report of a plugin or version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbuseReportRequest {
    /// What is wrong (malware, impersonation, broken promises, …).
    pub reason: String,
    /// The version concerned, if one in particular.
    pub version: Option<String>,
}

/// How a reviewer closed a report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveReportRequest {
    /// What was done (or why nothing was).
    pub resolution: String,
}

/// An abuse report.
#[derive(Debug, Serialize, ToSchema)]
pub struct AbuseReportView {
    /// Report id.
    pub id: i64,
    /// `publisher/name`.
    pub plugin: String,
    /// The version concerned, if any.
    pub version: Option<String>,
    /// Who reported it.
    pub reporter: String,
    /// The reporter's text.
    pub reason: String,
    /// `open` or `resolved`.
    pub state: String,
    /// The reviewer's resolution.
    pub resolution: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When it was resolved (RFC 3339).
    pub resolved_at: Option<String>,
    /// When it was filed (RFC 3339).
    pub created_at: String,
}

/// Which reports to list.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportState {
    /// Waiting for a reviewer.
    #[default]
    Open,
    /// Closed with a resolution.
    Resolved,
}

impl ReportState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
        }
    }
}

/// `?state=open|resolved` plus pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `open` (default) or `resolved`.
    #[param(inline)]
    pub state: Option<ReportState>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Items per page (1–100, default 20).
    pub limit: Option<u32>,
}

/// `/review/reports/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReportPath {
    /// Report id.
    pub id: i64,
}

const REPORT_SELECT: &str = "SELECT r.id, pb.name AS publisher, p.name AS plugin_name, r.version, reporter.username AS reporter, \
     r.reason, r.state, r.resolution, resolver.username AS resolver, r.resolved_at, r.created_at \
     FROM abuse_reports r JOIN plugins p ON p.id = r.plugin_id JOIN publishers pb ON pb.id = p.publisher_id \
     JOIN users reporter ON reporter.id = r.reporter_id LEFT JOIN users resolver ON resolver.id = r.resolved_by";

fn report_view(row: &sqlx::any::AnyRow) -> Result<AbuseReportView, sqlx::Error> {
    Ok(AbuseReportView {
        id: row.try_get("id")?,
        plugin: format!(
            "{}/{}",
            row.try_get::<String, _>("publisher")?,
            row.try_get::<String, _>("plugin_name")?
        ),
        version: row.try_get("version")?,
        reporter: row.try_get("reporter")?,
        reason: row.try_get("reason")?,
        state: row.try_get("state")?,
        resolution: row.try_get("resolution")?,
        resolved_by: row.try_get("resolver")?,
        resolved_at: row.try_get::<Option<i64>, _>("resolved_at")?.map(rfc3339),
        created_at: rfc3339(row.try_get("created_at")?),
    })
}

async fn find_report(app: &AppState, id: i64) -> ApiResult<AbuseReportView> {
    let row = sqlx::query(&format!("{REPORT_SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(&app.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no abuse report {id}")))?;
    Ok(report_view(&row)?)
}

/// Reports a plugin, or one of its public versions, to the store's moderators.
#[utoipa::path(post, path = "/api/v1/plugins/{publisher}/{name}/reports", tag = "plugins", security(("bearer" = [])), params(PluginPath), request_body = AbuseReportRequest,
    responses((status = 201, body = AbuseReportView), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn report_abuse(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<PluginPath>,
    Json(body): Json<AbuseReportRequest>,
) -> ApiResult<(StatusCode, Json<AbuseReportView>)> {
    let me = caller.require(&app, Require::signed_in()).await?;
    let reason = checked_reason(&body.reason)?;
    let plugin_id: i64 = sqlx::query_scalar(
        "SELECT p.id FROM plugins p JOIN publishers pb ON pb.id = p.publisher_id WHERE pb.name = $1 AND p.name = $2",
    )
    .bind(&path.publisher)
    .bind(&path.name)
    .fetch_optional(&app.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no plugin `{}/{}`", path.publisher, path.name)))?;
    if let Some(version) = &body.version {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
        )
        .bind(plugin_id)
        .bind(version)
        .fetch_optional(&app.db.pool)
        .await?;
        if !state.is_some_and(|s| PUBLIC_STATES.contains(&s.as_str())) {
            return Err(ApiError::not_found(format!(
                "no version {version} of `{}/{}`",
                path.publisher, path.name
            )));
        }
    }
    app.limits.abuse_reports_by_user.check_key(&me.user_id)?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO abuse_reports (plugin_id, version, reporter_id, reason, state, created_at) \
         VALUES ($1, $2, $3, $4, 'open', $5) RETURNING id",
    )
    .bind(plugin_id)
    .bind(body.version.as_deref())
    .bind(me.user_id)
    .bind(reason)
    .bind(db::now())
    .fetch_one(&app.db.pool)
    .await?;
    Ok((StatusCode::CREATED, Json(find_report(&app, id).await?)))
}

/// Abuse reports, oldest first.
#[utoipa::path(get, path = "/api/v1/review/reports", tag = "review", security(("bearer" = [])), params(ReportQuery),
    responses((status = 200, body = AbuseReportPage), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn list_reports(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<ReportQuery>,
) -> ApiResult<Json<Page<AbuseReportView>>> {
    caller.require(&app, Require::role(Role::Reviewer)).await?;
    let page = PageQuery {
        cursor: query.cursor.clone(),
        limit: query.limit,
    }
    .parse()?;
    let rows = sqlx::query(&format!(
        "{REPORT_SELECT} WHERE r.state = $1 AND r.id > $2 ORDER BY r.id LIMIT $3"
    ))
    .bind(query.state.unwrap_or_default().as_str())
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(&app.db.pool)
    .await?;
    let reports = rows
        .iter()
        .map(report_view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(page.finish(reports, |r| r.id)))
}

/// Closes an open report with a resolution.
#[utoipa::path(post, path = "/api/v1/review/reports/{id}/resolve", tag = "review", security(("bearer" = [])), params(ReportPath), request_body = ResolveReportRequest,
    responses((status = 200, body = AbuseReportView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn resolve_report(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<ReportPath>,
    Json(body): Json<ResolveReportRequest>,
) -> ApiResult<Json<AbuseReportView>> {
    let me = caller.require(&app, Require::role(Role::Reviewer)).await?;
    let resolution = checked_reason(&body.resolution)?;
    let report = find_report(&app, path.id).await?;
    let mut tx = app.db.pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE abuse_reports SET state = 'resolved', resolution = $1, resolved_by = $2, resolved_at = $3 \
         WHERE id = $4 AND state = 'open'",
    )
    .bind(resolution)
    .bind(me.user_id)
    .bind(db::now())
    .bind(path.id)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 0 {
        return Err(ApiError::conflict(format!(
            "abuse report {} is already resolved",
            report.id
        )));
    }
    audit(
        &mut tx,
        Some(me.user_id),
        "report.resolve",
        &format!("report:{}", report.id),
        Some(resolution),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(find_report(&app, path.id).await?))
}

page_schema!(AbuseReportPage, AbuseReportView);
