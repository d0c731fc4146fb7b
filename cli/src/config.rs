//! Where the CLI keeps its state: `<config dir>/plugstore/` with `config.toml` (the default
//! registry), `credentials.toml` (sessions and API tokens, keyed by registry URL, mode 0600)
//! and `keys/` (signing keys and certificate chains).
//!
//! Every file is replaced atomically (temporary file in the same directory, then rename), so a
//! crash or a full disk never leaves half a credentials file, and a rotated refresh token is
//! either fully stored or not at all.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::api::Secret;

/// Overrides the state directory (instead of `<config dir>/plugstore`).
pub const CONFIG_DIR_ENV: &str = "PLUGSTORE_CONFIG_DIR";

/// The CLI's state directory.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    root: PathBuf,
}

impl ConfigDir {
    /// `$PLUGSTORE_CONFIG_DIR`, else the platform's config directory + `plugstore`
    /// (`$XDG_CONFIG_HOME/plugstore` or `~/.config/plugstore` on Linux).
    pub fn locate() -> anyhow::Result<Self> {
        if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(Self::at(PathBuf::from(dir)));
        }
        let base = dirs::config_dir().context(
            "cannot find your configuration directory (is HOME set?); set PLUGSTORE_CONFIG_DIR",
        )?;
        Ok(Self::at(base.join("plugstore")))
    }

    /// A state directory at `root`.
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    /// `credentials.toml`.
    pub fn credentials_path(&self) -> PathBuf {
        self.root.join("credentials.toml")
    }

    /// `config.toml`.
    pub fn settings_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `keys/`.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// The default signing key, `keys/signing.key`.
    pub fn default_key_path(&self) -> PathBuf {
        self.keys_dir().join("signing.key")
    }

    /// The default certificate chain for `publisher`, `keys/<publisher>.chain.pem`.
    pub fn default_chain_path(&self, publisher: &str) -> PathBuf {
        self.keys_dir().join(format!("{publisher}.chain.pem"))
    }

    /// The stored credentials.
    pub fn credentials(&self) -> CredentialStore {
        CredentialStore {
            path: self.credentials_path(),
            lock_path: self.root.join("credentials.lock"),
        }
    }

    /// Reads `config.toml` (empty settings when it does not exist).
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let path = self.settings_path();
        match fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("{} is not valid; fix or delete it", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes `config.toml`.
    pub fn save_settings(&self, settings: &Settings) -> anyhow::Result<()> {
        let text = toml::to_string(settings)?;
        write_atomically(&self.settings_path(), text.as_bytes(), FileMode::Public)
    }
}

/// `config.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The registry used when neither `--registry` nor `PLUGSTORE_REGISTRY` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

/// A credential stored for one registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StoredCredential {
    /// A login session: the current refresh token, rotated on every use.
    Session {
        /// Who signed in.
        username: String,
        /// The refresh token to spend next.
        refresh_token: Secret,
    },
    /// An API token (CI).
    ApiToken {
        /// The token's owner, as the store reported at login.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// The token.
        token: Secret,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CredentialsFile {
    #[serde(default)]
    registries: BTreeMap<String, StoredCredential>,
}

/// `credentials.toml`, keyed by registry URL.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
    lock_path: PathBuf,
}

/// Holds the credentials lock; released on drop.
#[derive(Debug)]
pub struct CredentialsLock {
    _file: File,
}

