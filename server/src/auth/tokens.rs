//! API tokens for CI and scripts: `pst_` + 32 random bytes, shown once, stored as SHA-256.
//!
//! The prefix lets secret scanners recognise leaked tokens and lets the server tell a token
//! from a JWT without trying both.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Credential, Principal, Role};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

/// Every API token starts with this.
pub const API_TOKEN_PREFIX: &str = "pst_";

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Publish new versions.
    Publish,
    /// Yank and unyank versions.
    Yank,
    /// Manage the publisher: members, certificates.
    ManagePublisher,
}

impl Scope {
    /// Wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Yank => "yank",
            Self::ManagePublisher => "manage-publisher",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "publish" => Some(Self::Publish),
            "yank" => Some(Self::Yank),
            "manage-publisher" => Some(Self::ManagePublisher),
            _ => None,
        }
    }
}

/// Joins scopes for storage.
pub fn encode_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits stored scopes, skipping any this version does not know.
pub fn decode_scopes(text: &str) -> Vec<Scope> {
    text.split_whitespace().filter_map(Scope::parse).collect()
}

/// Makes a new secret. Returns (secret to show once, hash to store).
pub fn new_secret() -> (String, String) {
    let secret = format!("{API_TOKEN_PREFIX}{}", crate::secrets::random_token(32));
    let hash = crate::secrets::sha256_hex(&secret);
    (secret, hash)
}

/// Resolves an API token to its principal: unknown, revoked, expired tokens and tokens of
/// disabled or deleted users are all 401.
pub async fn authenticate(app: &AppState, secret: &str) -> ApiResult<Principal> {
    let now = crate::db::now();
    let refused =
        || ApiError::unauthorized("the API token is unknown, revoked or expired; create a new one");
    let row = sqlx::query(
        "SELECT t.id, t.user_id, t.scopes, t.publisher_id, t.plugin_name, t.expires_at, t.revoked_at, \
                u.username, u.role \
         FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND u.disabled_at IS NULL AND u.deleted_at IS NULL",
    )
    .bind(crate::secrets::sha256_hex(secret))
    .fetch_optional(&app.db.pool)
    .await?
    .ok_or_else(refused)?;
    let revoked: Option<i64> = row.try_get("revoked_at")?;
    let expires_at: i64 = row.try_get("expires_at")?;
    if revoked.is_some() || expires_at <= now {
        return Err(refused());
    }
    let id: i64 = row.try_get("id")?;
    // Best effort: a failed bookkeeping write must not fail the request.
    if let Err(e) = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&app.db.pool)
        .await
    {
        tracing::warn!(error = %e, "could not record API token use");
    }
    Ok(Principal {
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        role: Role::parse(row.try_get::<String, _>("role")?.as_str()).unwrap_or(Role::Developer),
        credential: Credential::ApiToken {
            id,
            scopes: decode_scopes(&row.try_get::<String, _>("scopes")?),
            publisher_id: row.try_get("publisher_id")?,
            plugin_name: row.try_get("plugin_name")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let (a, hash_a) = new_secret();
        let (b, _) = new_secret();
        assert!(a.starts_with(API_TOKEN_PREFIX));
        assert_ne!(a, b);
        assert_eq!(hash_a.len(), 64);
        assert!(!hash_a.contains(&a[4..]));
        assert_eq!(
            decode_scopes(&encode_scopes(&[Scope::Publish, Scope::ManagePublisher])),
            vec![Scope::Publish, Scope::ManagePublisher]
        );
    }
}
