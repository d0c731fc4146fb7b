//! Read endpoints for plugins and their versions. Publishing arrives with signed packages.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::versions::Rollout;
use super::{Page, PageQuery, PluginPath, rfc3339};
use crate::app::AppState;
use crate::auth::{Caller, Credential, Role};
use crate::error::{ApiError, ApiResult, Problem};
use crate::rate_limit::ClientIp;

/// Version states the public may see; the others are visible to the plugin's publisher
/// members and to reviewers and admins.
pub const PUBLIC_STATES: &[&str] = &["published", "yanked"];

/// `?q=…&publisher=…` plus pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Case-insensitive text matched against names and descriptions.
    pub q: Option<String>,
    /// Only plugins of this publisher.
    pub publisher: Option<String>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Items per page (1–100, default 20).
    pub limit: Option<u32>,
}

/// A plugin.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginView {
    /// Row id (ordering key of lists).
    #[serde(skip)]
    pub row_id: i64,
    /// `publisher/name`.
    pub id: String,
    /// Publisher name.
    pub publisher: String,
    /// Plugin name.
    pub name: String,
    /// Short description.
    pub description: String,
    /// Highest published, non-yanked version, if any.
    pub latest_version: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// `/plugins/{publisher}/{name}/versions/{version}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionPath {
    /// Publisher name.
    pub publisher: String,
    /// Plugin name.
    pub name: String,
    /// Semver version.
    pub version: String,
}

/// A version of a plugin.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    /// Row id (ordering key of lists).
    #[serde(skip)]
    pub row_id: i64,
    /// Semver version.
    pub version: String,
    /// Lifecycle state.
    pub state: String,
    /// Why the version is in its state (yank, rejection or block reason), when a person or
    /// the scan verdict gave one. Visible to whoever may see the version.
    pub state_reason: Option<String>,
    /// SHA-256 of the package bytes, `sha256:<hex>`.
    pub package_digest: String,
    /// Package size in bytes.
    pub package_size: i64,
    /// Where to download the package.
    pub download_url: String,
    /// Upload time (RFC 3339).
    pub created_at: String,
    /// Which share of hosts the update check offers the version to (set by its maintainers).
    pub rollout: Rollout,
}

const PLUGIN_COLUMNS: &str =
    "pl.id, pb.name AS publisher, pl.name, pl.description, pl.created_at, pl.updated_at";

