//! Accounts and sessions: register, login, refresh, logout, and the current user.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::jwt::AccessClaims;
use crate::auth::passwords::{self, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use crate::auth::{Caller, Credential, Require, Role};
use crate::error::{ApiError, ApiResult, Problem, ProblemKind};
use crate::rate_limit::ClientIp;
use crate::{db, names, secrets};

/// Every refresh token starts with this (distinguishes it from API tokens in logs and scanners).
pub const REFRESH_TOKEN_PREFIX: &str = "psr_";

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 2–39 lowercase letters, digits, hyphens.
    pub username: String,
    /// Contact address.
    pub email: String,
    /// At least 10 characters.
    pub password: String,
}

/// A user as shown to themselves and to admins.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// User id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Store-wide role.
    pub role: Role,
    /// When the account was created (RFC 3339).
    pub created_at: String,
    /// Whether an admin disabled the account.
    pub disabled: bool,
}

impl UserView {
    /// Reads the columns `id, username, email, role, created_at, disabled_at`.
    pub fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            email: row.try_get("email")?,
            role: Role::parse(row.try_get::<String, _>("role")?.as_str())
                .unwrap_or(Role::Developer),
            created_at: super::rfc3339(row.try_get("created_at")?),
            disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
        })
    }
}

/// Username and password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A refresh token presented for rotation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// Tokens of a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionTokens {
    /// Short-lived ES256 JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single-use token for `POST /api/v1/auth/refresh`; rotated on every use.
    pub refresh_token: String,
    /// Seconds until the session ends and a new login is needed.
    pub refresh_expires_in: i64,
}

const USER_COLUMNS: &str = "id, username, email, role, created_at, disabled_at";

/// Creates an account with the developer role.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = UserView), (status = 409, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn register(
    State(app): State<AppState>,
    client: ClientIp,
    Json(body): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    app.limits.register.check(client)?;
    if !app.settings.auth.open_registration {
        return Err(ApiError::forbidden(
            "registration is closed on this store; ask an admin for an account",
        ));
    }
    create_user(
        &app,
        &body.username,
        &body.email,
        &body.password,
        Role::Developer,
    )
    .await
    .map(|u| (StatusCode::CREATED, Json(u)))
}

/// Creates a user after checking every field (shared by registration and
/// `admin create-user`, so operators get the same rules as everyone else).
pub async fn create_user(
    app: &AppState,
    username: &str,
    email: &str,
    password: &str,
    role: Role,
) -> ApiResult<UserView> {
    names::validate_name("username", username)?;
    let email = email.trim();
    if email.len() > 254 || !email.contains('@') || email.starts_with('@') || email.ends_with('@') {
        return Err(ApiError::invalid(
            "email must be an address like name@example.org",
        ));
    }
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&password.chars().count()) {
        return Err(ApiError::invalid(format!(
            "password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || passwords::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(anyhow::anyhow!("argon2: {e}")))?;
    let row = sqlx::query(&format!(
        "INSERT INTO users (username, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
    ))
    .bind(username)
    .bind(email)
    .bind(hash)
    .bind(role.as_str())
    .bind(db::now())
    .fetch_one(&app.db.pool)
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            ApiError::conflict("that username or email is already registered")
        } else {
            e.into()
        }
    })?;
    Ok(UserView::from_row(&row)?)
}

/// Exchanges username and password for an access JWT and a refresh token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionTokens), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn login(
    State(app): State<AppState>,
    client: ClientIp,
    Json(body): Json<LoginRequest>,
) -> ApiResult<Json<SessionTokens>> {
    app.limits.login.check(client)?;
    let row = sqlx::query("SELECT id, password_hash, disabled_at FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL")
        .bind(&body.username)
        .fetch_optional(&app.db.pool)
        .await?;
    let stored: Option<String> = row
        .as_ref()
        .map(|r| r.try_get("password_hash"))
        .transpose()?;
    let password = body.password.clone();
    let matches = tokio::task::spawn_blocking(move || {
        passwords::verify_password(&password, stored.as_deref())
    })
    .await
    .map_err(ApiError::internal)?;
    let invalid = || {
        ApiError::new(
            ProblemKind::InvalidCredentials,
            "username or password is wrong",
        )
    };
    let row = row.filter(|_| matches).ok_or_else(invalid)?;
    if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
        return Err(ApiError::new(
            ProblemKind::InvalidCredentials,
            "this account is disabled; contact the store's admins",
        ));
    }
    let user_id: i64 = row.try_get("id")?;
    let family = secrets::random_token(16);
    let expires_at = db::now() + app.settings.auth.refresh_token_ttl_secs as i64;
    let refresh = insert_refresh_token(&app.db.pool, user_id, &family, expires_at).await?;
    Ok(Json(session_tokens(
        &app, user_id, &family, refresh, expires_at,
    )?))
}

