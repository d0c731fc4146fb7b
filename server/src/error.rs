//! The one error type handlers return, rendered as RFC 9457 `application/problem+json`.
//!
//! Every kind of failure has a stable `type` URI (`/problems/<slug>`) that clients can match
//! on; the human text may change. A 500 never carries internals: the cause is logged with the
//! request id and the client sees only that id.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What went wrong, at the granularity a client can act on. Each kind maps to one status and
/// one stable problem type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Malformed or semantically invalid input; `detail` says which field and why.
    InvalidInput,
    /// No credentials, or credentials that are not valid (bad signature, expired, revoked).
    Unauthorized,
    /// Valid credentials that do not grant this action.
    Forbidden,
    /// The addressed resource does not exist (or the caller may not know it exists).
    NotFound,
    /// The request conflicts with current state (name taken, last owner, ...).
    Conflict,
    /// A name is reserved by the store.
    ReservedName,
    /// Username/password pair did not match.
    InvalidCredentials,
    /// A refresh token was presented again after it had been rotated; its family is revoked.
    RefreshTokenReused,
    /// Too many requests; `Retry-After` says when to try again.
    RateLimited,
    /// The request body is larger than this endpoint accepts.
    PayloadTooLarge,
    /// The requested byte range lies outside the object.
    RangeNotSatisfiable,
    /// The request took longer than the server allows.
    Timeout,
    /// A dependency (database, blob store) is not reachable.
    Unavailable,
    /// Anything unexpected. Details are only in the server log.
    Internal,
    /// The package is malformed or breaks a package rule; `code` names the rule.
    InvalidPackage,
    /// `plugin.toml` names another plugin or version than the upload's URL.
    ManifestMismatch,
    /// The signature envelope is malformed or the signature does not verify.
    InvalidSignature,
    /// The signer's certificate chain is not trusted for this publisher; `code` says why.
    UntrustedCertificate,
    /// The version exists with different contents (version numbers are never reused).
    VersionExists,
    /// The upload ended before all its bytes arrived.
    UploadTruncated,
}

impl ProblemKind {
    /// The stable slug used in the problem `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid-input",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::Conflict => "conflict",
            Self::ReservedName => "reserved-name",
            Self::InvalidCredentials => "invalid-credentials",
            Self::RefreshTokenReused => "refresh-token-reused",
            Self::RateLimited => "rate-limited",
            Self::PayloadTooLarge => "payload-too-large",
            Self::RangeNotSatisfiable => "range-not-satisfiable",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::InvalidPackage => "invalid-package",
            Self::ManifestMismatch => "manifest-mismatch",
            Self::InvalidSignature => "invalid-signature",
            Self::UntrustedCertificate => "untrusted-certificate",
            Self::VersionExists => "version-exists",
            Self::UploadTruncated => "upload-truncated",
        }
    }

    /// The HTTP status this kind is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidInput
            | Self::InvalidPackage
            | Self::ManifestMismatch
            | Self::InvalidSignature
            | Self::UntrustedCertificate => StatusCode::UNPROCESSABLE_ENTITY,
            Self::VersionExists => StatusCode::CONFLICT,
            Self::UploadTruncated => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::InvalidCredentials | Self::RefreshTokenReused => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict | Self::ReservedName => StatusCode::CONFLICT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short, fixed summary of the kind (the problem `title`).
    pub fn title(self) -> &'static str {
        match self {
            Self::InvalidInput => "Invalid input",
            Self::Unauthorized => "Authentication required",
            Self::Forbidden => "Not allowed",
            Self::NotFound => "Not found",
            Self::Conflict => "Conflict",
            Self::ReservedName => "Reserved name",
            Self::InvalidCredentials => "Invalid credentials",
            Self::RefreshTokenReused => "Refresh token reused",
            Self::RateLimited => "Too many requests",
            Self::PayloadTooLarge => "Payload too large",
            Self::RangeNotSatisfiable => "Range not satisfiable",
            Self::Timeout => "Request timeout",
            Self::Unavailable => "Service unavailable",
            Self::Internal => "Internal server error",
            Self::InvalidPackage => "Invalid package",
            Self::ManifestMismatch => "Manifest does not match the upload",
            Self::InvalidSignature => "Invalid signature",
            Self::UntrustedCertificate => "Untrusted certificate",
            Self::VersionExists => "Version exists",
            Self::UploadTruncated => "Upload truncated",
        }
    }

    /// Every kind, for documentation and tests.
    pub const ALL: [ProblemKind; 20] = [
        Self::InvalidInput,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::Conflict,
        Self::ReservedName,
        Self::InvalidCredentials,
        Self::RefreshTokenReused,
        Self::RateLimited,
        Self::PayloadTooLarge,
        Self::RangeNotSatisfiable,
        Self::Timeout,
        Self::Unavailable,
        Self::Internal,
        Self::InvalidPackage,
        Self::ManifestMismatch,
        Self::InvalidSignature,
        Self::UntrustedCertificate,
        Self::VersionExists,
        Self::UploadTruncated,
    ];
}