fn plugin_view(
    row: &sqlx::any::AnyRow,
    latest_version: Option<String>,
) -> Result<PluginView, sqlx::Error> {
    let publisher: String = row.try_get("publisher")?;
    let name: String = row.try_get("name")?;
    Ok(PluginView {
        row_id: row.try_get("id")?,
        id: format!("{publisher}/{name}"),
        publisher,
        name,
        description: row.try_get("description")?,
        latest_version,
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

/// Escapes LIKE wildcards so user text matches literally.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Searches and lists plugins.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", params(SearchQuery),
    responses((status = 200, body = PluginPage), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn search_plugins(
    State(app): State<AppState>,
    _caller: Caller,
    client: ClientIp,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<Page<PluginView>>> {
    let page = PageQuery {
        cursor: query.cursor.clone(),
        limit: query.limit,
    }
    .parse()?;
    if query.q.as_ref().is_some_and(|q| q.len() > 200) {
        return Err(ApiError::invalid("q must be at most 200 characters"));
    }
    let text = query.q.as_deref().unwrap_or_default().trim();
    // Text is matched anywhere in names and descriptions, which no index serves: each such
    // search reads the whole table. Listing (no text) walks the primary key and is not limited,
    // so mirrors can page through the catalogue.
    if !text.is_empty() {
        app.limits.search.check(client)?;
    }
    let pattern = like_pattern(text);
    let rows = sqlx::query(&format!(
        "SELECT {PLUGIN_COLUMNS} FROM plugins pl JOIN publishers pb ON pb.id = pl.publisher_id \
         WHERE pl.id > $1 AND ($2 = '' OR pb.name = $2) \
         AND (lower(pl.name) LIKE $3 ESCAPE '\\' OR lower(pl.description) LIKE $3 ESCAPE '\\') \
         ORDER BY pl.id LIMIT $4"
    ))
    .bind(page.after)
    .bind(query.publisher.as_deref().unwrap_or_default())
    .bind(pattern)
    .bind(page.fetch_limit())
    .fetch_all(&app.db.pool)
    .await?;
    let ids = rows
        .iter()
        .map(|row| row.try_get::<i64, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut latest = latest_versions(&app, &ids).await?;
    let views = rows
        .iter()
        .zip(&ids)
        .map(|(row, id)| plugin_view(row, latest.remove(id)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(page.finish(views, |p| p.row_id)))
}

/// The highest published version by semver precedence.
async fn latest_version(app: &AppState, plugin_id: i64) -> ApiResult<Option<String>> {
    Ok(latest_versions(app, &[plugin_id]).await?.remove(&plugin_id))
}

/// The highest published version of each of `plugin_ids` (those with one), by semver
/// precedence, in one query: a page of search results costs two queries, not one per plugin.
async fn latest_versions(app: &AppState, plugin_ids: &[i64]) -> ApiResult<HashMap<i64, String>> {
    if plugin_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT plugin_id, version FROM plugin_versions WHERE state = 'published' AND plugin_id IN ({})",
        crate::db::placeholders(plugin_ids.len())
    );
    // Not kept as a prepared statement: the text changes with the page's length.
    let mut query = sqlx::query(&sql).persistent(false);
    for id in plugin_ids {
        query = query.bind(*id);
    }
    let mut best: HashMap<i64, semver::Version> = HashMap::new();
    for row in query.fetch_all(&app.db.pool).await? {
        // Stored versions were validated as semver at upload; an unparsable one is skipped.
        let Ok(version) = semver::Version::parse(&row.try_get::<String, _>("version")?) else {
            continue;
        };
        let plugin_id: i64 = row.try_get("plugin_id")?;
        let current = best.entry(plugin_id).or_insert_with(|| version.clone());
        if version > *current {
            *current = version;
        }
    }
    Ok(best
        .into_iter()
        .map(|(id, version)| (id, version.to_string()))
        .collect())
}

async fn find_plugin(app: &AppState, path: &PluginPath) -> ApiResult<sqlx::any::AnyRow> {
    sqlx::query(&format!(
        "SELECT {PLUGIN_COLUMNS}, pl.publisher_id FROM plugins pl JOIN publishers pb ON pb.id = pl.publisher_id WHERE pb.name = $1 AND pl.name = $2"
    ))
    .bind(&path.publisher)
    .bind(&path.name)
    .fetch_optional(&app.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no plugin `{}/{}`", path.publisher, path.name)))
}

/// One plugin.
#[utoipa::path(get, path = "/api/v1/plugins/{publisher}/{name}", tag = "plugins", params(PluginPath),
    responses((status = 200, body = PluginView), (status = 404, body = Problem)))]
pub async fn get_plugin(
    State(app): State<AppState>,
    _caller: Caller,
    Path(path): Path<PluginPath>,
) -> ApiResult<Json<PluginView>> {
    let row = find_plugin(&app, &path).await?;
    let latest = latest_version(&app, row.try_get("id")?).await?;
    Ok(Json(plugin_view(&row, latest)?))
}

/// Whether the caller may see versions in every state: publisher members, reviewers, admins.
async fn sees_all_states(app: &AppState, caller: &Caller, publisher_id: i64) -> ApiResult<bool> {
    let Some(me) = caller.principal() else {
        return Ok(false);
    };
    // Store-wide roles act only through a login session; an API token sees what its owner's
    // membership shows, and only within the publisher it is limited to.
    let token_publisher = match &me.credential {
        Credential::Session { .. } if me.role >= Role::Reviewer => return Ok(true),
        Credential::Session { .. } => None,
        Credential::ApiToken { publisher_id, .. } => *publisher_id,
    };
    if token_publisher.is_some_and(|limit| limit != publisher_id) {
        return Ok(false);
    }
    let member = sqlx::query(
        "SELECT 1 AS one FROM publisher_members WHERE publisher_id = $1 AND user_id = $2",
    )
    .bind(publisher_id)
    .bind(me.user_id)
    .fetch_optional(&app.db.pool)
    .await?;
    Ok(member.is_some())
}

pub fn version_view(app: &AppState, row: &sqlx::any::AnyRow) -> Result<VersionView, sqlx::Error> {
    let digest: String = row.try_get("package_digest")?;
    Ok(VersionView {
        row_id: row.try_get("id")?,
        version: row.try_get("version")?,
        state: row.try_get("state")?,
        state_reason: row.try_get("state_reason")?,
        download_url: format!("{}/blobs/sha256/{digest}", app.settings.http.public_url),
        package_digest: format!("sha256:{digest}"),
        package_size: row.try_get("package_size")?,
        created_at: rfc3339(row.try_get("created_at")?),
        rollout: Rollout {
            percent: u8::try_from(row.try_get::<i64, _>("rollout_percent")?.clamp(0, 100))
                .unwrap_or(100),
            paused: row.try_get::<i64, _>("rollout_paused")? != 0,
        },
    })
}

const VERSION_COLUMNS: &str = "id, version, state, state_reason, package_digest, package_size, created_at, \
     rollout_percent, rollout_paused";

/// Versions of a plugin in upload order. The public sees published and yanked versions.
#[utoipa::path(get, path = "/api/v1/plugins/{publisher}/{name}/versions", tag = "plugins", params(PluginPath, PageQuery),
    responses((status = 200, body = VersionPage), (status = 404, body = Problem)))]
pub async fn list_versions(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<PluginPath>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<VersionView>>> {
    let page = page.parse()?;
    let plugin = find_plugin(&app, &path).await?;
    let all = sees_all_states(&app, &caller, plugin.try_get("publisher_id")?).await?;
    let rows = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE plugin_id = $1 AND id > $2 \
         AND ($3 = 1 OR state IN ('published', 'yanked')) ORDER BY id LIMIT $4"
    ))
    .bind(plugin.try_get::<i64, _>("id")?)
    .bind(page.after)
    .bind(i64::from(all))
    .bind(page.fetch_limit())
    .fetch_all(&app.db.pool)
    .await?;
    let views = rows
        .iter()
        .map(|r| version_view(&app, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(page.finish(views, |v| v.row_id)))
}

/// One version.
#[utoipa::path(get, path = "/api/v1/plugins/{publisher}/{name}/versions/{version}", tag = "plugins", params(VersionPath),
    responses((status = 200, body = VersionView), (status = 404, body = Problem)))]
pub async fn get_version(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
) -> ApiResult<Json<VersionView>> {
    let plugin_path = PluginPath {
        publisher: path.publisher.clone(),
        name: path.name.clone(),
    };
    let plugin = find_plugin(&app, &plugin_path).await?;
    let all = sees_all_states(&app, &caller, plugin.try_get("publisher_id")?).await?;
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE plugin_id = $1 AND version = $2"
    ))
    .bind(plugin.try_get::<i64, _>("id")?)
    .bind(&path.version)
    .fetch_optional(&app.db.pool)
    .await?
    .filter(|r| {
        all || r
            .try_get::<String, _>("state")
            .is_ok_and(|s| PUBLIC_STATES.contains(&s.as_str()))
    })
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "no version {} of `{}/{}`",
            path.version, path.publisher, path.name
        ))
    })?;
    Ok(Json(version_view(&app, &row)?))
}