impl CredentialStore {
    /// The credentials file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the exclusive lock that serialises read-rotate-write of a refresh token across
    /// concurrently running `plugstore` processes (the store revokes a whole session when a
    /// spent refresh token is presented twice).
    pub fn lock(&self) -> anyhow::Result<CredentialsLock> {
        if let Some(parent) = self.lock_path.parent() {
            create_private_dir(parent)?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .with_context(|| format!("opening {}", self.lock_path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", self.lock_path.display()))?;
        Ok(CredentialsLock { _file: file })
    }

    fn read(&self) -> anyhow::Result<CredentialsFile> {
        match fs::read_to_string(&self.path) {
            Ok(text) => toml::from_str(&text).with_context(|| {
                format!(
                    "{} is not valid; delete it and log in again",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialsFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    fn write(&self, file: &CredentialsFile) -> anyhow::Result<()> {
        let text = format!(
            "# plugstore credentials: keep this file private (mode 0600).\n{}",
            toml::to_string(file)?
        );
        write_atomically(&self.path, text.as_bytes(), FileMode::Private)
    }

    /// The credential stored for `registry`.
    pub fn get(&self, registry: &str) -> anyhow::Result<Option<StoredCredential>> {
        Ok(self.read()?.registries.remove(registry))
    }

    /// Stores `credential` for `registry`, replacing any other.
    pub fn put(&self, registry: &str, credential: StoredCredential) -> anyhow::Result<()> {
        let mut file = self.read()?;
        file.registries.insert(registry.to_owned(), credential);
        self.write(&file)
    }

    /// Forgets the credential of `registry`; returns whether there was one.
    pub fn remove(&self, registry: &str) -> anyhow::Result<bool> {
        let mut file = self.read()?;
        let removed = file.registries.remove(registry).is_some();
        if removed {
            self.write(&file)?;
        }
        Ok(removed)
    }
}

/// Who may read a file the CLI writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// Owner only (0600): credentials, private keys.
    Private,
    /// Owner writes, everyone reads (0644): certificates, packages, signatures.
    Public,
}

/// Creates `dir` and its parents; new directories are 0700 on Unix.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: FileMode) -> anyhow::Result<()> {
    write_through_temp(path, bytes, mode, true)
}

/// Creates `path` with `bytes`, refusing to replace an existing file unless `overwrite`.
pub fn write_new_file(
    path: &Path,
    bytes: &[u8],
    mode: FileMode,
    overwrite: bool,
) -> anyhow::Result<()> {
    if !overwrite && path.exists() {
        bail!("{} already exists", path.display());
    }
    write_through_temp(path, bytes, mode, overwrite)
}

fn write_through_temp(
    path: &Path,
    bytes: &[u8],
    mode: FileMode,
    overwrite: bool,
) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    create_private_dir(dir)?;
    // tempfile creates the file 0600, so a private file is never readable by others, not
    // even between creation and rename.
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    set_mode(temp.path(), mode)?;
    let persisted = if overwrite {
        temp.persist(path)
    } else {
        // Also refuses a file that appeared after the check above.
        temp.persist_noclobber(path)
    };
    persisted
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Sets the permissions `mode` stands for (Unix only).
pub fn set_mode(path: &Path, mode: FileMode) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let bits = match mode {
            FileMode::Private => 0o600,
            FileMode::Public => 0o644,
        };
        fs::set_permissions(path, fs::Permissions::from_mode(bits))
            .with_context(|| format!("setting permissions of {}", path.display()))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Normalises a registry URL so that one registry has one key in the credentials file.
pub fn normalize_registry(url: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(url)
        .with_context(|| format!("`{url}` is not a URL; e.g. https://plugins.example.org"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("the registry URL must start with https:// (or http:// for a local store)");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        bail!("the registry URL must not have a query or fragment");
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_privately() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::at(dir.path().join("plugstore"));
        let store = config.credentials();
        assert_eq!(store.get("http://a").unwrap(), None);
        let session = StoredCredential::Session {
            username: "alice".into(),
            refresh_token: Secret::new("psr_1"),
        };
        store.put("http://a", session.clone()).unwrap();
        let token = StoredCredential::ApiToken {
            username: None,
            token: Secret::new("pst_2"),
        };
        store.put("http://b", token.clone()).unwrap();
        assert_eq!(store.get("http://a").unwrap(), Some(session));
        assert_eq!(store.get("http://b").unwrap(), Some(token));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(store.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = fs::metadata(dir.path().join("plugstore"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
        assert!(store.remove("http://a").unwrap());
        assert!(!store.remove("http://a").unwrap());
        assert_eq!(store.get("http://a").unwrap(), None);
        let _lock = store.lock().unwrap();
    }

    #[test]
    fn registry_urls_are_normalised_and_checked() {
        assert_eq!(
            normalize_registry(" https://plugins.example.org/ ").unwrap(),
            "https://plugins.example.org"
        );
        assert!(normalize_registry("plugins.example.org").is_err());
        assert!(normalize_registry("ftp://plugins.example.org").is_err());
    }

    #[test]
    fn new_files_are_not_overwritten_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_new_file(&path, b"1", FileMode::Private, false).unwrap();
        assert!(write_new_file(&path, b"2", FileMode::Private, false).is_err());
        write_new_file(&path, b"3", FileMode::Private, true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"3");
    }
}
