//! Store administration: users and roles, the audit log.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::auth::UserView;
use super::{Page, PageQuery, audit};
use crate::app::AppState;
use crate::auth::{Caller, Require, Role};
use crate::db;
use crate::error::{ApiError, ApiResult, Problem};

/// `/admin/users/{username}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// Username.
    pub username: String,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// New store-wide role.
    pub role: Option<Role>,
    /// Disable (true) or re-enable (false) the account. While disabled it cannot sign in and
    /// its sessions and API tokens are refused; re-enabling restores them.
    pub disabled: Option<bool>,
}

const USER_COLUMNS: &str = "id, username, email, role, created_at, disabled_at";

/// Lists users.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = UserPage), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_users(
    State(app): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<UserView>>> {
    caller.require(&app, Require::role(Role::Admin)).await?;
    let page = page.parse()?;
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE deleted_at IS NULL AND id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(&app.db.pool)
    .await?;
    let users = rows
        .iter()
        .map(UserView::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(page.finish(users, |u| u.id)))
}

async fn find_user(app: &AppState, username: &str) -> ApiResult<UserView> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL"
    ))
    .bind(username)
    .fetch_optional(&app.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no user named `{username}`")))?;
    Ok(UserView::from_row(&row)?)
}

/// Changes a user's role or disables the account.
#[utoipa::path(patch, path = "/api/v1/admin/users/{username}", tag = "admin", security(("bearer" = [])), params(UserPath), request_body = UpdateUserRequest,
    responses((status = 200, body = UserView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn update_user(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<UserPath>,
    Json(body): Json<UpdateUserRequest>,
) -> ApiResult<Json<UserView>> {
    let me = caller.require(&app, Require::role(Role::Admin)).await?;
    let user = find_user(&app, &path.username).await?;
    if user.id == me.user_id
        && (body.disabled == Some(true) || body.role.is_some_and(|r| r != Role::Admin))
    {
        return Err(ApiError::conflict(
            "admins cannot disable or demote themselves; ask another admin",
        ));
    }
    let target = format!("user:{}", user.username);
    let mut tx = app.db.pool.begin().await?;
    if let Some(role) = body.role {
        let changed = sqlx::query("UPDATE users SET role = $1 WHERE id = $2 AND role <> $1")
            .bind(role.as_str())
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() == 1 {
            audit(
                &mut tx,
                Some(me.user_id),
                "user.role",
                &target,
                Some(role.as_str()),
            )
            .await?;
        }
    }
    let changed = match body.disabled {
        Some(true) => Some((
            "user.disable",
            sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
                .bind(db::now())
                .bind(user.id)
                .execute(&mut *tx)
                .await?,
        )),
        Some(false) => Some((
            "user.enable",
            sqlx::query(
                "UPDATE users SET disabled_at = NULL WHERE id = $1 AND disabled_at IS NOT NULL",
            )
            .bind(user.id)
            .execute(&mut *tx)
            .await?,
        )),
        None => None,
    };
    if let Some((action, changed)) = changed
        && changed.rows_affected() == 1
    {
        audit(&mut tx, Some(me.user_id), action, &target, None).await?;
    }
    tx.commit().await?;
    tracing::info!(admin = %me.username, user = %user.username, role = ?body.role, disabled = ?body.disabled, "user updated");
    Ok(Json(find_user(&app, &path.username).await?))
}

/// Deletes a user: sessions and tokens stop working, the username is never reused.
#[utoipa::path(delete, path = "/api/v1/admin/users/{username}", tag = "admin", security(("bearer" = [])), params(UserPath),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_user(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<UserPath>,
) -> ApiResult<StatusCode> {
    let me = caller.require(&app, Require::role(Role::Admin)).await?;
    let user = find_user(&app, &path.username).await?;
    if user.id == me.user_id {
        return Err(ApiError::conflict(
            "admins cannot delete themselves; ask another admin",
        ));
    }
    let now = db::now();
    let mut tx = app.db.pool.begin().await?;
    sqlx::query("UPDATE users SET deleted_at = $1 WHERE id = $2")
        .bind(now)
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    let target = format!("user:{}", user.username);
    audit(&mut tx, Some(me.user_id), "user.delete", &target, None).await?;
    tx.commit().await?;
    tracing::info!(admin = %me.username, user = %user.username, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `?target=…&actor=…` plus pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditLogQuery {
    /// Only entries about this target, e.g. `version:acme/widget@1.0.0`, `plugin:acme/widget`.
    pub target: Option<String>,
    /// Only entries by this username.
    pub actor: Option<String>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Items per page (1–100, default 20).
    pub limit: Option<u32>,
}

/// One entry of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Entry id (ordering key).
    pub id: i64,
    /// Who acted; `null` for the system.
    pub actor: Option<String>,
    /// What was done, e.g. `version.block`.
    pub action: String,
    /// What it was done to, e.g. `version:acme/widget@1.0.0`.
    pub target: String,
    /// The reason given.
    pub reason: Option<String>,
    /// When (RFC 3339).
    pub created_at: String,
}

/// The audit log, newest first. It is append-only: no endpoint changes or removes entries.
#[utoipa::path(get, path = "/api/v1/admin/audit-log", tag = "admin", security(("bearer" = [])), params(AuditLogQuery),
    responses((status = 200, body = AuditLogPage), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn list_audit_log(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditLogQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    caller.require(&app, Require::role(Role::Admin)).await?;
    let page = PageQuery {
        cursor: query.cursor.clone(),
        limit: query.limit,
    }
    .parse()?;
    // Newest first: the cursor is the last id seen, and the next page holds smaller ids.
    let before = if query.cursor.is_some() {
        page.after
    } else {
        i64::MAX
    };
    let rows = sqlx::query(
        "SELECT a.id, u.username AS actor, a.action, a.target, a.reason, a.created_at FROM audit_log a \
         LEFT JOIN users u ON u.id = a.actor_id \
         WHERE a.id < $1 AND ($2 = '' OR a.target = $2) AND ($3 = '' OR lower(u.username) = lower($3)) \
         ORDER BY a.id DESC LIMIT $4",
    )
    .bind(before)
    .bind(query.target.as_deref().unwrap_or_default())
    .bind(query.actor.as_deref().unwrap_or_default())
    .bind(page.fetch_limit())
    .fetch_all(&app.db.pool)
    .await?;
    let entries = rows
        .iter()
        .map(|row| -> Result<AuditEntry, sqlx::Error> {
            Ok(AuditEntry {
                id: row.try_get("id")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                reason: row.try_get("reason")?,
                created_at: super::rfc3339(row.try_get("created_at")?),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(page.finish(entries, |e| e.id)))
}

page_schema!(UserPage, UserView);

page_schema!(AuditLogPage, AuditEntry);