async fn insert_refresh_token<'e>(
    exec: impl sqlx::AnyExecutor<'e>,
    user_id: i64,
    family: &str,
    expires_at: i64,
) -> ApiResult<String> {
    let secret = format!("{REFRESH_TOKEN_PREFIX}{}", secrets::random_token(32));
    sqlx::query("INSERT INTO refresh_tokens (family_id, user_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(family)
        .bind(user_id)
        .bind(secrets::sha256_hex(&secret))
        .bind(db::now())
        .bind(expires_at)
        .execute(exec)
        .await?;
    Ok(secret)
}

fn session_tokens(
    app: &AppState,
    user_id: i64,
    family: &str,
    refresh_token: String,
    refresh_expires_at: i64,
) -> ApiResult<SessionTokens> {
    let now = db::now();
    let ttl = app.settings.auth.access_token_ttl_secs;
    let claims = AccessClaims {
        iss: app.settings.auth.issuer.clone(),
        aud: app.settings.auth.audience.clone(),
        sub: user_id.to_string(),
        exp: now + ttl as i64,
        nbf: now,
        iat: now,
        jti: secrets::random_token(12),
        sid: family.to_owned(),
    };
    let access_token = app.keys.sign(&claims).map_err(ApiError::internal)?;
    Ok(SessionTokens {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token,
        refresh_expires_in: refresh_expires_at - now,
    })
}

/// Rotates a refresh token: the presented one is spent and a new pair is returned. Presenting
/// a spent token again revokes the whole session (it was likely stolen).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = SessionTokens), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn refresh(
    State(app): State<AppState>,
    client: ClientIp,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<Json<SessionTokens>> {
    app.limits.refresh.check(client)?;
    let now = db::now();
    let refused = || ApiError::unauthorized("the refresh token is not valid; sign in again");
    let reused = || {
        ApiError::new(
            ProblemKind::RefreshTokenReused,
            "this refresh token was already used; the session is revoked, sign in again",
        )
    };
    let token_hash = secrets::sha256_hex(&body.refresh_token);
    let family: String =
        sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(&token_hash)
            .fetch_optional(&app.db.pool)
            .await?
            .ok_or_else(refused)?;
    let mut tx = app.db.pool.begin().await?;
    // Lock the whole family first (row locks on PostgreSQL, the write lock on SQLite): two
    // refreshes with one token then run one after the other, and the second sees the first's
    // spent token and new successor, so revoking the family also catches the successor.
    sqlx::query("UPDATE refresh_tokens SET family_id = family_id WHERE family_id = $1")
        .bind(&family)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(
        "SELECT r.id, r.user_id, r.expires_at, r.used_at, r.revoked_at, u.disabled_at, u.deleted_at \
         FROM refresh_tokens r JOIN users u ON u.id = r.user_id WHERE r.token_hash = $1",
    )
    .bind(&token_hash)
    .fetch_one(&mut *tx)
    .await?;
    let used = row.try_get::<Option<i64>, _>("used_at")?.is_some();
    let revoked = row.try_get::<Option<i64>, _>("revoked_at")?.is_some();
    if used && !revoked {
        revoke_family(&mut *tx, &family).await?;
        tx.commit().await?;
        tracing::warn!(family = %family, "refresh token reused; session revoked");
        return Err(reused());
    }
    let inactive = row.try_get::<Option<i64>, _>("disabled_at")?.is_some()
        || row.try_get::<Option<i64>, _>("deleted_at")?.is_some();
    let expires_at: i64 = row.try_get("expires_at")?;
    if revoked || inactive || expires_at <= now {
        return Err(refused());
    }
    let user_id: i64 = row.try_get("user_id")?;
    sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE id = $2")
        .bind(now)
        .bind(row.try_get::<i64, _>("id")?)
        .execute(&mut *tx)
        .await?;
    let next = insert_refresh_token(&mut *tx, user_id, &family, expires_at).await?;
    tx.commit().await?;
    Ok(Json(session_tokens(
        &app, user_id, &family, next, expires_at,
    )?))
}

async fn revoke_family<'e>(
    exec: impl sqlx::AnyExecutor<'e>,
    family: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(db::now())
    .bind(family)
    .execute(exec)
    .await
    .map(|_| ())
}

/// Ends the caller's session: its refresh tokens and access tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn logout(State(app): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    let me = caller.require(&app, Require::session()).await?;
    if let Credential::Session { family } = &me.credential {
        revoke_family(&app.db.pool, family).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = Problem)))]
pub async fn me(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<UserView>> {
    let me = caller.require(&app, Require::signed_in()).await?;
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(me.user_id)
        .fetch_one(&app.db.pool)
        .await?;
    Ok(Json(UserView::from_row(&row)?))
}
