//! Who is calling, and what they may do.
//!
//! Handlers take a [`Caller`] (parsed from `Authorization: Bearer …`, which is either an access
//! JWT or an API token) and state their requirement in one line:
//!
//! ```ignore
//! let me = caller.require(&app, Require::session()).await?;
//! let (me, publisher) = caller.require_publisher(&app, &name, MemberRole::Owner, Scope::ManagePublisher).await?;
//! ```
//!
//! All checking lives here, so the endpoint × role matrix test exercises one mechanism.

pub mod jwt;
pub mod passwords;
pub mod tokens;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

pub use tokens::{API_TOKEN_PREFIX, Scope};

/// A user's store-wide role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Publishes plugins (everyone starts here).
    Developer,
    /// Moderates: review queue, blocks, abuse reports.
    Reviewer,
    /// Operates the store: users, roles, everything a reviewer can do.
    Admin,
}

impl Role {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Developer => "developer",
            Self::Reviewer => "reviewer",
            Self::Admin => "admin",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "developer" => Some(Self::Developer),
            "reviewer" => Some(Self::Reviewer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A member's role within a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// Publishes and yanks versions.
    Maintainer,
    /// Also manages members and the publisher itself.
    Owner,
}

impl MemberRole {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Maintainer => "maintainer",
            Self::Owner => "owner",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "maintainer" => Some(Self::Maintainer),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An access JWT from a login; `family` is the login session.
    Session {
        /// Refresh-token family id (the `sid` claim).
        family: String,
    },
    /// An API token with limited powers.
    ApiToken {
        /// Token row id.
        id: i64,
        /// What it may do.
        scopes: Vec<Scope>,
        /// Restricted to this publisher, if set.
        publisher_id: Option<i64>,
        /// Restricted to this plugin (within the publisher), if set.
        plugin_name: Option<String>,
    },
}

/// An authenticated user.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User id.
    pub user_id: i64,
    /// Username.
    pub username: String,
    /// Store-wide role, read from the database on every request.
    pub role: Role,
    /// What was presented.
    pub credential: Credential,
}

impl Principal {
    fn allows_scope(&self, scope: Scope) -> bool {
        match &self.credential {
            Credential::Session { .. } => true,
            Credential::ApiToken { scopes, .. } => scopes.contains(&scope),
        }
    }
}

/// The caller of a request: anonymous or a verified principal. Extracting it fails with 401
/// when credentials are presented but invalid, even on public endpoints, so a broken token is
/// never silently ignored.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// Verified credentials of an active user.
    User(Principal),
}

/// A requirement that does not involve a particular publisher.
#[derive(Debug, Clone, Copy)]
pub enum Require {
    /// Any authenticated user, with any credential.
    SignedIn,
    /// An interactive login (access JWT); API tokens are refused. For managing credentials.
    Session,
    /// At least this store-wide role, through a login session.
    Role(Role),
}

impl Require {
    /// Any authenticated user.
    pub fn signed_in() -> Self {
        Self::SignedIn
    }
    /// A login session, not an API token.
    pub fn session() -> Self {
        Self::Session
    }
    /// At least `role`, through a login session.
    pub fn role(role: Role) -> Self {
        Self::Role(role)
    }
}

/// A publisher as the authorization check found it.
#[derive(Debug, Clone)]
pub struct PublisherAccess {
    /// Publisher id.
    pub id: i64,
    /// Publisher name.
    pub name: String,
    /// The caller's membership, if any (admins may act without one).
    pub member_role: Option<MemberRole>,
}

impl Caller {
    /// Checks a store-wide requirement; 401 when anonymous, 403 when not allowed.
    pub async fn require(&self, _app: &AppState, requirement: Require) -> ApiResult<Principal> {
        let Caller::User(me) = self else {
            return Err(ApiError::unauthorized(
                "sign in: send `Authorization: Bearer <token>`",
            ));
        };
        let is_session = matches!(me.credential, Credential::Session { .. });
        match requirement {
            Require::SignedIn => {}
            Require::Session if !is_session => {
                return Err(ApiError::forbidden(
                    "API tokens cannot do this; sign in with a password",
                ));
            }
            Require::Session => {}
            Require::Role(_) if !is_session => {
                return Err(ApiError::forbidden(
                    "API tokens cannot act with a store-wide role",
                ));
            }
            Require::Role(role) if me.role < role => {
                return Err(ApiError::forbidden(format!(
                    "requires the {} role",
                    role.as_str()
                )));
            }
            Require::Role(_) => {}
        }
        Ok(me.clone())
    }

