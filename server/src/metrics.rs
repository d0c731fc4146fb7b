//! Prometheus metrics: requests by route and status, latencies, DB pool, blob store errors.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::app::AppState;
use crate::catalogue::FastHash;

#[derive(Debug, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, EncodeLabelSet)]
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
    requests: Arc<RequestStats>,
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
        let requests = Arc::new(RequestStats::default());
        let blob_errors = Family::<BlobLabels, Counter>::default();
        let db_pool_size = Gauge::default();
        let db_pool_idle = Gauge::default();
        registry.register_collector(Box::new(Arc::clone(&requests)));
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
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = labelled_method(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    app.metrics.requests.record(
        &method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The method as a label: HTTP's own methods, and `OTHER` for any extension method. hyper
/// accepts any token as a method, so labelling them as sent would let clients create
/// unbounded label values (and lengthen the list each request of a route searches).
fn labelled_method(method: &Method) -> Method {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if STANDARD.contains(method) {
        method.clone()
    } else {
        Method::from_bytes(b"OTHER").expect("a valid method token")
    }
}

/// Upper bounds of the latency buckets, in seconds; the last bucket is `+Inf`.
const LATENCY_BOUNDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How many shards the request statistics are split into: more than the threads that answer
/// requests, so that each usually has one to itself.
const REQUEST_SHARDS: usize = 16;

/// Requests answered (by method, route and status) and their latencies (by method and route).
///
/// Kept in shards, one per thread that answers requests, and summed when scraped. Recording
/// into prometheus-client families took two shared read locks, a histogram's write lock and
/// four string allocations per request, on cache lines that every HTTP thread writes; a shard's
/// lock is only ever contended by a scrape.
#[derive(Debug)]
struct RequestStats {
    shards: Box<[RequestShard]>,
}

/// One shard, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct RequestShard(Mutex<HashMap<Box<str>, Vec<MethodStats>, FastHash>>);

/// What one route answered to one method.
#[derive(Debug, Clone)]
struct MethodStats {
    method: Method,
    /// Requests per latency bucket (not cumulative), `+Inf` last.
    buckets: [u64; LATENCY_BOUNDS.len() + 1],
    seconds: f64,
    by_status: Vec<(u16, u64)>,
}

impl Default for RequestStats {
    fn default() -> Self {
        Self {
            shards: (0..REQUEST_SHARDS)
                .map(|_| RequestShard::default())
                .collect(),
        }
    }
}

impl RequestStats {
    fn record(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        thread_local! {
            static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % REQUEST_SHARDS;
        }
        static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
        let shard = &self.shards[SHARD.with(|shard| *shard)];
        let mut routes = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
        let methods = match routes.get_mut(route) {
            Some(methods) => methods,
            None => routes.entry(route.into()).or_default(),
        };
        let stats = match methods.iter().position(|stats| stats.method == method) {
            Some(at) => &mut methods[at],
            None => {
                methods.push(MethodStats::new(method.clone()));
                methods.last_mut().expect("just pushed")
            }
        };
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        stats.buckets[bucket] += 1;
        stats.seconds += seconds;
        stats.count_status(status, 1);
    }

    /// Every shard summed, in a stable order.
    fn totals(&self) -> BTreeMap<(String, String), MethodStats> {
        let mut totals = BTreeMap::<(String, String), MethodStats>::new();
        for shard in &self.shards {
            let routes = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            for (route, methods) in routes.iter() {
                for stats in methods {
                    let key = (stats.method.to_string(), route.to_string());
                    match totals.entry(key) {
                        Entry::Vacant(entry) => {
                            entry.insert(stats.clone());
                        }
                        Entry::Occupied(mut entry) => entry.get_mut().add(stats),
                    }
                }
            }
        }
        totals
    }
}

impl MethodStats {
    fn new(method: Method) -> Self {
        Self {
            method,
            buckets: [0; LATENCY_BOUNDS.len() + 1],
            seconds: 0.0,
            by_status: Vec::new(),
        }
    }

    fn add(&mut self, other: &MethodStats) {
        for (total, count) in self.buckets.iter_mut().zip(other.buckets) {
            *total += count;
        }
        self.seconds += other.seconds;
        for &(status, count) in &other.by_status {
            self.count_status(status, count);
        }
    }

    /// Adds `count` requests answered with `status`.
    fn count_status(&mut self, status: u16, count: u64) {
        match self.by_status.iter_mut().find(|(code, _)| *code == status) {
            Some((_, total)) => *total += count,
            None => self.by_status.push((status, count)),
        }
    }
}

impl Collector for RequestStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.totals();
        let mut requests = encoder.encode_descriptor(
            "http_requests",
            "HTTP requests by route and status",
            None,
            MetricType::Counter,
        )?;
        for ((method, route), stats) in &totals {
            let mut by_status = stats.by_status.clone();
            by_status.sort_unstable();
            for (status, count) in by_status {
                let labels = RequestLabels {
                    method: method.clone(),
                    route: route.clone(),
                    status,
                };
                requests
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        let mut latency = encoder.encode_descriptor(
            "http_request_duration_seconds",
            "HTTP request latency",
            None,
            MetricType::Histogram,
        )?;
        for ((method, route), stats) in &totals {
            let labels = RouteLabels {
                method: method.clone(),
                route: route.clone(),
            };
            let bounds = LATENCY_BOUNDS.iter().copied().chain([f64::MAX]);
            let buckets: Vec<(f64, u64)> = bounds.zip(stats.buckets).collect();
            let count = stats.buckets.iter().sum();
            latency
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(stats.seconds, count, &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_recorded_on_several_threads_are_scraped_as_one_sum() {
        let stats = Arc::new(RequestStats::default());
        std::thread::scope(|scope| {
            for thread in 0..3 {
                let stats = &stats;
                scope.spawn(move || {
                    for i in 0..10 {
                        let status = if i < 9 { 200 } else { 404 };
                        stats.record(
                            &Method::GET,
                            "/api/v1/plugins",
                            status,
                            0.002 * f64::from(thread),
                        );
                    }
                    stats.record(&Method::POST, "/api/v1/updates/check", 200, 20.0);
                });
            }
        });
        let mut registry = Registry::with_prefix("plugstore");
        registry.register_collector(Box::new(Arc::clone(&stats)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"plugstore_http_requests_total{method="GET",route="/api/v1/plugins",status="200"} 27"#,
            r#"plugstore_http_requests_total{method="GET",route="/api/v1/plugins",status="404"} 3"#,
            r#"plugstore_http_requests_total{method="POST",route="/api/v1/updates/check",status="200"} 3"#,
            r#"plugstore_http_request_duration_seconds_count{method="GET",route="/api/v1/plugins"} 30"#,
            // Threads waited 0, 2 and 4 ms: the first within 1 ms, all three within 5 ms.
            r#"plugstore_http_request_duration_seconds_bucket{le="0.001",method="GET",route="/api/v1/plugins"} 10"#,
            r#"plugstore_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/v1/plugins"} 30"#,
            r#"plugstore_http_request_duration_seconds_bucket{le="10.0",method="POST",route="/api/v1/updates/check"} 0"#,
            r#"plugstore_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/api/v1/updates/check"} 3"#,
            r#"plugstore_http_request_duration_seconds_sum{method="POST",route="/api/v1/updates/check"} 60.0"#,
            "# TYPE plugstore_http_requests counter",
            "# TYPE plugstore_http_request_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
