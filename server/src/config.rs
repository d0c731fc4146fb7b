//! Layered configuration: built-in defaults < TOML file (`--config`) < `PLUGSTORE_*`
//! environment < command-line flags.
//!
//! Every layer is flattened to dotted keys (`http.bind`), so the origin of each effective value
//! can be recorded and shown by `config show`. The environment name of a key is
//! `PLUGSTORE_` + the key upper-cased with dots as underscores (`PLUGSTORE_HTTP_BIND`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::blobs::S3Settings;

/// The effective settings of a server process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Directory for everything the embedded defaults keep on disk.
    pub data_dir: PathBuf,
    /// HTTP listener and request handling.
    pub http: HttpSettings,
    /// Optional TLS termination.
    pub tls: TlsSettings,
    /// Metadata database.
    pub database: DatabaseSettings,
    /// Blob storage.
    pub blobs: BlobSettings,
    /// Accounts, JWT and API tokens.
    pub auth: AuthSettings,
    /// Token-bucket limits on abuse-prone endpoints.
    pub rate_limits: RateLimitSettings,
    /// Logging.
    pub log: LogSettings,
    /// Code signing: the store's CA and the trust anchors for developer certificates.
    pub signing: SigningSettings,
    /// Uploads of new versions.
    pub publish: PublishSettings,
    /// What happens to a version after upload: scanning, review, or publishing at once.
    pub scan: ScanSettings,
    /// Delta patches between versions, made in the background.
    pub deltas: DeltaSettings,
    /// Signed release metadata (TUF) for host applications.
    pub tuf: TufSettings,
}

/// Signed release metadata settings (see [`crate::release_metadata`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TufSettings {
    /// The TUF keys directory (online keys and every root; docs/src/operator/keys.md). Empty:
    /// `<data_dir>/keys/tuf`, created on first start with its root key beside the online keys,
    /// which suits a one-command store but not production.
    pub keys_dir: String,
    /// Sign metadata on this replica (replicas take turns through a database lease).
    pub enabled: bool,
    /// Seconds between looks for changes to sign when no notification arrives.
    pub interval_secs: u64,
}

/// Delta patch settings (see [`crate::deltas`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaSettings {
    /// Run the delta job on this replica.
    pub enabled: bool,
    /// Patches to each new version from this many older ones (by semver, published or
    /// yanked): hosts a few releases behind still get a small download.
    pub bases: usize,
    /// Packages larger than this get no patches (memory: about 7 × this + 100 MiB per job).
    pub max_input_bytes: u64,
    /// Seconds between runs of the job.
    pub interval_secs: u64,
}

/// Code-signing settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSettings {
    /// PEM certificate of the store's CA; empty: created under `<data_dir>/keys/ca/`.
    pub ca_cert: String,
    /// PEM private key of the store's CA (with `ca_cert`).
    pub ca_key: String,
    /// Further trusted roots (PEM files), e.g. a company CA that issues its own developers'
    /// code-signing certificates.
    pub trust_anchors: Vec<String>,
    /// Lifetime of certificates the store's CA issues.
    pub certificate_lifetime_days: u32,
    /// Bindings of certificates without the store's SAN URI to publishers, by subject.
    pub subject_mappings: Vec<SubjectMappingSetting>,
}

/// "A certificate with this subject (under this anchor) signs for this publisher."
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectMappingSetting {
    /// The publisher the certificate may sign for.
    pub publisher: String,
    /// Required subject organization (O), if set.
    #[serde(default)]
    pub organization: Option<String>,
    /// Required subject common name (CN), if set.
    #[serde(default)]
    pub common_name: Option<String>,
    /// Required trust anchor (SHA-256 of its DER, hex), if set.
    #[serde(default)]
    pub anchor_sha256: Option<String>,
}

/// Upload settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSettings {
    /// Largest package accepted, in bytes.
    pub max_package_bytes: u64,
    /// Time an upload may take, in seconds (API calls have `http.request_timeout_secs`).
    pub upload_timeout_secs: u64,
}

/// What to do with a version once its package and signature are valid.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScanPolicy {
    /// Publish at once (no scanner is running yet).
    Publish,
    /// Hold every version for a reviewer.
    Review,
    /// Queue a scan; workers' reports decide (see [`ScanSettings`]).
    Scan,
}

