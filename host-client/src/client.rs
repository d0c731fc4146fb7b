//! The client a host application embeds: configured once with [`ClientBuilder`], then
//! [`Client::check_updates`], [`Client::install_update`], [`Client::install`],
//! [`Client::list`] and [`Client::rollback`].
//!
//! Every update goes through the same pipeline of named steps, each with its own error:
//!
//! ```text
//! check_updates   POST the installed set → refresh TUF → each offer looked up in TUF
//!                 (refusals) → installed versions blocked in TUF (revocations, disabled)
//! install_update  package by patch or in full (length and SHA-256 from TUF)
//!                 → certificate chain blob (length and SHA-256 from TUF)
//!                 → developer signature, chain and publisher binding
//!                 → unpack with the strict reader into staging → rename → state.json
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use plugstore_format::certs::{
    CertFingerprint, SignerPolicy, SubjectMapping, TrustAnchorError, TrustAnchors, VerifiedSigner,
};
use plugstore_format::manifest::{PluginId, Target};
use plugstore_tuf::client::TrustedState;
use plugstore_tuf::error::VerificationError;
use plugstore_tuf::time::UnixTime;
use semver::Version;
use tokio::runtime::Handle;
use tokio::sync::Mutex;

use crate::delta::{Fetched, PatchSource, fetch_package_with_progress};
use crate::developer::{DeveloperError, MAX_CHAIN_BYTES, parse_chain, verify_developer};
use crate::download::{DownloadError, DownloadPolicy, ExpectedTarget, download};
use crate::install::{InstallDir, InstallError, InstalledPlugin, PluginState, is_valid_install_id};
use crate::metadata::{HttpFetch, RestoreError, restore, save};
use crate::updates::{
    Channel, CheckContext, CheckRequest, CheckResponse, HostApp, HostWire, InstallReason,
    InstalledWire, Problem, Refusal, RefusalReason, Revocation, UpdateCheck, VerifiedPackage,
    VerifiedUpdate, check_newer, check_offers, confirmed_revocations, is_as_private_as,
    latest_installable, verified_package,
};

/// Most installed plugins one update-check request reports (the API's limit); more are
/// sent in several requests.
pub const MAX_INSTALLED_PER_CHECK: usize = 1000;

