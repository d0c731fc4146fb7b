//! `GET`/`HEAD /blobs/sha256/{hex}`: immutable, content-addressed downloads with ETag and
//! Range support, or a redirect to the CDN or a presigned URL.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::app::AppState;
use crate::blobs::{BlobDigest, BlobError, BlobRange};
use crate::error::{ApiError, ApiResult, ProblemKind};

/// Every blob is immutable: its name is its hash.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A parsed `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeRequest {
    /// No usable range: serve the whole object.
    Whole,
    /// One satisfiable range.
    Part(BlobRange),
    /// A range outside the object.
    Unsatisfiable,
}

/// Interprets a single `bytes=` range against `size` (RFC 9110 §14). Multiple ranges and
/// unknown units are ignored, which the RFC allows, and the whole object is served.
fn parse_range(value: Option<&HeaderValue>, size: u64) -> RangeRequest {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(_), Ok(_)) => return RangeRequest::Whole,
        (Ok(start), Err(_)) if last.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(suffix)) if first.is_empty() => {
            if suffix == 0 {
                return RangeRequest::Unsatisfiable;
            }
            (size.saturating_sub(suffix), size.saturating_sub(1))
        }
        _ => return RangeRequest::Whole,
    };
    if size == 0 || range.0 >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part(BlobRange {
        start: range.0,
        end_inclusive: range.1,
    })
}

fn etag_of(digest: &BlobDigest) -> String {
    format!("\"sha256:{}\"", digest.to_hex())
}

pub fn if_none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|t| {
                t.trim() == etag || t.trim() == "*" || t.trim().trim_start_matches("W/") == etag
            })
        })
}

fn redirect(location: &str, cache_control: &'static str) -> ApiResult<Response> {
    let location = HeaderValue::from_str(location).map_err(ApiError::internal)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache_control),
            ),
        ],
    )
        .into_response())
}

/// The package of a version that is blocked in effect (the version or its plugin blocked,
/// or its signing certificate revoked: what the signed metadata says), or rejected, and
/// every patch that makes one, is never served. Copies already in caches cannot be recalled;
/// clients learn of a block from the signed metadata. A rejected upload must not stay
/// downloadable from the store's own domain, where a link to it looks endorsed. Versions
/// still being scanned or reviewed stay downloadable: the scanner and reviewers fetch them,
/// and only their uploader and the store know their digests.
async fn refuse_withdrawn_package(app: &AppState, digest: &BlobDigest) -> ApiResult<()> {
    const WITHDRAWN: &str = "(v.state IN ('blocked', 'rejected') \
        OR EXISTS (SELECT 1 FROM plugins p WHERE p.id = v.plugin_id AND p.blocked_at IS NOT NULL) \
        OR EXISTS (SELECT 1 FROM certificates c WHERE c.fingerprint = v.signer_fingerprint AND c.revoked_at IS NOT NULL))";
    let withdrawn: Option<String> = sqlx::query_scalar(&format!(
        "SELECT v.state FROM plugin_versions v WHERE v.package_digest = $1 AND {WITHDRAWN} \
         UNION ALL \
         SELECT v.state FROM deltas d JOIN plugin_versions v ON v.id = d.target_version_id \
         WHERE d.patch_digest = $1 AND {WITHDRAWN} LIMIT 1"
    ))
    .bind(digest.to_hex())
    .fetch_optional(&app.db.pool)
    .await?;
    match withdrawn.as_deref() {
        None => Ok(()),
        Some("rejected") => Err(ApiError::not_found(format!(
            "blob sha256:{} is the package of a version the store's moderators rejected, or a patch to it",
            digest.to_hex()
        ))
        .with_code("rejected")),
        Some(_) => Err(ApiError::not_found(format!(
            "blob sha256:{} is the package of a version blocked by the store's moderators or signed with a revoked certificate, or a patch to it",
            digest.to_hex()
        ))
        .with_code("blocked")),
    }
}

/// Downloads a blob by its SHA-256.
#[utoipa::path(get, path = "/blobs/sha256/{hex}", tag = "blobs",
    params(("hex" = String, Path, description = "Lowercase hex SHA-256 of the blob"),
           ("Range" = Option<String>, Header, description = "A single `bytes=` range")),
    responses((status = 200, description = "The blob", content_type = "application/octet-stream"),
              (status = 206, description = "The requested range"),
              (status = 302, description = "Redirect to the CDN or a presigned URL"),
              (status = 304, description = "Matches If-None-Match"),
              (status = 404, body = crate::error::Problem), (status = 416, body = crate::error::Problem)))]