/// Scan settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSettings {
    /// `publish`, `review` or `scan`.
    pub policy: ScanPolicy,
    /// Secret scan workers present to the internal API. Empty: generated once into
    /// `<data_dir>/keys/worker-token` (0600), where a worker on the same host reads it.
    pub worker_token: String,
    /// How long a claimed job stays with its worker without a heartbeat.
    pub lease_secs: u64,
    /// Claims of one job before it gives up and the version goes to review as `scan_failed`.
    pub max_attempts: u32,
    /// Hold the first version of a new plugin for review even when its scan is clean (as
    /// Mozilla's add-on store does).
    pub first_version_review: bool,
    /// With `policy = "scan"`, run one scan worker (this binary's `scanner worker`) as a
    /// child process.
    pub embedded_worker: bool,
    /// The embedded worker's operator YARA rule directory (`--rules-dir`); empty: the default
    /// rules only. Checked at start.
    pub rules_dir: String,
    /// The embedded worker's analysis-limits file (`--limits`, TOML with `[static]` and
    /// `[dynamic]`); empty: the defaults. Checked at start.
    pub limits_file: String,
}

/// HTTP listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on.
    pub bind: String,
    /// URL clients reach the store at; derived from `bind` when empty.
    pub public_url: String,
    /// Requests taking longer are answered with 408.
    pub request_timeout_secs: u64,
    /// Largest accepted JSON request body.
    pub max_json_body_bytes: usize,
    /// Origins allowed by CORS; empty disables CORS headers, `*` allows any.
    pub cors_allowed_origins: Vec<String>,
    /// Take the client address for rate limiting from `X-Forwarded-For` (only behind a proxy).
    pub trust_forwarded_for: bool,
    /// Maximum concurrent blob downloads served by this replica.
    pub max_concurrent_downloads: usize,
    /// A connection whose client reads nothing of its answer for this long is closed.
    pub send_timeout_secs: u64,
    /// Threads serving plain HTTP, each with its own event loop; 0 means one per CPU.
    pub threads: usize,
}

/// TLS termination; both paths set enables HTTPS.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// Database settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://…` or `postgres://…`; empty means SQLite in `data_dir`.
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
}

/// Which blob backend to use.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    /// Local filesystem under `blobs.dir`.
    Disk,
    /// An S3-compatible object store.
    S3,
}

/// Blob storage settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSettings {
    /// `disk` or `s3`.
    pub backend: BlobBackend,
    /// Directory for the disk backend; empty means `<data_dir>/blobs`.
    pub dir: String,
    /// When set, blob downloads redirect to `<cdn_base_url>/blobs/sha256/<hex>`.
    pub cdn_base_url: String,
    /// Lifetime of presigned download URLs (S3 with `s3.presign_downloads`).
    pub presign_ttl_secs: u64,
    /// S3 connection.
    pub s3: S3Settings,
}

/// Authentication settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// JWT `iss`; empty means the public URL.
    pub issuer: String,
    /// JWT `aud`.
    pub audience: String,
    /// Lifetime of access JWTs.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh-token family from login.
    pub refresh_token_ttl_secs: u64,
    /// Clock skew tolerated when checking `exp`/`nbf`.
    pub leeway_secs: u64,
    /// Directory of JWT signing keys; empty means `<data_dir>/keys/jwt`.
    pub jwt_keys_dir: String,
    /// Default lifetime of API tokens.
    pub api_token_default_ttl_days: u64,
    /// Longest lifetime an API token may be given.
    pub api_token_max_ttl_days: u64,
    /// Whether anyone may register; when false only admins create users.
    pub open_registration: bool,
}

/// Token-bucket sizes; each is per client address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Registrations per hour.
    pub register_per_hour: u32,
    /// Password login attempts per minute.
    pub login_per_minute: u32,
    /// Refresh-token exchanges per minute.
    pub refresh_per_minute: u32,
    /// API-token creations per hour.
    pub token_create_per_hour: u32,
    /// Uploads per hour by one user.
    pub publish_per_hour_per_user: u32,
    /// Uploads per hour into one publisher.
    pub publish_per_hour_per_publisher: u32,
    /// Abuse reports per hour by one user.
    pub abuse_reports_per_hour: u32,
    /// Text searches per minute by one client address.
    pub search_per_minute: u32,
}

