//! Publishers (namespaces) and their members.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::{Page, PageQuery, PublisherPath, audit, rfc3339};
use crate::app::AppState;
use crate::auth::{Caller, MemberRole, Require, Scope};
use crate::error::{ApiError, ApiResult, Problem};
use crate::{db, names};

/// A publisher to create; the caller becomes its first owner.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePublisherRequest {
    /// Namespace of the publisher's plugins: 2–39 lowercase letters, digits, hyphens.
    pub name: String,
    /// Human-readable name; defaults to `name`.
    pub display_name: Option<String>,
}

/// A publisher.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublisherView {
    /// Publisher id (ordering key of lists).
    #[serde(skip)]
    pub id: i64,
    /// Namespace.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// A member of a publisher.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// Username.
    pub username: String,
    /// Role within the publisher.
    pub role: MemberRole,
    /// When they joined (RFC 3339).
    pub added_at: String,
}

/// The role to give a member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMemberRequest {
    /// `owner` or `maintainer`.
    pub role: MemberRole,
}

/// `/publishers/{publisher}/members/{username}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberPath {
    /// Publisher name.
    pub publisher: String,
    /// Username of the member.
    pub username: String,
}

fn publisher_view(row: &sqlx::any::AnyRow) -> Result<PublisherView, sqlx::Error> {
    Ok(PublisherView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        created_at: rfc3339(row.try_get("created_at")?),
    })
}

