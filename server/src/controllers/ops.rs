//! Operational endpoints: liveness, readiness, metrics, JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

/// Readiness of each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` when every check passed.
    pub status: &'static str,
    /// `ok` or `unreachable`.
    pub database: &'static str,
    /// `ok` or `unreachable`.
    pub blob_store: &'static str,
}

/// The process is alive (no dependency checks).
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The database and blob store are reachable; 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (db, blobs) = tokio::join!(app.db.ping(), app.blobs.check_ready());
    if let Err(e) = &db {
        tracing::warn!(error = %e, "readiness: database unreachable");
    }
    if let Err(e) = &blobs {
        app.metrics.blob_error(app.blobs.backend_name(), "ready");
        tracing::warn!(error = %e, "readiness: blob store unreachable");
    }
    let label = |ok: bool| if ok { "ok" } else { "unreachable" };
    let ready = db.is_ok() && blobs.is_ok();
    let body = Readiness {
        status: label(ready),
        database: label(db.is_ok()),
        blob_store: label(blobs.is_ok()),
    };
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus metrics", content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&app),
    )
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JWK Set")))]
pub async fn jwks(State(app): State<AppState>) -> impl IntoResponse {
    // Short cache: clients must see a new key soon after a rotation.
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(app.keys.jwks()),
    )
}