/// Log output settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info,plugstore_server=debug`.
    pub level: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./plugstore-data"),
            http: HttpSettings::default(),
            tls: TlsSettings::default(),
            database: DatabaseSettings {
                url: String::new(),
                max_connections: 10,
            },
            blobs: BlobSettings {
                backend: BlobBackend::Disk,
                dir: String::new(),
                cdn_base_url: String::new(),
                presign_ttl_secs: 300,
                s3: S3Settings::default(),
            },
            auth: AuthSettings {
                issuer: String::new(),
                audience: "plugstore".into(),
                access_token_ttl_secs: 15 * 60,
                refresh_token_ttl_secs: 30 * 24 * 3600,
                leeway_secs: 30,
                jwt_keys_dir: String::new(),
                api_token_default_ttl_days: 90,
                api_token_max_ttl_days: 366,
                open_registration: true,
            },
            rate_limits: RateLimitSettings {
                register_per_hour: 20,
                login_per_minute: 10,
                refresh_per_minute: 120,
                token_create_per_hour: 30,
                publish_per_hour_per_user: 60,
                publish_per_hour_per_publisher: 200,
                abuse_reports_per_hour: 20,
                search_per_minute: 120,
            },
            log: LogSettings {
                format: "text".into(),
                level: "info".into(),
            },
            signing: SigningSettings {
                ca_cert: String::new(),
                ca_key: String::new(),
                trust_anchors: Vec::new(),
                certificate_lifetime_days: 30,
                subject_mappings: Vec::new(),
            },
            publish: PublishSettings {
                max_package_bytes: 512 * 1024 * 1024,
                upload_timeout_secs: 900,
            },
            scan: ScanSettings {
                policy: ScanPolicy::Scan,
                worker_token: String::new(),
                lease_secs: 300,
                max_attempts: 3,
                first_version_review: true,
                embedded_worker: true,
                rules_dir: String::new(),
                limits_file: String::new(),
            },
            deltas: DeltaSettings {
                enabled: true,
                bases: 3,
                max_input_bytes: 128 << 20,
                interval_secs: 30,
            },
            tuf: TufSettings {
                keys_dir: String::new(),
                enabled: true,
                interval_secs: 2,
            },
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            public_url: String::new(),
            request_timeout_secs: 30,
            max_json_body_bytes: 1024 * 1024,
            cors_allowed_origins: Vec::new(),
            trust_forwarded_for: false,
            max_concurrent_downloads: 512,
            send_timeout_secs: 60,
            threads: 0,
        }
    }
}

/// Keys whose values are never printed.
const SECRET_KEYS: &[&str] = &[
    "blobs.s3.secret_access_key",
    "database.url",
    "scan.worker_token",
];

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built-in default.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
    /// Computed from other settings (e.g. paths under `data_dir`).
    Derived,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(p) => write!(f, "file {}", p.display()),
            Self::Env(v) => write!(f, "env {v}"),
            Self::Flag(n) => write!(f, "flag {n}"),
            Self::Derived => f.write_str("derived"),
        }
    }
}

/// Why configuration could not be loaded; each message names the key or file to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// A key that no setting has.
    #[error(
        "unknown setting `{key}` (from {origin}); see `plugstore-server config show` for the known keys"
    )]
    UnknownKey { key: String, origin: Source },
    /// A value of the wrong shape.
    #[error("invalid value for `{key}` (from {origin}): {reason}")]
    InvalidValue {
        key: String,
        origin: Source,
        reason: String,
    },
    /// The combination of values is not usable.
    #[error("{0}")]
    Inconsistent(String),
}

/// Effective settings together with the origin of every value.
#[derive(Debug, Clone)]
pub struct LoadedSettings {
    /// The settings to run with.
    pub settings: Settings,
    /// Origin of each dotted key.
    pub sources: BTreeMap<String, Source>,
    /// Things worth telling the operator (unknown `PLUGSTORE_*` variables).
    pub warnings: Vec<String>,
}