/// Creates a publisher owned by the caller.
#[utoipa::path(post, path = "/api/v1/publishers", tag = "publishers", security(("bearer" = [])), request_body = CreatePublisherRequest,
    responses((status = 201, body = PublisherView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_publisher(
    State(app): State<AppState>,
    caller: Caller,
    Json(body): Json<CreatePublisherRequest>,
) -> ApiResult<(StatusCode, Json<PublisherView>)> {
    let me = caller.require(&app, Require::session()).await?;
    names::validate_name("publisher name", &body.name)?;
    let display_name = body
        .display_name
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(&body.name);
    if display_name.chars().count() > 100 {
        return Err(ApiError::invalid(
            "display_name must be at most 100 characters",
        ));
    }
    let now = db::now();
    let mut tx = app.db.pool.begin().await?;
    let row = sqlx::query("INSERT INTO publishers (name, display_name, created_at) VALUES ($1, $2, $3) RETURNING id, name, display_name, created_at")
        .bind(&body.name)
        .bind(display_name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| if db::is_unique_violation(&e) { ApiError::conflict(format!("publisher `{}` already exists", body.name)) } else { e.into() })?;
    let view = publisher_view(&row)?;
    sqlx::query("INSERT INTO publisher_members (publisher_id, user_id, role, added_at) VALUES ($1, $2, 'owner', $3)")
        .bind(view.id)
        .bind(me.user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    audit(
        &mut tx,
        Some(me.user_id),
        "publisher.create",
        &format!("publisher:{}", view.name),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Lists publishers by creation order.
#[utoipa::path(get, path = "/api/v1/publishers", tag = "publishers", params(PageQuery),
    responses((status = 200, body = PublisherPage), (status = 422, body = Problem)))]
pub async fn list_publishers(
    State(app): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<PublisherView>>> {
    let page = page.parse()?;
    let rows = sqlx::query("SELECT id, name, display_name, created_at FROM publishers WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(page.after)
        .bind(page.fetch_limit())
        .fetch_all(&app.db.pool)
        .await?;
    let views = rows
        .iter()
        .map(publisher_view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(page.finish(views, |p| p.id)))
}

async fn find_publisher(app: &AppState, name: &str) -> ApiResult<PublisherView> {
    let row =
        sqlx::query("SELECT id, name, display_name, created_at FROM publishers WHERE name = $1")
            .bind(name)
            .fetch_optional(&app.db.pool)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no publisher named `{name}`")))?;
    Ok(publisher_view(&row)?)
}

/// One publisher.
#[utoipa::path(get, path = "/api/v1/publishers/{publisher}", tag = "publishers", params(PublisherPath),
    responses((status = 200, body = PublisherView), (status = 404, body = Problem)))]
pub async fn get_publisher(
    State(app): State<AppState>,
    _caller: Caller,
    Path(path): Path<PublisherPath>,
) -> ApiResult<Json<PublisherView>> {
    Ok(Json(find_publisher(&app, &path.publisher).await?))
}

/// Members of a publisher, owners first.
#[utoipa::path(get, path = "/api/v1/publishers/{publisher}/members", tag = "publishers", params(PublisherPath),
    responses((status = 200, body = Vec<MemberView>), (status = 404, body = Problem)))]
pub async fn list_members(
    State(app): State<AppState>,
    _caller: Caller,
    Path(path): Path<PublisherPath>,
) -> ApiResult<Json<Vec<MemberView>>> {
    let publisher = find_publisher(&app, &path.publisher).await?;
    let rows = sqlx::query(
        "SELECT u.username, m.role, m.added_at FROM publisher_members m JOIN users u ON u.id = m.user_id \
         WHERE m.publisher_id = $1 AND u.deleted_at IS NULL ORDER BY m.role DESC, u.username",
    )
    .bind(publisher.id)
    .fetch_all(&app.db.pool)
    .await?;
    let members = rows
        .iter()
        .map(|r| {
            Ok(MemberView {
                username: r.try_get("username")?,
                role: MemberRole::parse(r.try_get::<String, _>("role")?.as_str())
                    .unwrap_or(MemberRole::Maintainer),
                added_at: rfc3339(r.try_get("added_at")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(members))
}

/// Adds a member or changes a member's role. Owners only.
#[utoipa::path(put, path = "/api/v1/publishers/{publisher}/members/{username}", tag = "publishers", security(("bearer" = [])), params(MemberPath), request_body = PutMemberRequest,
    responses((status = 200, body = MemberView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn put_member(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<MemberPath>,
    Json(body): Json<PutMemberRequest>,
) -> ApiResult<Json<MemberView>> {
    let (me, publisher) = caller
        .require_publisher(
            &app,
            &path.publisher,
            MemberRole::Owner,
            Scope::ManagePublisher,
        )
        .await?;
    let user_id = active_user_id(&app, &path.username).await?;
    let now = db::now();
    let mut tx = app.db.pool.begin().await?;
    lock_publisher(&mut tx, publisher.id).await?;
    if body.role == MemberRole::Maintainer {
        ensure_other_owner(&mut tx, publisher.id, user_id).await?;
    }
    let changed = sqlx::query(
        "UPDATE publisher_members SET role = $1 WHERE publisher_id = $2 AND user_id = $3",
    )
    .bind(body.role.as_str())
    .bind(publisher.id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 0 {
        sqlx::query("INSERT INTO publisher_members (publisher_id, user_id, role, added_at) VALUES ($1, $2, $3, $4)")
            .bind(publisher.id)
            .bind(user_id)
            .bind(body.role.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    let added_at: i64 = sqlx::query(
        "SELECT added_at FROM publisher_members WHERE publisher_id = $1 AND user_id = $2",
    )
    .bind(publisher.id)
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?
    .try_get("added_at")?;
    let change = format!("{}: {}", path.username, body.role.as_str());
    let target = format!("publisher:{}", publisher.name);
    audit(
        &mut tx,
        Some(me.user_id),
        "member.set",
        &target,
        Some(&change),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(MemberView {
        username: path.username,
        role: body.role,
        added_at: rfc3339(added_at),
    }))
}

/// Removes a member. Owners may remove anyone; any member may remove themselves. The last
/// owner cannot leave.
#[utoipa::path(delete, path = "/api/v1/publishers/{publisher}/members/{username}", tag = "publishers", security(("bearer" = [])), params(MemberPath),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn remove_member(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<MemberPath>,
) -> ApiResult<StatusCode> {
    let leaving_self = caller
        .principal()
        .is_some_and(|p| p.username.eq_ignore_ascii_case(&path.username));
    let required = if leaving_self {
        MemberRole::Maintainer
    } else {
        MemberRole::Owner
    };
    let (me, publisher) = caller
        .require_publisher(&app, &path.publisher, required, Scope::ManagePublisher)
        .await?;
    let user_id = active_user_id(&app, &path.username).await?;
    let mut tx = app.db.pool.begin().await?;
    lock_publisher(&mut tx, publisher.id).await?;
    ensure_other_owner(&mut tx, publisher.id, user_id).await?;
    let removed =
        sqlx::query("DELETE FROM publisher_members WHERE publisher_id = $1 AND user_id = $2")
            .bind(publisher.id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    if removed.rows_affected() == 0 {
        return Err(ApiError::not_found(format!(
            "`{}` is not a member of `{}`",
            path.username, path.publisher
        )));
    }
    let target = format!("publisher:{}", publisher.name);
    audit(
        &mut tx,
        Some(me.user_id),
        "member.remove",
        &target,
        Some(&path.username),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn active_user_id(app: &AppState, username: &str) -> ApiResult<i64> {
    sqlx::query("SELECT id FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL")
        .bind(username)
        .fetch_optional(&app.db.pool)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()?
        .ok_or_else(|| ApiError::not_found(format!("no user named `{username}`")))
}

/// Serialises membership changes of one publisher: a no-op update takes the row lock on
/// PostgreSQL and the database write lock on SQLite, so the owner count read next cannot
/// change before commit.
async fn lock_publisher(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    publisher_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE publishers SET display_name = display_name WHERE id = $1")
        .bind(publisher_id)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// Fails with 409 when `user_id` is the only owner, i.e. when demoting or removing them would
/// leave the publisher without one.
async fn ensure_other_owner(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    publisher_id: i64,
    user_id: i64,
) -> ApiResult<()> {
    let others: i64 = sqlx::query("SELECT COUNT(*) AS n FROM publisher_members WHERE publisher_id = $1 AND role = 'owner' AND user_id <> $2")
        .bind(publisher_id)
        .bind(user_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
    let is_owner = sqlx::query("SELECT 1 AS one FROM publisher_members WHERE publisher_id = $1 AND user_id = $2 AND role = 'owner'")
        .bind(publisher_id)
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if is_owner && others == 0 {
        return Err(ApiError::conflict(
            "a publisher needs at least one owner; add another owner first",
        ));
    }
    Ok(())
}

page_schema!(PublisherPage, PublisherView);