/// Largest update-check answer read (about 1000 offers with patches).
pub const MAX_CHECK_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The builder was given an unusable configuration.
    #[error("client configuration: {0}")]
    Config(String),
    /// A trust anchor could not be loaded.
    #[error("trust anchor: {0}")]
    TrustAnchor(#[from] TrustAnchorError),
    /// The saved TUF metadata could not be restored.
    #[error(transparent)]
    Restore(Box<RestoreError>),
    /// The store's TUF metadata was refused (rollback, freeze, mix-and-match, bad
    /// signatures, endless data…) or a lookup in it failed. See
    /// [`ClientError::metadata_error`].
    #[error("TUF metadata: {0}")]
    Metadata(Box<VerificationError>),
    /// The update-check request failed.
    #[error("update check: {0}")]
    Http(#[from] reqwest::Error),
    /// The update-check API answered with an error (RFC 9457 problem details).
    #[error("update check: HTTP {status}: {}", title.as_deref().unwrap_or("error"))]
    Api {
        /// The HTTP status.
        status: u16,
        /// The problem `type`.
        problem_type: Option<String>,
        /// The problem `title`.
        title: Option<String>,
        /// The problem `detail`.
        detail: Option<String>,
    },
    /// The update-check answer is not of the documented shape.
    #[error("update check: malformed answer: {0}")]
    MalformedAnswer(String),
    /// The requested version may not be installed (not listed, yanked, blocked, wrong
    /// platform or host).
    #[error("{} {}: {}", .0.id, .0.version, .0.reason)]
    Refused(Box<Refusal>),
    /// The package or the certificate chain could not be downloaded, or did not match its
    /// signed length and SHA-256.
    #[error("download: {0}")]
    Download(#[from] DownloadError),
    /// The developer signature was refused.
    #[error(transparent)]
    Developer(#[from] DeveloperError),
    /// Installing, listing or rolling back failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// A blocking task failed.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl ClientError {
    /// The TUF refusal, when this is one.
    pub fn metadata_error(&self) -> Option<&VerificationError> {
        match self {
            Self::Metadata(error) => Some(error),
            Self::Restore(error) => match error.as_ref() {
                RestoreError::Verification { source, .. } => Some(source),
                RestoreError::Io { .. } => None,
            },
            _ => None,
        }
    }
}

impl From<VerificationError> for ClientError {
    fn from(error: VerificationError) -> Self {
        Self::Metadata(Box::new(error))
    }
}

impl From<RestoreError> for ClientError {
    fn from(error: RestoreError) -> Self {
        Self::Restore(Box::new(error))
    }
}

/// Configures a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    metadata_base: Option<String>,
    pinned_root: Option<Vec<u8>>,
    install_dir: Option<PathBuf>,
    proxy: Option<reqwest::Proxy>,
    tls_roots_pem: Vec<Vec<u8>>,
    connect_timeout: Duration,
    request_timeout: Duration,
    download_policy: DownloadPolicy,
    store_ca_pem: Vec<Vec<u8>>,
    other_anchors_pem: Vec<Vec<u8>>,
    subject_mappings: Vec<SubjectMapping>,
    host: Option<HostApp>,
    channel: Channel,
    install_id: Option<String>,
}

impl ClientBuilder {
    /// A client of the store at `base_url` (e.g. `https://plugins.example.org`).
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            metadata_base: None,
            pinned_root: None,
            install_dir: None,
            proxy: None,
            tls_roots_pem: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            download_policy: DownloadPolicy::default(),
            store_ca_pem: Vec::new(),
            other_anchors_pem: Vec::new(),
            subject_mappings: Vec::new(),
            host: None,
            channel: Channel::Stable,
            install_id: None,
        }
    }

    /// The root the host trusts: the bytes of a `N.root.json` shipped with the application.
    /// Required.
    pub fn trusted_root(mut self, root_json: impl Into<Vec<u8>>) -> Self {
        self.pinned_root = Some(root_json.into());
        self
    }

    /// Where plugins, the cache and the saved metadata live. Required.
    pub fn install_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.install_dir = Some(dir.into());
        self
    }

    /// Where the TUF metadata is served; default `{base_url}/tuf/`.
    pub fn metadata_base(mut self, url: impl Into<String>) -> Self {
        self.metadata_base = Some(url.into());
        self
    }

    /// An HTTP proxy for every request.
    pub fn proxy(mut self, proxy: reqwest::Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Longest wait for a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self.download_policy.connect_timeout = timeout;
        self
    }

    /// Longest an update check or a metadata file may take (default 30 s). Downloads are
    /// bounded by the [`DownloadPolicy`]'s minimum rate instead.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Limits of package downloads.
    pub fn download_policy(mut self, policy: DownloadPolicy) -> Self {
        self.download_policy = policy;
        self
    }

    /// Another root for the TLS connections to the store, its CDN and its mirrors (PEM, one or
    /// more certificates): a store on a private PKI. The system's roots are still trusted.
    /// Unrelated to [`ClientBuilder::store_ca_pem`], which is for developer certificates.
    pub fn tls_root_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_roots_pem.push(pem.into());
        self
    }

    /// The store's CA certificate (PEM). It is trusted for developer certificates, and it is
    /// the only root whose certificates may bind a publisher by their
    /// `urn:plugstore:publisher:` SAN URI. Required (at least one).
    pub fn store_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.store_ca_pem.push(pem.into());
        self
    }

    /// Another root for developer certificates (PEM), e.g. a company CA. Its certificates
    /// only bind a publisher through a [`SubjectMapping`] (see
    /// [`ClientBuilder::subject_mapping`]), never by SAN URI.
    pub fn trust_anchor_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.other_anchors_pem.push(pem.into());
        self
    }

    /// Binds certificates of another root to a publisher by their subject.
    pub fn subject_mapping(mut self, mapping: SubjectMapping) -> Self {
        self.subject_mappings.push(mapping);
        self
    }

    /// The host application: id, version (checked against packages' host ranges) and
    /// platform (see `Target::current`). Required.
    pub fn host(mut self, app_id: impl Into<String>, version: Version, platform: Target) -> Self {
        self.host = Some(HostApp {
            app_id: app_id.into(),
            version,
            platform,
        });
        self
    }

    /// The release channel (default stable).
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channel = channel;
        self
    }

    /// The install id sent with update checks (8 to 128 of `[A-Za-z0-9._-]`). Default: a
    /// random one, generated once and kept in the install directory.
    pub fn install_id(mut self, id: impl Into<String>) -> Self {
        self.install_id = Some(id.into());
        self
    }

    /// Builds the client: creates the install directory, loads the install id and restores
    /// the saved TUF metadata (from the pinned root through the saved root chain). Does
    /// blocking file I/O.
    pub fn build(self) -> Result<Client, ClientError> {
        let missing = |what: &str| ClientError::Config(format!("{what} is required"));
        let pinned_root = self.pinned_root.ok_or_else(|| missing("trusted_root"))?;
        let install_dir = InstallDir::new(self.install_dir.ok_or_else(|| missing("install_dir"))?);
        let host = self.host.ok_or_else(|| missing("host"))?;
        if self.store_ca_pem.is_empty() {
            return Err(missing("store_ca_pem"));
        }
        let base_url = self.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(ClientError::Config(format!(
                "base URL {base_url:?} is not an http(s) URL"
            )));
        }
        let mut metadata_base = self
            .metadata_base
            .unwrap_or_else(|| format!("{base_url}/tuf/"));
        if !metadata_base.ends_with('/') {
            metadata_base.push('/');
        }
        if let Some(id) = &self.install_id
            && !is_valid_install_id(id)
        {
            return Err(ClientError::Config(format!(
                "install id {id:?} is not 8 to 128 characters of [A-Za-z0-9._-]"
            )));
        }

        let mut anchors = TrustAnchors::new();
        let mut store_ca = Vec::new();
        for pem in &self.store_ca_pem {
            let before: Vec<CertFingerprint> = fingerprints(&anchors);
            anchors.add_pem(pem)?;
            store_ca.extend(
                fingerprints(&anchors)
                    .into_iter()
                    .filter(|fp| !before.contains(fp)),
            );
        }
        for pem in &self.other_anchors_pem {
            anchors.add_pem(pem)?;
        }
        let signer_policy = SignerPolicy {
            subject_mappings: self.subject_mappings,
            publisher_uri_anchors: Some(store_ca),
            ..SignerPolicy::default()
        };

        let mut http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .redirect(redirect_policy(base_url.clone()))
            .user_agent(concat!("plugstore-client/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = self.proxy {
            http = http.proxy(proxy);
        }
        for pem in &self.tls_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|error| {
                ClientError::Config(format!("a TLS root is not PEM certificates: {error}"))
            })?;
            if roots.is_empty() {
                return Err(ClientError::Config(
                    "a TLS root holds no PEM certificate".into(),
                ));
            }
            for root in roots {
                http = http.add_root_certificate(root);
            }
        }
        let http = http.build()?;

        install_dir.create()?;
        let install_id = install_dir.install_id(self.install_id.as_deref())?;
        let state = {
            let _locked = install_dir.lock()?;
            install_dir.recover_replaced_versions_locked()?;
            restore(&install_dir.tuf_dir(), &pinned_root)?
        };
        Ok(Client {
            inner: Arc::new(Inner {
                base_url,
                metadata_base,
                http,
                request_timeout: self.request_timeout,
                download_policy: self.download_policy,
                anchors,
                signer_policy,
                host,
                channel: self.channel,
                install_id,
                install_dir,
                install_lock: Mutex::new(()),
            }),
            state: Arc::new(Mutex::new(state)),
        })
    }
}

