//! The TestApp builder: a fresh store per test on either stack.
//!
//! - `Stack::Embedded`: SQLite file + disk blobs in a temp dir (always available).
//! - `Stack::Scaled`: a fresh PostgreSQL database (from `PLUGSTORE_TEST_POSTGRES_URL`) + the
//!   S3 server from `PLUGSTORE_TEST_S3_*` under a unique key prefix. Skipped when those are
//!   unset, unless `PLUGSTORE_REQUIRE_SERVICES=1`, which turns a missing service into a failure.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use plugstore_server::blobs::{self, S3Settings};
use plugstore_server::config::{BlobBackend, Settings};
use plugstore_server::db::Database;
use plugstore_server::{AppState, router};
use serde_json::Value;
use tower::ServiceExt;

/// Which deployment shape a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Embedded,
    Scaled,
}

/// Runs each listed test on both stacks: `mod name { fn embedded(); fn scaled(); }`. The
/// store comes from `TestApp::start`, or from `start = path;` given first (an async function
/// from a [`Stack`] to `Option<TestApp>`).
#[macro_export]
macro_rules! both_stacks {
    (start = $start:path; $(async fn $name:ident($app:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test]
            async fn embedded() {
                let $app = $start($crate::harness::Stack::Embedded).await.expect("embedded stack");
                $body
            }
            #[tokio::test]
            async fn scaled() {
                let Some($app) = $start($crate::harness::Stack::Scaled).await else { return };
                $body
            }
        }
    )*};
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        $crate::both_stacks! { start = $crate::harness::TestApp::start; $(async fn $name($app) $body)* }
    };
}

/// The services a scaled test needs, or why they are missing.
pub fn scaled_services() -> Result<(String, S3Settings), String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let pg = var("PLUGSTORE_TEST_POSTGRES_URL").ok_or("PLUGSTORE_TEST_POSTGRES_URL is not set")?;
    let endpoint =
        var("PLUGSTORE_TEST_S3_ENDPOINT").ok_or("PLUGSTORE_TEST_S3_ENDPOINT is not set")?;
    let s3 = S3Settings {
        endpoint,
        bucket: var("PLUGSTORE_TEST_S3_BUCKET").unwrap_or_else(|| "plugstore-test".into()),
        region: var("PLUGSTORE_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
        access_key_id: var("PLUGSTORE_TEST_S3_ACCESS_KEY_ID")
            .ok_or("PLUGSTORE_TEST_S3_ACCESS_KEY_ID is not set")?,
        secret_access_key: var("PLUGSTORE_TEST_S3_SECRET_ACCESS_KEY")
            .ok_or("PLUGSTORE_TEST_S3_SECRET_ACCESS_KEY is not set")?,
        force_path_style: true,
        prefix: format!("t-{}/", uuid::Uuid::new_v4().simple()),
        ..S3Settings::default()
    };
    Ok((pg, s3))
}

/// Skips (returns None) or fails, per `PLUGSTORE_REQUIRE_SERVICES`.
pub fn skip_or_fail(why: &str) -> Option<std::convert::Infallible> {
    if std::env::var("PLUGSTORE_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "PLUGSTORE_REQUIRE_SERVICES=1 but a service is missing: {why}. Run the tests through scripts/test."
        );
    }
    eprintln!("skipping scaled-stack test: {why} (scripts/test provisions PostgreSQL and Garage)");
    None
}

/// A PostgreSQL database created for one test and dropped after it.
struct TempPgDatabase {
    admin_url: String,
    name: String,
}

impl TempPgDatabase {
    async fn create(admin_url: &str) -> (Self, String) {
        let name = format!("plugstore_t_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url, 1)
            .await
            .expect("connect to PLUGSTORE_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin.pool)
            .await
            .expect("create test database");
        admin.pool.close().await;
        let base = admin_url.split('?').next().unwrap_or(admin_url);
        let url = match base.rfind('/') {
            Some(i) if i > "postgres://".len() => format!("{}/{name}", &base[..i]),
            _ => format!("{base}/{name}"),
        };
        (
            Self {
                admin_url: admin_url.to_owned(),
                name,
            },
            url,
        )
    }
}

impl Drop for TempPgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; a separate thread with its own runtime can block.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(db) = Database::connect(&url, 1).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&db.pool)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A running store for one test.
pub struct TestApp {
    pub app: AppState,
    router: Router,
    pub dir: tempfile::TempDir,
    _pg: Option<TempPgDatabase>,
}

/// A response, with the body read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The problem `type` of an error response.
    pub fn problem_type(&self) -> String {
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "not a problem response: {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub access: String,
    pub refresh: String,
}

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// Default test settings: everything under a temp dir, generous rate limits.
    pub fn settings(dir: &std::path::Path) -> Settings {
        let mut settings = Settings {
            data_dir: dir.to_owned(),
            ..Settings::default()
        };
        settings.database.url = format!("sqlite://{}/plugstore.db", dir.display());
        settings.blobs.dir = dir.join("blobs").display().to_string();
        settings.auth.jwt_keys_dir = dir.join("keys/jwt").display().to_string();
        settings.http.public_url = "http://store.test".into();
        settings.auth.issuer = "http://store.test".into();
        settings.rate_limits.login_per_minute = 1000;
        settings.rate_limits.search_per_minute = 1000;
        settings.rate_limits.refresh_per_minute = 1000;
        settings.rate_limits.register_per_hour = 1000;
        settings.rate_limits.token_create_per_hour = 1000;
        // No worker runs in these tests: uploads publish at once unless a test of the scan
        // pipeline chooses `scan` (the store's default) and plays the worker itself.
        settings.scan.policy = plugstore_server::config::ScanPolicy::Publish;
        settings
    }

