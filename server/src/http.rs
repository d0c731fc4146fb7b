//! HTTP hygiene shared by every route: request ids, tracing, timeouts, body limits,
//! compression, CORS, security headers, metrics, and problem+json for errors produced
//! outside handlers (timeouts, oversized bodies, unknown routes, panics).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::config::Settings;
use crate::error::{PROBLEM_JSON, ProblemKind, problem_response};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Problem bodies are small; anything larger is passed through untouched.
const MAX_PROBLEM_BODY: usize = 64 * 1024;

/// Layers for the JSON API only: a body limit and response compression.
pub fn json_api_layers(router: Router<AppState>, settings: &Settings) -> Router<AppState> {
    router
        .layer(DefaultBodyLimit::max(settings.http.max_json_body_bytes))
        .layer(CompressionLayer::new())
}

/// Uploads stream their own bytes and enforce their own size limit.
pub fn upload_layers(router: Router<AppState>) -> Router<AppState> {
    router.layer(DefaultBodyLimit::disable())
}

/// Answers 408 when a handler runs longer than `secs` (minimum 1). Applied per route group,
/// since uploads need far longer than API calls; `finish_problems` turns it into a problem.
pub fn with_timeout(router: Router<AppState>, secs: u64) -> Router<AppState> {
    router.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_secs(secs.max(1)),
    ))
}

/// The interactive reference loads its script from a CDN, so it gets its own policy.
pub fn docs_csp() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; font-src https://fonts.gstatic.com https://cdn.jsdelivr.net; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    )
}

/// Wraps the routes in the layers every request passes through.
///
/// Most of them are applied once, as one tower stack around the router, not with
/// `Router::layer`: that wraps every route's service in another boxed service, and a request
/// clones the whole chain of boxes (a dozen allocations on the update check, the hottest
/// route). Only what needs the matched route (metrics) or must see what a handler's panic or
/// timeout became stays on the routes.
pub fn common_layers(routes: Router<AppState>, app: AppState) -> Router {
    // Innermost first: a panic becomes a 500 (and a slow handler a 408, see `with_timeout`)
    // before `finish_problems` turns it into a problem document and `track` counts it.
    let routes = routes
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                tracing::error!("handler panicked");
                problem_response(ProblemKind::Internal, None, None)
            },
        ))
        .layer(middleware::from_fn(finish_problems))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            crate::metrics::track,
        ))
        .with_state(app.clone());
    let settings = &app.settings;
    let hsts = settings.tls_enabled().then(|| {
        SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        )
    });
    // Outermost first.
    let everything = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
            let request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %request_id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .option_layer(cors_layer(&settings.http.cors_allowed_origins))
        .option_layer(hsts)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .service(routes);
    Router::new().fallback_service(everything)
}

/// Request ids: random (v4) UUIDs drawn from the thread-local CSPRNG. tower-http's
/// `MakeRequestUuid` asks the operating system for every one (a `getrandom` system call per
/// request, on the store's hottest path).
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::RANGE,
                header::IF_RANGE,
                REQUEST_ID,
                header::IF_NONE_MATCH,
            ])
            .expose_headers([
                header::ETAG,
                header::CONTENT_RANGE,
                header::RETRY_AFTER,
                REQUEST_ID,
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

/// Fallback for unknown routes.
pub async fn not_found() -> Response {
    problem_response(
        ProblemKind::NotFound,
        Some("no such endpoint; see /docs for the API".into()),
        None,
    )
}

/// Gives every error response a problem+json body carrying the request id: errors made by
/// handlers get the id added; bare errors from layers and extractors (408, 413, 405, JSON
/// rejections) are replaced by the problem of their status.
async fn finish_problems(request: Request, next: Next) -> Response {
    // A cheap clone (shared bytes): most responses succeed and never read it.
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.header_value().clone());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let is_problem = content_type.starts_with(PROBLEM_JSON);
    // Deliberate error bodies of another type (the readiness report) are left alone.
    if !is_problem && !content_type.is_empty() && !content_type.starts_with("text/plain") {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_PROBLEM_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return problem_response(ProblemKind::Internal, None, None),
    };
    let mut problem: serde_json::Value = if is_problem {
        serde_json::from_slice(&bytes).unwrap_or_default()
    } else {
        // The original status is kept (a 405 stays a 405); the type names the kind.
        let kind = kind_for_status(status);
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // Extractor rejections explain what was wrong with the request; keep that text for
        // client errors. Server errors never echo a body.
        let detail = (status.is_client_error() && !bytes.is_empty())
            .then(|| String::from_utf8_lossy(&bytes).into_owned());
        serde_json::json!({
            "type": format!("/problems/{}", kind.slug()),
            "title": kind.title(),
            "status": status.as_u16(),
            "detail": detail,
        })
    };
    let request_id = request_id.and_then(|id| id.to_str().ok().map(str::to_owned));
    if let (Some(id), Some(obj)) = (request_id, problem.as_object_mut()) {
        obj.insert("request_id".into(), serde_json::Value::String(id));
        obj.retain(|_, v| !v.is_null());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    // Errors are answers about now: a CDN that kept the 404 of a root not yet published
    // (hosts ask for `N+1.root.json` on every refresh) or of a blob still uploading would
    // hide it after it exists. A handler that chose a lifetime keeps it.
    parts
        .headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    (parts, Body::from(body)).into_response()
}

fn kind_for_status(status: StatusCode) -> ProblemKind {
    match status {
        StatusCode::NOT_FOUND => ProblemKind::NotFound,
        StatusCode::METHOD_NOT_ALLOWED
        | StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemKind::InvalidInput,
        StatusCode::PAYLOAD_TOO_LARGE => ProblemKind::PayloadTooLarge,
        StatusCode::REQUEST_TIMEOUT => ProblemKind::Timeout,
        StatusCode::UNAUTHORIZED => ProblemKind::Unauthorized,
        StatusCode::FORBIDDEN => ProblemKind::Forbidden,
        StatusCode::TOO_MANY_REQUESTS => ProblemKind::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ProblemKind::Unavailable,
        s if s.is_client_error() => ProblemKind::InvalidInput,
        _ => ProblemKind::Internal,
    }
}
