//! The install directory: installed plugins, their state, the package cache and the saved
//! TUF metadata.
//!
//! ```text
//! {dir}/install-id                                  the host's install id (update checks)
//! {dir}/tuf/                                        verified TUF metadata (rollback protection)
//! {dir}/cache/sha256/{hex}                          packages and chains, by SHA-256 (delta bases)
//! {dir}/plugins/{publisher}/{name}/state.json       current, previous, their disabled marks
//! {dir}/plugins/{publisher}/{name}/versions/{v}/    an unpacked package
//! ```
//!
//! A version is unpacked with `plugstore-format`'s strict package reader into a staging
//! directory next to its final place and renamed into place once complete; `state.json` is
//! replaced atomically (temporary file, fsync, rename) only after that, so a crash at any
//! point leaves the previous state intact. Reinstalling a version whose directory exists
//! moves that directory aside first; after a crash in between, the next start puts it back
//! ([`InstallDir::recover_replaced_versions_locked`]). Only verified packages get here: this module
//! checks that the unpacked manifest names the expected plugin and version, and trusts the
//! caller for the signatures.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader, Write as _};
use std::path::{Path, PathBuf};

use plugstore_format::digest::PackageDigest;
use plugstore_format::limits::PackageLimits;
use plugstore_format::manifest::PluginId;
use plugstore_format::package::{PackageError, extract_package};
use plugstore_tuf::digest::Sha256;
use plugstore_tuf::time::UnixTime;
use semver::Version;
use serde::{Deserialize, Serialize};

/// Name of the file holding the install id.
const INSTALL_ID_FILE: &str = "install-id";

/// Name of a plugin's state file.
const STATE_FILE: &str = "state.json";

/// Largest `state.json` read; a real one is a few hundred bytes.
const MAX_STATE_BYTES: u64 = 64 * 1024;

/// One installed version of a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledVersion {
    /// The version.
    pub version: Version,
    /// SHA-256 of its package (the `PackageDigest` the developer signed).
    pub sha256: Sha256,
    /// When it was installed, seconds since the Unix epoch.
    pub installed_at: i64,
}

/// Why a plugin was disabled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    /// The version that was disabled.
    pub version: Version,
    /// Why, in words (the store's reason when it gave one).
    pub reason: String,
    /// When, seconds since the Unix epoch.
    pub at: i64,
}

/// What `state.json` records about one plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginState {
    /// The version in use.
    pub current: InstalledVersion,
    /// The version before it, kept for [`crate::Client::rollback`].
    pub previous: Option<InstalledVersion>,
    /// Set when the store revoked the current version: the host must not load it.
    pub disabled: Option<Disabled>,
    /// The previous version's mark, set when the store revoked it while it was current. A
    /// rollback makes it `disabled` again, so rolling back and forth never makes a version
    /// the client saw revoked loadable. Absent from state files written before it existed.
    #[serde(default)]
    pub previous_disabled: Option<Disabled>,
}

/// An installed plugin, as [`InstallDir::list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledPlugin {
    /// The plugin.
    pub id: PluginId,
    /// Its recorded state.
    pub state: PluginState,
    /// The directory the current version is unpacked in.
    pub path: PathBuf,
}