fn fingerprints(anchors: &TrustAnchors) -> Vec<CertFingerprint> {
    anchors
        .certificates()
        .iter()
        .map(|certificate| certificate.fingerprint)
        .collect()
}

#[derive(Debug)]
struct Inner {
    base_url: String,
    metadata_base: String,
    http: reqwest::Client,
    request_timeout: Duration,
    download_policy: DownloadPolicy,
    anchors: TrustAnchors,
    signer_policy: SignerPolicy,
    host: HostApp,
    channel: Channel,
    install_id: String,
    install_dir: InstallDir,
    /// Installs in this process run one at a time (they also hold the directory's lock file,
    /// against other processes): each prunes the package cache, which must not remove a
    /// package another install has downloaded but not yet unpacked.
    install_lock: Mutex<()>,
}

impl Inner {
    /// What the verification steps need to know of this client at `now`.
    fn check_context(&self, now: UnixTime) -> CheckContext<'_> {
        CheckContext {
            host: &self.host,
            channel: self.channel,
            base_url: &self.base_url,
            now,
        }
    }
}

/// A store client for one host application and install directory. Cheap to clone; clones
/// share the trusted metadata.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
    /// The trusted metadata; held for the whole of a refresh so two refreshes never race.
    state: Arc<Mutex<TrustedState>>,
}

