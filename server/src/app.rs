//! The state every handler shares, and how it is assembled from settings.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Semaphore;

use crate::auth::jwt::KeyRing;
use crate::blobs::{self, BlobStore};
use crate::ca::StoreCa;
use crate::catalogue::Catalogue;
use crate::config::{BlobBackend, Settings};
use crate::db::Database;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimits;
use crate::release_metadata::{LatestTimestamp, ReleaseKeys};
use crate::signing::SigningTrust;

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<App>);

/// What [`AppState`] holds.
pub struct App {
    /// Effective settings.
    pub settings: Settings,
    /// Metadata database.
    pub db: Database,
    /// Blob storage.
    pub blobs: Arc<dyn BlobStore>,
    /// JWT signing and verification keys.
    pub keys: KeyRing,
    /// The store's code-signing CA.
    pub ca: StoreCa,
    /// Trust anchors and policy for developer signatures.
    pub trust: SigningTrust,
    /// SHA-256 (hex) of the secret scan workers authenticate with.
    pub worker_token_hash: String,
    /// Token buckets for abuse-prone endpoints.
    pub limits: RateLimits,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Bounds concurrent blob downloads so a burst cannot exhaust file handles or memory.
    pub download_permits: Arc<Semaphore>,
    /// The update check's cache of plugins, kept current by the change feed.
    pub catalogue: Arc<Catalogue>,
    /// The TUF root chain and online keys the release metadata is signed with.
    pub release_keys: ReleaseKeys,
    /// The newest `timestamp.json`, served from memory for a moment.
    pub latest_timestamp: LatestTimestamp,
}

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    /// Opens the database (running migrations), the blob store and the key ring.
    pub async fn open(settings: Settings) -> anyhow::Result<Self> {
        let db = Database::connect(&settings.database.url, settings.database.max_connections)
            .await
            .context("opening the database (database.url)")?;
        db.migrate().await.context("migrating the database")?;
        let blobs = match settings.blobs.backend {
            BlobBackend::Disk => blobs::open_disk(std::path::Path::new(&settings.blobs.dir))
                .await
                .context("opening the blob directory (blobs.dir)")?,
            BlobBackend::S3 => blobs::open_s3(&settings.blobs.s3)
                .await
                .context("opening the S3 blob store (blobs.s3.*)")?,
        };
        Self::assemble(settings, db, blobs)
    }

    /// Builds the state from parts already opened (tests use this to share services).
    pub fn assemble(
        settings: Settings,
        db: Database,
        blobs: Arc<dyn BlobStore>,
    ) -> anyhow::Result<Self> {
        let keys = KeyRing::open(std::path::Path::new(&settings.auth.jwt_keys_dir))
            .context("loading JWT signing keys (auth.jwt_keys_dir)")?;
        let optional = |path: &str| (!path.is_empty()).then(|| std::path::PathBuf::from(path));
        let ca = StoreCa::open(
            &settings.data_dir.join("keys/ca"),
            optional(&settings.signing.ca_cert).as_deref(),
            optional(&settings.signing.ca_key).as_deref(),
            &format!("plugstore code signing CA ({})", settings.http.public_url),
        )
        .context("opening the store's CA (signing.ca_cert, signing.ca_key)")?;
        let trust = SigningTrust::new(&ca, &settings.signing)?;
        let worker_token_hash = crate::secrets::sha256_hex(&worker_token(&settings)?);
        let limits = RateLimits::new(&settings.rate_limits);
        let default_keys_dir = settings.data_dir.join("keys/tuf");
        let keys_dir = if settings.tuf.keys_dir.is_empty() {
            default_keys_dir.clone()
        } else {
            std::path::PathBuf::from(&settings.tuf.keys_dir)
        };
        let release_keys =
            crate::release_metadata::load_keys(&keys_dir, keys_dir == default_keys_dir)?;
        let catalogue = Arc::new(Catalogue::new(download_base(&settings)));
        let metrics = Metrics::new();
        let download_permits = Arc::new(Semaphore::new(
            settings.http.max_concurrent_downloads.max(1),
        ));
        Ok(Self(Arc::new(App {
            settings,
            db,
            blobs,
            keys,
            ca,
            trust,
            worker_token_hash,
            limits,
            metrics,
            download_permits,
            catalogue,
            release_keys,
            latest_timestamp: LatestTimestamp::default(),
        })))
    }

    /// Where hosts download immutable files from: the CDN when one is configured, this service
    /// otherwise. Without a trailing slash.
    pub fn download_base(&self) -> &str {
        download_base(&self.settings)
    }

    /// Limits for reading uploaded packages: the format's defaults (entries, unpacked size,
    /// manifest size, paths). The upload's own size is bounded by `publish.max_package_bytes`.
    pub fn package_limits(&self) -> plugstore_format::limits::PackageLimits {
        plugstore_format::limits::PackageLimits::default()
    }

    /// Re-reads the JWT keys periodically so a rotation by another process (or replica) is
    /// picked up without a restart.
    pub fn spawn_key_reloader(&self) {
        let app = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                if let Err(e) = app.keys.reload() {
                    tracing::warn!(error = %e, "reloading JWT keys failed; keeping the current ones");
                }
            }
        });
    }
}

/// The scan workers' secret: `scan.worker_token`, or one generated once into
/// `<data_dir>/keys/worker-token` (0600) for workers on the same host.
pub fn worker_token(settings: &Settings) -> anyhow::Result<String> {
    if !settings.scan.worker_token.is_empty() {
        return Ok(settings.scan.worker_token.clone());
    }
    let path = settings.data_dir.join("keys/worker-token");
    if path.exists() {
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the scan worker token {}", path.display()))?;
        let token = token.trim();
        anyhow::ensure!(
            !token.is_empty(),
            "{} is empty; delete it to generate a new token",
            path.display()
        );
        return Ok(token.to_owned());
    }
    let token = format!("psw_{}", crate::secrets::random_token(32));
    crate::secrets::write_private_file(&path, token.as_bytes())
        .with_context(|| format!("writing the scan worker token {}", path.display()))?;
    Ok(token)
}

/// See [`AppState::download_base`].
fn download_base(settings: &Settings) -> &str {
    let cdn = settings.blobs.cdn_base_url.trim_end_matches('/');
    if cdn.is_empty() {
        &settings.http.public_url
    } else {
        cdn
    }
}