    pub async fn start(stack: Stack) -> Option<Self> {
        Self::start_with(stack, |_| {}).await
    }

    /// Starts a store whose settings `adjust` may change first.
    pub async fn start_with(stack: Stack, adjust: impl FnOnce(&mut Settings)) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Self::settings(dir.path());
        let mut pg = None;
        if stack == Stack::Scaled {
            let (pg_url, s3) = match scaled_services() {
                Ok(services) => services,
                Err(why) => {
                    skip_or_fail(&why);
                    return None;
                }
            };
            let (temp, url) = TempPgDatabase::create(&pg_url).await;
            settings.database.url = url;
            settings.blobs.backend = BlobBackend::S3;
            settings.blobs.s3 = s3;
            pg = Some(temp);
        }
        adjust(&mut settings);
        let db = Database::connect(&settings.database.url, 5)
            .await
            .expect("database");
        db.migrate().await.expect("migrations");
        let store: Arc<dyn blobs::BlobStore> = match settings.blobs.backend {
            BlobBackend::Disk => blobs::open_disk(std::path::Path::new(&settings.blobs.dir))
                .await
                .expect("disk store"),
            BlobBackend::S3 => blobs::open_s3(&settings.blobs.s3).await.expect("s3 store"),
        };
        let app = AppState::assemble(settings, db, store).expect("app");
        let router = router::build(app.clone())
            .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        Some(Self {
            app,
            router,
            dir,
            _pg: pg,
        })
    }

    /// The same store started again, on the same settings, database and blobs: what a start
    /// reads (keys above all) is read anew.
    pub async fn restarted(self) -> Self {
        let app = AppState::assemble(
            self.app.settings.clone(),
            self.app.db.clone(),
            self.app.blobs.clone(),
        )
        .expect("app");
        let router = router::build(app.clone())
            .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        Self {
            app,
            router,
            dir: self.dir,
            _pg: self._pg,
        }
    }

    /// Sends a request; `body` is sent as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(json) => request
                .header("content-type", "application/json")
                .body(Body::from(json.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        self.send(request).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Registers and logs in a developer.
    pub async fn signup(&self, username: &str) -> TestUser {
        let registered = self
            .post("/api/v1/auth/register", None, serde_json::json!({"username": username, "email": format!("{username}@example.org"), "password": PASSWORD}))
            .await;
        assert_eq!(
            registered.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&registered.body)
        );
        self.login(username).await
    }

    pub async fn login(&self, username: &str) -> TestUser {
        let login = self
            .post(
                "/api/v1/auth/login",
                None,
                serde_json::json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(
            login.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&login.body)
        );
        let tokens = login.json();
        let me = self
            .get("/api/v1/me", tokens["access_token"].as_str())
            .await
            .json();
        TestUser {
            id: me["id"].as_i64().expect("id"),
            access: tokens["access_token"].as_str().expect("access").to_owned(),
            refresh: tokens["refresh_token"]
                .as_str()
                .expect("refresh")
                .to_owned(),
        }
    }

    /// Gives a user a store-wide role directly in the database.
    pub async fn set_role(&self, user: &TestUser, role: &str) {
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role)
            .bind(user.id)
            .execute(&self.app.db.pool)
            .await
            .expect("set role");
    }

    /// Creates a publisher owned by `owner`.
    pub async fn publisher(&self, owner: &TestUser, name: &str) {
        let created = self
            .post(
                "/api/v1/publishers",
                Some(&owner.access),
                serde_json::json!({"name": name}),
            )
            .await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&created.body)
        );
    }

    /// Signs every pending change into the release metadata (creating the repository the
    /// first time), then applies the change feed: what the background jobs do within seconds.
    /// Update checks offer a plugin only once its changes are signed.
    pub async fn sign_and_follow(&self) {
        plugstore_server::release_metadata::ensure_repository(&self.app)
            .await
            .expect("release metadata");
        while plugstore_server::release_metadata::run_once(&self.app, "test-replica")
            .await
            .expect("signing round")
            > 0
        {}
        self.app
            .catalogue
            .apply_changes(&self.app.db)
            .await
            .expect("change feed");
    }

    /// Inserts a plugin with versions directly (publishing arrives with signed packages).
    pub async fn seed_plugin(&self, publisher: &str, name: &str, versions: &[(&str, &str)]) -> i64 {
        let now = plugstore_server::db::now();
        let publisher_id: i64 = sqlx::query_scalar("SELECT id FROM publishers WHERE name = $1")
            .bind(publisher)
            .fetch_one(&self.app.db.pool)
            .await
            .expect("publisher");
        let plugin_id: i64 = sqlx::query_scalar("INSERT INTO plugins (publisher_id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id")
            .bind(publisher_id)
            .bind(name)
            .bind(format!("The {name} plugin"))
            .bind(now)
            .fetch_one(&self.app.db.pool)
            .await
            .expect("plugin");
        for (version, state) in versions {
            sqlx::query("INSERT INTO plugin_versions (plugin_id, version, state, package_digest, package_size, created_at) VALUES ($1, $2, $3, $4, 10, $5)")
                .bind(plugin_id)
                .bind(*version)
                .bind(*state)
                .bind("0".repeat(64))
                .bind(now)
                .execute(&self.app.db.pool)
                .await
                .expect("version");
        }
        plugin_id
    }
}