/// What [`Client::install_update`] and [`Client::install`] did.
#[derive(Debug)]
pub struct Installed {
    /// The plugin.
    pub id: PluginId,
    /// The version now current.
    pub version: Version,
    /// Where it is unpacked.
    pub path: PathBuf,
    /// How the package arrived (by patch, or in full and why the patch was not used).
    pub fetched: Fetched,
    /// The developer certificate that signed it.
    pub signer: VerifiedSigner,
}

impl Client {
    /// The install directory.
    pub fn install_dir(&self) -> &InstallDir {
        &self.inner.install_dir
    }

    /// The install id sent with update checks.
    pub fn install_id(&self) -> &str {
        &self.inner.install_id
    }

    /// Runs `work` with the trusted metadata and an HTTP fetcher on a blocking thread, after
    /// refreshing the metadata (root, timestamp, snapshot, targets). The refreshed state is
    /// kept and saved only when the refresh succeeded.
    async fn with_refreshed<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut TrustedState, &mut HttpFetch, UnixTime) -> T + Send + 'static,
    ) -> Result<T, ClientError> {
        let mut guard = self.state.lock().await;
        let mut state = guard.clone();
        let mut fetch = HttpFetch {
            http: self.inner.http.clone(),
            metadata_base: self.inner.metadata_base.clone(),
            handle: Handle::current(),
            timeout: self.inner.request_timeout,
            rate: self.inner.download_policy.clone(),
        };
        let install_dir = self.inner.install_dir.clone();
        let (state, result) = tokio::task::spawn_blocking(move || {
            let now = UnixTime::now();
            state.refresh(&mut fetch, now)?;
            let tuf_dir = install_dir.tuf_dir();
            let locked = install_dir.lock()?;
            save(&tuf_dir, &state).map_err(|source| InstallError::Io {
                path: tuf_dir.clone(),
                source,
            })?;
            drop(locked);
            let result = work(&mut state, &mut fetch, now);
            Ok::<_, ClientError>((state, result))
        })
        .await
        .map_err(|error| ClientError::Task(error.to_string()))??;
        *guard = state;
        Ok(result)
    }

    /// Asks the store for updates of the installed plugins and checks every offer against
    /// the signed metadata. Installed versions the metadata lists as blocked are disabled
    /// (their `state.json` records why) and reported as revocations.
    pub async fn check_updates(&self) -> Result<UpdateCheck, ClientError> {
        let installed = self.blocking_list().await?;
        // The API takes at most MAX_INSTALLED_PER_CHECK plugins per request.
        let mut answer = CheckResponse::default();
        let mut batches = installed.chunks(MAX_INSTALLED_PER_CHECK).peekable();
        if batches.peek().is_none() {
            answer = self.post_check(&[]).await?;
        }
        for batch in batches {
            let part = self.post_check(batch).await?;
            answer.updates.extend(part.updates);
            answer.revocations.extend(part.revocations);
        }
        let inner = self.inner.clone();
        let (offers, revocations) = self
            .with_refreshed(move |state, fetch, now| {
                let context = inner.check_context(now);
                let offers = check_offers(state, fetch, &context, &answer.updates, &installed);
                let revocations =
                    confirmed_revocations(state, fetch, &context, &answer.revocations, &installed);
                (offers, revocations)
            })
            .await?;
        let revocations = revocations?;
        self.disable_revoked(&revocations).await?;
        Ok(UpdateCheck {
            updates: offers.updates,
            refusals: offers.refusals,
            awaiting: offers.awaiting,
            revocations,
        })
    }

    /// Looks every installed plugin up in the signed metadata alone (no API call) and
    /// disables the versions listed as blocked; returns them. A host can run this when the
    /// update-check API is unreachable: revocations do not depend on it.
    pub async fn check_revocations(&self) -> Result<Vec<Revocation>, ClientError> {
        let installed = self.blocking_list().await?;
        let inner = self.inner.clone();
        let revocations = self
            .with_refreshed(move |state, fetch, now| {
                let context = inner.check_context(now);
                confirmed_revocations(state, fetch, &context, &[], &installed)
            })
            .await??;
        self.disable_revoked(&revocations).await?;
        Ok(revocations)
    }

    async fn disable_revoked(&self, revocations: &[Revocation]) -> Result<(), ClientError> {
        let dir = self.inner.install_dir.clone();
        let to_disable = revocations.to_vec();
        blocking(move || {
            let now = UnixTime::now();
            for revocation in &to_disable {
                let reason = match (&revocation.reason, &revocation.detail) {
                    (Some(reason), Some(detail)) => format!("{reason}: {detail}"),
                    (Some(reason), None) => reason.clone(),
                    _ => "blocked by the store".to_owned(),
                };
                dir.disable(&revocation.id, &revocation.version, &reason, now)?;
            }
            Ok(())
        })
        .await
    }

    async fn post_check(
        &self,
        installed: &[InstalledPlugin],
    ) -> Result<CheckResponse, ClientError> {
        let inner = &self.inner;
        let request = CheckRequest {
            host: HostWire {
                app_id: &inner.host.app_id,
                version: inner.host.version.to_string(),
                platform: inner.host.platform.as_str(),
            },
            channel: inner.channel,
            install_id: &inner.install_id,
            installed: installed
                .iter()
                .map(|plugin| InstalledWire {
                    id: plugin.id.to_string(),
                    version: plugin.state.current.version.to_string(),
                    sha256: plugin.state.current.sha256.to_hex(),
                })
                .collect(),
        };
        let response = inner
            .http
            .post(format!("{}/api/v1/updates/check", inner.base_url))
            .timeout(inner.request_timeout)
            .json(&request)
            .send()
            .await?;
        let status = response.status();
        let body = read_capped(response, MAX_CHECK_RESPONSE_BYTES).await?;
        if !status.is_success() {
            let problem: Problem = serde_json::from_slice(&body).unwrap_or_default();
            return Err(ClientError::Api {
                status: status.as_u16(),
                problem_type: problem.kind,
                title: problem.title,
                detail: problem.detail,
            });
        }
        serde_json::from_slice(&body)
            .map_err(|error| ClientError::MalformedAnswer(error.to_string()))
    }

    /// Installs a verified update: confirms with freshly refreshed metadata that the version
    /// is still installable (it may have been blocked since the check) and that it is still
    /// newer than the installed version (another install may have happened since; an update
    /// never downgrades: [`RefusalReason::NotNewer`]), downloads the package
    /// (by patch from the installed package when the store signed one, falling back to the
    /// full package), checks the developer signature, unpacks it and makes it current.
    /// `progress(received, total)` is called as package bytes arrive. On any error the
    /// installed version is untouched.
    pub async fn install_update(
        &self,
        update: &VerifiedUpdate,
        progress: impl FnMut(u64, u64) + Send,
    ) -> Result<Installed, ClientError> {
        let package = &update.package;
        let fresh = self
            .verify_now(InstallReason::Update, &package.id, &package.version)
            .await?;
        if fresh.package.sha256 != package.package.sha256
            || fresh.package.length != package.package.length
        {
            return Err(refused(
                &package.id,
                &package.version,
                RefusalReason::ChangedSinceCheck(package.version.clone()),
            ));
        }
        self.install_verified(InstallReason::Update, package, progress)
            .await
    }

    /// Looks `version` of `id` up in freshly refreshed metadata, with every install check.
    async fn verify_now(
        &self,
        reason: InstallReason,
        id: &PluginId,
        version: &Version,
    ) -> Result<VerifiedPackage, ClientError> {
        let inner = self.inner.clone();
        let installed = self
            .inner
            .install_dir
            .state(id)?
            .map(|state| state.current.sha256);
        let (plugin, wanted) = (id.clone(), version.clone());
        self.with_refreshed(move |state, fetch, now| {
            let context = inner.check_context(now);
            verified_package(
                state, fetch, &context, reason, &plugin, &wanted, installed, None,
            )
        })
        .await?
        .map_err(|reason| refused(id, version, reason))
    }

    /// Installs `version` of `id` (a first install, or a pinned version): it must be listed
    /// in the signed metadata as published or yanked (yanked versions stay installable when
    /// asked for by version, as a lock file would; they are never offered as updates), for
    /// this platform and host version. Blocked versions are refused.
    pub async fn install(
        &self,
        id: &PluginId,
        version: &Version,
        progress: impl FnMut(u64, u64) + Send,
    ) -> Result<Installed, ClientError> {
        let package = self.verify_now(InstallReason::Pinned, id, version).await?;
        self.install_verified(InstallReason::Pinned, &package, progress)
            .await
    }

    /// The newest version of `id` the signed metadata lists as published for this host
    /// (its platform and version; pre-releases only on the beta channel), to pick what a
    /// first [`Client::install`] installs. `None` when there is none.
    pub async fn latest_version(&self, id: &PluginId) -> Result<Option<Version>, ClientError> {
        let inner = self.inner.clone();
        let plugin = id.clone();
        Ok(self
            .with_refreshed(move |state, fetch, now| {
                let context = inner.check_context(now);
                latest_installable(state, fetch, &context, &plugin)
            })
            .await??)
    }

    async fn install_verified(
        &self,
        reason: InstallReason,
        package: &VerifiedPackage,
        progress: impl FnMut(u64, u64) + Send,
    ) -> Result<Installed, ClientError> {
        let inner = &self.inner;
        // One install at a time in this process (without tying up a blocking thread), then
        // across processes: the cache and the state are shared.
        let _one_at_a_time = inner.install_lock.lock().await;
        let locking = inner.install_dir.clone();
        let locked = blocking(move || Ok(locking.lock()?)).await?;
        let dir = &inner.install_dir;
        let dest = dir.cached(&package.package.sha256);
        let installed = dir.state(&package.id)?;
        // Checked under the lock, against what is installed now: the update was checked
        // against what was installed then.
        if reason == InstallReason::Update
            && let Some(state) = &installed
        {
            check_newer(&state.current.version, &package.version)
                .map_err(|reason| refused(&package.id, &package.version, reason))?;
        }
        let base = installed
            .as_ref()
            .map(|state| dir.cached(&state.current.sha256));
        let patch = match (&package.patch, &installed, &base) {
            (Some(patch), Some(state), Some(base)) if base.is_file() => Some(PatchSource {
                url: &patch.url,
                expected: ExpectedTarget {
                    length: patch.length,
                    sha256: *patch.sha256.as_bytes(),
                },
                base_sha256: *state.current.sha256.as_bytes(),
                base,
            }),
            _ => None,
        };
        let fetched = if dest.is_file() {
            // Cached under its digest, which only a verified download writes.
            Fetched::Full { patch_error: None }
        } else {
            fetch_package_with_progress(
                &inner.http,
                &package.package.url,
                ExpectedTarget {
                    length: package.package.length,
                    sha256: *package.package.sha256.as_bytes(),
                },
                patch,
                &dest,
                &inner.download_policy,
                progress,
            )
            .await?
        };

        let chain = self.fetch_chain(package).await?;
        let signer = verify_developer(
            &package.id,
            &package.version,
            package.package.sha256.into(),
            &package.info,
            chain,
            &inner.anchors,
            &inner.signer_policy,
        )?;

        let install_dir = dir.clone();
        let (id, version, sha256) = (
            package.id.clone(),
            package.version.clone(),
            package.package.sha256,
        );
        let path = blocking(move || {
            let path = install_dir.install_locked(&id, &version, sha256, &dest, UnixTime::now())?;
            install_dir.prune_cache_locked()?;
            Ok(path)
        })
        .await?;
        drop(locked);
        Ok(Installed {
            id: package.id.clone(),
            version: package.version.clone(),
            path,
            fetched,
            signer,
        })
    }

    /// Downloads the certificate-chain blob the signed metadata references (checked against
    /// its signed length and SHA-256) and reads its certificates.
    async fn fetch_chain(&self, package: &VerifiedPackage) -> Result<Vec<Vec<u8>>, ClientError> {
        let reference = package.info.developer.chain;
        if reference.length > MAX_CHAIN_BYTES {
            return Err(DeveloperError::ChainTooLarge {
                length: reference.length,
            }
            .into());
        }
        let dest = self.inner.install_dir.cached(&reference.sha256);
        if !dest.is_file() {
            let url = format!(
                "{}/blobs/sha256/{}",
                self.inner.base_url,
                reference.sha256.to_hex()
            );
            download(
                &self.inner.http,
                &url,
                ExpectedTarget {
                    length: reference.length,
                    sha256: *reference.sha256.as_bytes(),
                },
                &dest,
                &self.inner.download_policy,
                |_, _| {},
            )
            .await?;
        }
        let bytes = tokio::fs::read(&dest)
            .await
            .map_err(|source| InstallError::Io {
                path: dest.clone(),
                source,
            })?;
        Ok(parse_chain(&bytes)?)
    }

    /// Every installed plugin.
    pub async fn list(&self) -> Result<Vec<InstalledPlugin>, ClientError> {
        self.blocking_list().await
    }

    async fn blocking_list(&self) -> Result<Vec<InstalledPlugin>, ClientError> {
        let dir = self.inner.install_dir.clone();
        blocking(move || Ok(dir.list()?)).await
    }

    /// Makes the previous version of `id` current again (it is kept on disk for this).
    pub async fn rollback(&self, id: &PluginId) -> Result<PluginState, ClientError> {
        let dir = self.inner.install_dir.clone();
        let id = id.clone();
        blocking(move || Ok(dir.rollback(&id)?)).await
    }

    /// The directory the current version of `id` is unpacked in, unless it is not installed
    /// or disabled (a host must not load a disabled plugin).
    pub fn loadable_path(&self, id: &PluginId) -> Result<Option<PathBuf>, ClientError> {
        let dir = &self.inner.install_dir;
        Ok(dir.state(id)?.and_then(|state| {
            state
                .disabled
                .is_none()
                .then(|| dir.version_dir(id, &state.current.version))
        }))
    }
}

