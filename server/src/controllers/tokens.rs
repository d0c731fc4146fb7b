//! API tokens of the signed-in user: create (secret shown once), list, revoke.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Page, PageQuery, audit, rfc3339};
use crate::app::AppState;
use crate::auth::tokens::{self, Scope, decode_scopes, encode_scopes};
use crate::auth::{Caller, MemberRole, Require};
use crate::error::{ApiError, ApiResult, Problem};
use crate::rate_limit::ClientIp;
use crate::{db, names};

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// What the token is for, e.g. `github-actions`.
    pub name: String,
    /// Powers of the token; at least one.
    pub scopes: Vec<Scope>,
    /// Limit the token to this publisher (the caller must be a member).
    pub publisher: Option<String>,
    /// Limit the token to this plugin of `publisher`.
    pub plugin: Option<String>,
    /// Lifetime in days (default 90).
    pub expires_in_days: Option<u64>,
}

/// An API token's metadata (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Token id.
    pub id: i64,
    /// Name given at creation.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Publisher the token is limited to.
    pub publisher: Option<String>,
    /// Plugin the token is limited to.
    pub plugin: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Expiry time (RFC 3339).
    pub expires_at: String,
    /// Last use (RFC 3339).
    pub last_used_at: Option<String>,
    /// Whether it has been revoked.
    pub revoked: bool,
}

/// A newly created token, with its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// Metadata.
    #[serde(flatten)]
    pub token: TokenView,
    /// The secret, shown only now: store it, it cannot be retrieved again.
    pub secret: String,
}

const TOKEN_COLUMNS: &str = "t.id, t.name, t.scopes, p.name AS publisher, t.plugin_name, t.created_at, t.expires_at, t.last_used_at, t.revoked_at";

fn token_view(row: &sqlx::any::AnyRow) -> Result<TokenView, sqlx::Error> {
    Ok(TokenView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scopes: decode_scopes(&row.try_get::<String, _>("scopes")?),
        publisher: row.try_get("publisher")?,
        plugin: row.try_get("plugin_name")?,
        created_at: rfc3339(row.try_get("created_at")?),
        expires_at: rfc3339(row.try_get("expires_at")?),
        last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(rfc3339),
        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
    })
}

/// Creates an API token. Only an interactive session can create tokens, so a leaked token
/// cannot mint more.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])), request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn create_token(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientIp,
    Json(body): Json<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let me = caller.require(&app, Require::session()).await?;
    app.limits.token_create.check(client)?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::invalid("name must be 1 to 64 characters"));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::invalid(
            "scopes must name at least one of publish, yank, manage-publisher",
        ));
    }
    let days = body
        .expires_in_days
        .unwrap_or(app.settings.auth.api_token_default_ttl_days);
    let max_days = app.settings.auth.api_token_max_ttl_days;
    if days == 0 || days > max_days {
        return Err(ApiError::invalid(format!(
            "expires_in_days must be between 1 and {max_days}"
        )));
    }
    let publisher_id = match &body.publisher {
        Some(publisher) => {
            // Limiting a token to a publisher requires being able to act there at all.
            let (_, access) = caller
                .require_publisher(&app, publisher, MemberRole::Maintainer, Scope::Publish)
                .await?;
            Some(access.id)
        }
        None => None,
    };
    if let Some(plugin) = &body.plugin {
        if publisher_id.is_none() {
            return Err(ApiError::invalid(
                "plugin requires publisher: a token limited to a plugin names its publisher too",
            ));
        }
        names::validate_name("plugin", plugin)?;
        if body.scopes.contains(&Scope::ManagePublisher) {
            return Err(ApiError::invalid(
                "a token limited to a plugin cannot have the manage-publisher scope: members and certificates belong to the whole publisher",
            ));
        }
    }
    let (secret, hash) = tokens::new_secret();
    let now = db::now();
    let scopes = encode_scopes(&body.scopes);
    let mut tx = app.db.pool.begin().await?;
    let row = sqlx::query(
        "INSERT INTO api_tokens (user_id, name, token_hash, scopes, publisher_id, plugin_name, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(me.user_id)
    .bind(name)
    .bind(hash)
    .bind(&scopes)
    .bind(publisher_id)
    .bind(body.plugin.as_deref())
    .bind(now)
    .bind(now + days as i64 * 86_400)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    // A stolen session's first move is often to mint a token that outlives it: the log says
    // which tokens an account made, with what powers, so an incident can revoke exactly those.
    let limited_to = match (&body.publisher, &body.plugin) {
        (Some(publisher), Some(plugin)) => format!(" for {publisher}/{plugin}"),
        (Some(publisher), None) => format!(" for {publisher}"),
        _ => String::new(),
    };
    audit(
        &mut tx,
        Some(me.user_id),
        "token.create",
        &format!("user:{}", me.username),
        Some(&format!("#{id} {name}: {scopes}{limited_to}, {days} days")),
    )
    .await?;
    tx.commit().await?;
    let view = fetch_token(&app, me.user_id, id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("token vanished after insert")))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: view,
            secret,
        }),
    ))
}

async fn fetch_token(app: &AppState, user_id: i64, id: i64) -> ApiResult<Option<TokenView>> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens t LEFT JOIN publishers p ON p.id = t.publisher_id WHERE t.id = $1 AND t.user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(&app.db.pool)
    .await?;
    Ok(row.as_ref().map(token_view).transpose()?)
}

/// Lists the caller's API tokens.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = TokenPage), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_tokens(
    State(app): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<TokenView>>> {
    let me = caller.require(&app, Require::session()).await?;
    let page = page.parse()?;
    let rows = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens t LEFT JOIN publishers p ON p.id = t.publisher_id \
         WHERE t.user_id = $1 AND t.id > $2 ORDER BY t.id LIMIT $3"
    ))
    .bind(me.user_id)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(&app.db.pool)
    .await?;
    let views = rows.iter().map(token_view).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(page.finish(views, |t| t.id)))
}

/// Revokes one of the caller's API tokens (idempotent).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", security(("bearer" = [])), params(("id" = i64, Path, description = "Token id")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let me = caller.require(&app, Require::session()).await?;
    let token = fetch_token(&app, me.user_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("you have no API token with id {id}")))?;
    let mut tx = app.db.pool.begin().await?;
    let revoked = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
        .bind(db::now())
        .bind(id)
        .bind(me.user_id)
        .execute(&mut *tx)
        .await?;
    // Revoking twice is not a second event.
    if revoked.rows_affected() == 1 {
        audit(
            &mut tx,
            Some(me.user_id),
            "token.revoke",
            &format!("user:{}", me.username),
            Some(&format!("#{id} {}", token.name)),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

page_schema!(TokenPage, TokenView);