pub async fn get_blob(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(hex): Path<String>,
) -> ApiResult<Response> {
    let digest: BlobDigest = hex.parse().map_err(|_| {
        ApiError::invalid("a blob is named by 64 lowercase hex digits of its SHA-256")
    })?;
    refuse_withdrawn_package(&app, &digest).await?;
    let cdn = app.settings.blobs.cdn_base_url.trim_end_matches('/');
    if !cdn.is_empty() {
        return redirect(
            &format!("{cdn}/blobs/sha256/{}", digest.to_hex()),
            IMMUTABLE,
        );
    }
    let ttl = Duration::from_secs(app.settings.blobs.presign_ttl_secs);
    if let Some(url) = app
        .blobs
        .presigned_get_url(&digest, ttl)
        .await
        .map_err(|e| blob_failure(&app, "presign", e))?
    {
        // The URL expires, so the redirect must not outlive it in any cache.
        return redirect(&url, "private, no-store");
    }

    let etag = etag_of(&digest);
    let size = app
        .blobs
        .size_of(&digest)
        .await
        .map_err(|e| blob_failure(&app, "head", e))?
        .ok_or_else(|| ApiError::not_found(format!("no blob sha256:{}", digest.to_hex())))?;
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(ApiError::internal)?,
    );
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if if_none_match_hits(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }
    // If-Range with another validator means the client's partial copy is stale: send all.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == etag));
    let range = if if_range_ok {
        parse_range(headers.get(header::RANGE), size)
    } else {
        RangeRequest::Whole
    };
    let (status, range) = match range {
        RangeRequest::Whole => (StatusCode::OK, None),
        RangeRequest::Part(r) => {
            let content_range = format!("bytes {}-{}/{size}", r.start, r.end_inclusive);
            response_headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&content_range).map_err(ApiError::internal)?,
            );
            (StatusCode::PARTIAL_CONTENT, Some(r))
        }
        RangeRequest::Unsatisfiable => {
            let mut response = ApiError::new(
                ProblemKind::RangeNotSatisfiable,
                format!("the blob has {size} bytes"),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).map_err(ApiError::internal)?,
            );
            return Ok(response);
        }
    };
    let length = range.map_or(size, |r| r.end_inclusive - r.start + 1);
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if method == Method::HEAD {
        return Ok((status, response_headers).into_response());
    }
    // The permit travels with the body, so it bounds transfers in flight, not handler calls.
    let permit = std::sync::Arc::clone(&app.download_permits)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                ProblemKind::Unavailable,
                "too many downloads in progress; retry shortly",
            )
            .with_retry_after(1)
        })?;
    let object = app
        .blobs
        .get(&digest, range)
        .await
        .map_err(|e| blob_failure(&app, "get", e))?;
    let body = object.body.map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Ok((status, response_headers, Body::from_stream(body)).into_response())
}

fn blob_failure(app: &AppState, operation: &str, error: BlobError) -> ApiError {
    if matches!(error, BlobError::NotFound) {
        return ApiError::not_found("no such blob");
    }
    app.metrics.blob_error(app.blobs.backend_name(), operation);
    ApiError::unavailable("the blob store is not reachable", anyhow::anyhow!(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> RangeRequest {
        parse_range(Some(&HeaderValue::from_str(v).unwrap()), size)
    }

    fn part(start: u64, end_inclusive: u64) -> RangeRequest {
        RangeRequest::Part(BlobRange {
            start,
            end_inclusive,
        })
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(range("bytes=0-9", 100), part(0, 9));
        assert_eq!(range("bytes=90-", 100), part(90, 99));
        assert_eq!(range("bytes=-10", 100), part(90, 99));
        assert_eq!(range("bytes=-1000", 100), part(0, 99));
        assert_eq!(range("bytes=50-5000", 100), part(50, 99));
        assert_eq!(range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(range("bytes=-0", 100), RangeRequest::Unsatisfiable);
        assert_eq!(range("bytes=0-1,5-6", 100), RangeRequest::Whole);
        assert_eq!(range("items=0-1", 100), RangeRequest::Whole);
        assert_eq!(range("bytes=9-2", 100), RangeRequest::Whole);
        assert_eq!(range("bytes=abc", 100), RangeRequest::Whole);
        assert_eq!(parse_range(None, 100), RangeRequest::Whole);
    }
}
