//! HTTP hygiene: problem+json everywhere, request ids, security headers, body limits,
//! compression, CORS, readiness, metrics, and the committed OpenAPI document.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::harness::{Stack, TestApp};

async fn embedded() -> TestApp {
    TestApp::start(Stack::Embedded).await.unwrap()
}

#[tokio::test]
async fn every_response_carries_security_headers_and_a_request_id() {
    let app = embedded().await;
    for path in ["/healthz", "/api/v1/publishers", "/no/such/route"] {
        let response = app.get(path, None).await;
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            response.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert!(
            response.header("content-security-policy").is_some(),
            "{path}"
        );
        assert_eq!(
            response.header("x-request-id").map(str::len),
            Some(36),
            "{path}"
        );
    }
    // A client-supplied request id is kept, so logs can be correlated across services.
    let traced = app
        .send(
            Request::get("/healthz")
                .header("x-request-id", "abc-123")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(traced.header("x-request-id"), Some("abc-123"));
}

#[tokio::test]
async fn errors_outside_handlers_are_problems_with_the_request_id() {
    let app = TestApp::start_with(Stack::Embedded, |s| s.http.max_json_body_bytes = 1024)
        .await
        .unwrap();
    let unknown = app.get("/no/such/route", None).await;
    assert_eq!(unknown.problem_type(), "/problems/not-found");
    assert_eq!(
        unknown.json()["request_id"].as_str(),
        unknown.header("x-request-id")
    );

    let wrong_method = app
        .call(Method::DELETE, "/api/v1/plugins", None, None)
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.problem_type(), "/problems/invalid-input");

    let big = json!({"username": "x".repeat(5000), "email": "a@b.c", "password": "p"});
    let too_large = app.post("/api/v1/auth/register", None, big).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.problem_type(), "/problems/payload-too-large");

    let not_json = app
        .send(
            Request::post("/api/v1/auth/login")
                .header("content-type", "application/json")
                .body(Body::from("{nope"))
                .unwrap(),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.problem_type(), "/problems/invalid-input");
    let no_type = app
        .send(
            Request::post("/api/v1/auth/login")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        no_type.json()["detail"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("content-type")
    );
}

#[tokio::test]
async fn server_errors_leak_nothing() {
    let app = embedded().await;
    // Break the database underneath the service: the client learns only that it failed.
    sqlx::query("DROP TABLE publishers")
        .execute(&app.app.db.pool)
        .await
        .unwrap();
    let response = app.get("/api/v1/publishers", None).await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.json();
    assert_eq!(body["type"], "/problems/internal");
    assert!(body.get("detail").is_none(), "{body}");
    let text = String::from_utf8_lossy(&response.body).to_lowercase();
    for leak in ["sql", "publishers", "table", "sqlite"] {
        assert!(!text.contains(leak), "leaked `{leak}`: {text}");
    }
    assert!(body["request_id"].is_string());
}

