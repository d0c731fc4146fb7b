//! Store administration: users and roles.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::UserView;
use super::{Page, PageQuery};
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
    responses((status = 200, body = Page<UserView>), (status = 401, body = Problem), (status = 403, body = Problem)))]
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
    if let Some(role) = body.role {
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(user.id)
            .execute(&app.db.pool)
            .await?;
    }
    match body.disabled {
        Some(true) => {
            sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
                .bind(db::now())
                .bind(user.id)
                .execute(&app.db.pool)
                .await?;
        }
        Some(false) => {
            sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
                .bind(user.id)
                .execute(&app.db.pool)
                .await?;
        }
        None => {}
    }
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
    tx.commit().await?;
    tracing::info!(admin = %me.username, user = %user.username, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}