/// A command-line override: dotted key, raw value, and the flag's name for `config show`.
pub struct FlagOverride {
    /// Dotted key, e.g. `http.bind`.
    pub key: &'static str,
    /// Value as typed.
    pub value: String,
    /// The flag that set it.
    pub flag: &'static str,
}

impl Settings {
    /// Loads the layers. `env` is passed in (rather than read here) so tests are hermetic.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: Vec<FlagOverride>,
    ) -> Result<LoadedSettings, ConfigError> {
        let defaults = toml::Value::try_from(Settings::default())
            .map_err(|e| ConfigError::Inconsistent(format!("defaults do not serialize: {e}")))?;
        let mut flat = BTreeMap::new();
        flatten("", &defaults, &mut flat);
        let mut sources: BTreeMap<String, Source> =
            flat.keys().map(|k| (k.clone(), Source::Default)).collect();

        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?;
            let value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.into(),
                source: Box::new(e),
            })?;
            let mut from_file = BTreeMap::new();
            flatten("", &toml::Value::Table(value), &mut from_file);
            for (key, value) in from_file {
                let source = Source::File(path.into());
                let Some(template) = flat.get(&key) else {
                    return Err(ConfigError::UnknownKey {
                        key,
                        origin: source,
                    });
                };
                if template.type_str() != value.type_str() {
                    return Err(ConfigError::InvalidValue {
                        reason: format!(
                            "expected {}, got {}",
                            template.type_str(),
                            value.type_str()
                        ),
                        key,
                        origin: source,
                    });
                }
                flat.insert(key.clone(), value);
                sources.insert(key, source);
            }
        }

        let env_names: BTreeMap<String, String> =
            flat.keys().map(|k| (env_name(k), k.clone())).collect();
        let mut warnings = Vec::new();
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("PLUGSTORE_") else {
                continue;
            };
            // Variables for the test harness and tooling share the prefix but are not settings.
            if rest.starts_with("TEST_") || rest == "REQUIRE_SERVICES" || rest == "CONFIG" {
                continue;
            }
            let source = Source::Env(name.clone());
            let Some(key) = env_names.get(&name) else {
                // The environment is shared with other tools, so an unknown name is worth a
                // warning (it may be a typo) but not a refusal to start.
                warnings.push(format!(
                    "ignoring {name}: no setting has that name (see `plugstore-server config show`)"
                ));
                continue;
            };
            let value =
                parse_like(&flat[key], &raw).map_err(|reason| ConfigError::InvalidValue {
                    key: key.clone(),
                    origin: source.clone(),
                    reason,
                })?;
            flat.insert(key.clone(), value);
            sources.insert(key.clone(), source);
        }

        for flag in flags {
            let source = Source::Flag(flag.flag.into());
            let key = flag.key.to_owned();
            let Some(current) = flat.get(&key) else {
                return Err(ConfigError::UnknownKey {
                    key,
                    origin: source,
                });
            };
            let value =
                parse_like(current, &flag.value).map_err(|reason| ConfigError::InvalidValue {
                    key: key.clone(),
                    origin: source.clone(),
                    reason,
                })?;
            flat.insert(key.clone(), value);
            sources.insert(key, source);
        }

        let tree = unflatten(&flat);
        let mut settings: Settings =
            tree.try_into()
                .map_err(|e: toml::de::Error| ConfigError::InvalidValue {
                    key: "(settings)".into(),
                    origin: Source::Default,
                    reason: e.to_string(),
                })?;
        settings.derive_defaults(&mut sources);
        settings.validate(&sources)?;
        warnings.extend(settings.unreachable_public_url(&sources));
        Ok(LoadedSettings {
            settings,
            sources,
            warnings,
        })
    }

    /// A warning when `http.public_url` was derived from a bind address that listens on every
    /// interface (`0.0.0.0`, `[::]`, as in a container): no client can reach that URL, and it
    /// ends up in download URLs and as the JWT issuer.
    fn unreachable_public_url(&self, sources: &BTreeMap<String, Source>) -> Option<String> {
        let derived = sources.get("http.public_url") == Some(&Source::Derived);
        let bind: std::net::SocketAddr = self.http.bind.parse().ok()?;
        (derived && bind.ip().is_unspecified()).then(|| {
            format!(
                "http.public_url is derived from http.bind as {}, which no client can reach: \
                 set http.public_url (PLUGSTORE_HTTP_PUBLIC_URL) to the URL clients use",
                self.http.public_url
            )
        })
    }

    /// Fills the values that depend on others, marking them as derived.
    fn derive_defaults(&mut self, sources: &mut BTreeMap<String, Source>) {
        let mut derive = |key: &str, slot: &mut String, value: String| {
            if slot.is_empty() {
                *slot = value;
                sources.insert(key.into(), Source::Derived);
            }
        };
        let data = self.data_dir.clone();
        derive(
            "database.url",
            &mut self.database.url,
            format!("sqlite://{}/plugstore.db", data.display()),
        );
        derive(
            "blobs.dir",
            &mut self.blobs.dir,
            data.join("blobs").display().to_string(),
        );
        derive(
            "auth.jwt_keys_dir",
            &mut self.auth.jwt_keys_dir,
            data.join("keys/jwt").display().to_string(),
        );
        derive(
            "tuf.keys_dir",
            &mut self.tuf.keys_dir,
            data.join("keys/tuf").display().to_string(),
        );
        let scheme = if self.tls_enabled() { "https" } else { "http" };
        let public = format!("{scheme}://{}", self.http.bind);
        derive("http.public_url", &mut self.http.public_url, public);
        let trimmed = self.http.public_url.trim_end_matches('/').to_owned();
        self.http.public_url = trimmed;
        let issuer = self.http.public_url.clone();
        derive("auth.issuer", &mut self.auth.issuer, issuer);
    }

    fn validate(&self, sources: &BTreeMap<String, Source>) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| ConfigError::InvalidValue {
            key: key.into(),
            origin: sources.get(key).cloned().unwrap_or(Source::Default),
            reason: reason.into(),
        };
        self.http
            .bind
            .parse::<SocketAddr>()
            .map_err(|_| bad("http.bind", "expected host:port, e.g. 127.0.0.1:8080"))?;
        if self.tls.cert.is_empty() != self.tls.key.is_empty() {
            return Err(ConfigError::Inconsistent(
                "set both tls.cert and tls.key, or neither".into(),
            ));
        }
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres:")
            || self.database.url.starts_with("postgresql:"))
        {
            return Err(bad(
                "database.url",
                "expected a sqlite:// or postgres:// URL",
            ));
        }
        if self.blobs.backend == BlobBackend::S3 && self.blobs.s3.bucket.is_empty() {
            return Err(ConfigError::Inconsistent(
                "blobs.backend is s3 but blobs.s3.bucket is empty".into(),
            ));
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.access_token_ttl_secs > 24 * 3600 {
            return Err(bad(
                "auth.access_token_ttl_secs",
                "must be between 1 second and 1 day",
            ));
        }
        if self.log.format != "text" && self.log.format != "json" {
            return Err(bad("log.format", "expected `text` or `json`"));
        }
        // S3 refuses presigned URLs valid for longer than a week.
        if self.blobs.presign_ttl_secs == 0 || self.blobs.presign_ttl_secs > 7 * 24 * 3600 {
            return Err(bad(
                "blobs.presign_ttl_secs",
                "must be between 1 second and 7 days",
            ));
        }
        if self.auth.api_token_default_ttl_days == 0
            || self.auth.api_token_default_ttl_days > self.auth.api_token_max_ttl_days
        {
            return Err(bad(
                "auth.api_token_default_ttl_days",
                "must be at least 1 and at most auth.api_token_max_ttl_days",
            ));
        }
        if self.scan.lease_secs < 10 || self.scan.max_attempts == 0 {
            return Err(bad(
                "scan.lease_secs",
                "leases must last at least 10 seconds and scan.max_attempts be at least 1",
            ));
        }
        if !(1..=10).contains(&self.deltas.bases) || self.deltas.interval_secs == 0 {
            return Err(bad(
                "deltas.bases",
                "deltas.bases must be between 1 and 10 and deltas.interval_secs at least 1",
            ));
        }
        if !(1..=825).contains(&self.signing.certificate_lifetime_days) {
            return Err(bad(
                "signing.certificate_lifetime_days",
                "must be between 1 and 825 days",
            ));
        }
        if self.signing.ca_cert.is_empty() != self.signing.ca_key.is_empty() {
            return Err(ConfigError::Inconsistent(
                "set both signing.ca_cert and signing.ca_key, or neither".into(),
            ));
        }
        Ok(())
    }

    /// Whether the server terminates TLS itself.
    pub fn tls_enabled(&self) -> bool {
        !self.tls.cert.is_empty()
    }

    /// `http.send_timeout_secs`, at least a second.
    pub fn send_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.http.send_timeout_secs.max(1))
    }

    /// How many threads serve plain HTTP: `http.threads`, or one per CPU when it is 0.
    pub fn http_threads(&self) -> usize {
        match self.http.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            threads => threads,
        }
    }

    /// The listen address (validated at load).
    pub fn bind_addr(&self) -> SocketAddr {
        self.http
            .bind
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
}