    /// Checks that the caller may act on `publisher` with at least `min_role` and `scope`.
    /// Admins (with a login session) may act on any publisher. A missing publisher is 404.
    pub async fn require_publisher(
        &self,
        app: &AppState,
        publisher: &str,
        min_role: MemberRole,
        scope: Scope,
    ) -> ApiResult<(Principal, PublisherAccess)> {
        let me = self.require(app, Require::signed_in()).await?;
        let row = sqlx::query(
            "SELECT p.id, p.name, m.role FROM publishers p \
             LEFT JOIN publisher_members m ON m.publisher_id = p.id AND m.user_id = $1 \
             WHERE p.name = $2",
        )
        .bind(me.user_id)
        .bind(publisher)
        .fetch_optional(&app.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no publisher named `{publisher}`")))?;
        let access = PublisherAccess {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            member_role: row
                .try_get::<Option<String>, _>("role")?
                .as_deref()
                .and_then(MemberRole::parse),
        };
        if !me.allows_scope(scope) {
            return Err(ApiError::forbidden(format!(
                "this API token lacks the `{}` scope",
                scope.as_str()
            )));
        }
        if let Credential::ApiToken {
            publisher_id: Some(limit),
            ..
        } = &me.credential
            && *limit != access.id
        {
            return Err(ApiError::forbidden(
                "this API token is limited to another publisher",
            ));
        }
        // Members and certificates belong to the whole publisher: a token limited to one
        // plugin must not reach them. Creation refuses the combination; this covers tokens
        // made before it did.
        if scope == Scope::ManagePublisher
            && let Credential::ApiToken {
                plugin_name: Some(plugin),
                ..
            } = &me.credential
        {
            return Err(ApiError::forbidden(format!(
                "this API token is limited to plugin `{plugin}`; managing publisher `{publisher}` acts on all of its plugins"
            )));
        }
        let is_admin_session =
            me.role == Role::Admin && matches!(me.credential, Credential::Session { .. });
        match access.member_role {
            Some(role) if role >= min_role => Ok((me, access)),
            _ if is_admin_session => Ok((me, access)),
            Some(_) => Err(ApiError::forbidden(format!(
                "requires the {} role in publisher `{publisher}`",
                min_role.as_str()
            ))),
            None => Err(ApiError::forbidden(format!(
                "you are not a member of publisher `{publisher}`"
            ))),
        }
    }

    /// The principal, when signed in.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::User(p) => Some(p),
            Caller::Anonymous => None,
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let principal = if bearer.starts_with(API_TOKEN_PREFIX) {
            tokens::authenticate(app, bearer).await?
        } else {
            authenticate_jwt(app, bearer).await?
        };
        Ok(Caller::User(principal))
    }
}

async fn authenticate_jwt(app: &AppState, token: &str) -> ApiResult<Principal> {
    let auth = &app.settings.auth;
    let claims = app
        .keys
        .verify(token, &auth.issuer, &auth.audience, auth.leeway_secs)
        .map_err(|why| {
            tracing::info!(reason = %why, "access token refused");
            ApiError::unauthorized(
                "the access token is invalid or expired; sign in again or refresh it",
            )
        })?;
    let user_id: i64 = claims
        .sub
        .parse()
        .map_err(|_| ApiError::unauthorized("the access token is invalid"))?;
    // One query checks the user is still active and the login session was not revoked
    // (logout or refresh-token reuse), so both take effect before the token expires.
    let row = sqlx::query(
        "SELECT u.username, u.role FROM users u \
         WHERE u.id = $1 AND u.disabled_at IS NULL AND u.deleted_at IS NULL \
         AND EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.family_id = $2 AND r.user_id = u.id AND r.revoked_at IS NULL)",
    )
    .bind(user_id)
    .bind(&claims.sid)
    .fetch_optional(&app.db.pool)
    .await?
    .ok_or_else(|| ApiError::unauthorized("this session has ended or the account is disabled; sign in again"))?;
    Ok(Principal {
        user_id,
        username: row.try_get("username")?,
        role: Role::parse(row.try_get::<String, _>("role")?.as_str()).unwrap_or(Role::Developer),
        credential: Credential::Session { family: claims.sid },
    })
}