/// The latest scan report of a version, as the worker posted it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScanReportView {
    /// The state the report led to.
    pub verdict: String,
    /// The worst finding's severity.
    pub max_severity: String,
    /// Findings, metrics, scanner version and duration.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
    /// When the report arrived (RFC 3339).
    pub created_at: String,
}

/// The latest scan report of a version: for the plugin's publisher members (their own
/// versions) and for reviewers and admins. Everyone else gets 404, as for hidden versions.
#[utoipa::path(get, path = "/api/v1/plugins/{publisher}/{name}/versions/{version}/scan-report", tag = "plugins", params(VersionPath),
    responses((status = 200, body = ScanReportView), (status = 404, body = Problem)))]
pub async fn get_scan_report(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
) -> ApiResult<Json<ScanReportView>> {
    let plugin_path = PluginPath {
        publisher: path.publisher.clone(),
        name: path.name.clone(),
    };
    let plugin = find_plugin(&app, &plugin_path).await?;
    let missing = || {
        ApiError::not_found(format!(
            "no scan report for {} of `{}/{}`",
            path.version, path.publisher, path.name
        ))
    };
    if !sees_all_states(&app, &caller, plugin.try_get("publisher_id")?).await? {
        return Err(missing());
    }
    let row = sqlx::query(
        "SELECT r.verdict, r.max_severity, r.report, r.created_at FROM scan_reports r \
         JOIN plugin_versions v ON v.id = r.version_id WHERE v.plugin_id = $1 AND v.version = $2 \
         ORDER BY r.id DESC LIMIT 1",
    )
    .bind(plugin.try_get::<i64, _>("id")?)
    .bind(&path.version)
    .fetch_optional(&app.db.pool)
    .await?
    .ok_or_else(missing)?;
    let report: String = row.try_get("report")?;
    Ok(Json(ScanReportView {
        verdict: row.try_get("verdict")?,
        max_severity: row.try_get("max_severity")?,
        report: serde_json::from_str(&report).map_err(ApiError::internal)?,
        created_at: rfc3339(row.try_get("created_at")?),
    }))
}

page_schema!(PluginPage, PluginView);

page_schema!(VersionPage, VersionView);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("a%b_c"), "%a\\%b\\_c%");
    }
}