/// Why an install-directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Reading or writing files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The package was refused by the strict reader while unpacking.
    #[error("unpacking the package: {0}")]
    Package(#[from] PackageError),
    /// The unpacked package is not the verified one.
    #[error("the package unpacked is {found}, expected {expected}")]
    PackageMismatch {
        /// What was expected (plugin, version, digest).
        expected: String,
        /// What the package holds.
        found: String,
    },
    /// A `state.json` could not be read.
    #[error("{path} is not a valid plugin state: {reason}")]
    BadState {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The plugin is not installed.
    #[error("{0} is not installed")]
    NotInstalled(PluginId),
    /// There is no previous version to roll back to.
    #[error("{0} has no previous version to roll back to")]
    NoPrevious(PluginId),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced before
/// the rename and followed by a sync of the directory, so `path` holds either the old or the
/// new contents after a crash, never a mix.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a file path without a directory"))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", random_hex(8)));
    let temporary = PathBuf::from(temporary);
    let written = (|| {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written?;
    sync_dir(dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// `bytes` random bytes from the OS generator, as hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut buffer = vec![0u8; bytes];
    // The OS generator failing is not something a host can work around; fall back to the
    // clock, which is enough for temporary names (install ids are checked by the caller).
    if ring::rand::SystemRandom::new().fill(&mut buffer).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, byte) in buffer.iter_mut().enumerate() {
            *byte = (nanos >> ((i % 16) * 8)) as u8;
        }
    }
    hex::encode(buffer)
}

/// Whether `id` is an acceptable install id: 8 to 128 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_install_id(id: &str) -> bool {
    (8..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The install directory of a host.
#[derive(Clone, Debug)]
pub struct InstallDir {
    root: PathBuf,
}

impl InstallDir {
    /// The install directory at `root` (created when needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where verified TUF metadata is saved.
    pub fn tuf_dir(&self) -> PathBuf {
        self.root.join("tuf")
    }

    /// Where a blob with this SHA-256 is cached (it is only there once verified).
    pub fn cached(&self, sha256: &Sha256) -> PathBuf {
        self.root.join("cache").join("sha256").join(sha256.to_hex())
    }

    /// The directory of a plugin.
    pub fn plugin_dir(&self, id: &PluginId) -> PathBuf {
        // Both parts passed the manifest's id grammar: no separators, no `..`.
        self.root
            .join("plugins")
            .join(id.publisher())
            .join(id.name())
    }

    /// The directory a version of a plugin is unpacked in.
    pub fn version_dir(&self, id: &PluginId, version: &Version) -> PathBuf {
        self.plugin_dir(id)
            .join("versions")
            .join(version.to_string())
    }

    /// Creates the directories the client writes to.
    pub fn create(&self) -> Result<(), InstallError> {
        for dir in [
            self.root.join("plugins"),
            self.root.join("cache").join("sha256"),
            self.tuf_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        Ok(())
    }

    /// Takes the install directory's lock file (`{dir}/lock`), blocking until no other
    /// holder (process, or another open of the file) has it; released when the returned file
    /// is dropped. Every change to plugin state, the cache and the saved metadata happens
    /// under it (a whole install, downloads included), so two processes sharing a directory
    /// never lose each other's `state.json` updates or remove each other's downloads. Not
    /// re-entrant: do not call the locking methods of this type while holding it.
    pub fn lock(&self) -> Result<fs::File, InstallError> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        file.lock().map_err(io_at(&path))?;
        Ok(file)
    }

    /// The saved install id, or `given` (saved for next time), or a new random one (saved).
    pub fn install_id(&self, given: Option<&str>) -> Result<String, InstallError> {
        let path = self.root.join(INSTALL_ID_FILE);
        if let Some(given) = given {
            write_atomically(&path, given.as_bytes()).map_err(io_at(&path))?;
            return Ok(given.to_owned());
        }
        match fs::read_to_string(&path) {
            Ok(saved) if is_valid_install_id(saved.trim()) => return Ok(saved.trim().to_owned()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_at(&path)(error)),
        }
        let id = random_hex(16);
        write_atomically(&path, id.as_bytes()).map_err(io_at(&path))?;
        Ok(id)
    }

    /// The state of one plugin, `None` when it is not installed.
    pub fn state(&self, id: &PluginId) -> Result<Option<PluginState>, InstallError> {
        let path = self.plugin_dir(id).join(STATE_FILE);
        read_state(&path)
    }

    fn write_state(&self, id: &PluginId, state: &PluginState) -> Result<(), InstallError> {
        let path = self.plugin_dir(id).join(STATE_FILE);
        let bytes = serde_json::to_vec_pretty(state).map_err(|error| InstallError::BadState {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        write_atomically(&path, &bytes).map_err(io_at(&path))
    }

    /// Every installed plugin, by id.
    pub fn list(&self) -> Result<Vec<InstalledPlugin>, InstallError> {
        let mut found = BTreeMap::new();
        let plugins = self.root.join("plugins");
        for publisher in read_dir_names(&plugins)? {
            for name in read_dir_names(&plugins.join(&publisher))? {
                let Ok(id) = PluginId::new(&publisher, &name) else {
                    continue;
                };
                if let Some(state) = self.state(&id)? {
                    let path = self.version_dir(&id, &state.current.version);
                    found.insert(id.to_string(), InstalledPlugin { id, state, path });
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// Unpacks the verified package at `package` as `version` of `id` and makes it current;
    /// the version that was current becomes the previous one, older ones are removed.
    ///
    /// `sha256` is the package's verified digest: the unpacked manifest must name `id` and
    /// `version`, and the bytes read must hash to `sha256`.
    pub fn install(
        &self,
        id: &PluginId,
        version: &Version,
        sha256: Sha256,
        package: &Path,
        now: UnixTime,
    ) -> Result<PathBuf, InstallError> {
        let _locked = self.lock()?;
        self.install_locked(id, version, sha256, package, now)
    }

    /// [`InstallDir::install`] for a caller that holds [`InstallDir::lock`].
    pub(crate) fn install_locked(
        &self,
        id: &PluginId,
        version: &Version,
        sha256: Sha256,
        package: &Path,
        now: UnixTime,
    ) -> Result<PathBuf, InstallError> {
        let versions = self.plugin_dir(id).join("versions");
        fs::create_dir_all(&versions).map_err(io_at(&versions))?;
        let staging = versions.join(format!(".staging-{}", random_hex(8)));
        fs::create_dir(&staging).map_err(io_at(&staging))?;
        let unpacked = unpack(package, &staging, id, version, sha256);
        if let Err(error) = unpacked {
            let _ = fs::remove_dir_all(&staging);
            return Err(error);
        }
        let target = self.version_dir(id, version);
        let replaced = versions.join(replaced_name(version));
        if target.exists() {
            // One moved-aside copy per version at most, so that recovery never has to choose
            // (a leftover is the remains of a finished reinstall whose removal failed).
            if replaced.exists() {
                let removed = fs::remove_dir_all(&replaced).map_err(io_at(&replaced));
                if let Err(error) = removed {
                    let _ = fs::remove_dir_all(&staging);
                    return Err(error);
                }
            }
            let moved = fs::rename(&target, &replaced).map_err(io_at(&target));
            if let Err(error) = moved {
                let _ = fs::remove_dir_all(&staging);
                return Err(error);
            }
        }
        if let Err(error) = fs::rename(&staging, &target) {
            // Put the installed version back: `state.json` still names it.
            let _ = fs::rename(&replaced, &target);
            let _ = fs::remove_dir_all(&staging);
            return Err(io_at(&target)(error));
        }
        sync_dir(&versions).map_err(io_at(&versions))?;

        let old = self.state(id)?;
        let entry = InstalledVersion {
            version: version.clone(),
            sha256,
            installed_at: now.as_seconds(),
        };
        // The version just installed passed the install checks, so it carries no mark; the
        // one it replaces keeps its own.
        let (previous, previous_disabled) = match old {
            Some(old) if old.current.version != *version => (Some(old.current), old.disabled),
            Some(old) => (old.previous, old.previous_disabled),
            None => (None, None),
        };
        let state = PluginState {
            current: entry,
            previous,
            disabled: None,
            previous_disabled,
        };
        self.write_state(id, &state)?;
        let _ = fs::remove_dir_all(&replaced);
        self.prune(id, &state);
        Ok(target)
    }

    /// Puts back the version directories that a reinstall moved aside when a crash stopped it
    /// before the new one took their place: `state.json` still names them. A moved-aside
    /// directory whose version is in place again is removed. For a caller that holds
    /// [`InstallDir::lock`] (an install in progress in another process has its own moved-aside
    /// directory, and must not lose it).
    ///
    /// Best effort per plugin, like [`InstallDir::prune`]: a directory that cannot be put
    /// back leaves that plugin as the crash left it, and does not keep the others from
    /// loading.
    pub(crate) fn recover_replaced_versions_locked(&self) -> Result<(), InstallError> {
        let plugins = self.root.join("plugins");
        for publisher in read_dir_names(&plugins)? {
            for name in read_dir_names(&plugins.join(&publisher))? {
                let versions = plugins.join(&publisher).join(&name).join("versions");
                let Ok(names) = read_dir_names(&versions) else {
                    continue;
                };
                for moved in names {
                    let Some(version) = replaced_version(&moved) else {
                        continue;
                    };
                    let (moved, target) =
                        (versions.join(&moved), versions.join(version.to_string()));
                    if target.exists() {
                        let _ = fs::remove_dir_all(&moved);
                    } else if fs::rename(&moved, &target).is_ok() {
                        let _ = sync_dir(&versions);
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes unpacked versions that are neither current nor previous (best effort: a
    /// leftover directory is only disk space).
    fn prune(&self, id: &PluginId, state: &PluginState) {
        let versions = self.plugin_dir(id).join("versions");
        let keep: Vec<String> = std::iter::once(&state.current)
            .chain(state.previous.as_ref())
            .map(|kept| kept.version.to_string())
            .collect();
        let Ok(names) = read_dir_names(&versions) else {
            return;
        };
        for name in names {
            if !keep.contains(&name) && !name.starts_with(".staging-") {
                let _ = fs::remove_dir_all(versions.join(name));
            }
        }
    }

    /// Removes cached blobs that are neither the current nor the previous package of an
    /// installed plugin (certificate chains go too; they are small and fetched again when
    /// needed). Files being downloaded (`.partial`, `.patch`) are left alone. Best effort.
    pub fn prune_cache(&self) -> Result<(), InstallError> {
        let _locked = self.lock()?;
        self.prune_cache_locked()
    }

    /// [`InstallDir::prune_cache`] for a caller that holds [`InstallDir::lock`].
    pub(crate) fn prune_cache_locked(&self) -> Result<(), InstallError> {
        let keep: Vec<String> = self
            .list()?
            .iter()
            .flat_map(|plugin| {
                std::iter::once(&plugin.state.current).chain(plugin.state.previous.as_ref())
            })
            .map(|kept| kept.sha256.to_hex())
            .collect();
        let cache = self.root.join("cache").join("sha256");
        let entries = match fs::read_dir(&cache) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(io_at(&cache)(error)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let finished = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if finished && !keep.iter().any(|kept| kept == name) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Makes the previous version current again (and the current one previous). Each
    /// version keeps its disabled mark: rolling back to a revoked version leaves it disabled.
    pub fn rollback(&self, id: &PluginId) -> Result<PluginState, InstallError> {
        let _locked = self.lock()?;
        let state = self
            .state(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.clone()))?;
        let previous = state
            .previous
            .clone()
            .ok_or_else(|| InstallError::NoPrevious(id.clone()))?;
        if !self.version_dir(id, &previous.version).is_dir() {
            return Err(InstallError::NoPrevious(id.clone()));
        }
        let state = PluginState {
            current: previous,
            previous: Some(state.current),
            disabled: state.previous_disabled,
            previous_disabled: state.disabled,
        };
        self.write_state(id, &state)?;
        Ok(state)
    }

    /// Marks the current version of `id` disabled (when it is still `version`).
    pub fn disable(
        &self,
        id: &PluginId,
        version: &Version,
        reason: &str,
        now: UnixTime,
    ) -> Result<Option<PluginState>, InstallError> {
        let _locked = self.lock()?;
        let Some(mut state) = self.state(id)? else {
            return Ok(None);
        };
        if state.current.version != *version {
            return Ok(Some(state));
        }
        if state.disabled.is_none() {
            state.disabled = Some(Disabled {
                version: version.clone(),
                reason: reason.to_owned(),
                at: now.as_seconds(),
            });
            self.write_state(id, &state)?;
        }
        Ok(Some(state))
    }
}

fn unpack(
    package: &Path,
    staging: &Path,
    id: &PluginId,
    version: &Version,
    sha256: Sha256,
) -> Result<(), InstallError> {
    let file = fs::File::open(package).map_err(io_at(package))?;
    let contents = extract_package(BufReader::new(file), &PackageLimits::default(), staging)?;
    let expected_digest = PackageDigest::from(sha256);
    if contents.manifest.id() != id
        || contents.manifest.version() != version
        || contents.digest != expected_digest
    {
        return Err(InstallError::PackageMismatch {
            expected: format!("{id} {version} ({expected_digest})"),
            found: format!(
                "{} {} ({})",
                contents.manifest.id(),
                contents.manifest.version(),
                contents.digest
            ),
        });
    }
    Ok(())
}

fn read_state(path: &Path) -> Result<Option<PluginState>, InstallError> {
    let bytes = match fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_STATE_BYTES => {
            return Err(InstallError::BadState {
                path: path.to_owned(),
                reason: format!("larger than {MAX_STATE_BYTES} bytes"),
            });
        }
        Ok(_) => fs::read(path).map_err(io_at(path))?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_at(path)(error)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| InstallError::BadState {
            path: path.to_owned(),
            reason: error.to_string(),
        })
}

/// Where a reinstall moves the version directory it replaces: named with the version, so that
/// [`InstallDir::recover_replaced_versions_locked`] can put it back after a crash, and
/// without a random part, so that there is at most one per version.
fn replaced_name(version: &Version) -> String {
    format!(".replaced-{version}")
}

/// The version a [`replaced_name`] names.
fn replaced_version(name: &str) -> Option<Version> {
    Version::parse(name.strip_prefix(".replaced-")?).ok()
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>, InstallError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_at(dir)(error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_at(dir))?;
        if entry.file_type().map_err(io_at(dir))?.is_dir()
            && let Some(name) = entry.file_name().to_str()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}