impl LoadedSettings {
    /// `key = value  # source` lines with secrets masked, for `config show`.
    pub fn render(&self) -> String {
        let value =
            toml::Value::try_from(&self.settings).unwrap_or(toml::Value::Table(Default::default()));
        let mut flat = BTreeMap::new();
        flatten("", &value, &mut flat);
        let mut out = String::new();
        for (key, value) in flat {
            let shown = if SECRET_KEYS.contains(&key.as_str()) {
                mask(&key, &value)
            } else {
                value.to_string()
            };
            let source = self.sources.get(&key).cloned().unwrap_or(Source::Default);
            out.push_str(&format!(
                "{key} = {shown}  # {source}; env {}\n",
                env_name(&key)
            ));
        }
        out
    }
}

fn mask(key: &str, value: &toml::Value) -> String {
    let text = value.as_str().unwrap_or_default();
    if text.is_empty() {
        return "\"\"".into();
    }
    // A database URL is useful to see without its password.
    if key == "database.url" {
        if let Some((scheme_user, rest)) = text.split_once('@')
            && let Some((head, _password)) = scheme_user.rsplit_once(':')
            && !head.ends_with('/')
            && head.contains("://")
        {
            return format!("\"{head}:****@{rest}\"");
        }
        return format!("\"{text}\"");
    }
    "\"****\"".into()
}