fn refused(id: &PluginId, version: &Version, reason: RefusalReason) -> ClientError {
    ClientError::Refused(Box::new(Refusal {
        id: id.to_string(),
        version: version.to_string(),
        reason,
    }))
}

/// Follows at most 5 redirects (to a CDN, say), none of them to a URL less private than the
/// store's ([`is_as_private_as`]): an https store's blobs redirected to plain http would let
/// anyone on the path read which plugins the host runs.
fn redirect_policy(base_url: String) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("more than 5 redirects")
        } else if !is_as_private_as(attempt.url().as_str(), &base_url) {
            let refused = format!(
                "a redirect to {} from a store reached over https",
                attempt.url()
            );
            attempt.error(refused)
        } else {
            attempt.follow()
        }
    })
}

/// Runs file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ClientError::Task(error.to_string()))?
}

/// Reads a response body, refusing more than `cap` bytes.
async fn read_capped(response: reqwest::Response, cap: usize) -> Result<Vec<u8>, ClientError> {
    use futures_util::StreamExt as _;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > cap {
            return Err(ClientError::MalformedAnswer(format!(
                "the answer is larger than {cap} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_names_what_is_missing() {
        let error = ClientBuilder::new("https://store.example")
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("trusted_root"), "{error}");
    }

    #[test]
    fn a_path_is_not_a_base_url() {
        let dir = std::path::Path::new("/nonexistent");
        let error = ClientBuilder::new("store.example")
            .trusted_root(b"{}".to_vec())
            .install_dir(dir)
            .host("org.example.app", Version::new(1, 0, 0), Target::Any)
            .store_ca_pem(b"x".to_vec())
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("not an http(s) URL"), "{error}");
    }
}
