//! Request handlers, grouped by what they act on, and the pieces they share: path extractors
//! and cursor pagination.

/// Declares `$name`, the OpenAPI schema of a [`Page`] of `$item`s.
///
/// Handlers return `Page<T>`; the document names each page type. utoipa's generated code for
/// a generic body (`Page<UserView>`) calls `.as_ref()` on a `Cow<str>`, which stops compiling
/// once `typed-path` (a dependency of tough) adds an `AsRef` impl for `Cow<str>`.
macro_rules! page_schema {
    ($name:ident, $item:ty) => {
        /// A page of a list.
        #[derive(utoipa::ToSchema)]
        #[expect(dead_code, reason = "only describes the `Page` a handler returns")]
        pub struct $name {
            /// Items of this page.
            items: Vec<$item>,
            /// Pass as `cursor` to get the next page; `null` on the last page.
            next_cursor: Option<String>,
        }
    };
}

pub mod admin;
pub mod auth;
pub mod blobs;
pub mod certificates;
pub mod ops;
pub mod plugins;
pub mod publishers;
pub mod release_metadata;
pub mod reports;
pub mod review;
pub mod scan_jobs;
pub mod tokens;
pub mod updates;
pub mod versions;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult};

/// Default page size.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest page size a client may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// `?cursor=…&limit=…` of every list endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Items per page (1–100, default 20).
    pub limit: Option<u32>,
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A decoded position in a list ordered by a unique integer key.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Return items with a key greater than this.
    pub after: i64,
    /// Items to return.
    pub limit: u32,
}

impl PageQuery {
    /// Validates the cursor and limit.
    pub fn parse(&self) -> ApiResult<PageRequest> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "limit must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        let after = match &self.cursor {
            None => 0,
            Some(c) => URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("after:").and_then(|n| n.parse::<i64>().ok()))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "cursor is not valid; pass the next_cursor of a previous page",
                    )
                })?,
        };
        Ok(PageRequest { after, limit })
    }
}

impl PageRequest {
    /// How many rows to fetch: one extra tells whether another page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Turns `limit + 1` fetched rows into a page; `key` gives each item's ordering key.
    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> i64) -> Page<T> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next_cursor = if more {
            rows.last()
                .map(|r| URL_SAFE_NO_PAD.encode(format!("after:{}", key(r))))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

/// `/publishers/{publisher}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PublisherPath {
    /// Publisher name.
    pub publisher: String,
}

/// `/plugins/{publisher}/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PluginPath {
    /// Publisher name.
    pub publisher: String,
    /// Plugin name within the publisher.
    pub name: String,
}

/// Longest reason a person may give for a state change (yank, revocation, …).
pub const MAX_REASON_LEN: usize = 500;

/// A trimmed, non-empty reason of at most [`MAX_REASON_LEN`] bytes.
pub fn checked_reason(reason: &str) -> ApiResult<&str> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_LEN {
        return Err(ApiError::invalid(format!(
            "reason must be 1 to {MAX_REASON_LEN} characters"
        )));
    }
    Ok(reason)
}

/// Appends to the audit log (who did what to which target, and why). Called on the
/// transaction that makes the change, so that a change is never committed without its entry.
pub async fn audit(
    tx: &mut sqlx::AnyConnection,
    actor: Option<i64>,
    action: &str,
    target: &str,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (actor_id, action, target, reason, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(reason)
        .bind(crate::db::now())
        .execute(tx)
        .await
        .map(|_| ())
}

/// Renders a Unix timestamp as RFC 3339 for responses.
pub fn rfc3339(unix: i64) -> String {
    let secs = unix.rem_euclid(86_400);
    let days = unix.div_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one format.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let req = PageQuery {
            cursor: None,
            limit: Some(2),
        }
        .parse()
        .unwrap();
        let page = req.finish(vec![1, 2, 3], |n| *n);
        assert_eq!(page.items, vec![1, 2]);
        let next = PageQuery {
            cursor: page.next_cursor,
            limit: Some(2),
        }
        .parse()
        .unwrap();
        assert_eq!(next.after, 2);
        assert!(
            PageQuery {
                cursor: Some("nope".into()),
                limit: None
            }
            .parse()
            .is_err()
        );
        assert!(
            PageQuery {
                cursor: None,
                limit: Some(0)
            }
            .parse()
            .is_err()
        );
        assert!(
            PageQuery {
                cursor: None,
                limit: Some(101)
            }
            .parse()
            .is_err()
        );
    }
}
