//! The signed release metadata (TUF) files, for host clients and CDNs.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};

use super::blobs::{IMMUTABLE, if_none_match_hits};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

/// How long caches may keep `timestamp.json`, the one mutable file: hosts see a new release at
/// most this much later than the store signed it.
pub const TIMESTAMP_CACHE_CONTROL: &str = "public, max-age=30";

/// A TUF metadata file: `timestamp.json` (short-lived), or a versioned file
/// (`{version}.root.json`, `{version}.snapshot.json`, `{version}.targets.json`,
/// `{version}.bin-xxx.json`) that never changes once written.
#[utoipa::path(get, path = "/tuf/{file}", tag = "updates",
    params(("file" = String, Path, description = "`timestamp.json` or `{version}.{role}.json`")),
    responses((status = 200, description = "The signed metadata file", content_type = "application/json"),
              (status = 304, description = "Matches If-None-Match"),
              (status = 404, body = crate::error::Problem)))]
pub async fn get_release_metadata(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> ApiResult<Response> {
    let well_formed = file.len() <= 64
        && file.ends_with(".json")
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    let not_found = || ApiError::not_found(format!("no metadata file `{file}`"));
    if !well_formed {
        return Err(not_found());
    }
    let served = crate::release_metadata::served_file(&app, &file)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    let cache_control = if file == "timestamp.json" {
        TIMESTAMP_CACHE_CONTROL
    } else {
        IMMUTABLE
    };
    let etag = format!("\"sha256:{}\"", served.sha256);
    let etag_value = HeaderValue::from_str(&etag).map_err(ApiError::internal)?;
    let mut response = if if_none_match_hits(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        served.bytes.into_response()
    };
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response_headers.insert(header::ETAG, etag_value);
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    Ok(response)
}