/// The environment variable that sets a dotted key.
pub fn env_name(key: &str) -> String {
    format!("PLUGSTORE_{}", key.replace('.', "_").to_uppercase())
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

fn unflatten(flat: &BTreeMap<String, toml::Value>) -> toml::Value {
    let mut root = toml::Table::new();
    for (key, value) in flat {
        let mut table = &mut root;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                table.insert(part.to_owned(), value.clone());
            } else {
                let entry = table
                    .entry(part.to_owned())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                let toml::Value::Table(inner) = entry else {
                    break;
                };
                table = inner;
            }
        }
    }
    toml::Value::Table(root)
}

/// Parses a raw string (from env or a flag) into the type the default has.
fn parse_like(template: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    match template {
        toml::Value::String(_) => Ok(toml::Value::String(raw.to_owned())),
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected an integer, got `{raw}`")),
        toml::Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| format!("expected a number, got `{raw}`")),
        toml::Value::Boolean(_) => match raw.trim() {
            "true" | "1" | "yes" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, got `{raw}`")),
        },
        toml::Value::Array(_) => Ok(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        )),
        _ => Err("this setting cannot be set from a string".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order_and_record_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plugstore.toml");
        std::fs::write(&file, "[http]\nbind = \"127.0.0.1:9000\"\nrequest_timeout_secs = 5\n[auth]\naudience = \"from-file\"\n").unwrap();
        let loaded = Settings::load(
            Some(&file),
            env(&[
                ("PLUGSTORE_HTTP_REQUEST_TIMEOUT_SECS", "7"),
                ("PLUGSTORE_AUTH_AUDIENCE", "from-env"),
                ("HOME", "/x"),
            ]),
            vec![FlagOverride {
                key: "auth.audience",
                value: "from-flag".into(),
                flag: "--audience",
            }],
        )
        .unwrap();
        assert_eq!(loaded.settings.http.bind, "127.0.0.1:9000");
        assert_eq!(loaded.sources["http.bind"], Source::File(file.clone()));
        assert_eq!(loaded.settings.http.request_timeout_secs, 7);
        assert_eq!(
            loaded.sources["http.request_timeout_secs"],
            Source::Env("PLUGSTORE_HTTP_REQUEST_TIMEOUT_SECS".into())
        );
        assert_eq!(loaded.settings.auth.audience, "from-flag");
        assert_eq!(loaded.settings.http.public_url, "http://127.0.0.1:9000");
        assert_eq!(loaded.sources["http.public_url"], Source::Derived);
        assert_eq!(loaded.sources["log.format"], Source::Default);
    }

    #[test]
    fn a_public_url_derived_from_an_unspecified_bind_address_is_a_warning() {
        for bind in ["0.0.0.0:8080", "[::]:8080"] {
            let loaded =
                Settings::load(None, env(&[("PLUGSTORE_HTTP_BIND", bind)]), vec![]).unwrap();
            assert!(
                loaded
                    .warnings
                    .iter()
                    .any(|w| w.contains("PLUGSTORE_HTTP_PUBLIC_URL")),
                "{bind}: {:?}",
                loaded.warnings
            );
        }
        let set = Settings::load(
            None,
            env(&[
                ("PLUGSTORE_HTTP_BIND", "0.0.0.0:8080"),
                ("PLUGSTORE_HTTP_PUBLIC_URL", "https://plugins.example.org"),
            ]),
            vec![],
        )
        .unwrap();
        assert!(set.warnings.is_empty(), "{:?}", set.warnings);
        let loopback = Settings::load(None, env(&[]), vec![]).unwrap();
        assert!(loopback.warnings.is_empty(), "{:?}", loopback.warnings);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_what_to_fix() {
        let loaded = Settings::load(None, env(&[("PLUGSTORE_HTTP_BINDD", "x")]), vec![]).unwrap();
        assert!(
            loaded.warnings[0].contains("PLUGSTORE_HTTP_BINDD"),
            "{:?}",
            loaded.warnings
        );
        let err = Settings::load(
            None,
            env(&[("PLUGSTORE_HTTP_REQUEST_TIMEOUT_SECS", "soon")]),
            vec![],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("http.request_timeout_secs")
                && err.to_string().contains("integer"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[htp]\nbind = \"x\"\n").unwrap();
        let err = Settings::load(Some(&file), env(&[]), vec![]).unwrap_err();
        assert!(err.to_string().contains("htp.bind"), "{err}");
        let err =
            Settings::load(None, env(&[("PLUGSTORE_HTTP_BIND", "localhost")]), vec![]).unwrap_err();
        assert!(
            err.to_string().contains("http.bind")
                && err.to_string().contains("env PLUGSTORE_HTTP_BIND"),
            "{err}"
        );
        std::fs::write(&file, "[http]\nrequest_timeout_secs = \"soon\"\n").unwrap();
        let err = Settings::load(Some(&file), env(&[]), vec![]).unwrap_err();
        assert!(
            err.to_string().contains("http.request_timeout_secs")
                && err.to_string().contains("c.toml"),
            "{err}"
        );
    }

    #[test]
    fn show_masks_secrets() {
        let loaded = Settings::load(
            None,
            env(&[
                ("PLUGSTORE_BLOBS_S3_SECRET_ACCESS_KEY", "supersecret"),
                (
                    "PLUGSTORE_DATABASE_URL",
                    "postgres://app:hunter2@db:5432/plugstore",
                ),
            ]),
            vec![],
        )
        .unwrap();
        let shown = loaded.render();
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://app:****@db:5432/plugstore"),
            "{shown}"
        );
        assert!(
            shown.contains("http.bind = \"127.0.0.1:8080\"  # default"),
            "{shown}"
        );
    }

    #[test]
    fn lists_parse_from_comma_separated_env() {
        let loaded = Settings::load(
            None,
            env(&[(
                "PLUGSTORE_HTTP_CORS_ALLOWED_ORIGINS",
                "https://a.example, https://b.example",
            )]),
            vec![],
        )
        .unwrap();
        assert_eq!(
            loaded.settings.http.cors_allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }
}