/// The body of an error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g. `/problems/not-found`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong in this request, and what to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A finer, stable reason within the type (e.g. `path-traversal`, `expired`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Request id, to quote when reporting a server error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// An error a handler returns. Build it with the helpers ([`ApiError::not_found`], ...).
#[derive(Debug)]
pub struct ApiError {
    kind: ProblemKind,
    detail: Option<Cow<'static, str>>,
    retry_after_secs: Option<u64>,
    code: Option<String>,
    /// The cause of an internal error; logged, never sent.
    source: Option<anyhow::Error>,
}

/// What every handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error of `kind` with a client-facing explanation.
    pub fn new(kind: ProblemKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: Some(detail.into()),
            retry_after_secs: None,
            code: None,
            source: None,
        }
    }

    /// Input failed validation; `detail` names the field and the rule.
    pub fn invalid(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ProblemKind::InvalidInput, detail)
    }

    /// Missing or invalid credentials.
    pub fn unauthorized(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ProblemKind::Unauthorized, detail)
    }

    /// The caller is known but not allowed.
    pub fn forbidden(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ProblemKind::Forbidden, detail)
    }

    /// The resource does not exist.
    pub fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ProblemKind::NotFound, detail)
    }

    /// The request conflicts with the current state.
    pub fn conflict(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ProblemKind::Conflict, detail)
    }

    /// Rate limited; the client may retry after `secs`.
    pub fn rate_limited(secs: u64) -> Self {
        Self {
            retry_after_secs: Some(secs.max(1)),
            ..Self::new(
                ProblemKind::RateLimited,
                "too many requests; retry after the delay in Retry-After",
            )
        }
    }

    /// An unexpected failure. `cause` is logged with the request id and never sent.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            kind: ProblemKind::Internal,
            detail: None,
            retry_after_secs: None,
            code: None,
            source: Some(cause.into()),
        }
    }

    /// A dependency is down; `cause` is logged, the client sees `what` only.
    pub fn unavailable(what: &'static str, cause: impl Into<anyhow::Error>) -> Self {
        Self {
            source: Some(cause.into()),
            ..Self::new(ProblemKind::Unavailable, what)
        }
    }

    /// Adds a finer, stable reason within the problem type (the `code` member).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Asks the client to retry after `secs` (sent as `Retry-After`).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// The kind of this error.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }

    /// The client-facing explanation, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind.slug())?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::unavailable("the database is not reachable", e)
            }
            other => Self::internal(other),
        }
    }
}

impl From<crate::blob_gc::ConfirmError> for ApiError {
    fn from(e: crate::blob_gc::ConfirmError) -> Self {
        use crate::blob_gc::ConfirmError;
        match e {
            ConfirmError::Database(e) => e.into(),
            ConfirmError::Blobs(e) => Self::unavailable("the blob store is not reachable", e),
            // Rare: an identical blob, unreferenced for a day, was collected at this moment.
            ConfirmError::Collected(_) => Self::unavailable(
                "stored data was collected as unreferenced while this request recorded it; send the request again",
                e,
            ),
        }
    }
}

/// Renders a problem response. The request id is attached later by
/// [`crate::http::attach_request_id_to_problems`], which sees the request headers.
pub fn problem_response(
    kind: ProblemKind,
    detail: Option<String>,
    retry_after: Option<u64>,
) -> Response {
    problem_response_with_code(kind, detail, None, retry_after)
}

/// [`problem_response`] with a `code` member.
pub fn problem_response_with_code(
    kind: ProblemKind,
    detail: Option<String>,
    code: Option<String>,
    retry_after: Option<u64>,
) -> Response {
    let body = Problem {
        problem_type: format!("/problems/{}", kind.slug()),
        title: kind.title().to_owned(),
        status: kind.status().as_u16(),
        detail,
        code,
        request_id: None,
    };
    let mut response = (kind.status(), axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if kind.status() == StatusCode::UNAUTHORIZED {
        // RFC 9110 §11.6.1: a 401 names the scheme the client should use.
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"plugstore\""),
        );
    }
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.source {
            if self.kind == ProblemKind::Internal {
                tracing::error!(error = ?cause, "internal error");
            } else {
                tracing::warn!(error = %cause, kind = self.kind.slug(), "dependency error");
            }
        }
        problem_response_with_code(
            self.kind,
            self.detail.map(Cow::into_owned),
            self.code,
            self.retry_after_secs,
        )
    }
}