#[tokio::test]
async fn readiness_reports_a_broken_dependency() {
    let app = embedded().await;
    assert_eq!(
        app.get("/readyz", None).await.json(),
        json!({"status": "ok", "database": "ok", "blob_store": "ok"})
    );
    std::fs::remove_dir_all(&app.app.settings.blobs.dir).unwrap();
    let degraded = app.get("/readyz", None).await;
    assert_eq!(degraded.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(degraded.json()["blob_store"], "unreachable");
    app.app.db.pool.close().await;
    let down = app.get("/readyz", None).await;
    assert_eq!(
        down.json()["database"],
        "unreachable",
        "{}",
        String::from_utf8_lossy(&down.body)
    );
    assert_eq!(
        app.get("/healthz", None).await.status,
        StatusCode::OK,
        "liveness does not depend on dependencies"
    );
}

#[tokio::test]
async fn json_is_compressed_when_asked() {
    let app = embedded().await;
    let alice = app.signup("alice").await;
    for i in 0..30 {
        app.publisher(&alice, &format!("publisher-number-{i}"))
            .await;
    }
    let response = app
        .send(
            Request::get("/api/v1/publishers?limit=100")
                .header("accept-encoding", "gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.header("content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn cors_answers_preflight_for_configured_origins_only() {
    let app = TestApp::start_with(Stack::Embedded, |s| {
        s.http.cors_allowed_origins = vec!["https://console.example".into()]
    })
    .await
    .unwrap();
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/publishers")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let allowed = app.send(preflight("https://console.example")).await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://console.example")
    );
    let denied = app.send(preflight("https://evil.example")).await;
    assert!(denied.header("access-control-allow-origin").is_none());
    // Without configuration there are no CORS headers at all.
    let plain = embedded().await;
    assert!(
        plain
            .send(preflight("https://console.example"))
            .await
            .header("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn errors_are_not_cached() {
    let app = embedded().await;
    let missing_blob = format!("/blobs/sha256/{}", "0".repeat(64));
    for path in [
        "/tuf/99.root.json",
        missing_blob.as_str(),
        "/api/v1/plugins/acme/none",
        "/no/such/route",
    ] {
        let response = app.get(path, None).await;
        assert_eq!(response.status, axum::http::StatusCode::NOT_FOUND, "{path}");
        assert_eq!(response.header("cache-control"), Some("no-store"), "{path}");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = embedded().await;
    app.get("/api/v1/publishers/acme", None).await;
    app.get("/api/v1/publishers/other", None).await;
    let metrics = String::from_utf8(app.get("/metrics", None).await.body.to_vec()).unwrap();
    assert!(metrics.contains(r#"plugstore_http_requests_total{method="GET",route="/api/v1/publishers/{publisher}",status="404"} 2"#), "{metrics}");
    assert!(
        metrics.contains("plugstore_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plugstore_db_pool_connections"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("/api/v1/publishers/acme"),
        "raw paths must not become labels"
    );

    // Nor do methods: hyper takes any token as one.
    for n in 0..20 {
        let method = axum::http::Method::from_bytes(format!("X{n}").as_bytes()).unwrap();
        app.call(method, "/healthz", None, None).await;
    }
    let metrics = String::from_utf8(app.get("/metrics", None).await.body.to_vec()).unwrap();
    assert!(!metrics.contains(r#"method="X1""#), "{metrics}");
    assert!(
        metrics.contains(
            r#"plugstore_http_requests_total{method="OTHER",route="/healthz",status="405"} 20"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_served_openapi_document_matches_the_committed_one() {
    let app = embedded().await;
    let served: serde_json::Value = app.get("/openapi.json", None).await.json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    // Keys sorted explicitly: whether serde_json keeps insertion order depends on features
    // other workspace crates enable, and the committed file must not depend on that.
    let rendered = serde_json::to_string_pretty(&sorted_keys(&served)).unwrap() + "\n";
    if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "openapi/openapi.json differs from the document the server serves.\n\
         Regenerate it with: UPDATE_OPENAPI=1 cargo test -p plugstore-server --test api openapi\n\
         and commit the result."
    );
    assert_eq!(served["openapi"], "3.1.0");
    // Operation ids equal handler names.
    assert_eq!(
        served["paths"]["/api/v1/publishers"]["post"]["operationId"],
        "create_publisher"
    );
    let docs = app.get("/docs", None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&docs.body).contains("openapi"));
}

#[tokio::test]
async fn slow_requests_time_out_with_a_problem() {
    let app = TestApp::start_with(Stack::Embedded, |s| s.http.request_timeout_secs = 1)
        .await
        .unwrap();
    // Hold SQLite's write lock so the registration's insert waits (busy_timeout is 5 s).
    let mut blocker = app.app.db.pool.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let body = json!({"username": "slowpoke", "email": "s@example.org", "password": crate::harness::PASSWORD});
    let response = app.post("/api/v1/auth/register", None, body).await;
    sqlx::query("ROLLBACK")
        .execute(&mut *blocker)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(response.problem_type(), "/problems/timeout");
    assert!(response.json()["request_id"].is_string());
    let metrics = String::from_utf8(app.get("/metrics", None).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"route="/api/v1/auth/register",status="408""#),
        "{metrics}"
    );
}

/// `value` with every object's keys in byte order.
fn sorted_keys(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted_keys(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted_keys).collect())
        }
        other => other.clone(),
    }
}
