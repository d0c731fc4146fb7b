//! Prometheus metrics: requests by route and status, latencies, DB pool, blob store errors.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::app::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BlobLabels {
    backend: String,
    operation: String,
}

/// All metrics of one process.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    blob_errors: Family<BlobLabels, Counter>,
    db_pool_size: Gauge,
    db_pool_idle: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("plugstore");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let blob_errors = Family::<BlobLabels, Counter>::default();
        let db_pool_size = Gauge::default();
        let db_pool_idle = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register(
            "blob_store_errors",
            "Blob store operations that failed",
            blob_errors.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Open database connections",
            db_pool_size.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            db_pool_idle.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            blob_errors,
            db_pool_size,
            db_pool_idle,
        }
    }

    /// Counts a failed blob store operation.
    pub fn blob_error(&self, backend: &str, operation: &str) {
        self.blob_errors
            .get_or_create(&BlobLabels {
                backend: backend.into(),
                operation: operation.into(),
            })
            .inc();
    }

    /// Renders the text exposition format, sampling the pool gauges first.
    pub fn render(&self, app: &AppState) -> String {
        self.db_pool_size.set(i64::from(app.db.pool.size()));
        self.db_pool_idle.set(app.db.pool.num_idle() as i64);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Middleware recording each request under its route template (never the raw path, which
/// would let clients create unbounded label values).
pub async fn track(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    app.metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}
