//! A store's keys directory: the files the server signs with and every root it has had, and
//! the steps of a key rotation that touch them.
//!
//! ```text
//! {keys_dir}/root/1.root.json, 2.root.json, …   every root, all published, so a host pinned to
//!                                               an old root can walk forward
//! {keys_dir}/targets.pk8 bins.pk8 snapshot.pk8 timestamp.pk8   online keys (0600)
//! {keys_dir}/<role>.next.pk8                    a rotation under way (`keys rotate`)
//! {keys_dir}/<role>.pk8.old-<N>                 a key replaced by a rotation, kept, never deleted
//! {keys_dir}/root-1.pk8 …                       root keys, only in the one-command setup
//! ```
//!
//! The server calls [`KeysDir::load`] at start. `plugstore-server keys …` (the `cli` feature)
//! drives the rest. Nothing here overwrites a key file or a root file: a key that was
//! replaced by mistake is gone, and a root that was published can never be taken back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::MAX_ROOT_BYTES;
use crate::error::{RoleName, VerificationError};
use crate::keys::{KeyError, KeyId, PublicKey, RoleKeys, SigningKey, TopLevelKeys};
use crate::repository::OnlineKeys;
use crate::root::{RootDraft, RootDraftError, TopLevelRole, VerifiedRoot};
use crate::time::UnixTime;

/// The subdirectory that holds every root.
pub const ROOT_DIR: &str = "root";

/// `keys show` warns when the current root expires within this: a root ceremony needs the
/// offline key holders, which takes time to arrange (ADR 0004).
pub const ROOT_EXPIRY_WARNING: Duration = Duration::from_secs(60 * 24 * 60 * 60);

/// The extension of every private key file.
const KEY_EXTENSION: &str = "pk8";

/// A role whose key the server holds and signs with unattended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnlineRole {
    /// The top-level targets role (listed in the root).
    Targets,
    /// Every hash bin (delegated by the targets role, not listed in the root).
    Bins,
    /// The snapshot (listed in the root).
    Snapshot,
    /// The timestamp (listed in the root).
    Timestamp,
}

impl OnlineRole {
    /// All four, in the order the files are listed.
    pub const ALL: [OnlineRole; 4] = [Self::Targets, Self::Bins, Self::Snapshot, Self::Timestamp];

    /// The root role that lists this key, or `None` for the bins, which the targets role
    /// delegates to.
    pub fn top_level(self) -> Option<TopLevelRole> {
        match self {
            Self::Targets => Some(TopLevelRole::Targets),
            Self::Bins => None,
            Self::Snapshot => Some(TopLevelRole::Snapshot),
            Self::Timestamp => Some(TopLevelRole::Timestamp),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Targets => "targets",
            Self::Bins => "bins",
            Self::Snapshot => "snapshot",
            Self::Timestamp => "timestamp",
        }
    }
}

impl std::fmt::Display for OnlineRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so `keys show` can line roles up in columns.
        f.pad(self.name())
    }
}

/// Everything the server needs from the keys directory to sign.
#[derive(Debug)]
pub struct StoreKeys {
    /// Every root file, in version order from 1, each verified as the successor of the one
    /// before: the server publishes all of them.
    pub roots: Vec<Vec<u8>>,
    /// The newest root, the one the online keys are checked against.
    pub current_root: VerifiedRoot,
    /// The online keys, each listed by `current_root` for its role (the bins key is checked
    /// by the producer against the targets role's delegation instead).
    pub online: OnlineKeys,
    /// A new bins key from `keys rotate --role bins`: the server moves every bin to it
    /// ([`RepositoryState::rotate_bins_key`](crate::repository::RepositoryState::rotate_bins_key)),
    /// then calls [`KeysDir::promote_next_bins_key`].
    pub next_bins: Option<SigningKey>,
}

/// The root chain of a keys directory, without the online keys: what `keys finish-root` and
/// `keys show` need when an online key may be mid-rotation.
#[derive(Debug)]
pub struct RootChain {
    /// Every root file, in version order from 1.
    pub roots: Vec<Vec<u8>>,
    /// The newest root.
    pub current: VerifiedRoot,
}

/// What [`KeysDir::install_root`] did.
#[derive(Debug)]
pub struct InstalledRoot {
    /// The root now current.
    pub root: VerifiedRoot,
    /// The online roles whose `<role>.next.pk8` became `<role>.pk8`.
    pub promoted: Vec<OnlineRole>,
    /// Whether the root file was already there (an interrupted `finish-root` run again).
    pub already_written: bool,
}

/// A store's keys directory.
#[derive(Clone, Debug)]
pub struct KeysDir {
    path: PathBuf,
}

impl KeysDir {
    /// The keys directory at `path`, which must exist. Nothing is read until [`Self::load`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, KeysDirError> {
        let path = path.into();
        let metadata = fs::metadata(&path).map_err(|source| KeysDirError::Io {
            path: path.clone(),
            source,
        })?;
        if !metadata.is_dir() {
            return Err(KeysDirError::NotADirectory(path));
        }
        Ok(Self { path })
    }

    /// Sets up a keys directory for the one-command store: one root key (threshold 1), kept
    /// here as `root-1.pk8` (the server warns about it at start, see [`Self::root_key_files`]),
    /// the four online keys, and `root/1.root.json`. Refuses a directory that already holds
    /// keys.
    pub fn create_embedded(path: impl Into<PathBuf>, now: UnixTime) -> Result<Self, KeysDirError> {
        let path = path.into();
        let root_key = SigningKey::generate()?;
        let root_key_path = path.join(root_key_file_name(1));
        // Checked before anything is written, so a refusal leaves the directory as it was.
        if path.exists() {
            refuse_if_holds_keys(&path)?;
        }
        let dir = Self::create(path, &[&root_key], 1, now)?;
        write_key(&root_key, &root_key_path)?;
        Ok(dir)
    }

    /// Sets up a keys directory: generates the four online keys into `path` (created with mode
    /// 0700 if missing) and writes `root/1.root.json`, listing `root_keys` with `threshold`
    /// and signed by each of them. The root keys themselves are the caller's to store,
    /// preferably offline. Refuses a directory that already holds keys.
    pub fn create(
        path: impl Into<PathBuf>,
        root_keys: &[&SigningKey],
        threshold: u64,
        now: UnixTime,
    ) -> Result<Self, KeysDirError> {
        let path = path.into();
        create_private_dir(&path)?;
        refuse_if_holds_keys(&path)?;
        let dir = Self { path };

        let online = OnlineKeys {
            targets: SigningKey::generate()?,
            bins: SigningKey::generate()?,
            snapshot: SigningKey::generate()?,
            timestamp: SigningKey::generate()?,
        };
        let keys = TopLevelKeys {
            root: RoleKeys::new(
                root_keys
                    .iter()
                    .map(|key| key.public_key().clone())
                    .collect(),
                threshold,
            )?,
            targets: RoleKeys::single(online.targets.public_key()),
            snapshot: RoleKeys::single(online.snapshot.public_key()),
            timestamp: RoleKeys::single(online.timestamp.public_key()),
        };
        let mut draft = RootDraft::first(&keys, now)?;
        for key in root_keys {
            draft.sign(key)?;
        }
        let root = draft.finish(None)?;

        for (role, key) in [
            (OnlineRole::Targets, &online.targets),
            (OnlineRole::Bins, &online.bins),
            (OnlineRole::Snapshot, &online.snapshot),
            (OnlineRole::Timestamp, &online.timestamp),
        ] {
            write_key(key, &dir.key_path(role))?;
        }
        // The root last: a directory with keys and no `1.root.json` is an interrupted setup,
        // which `load` reports as such.
        create_private_dir(&dir.path.join(ROOT_DIR))?;
        write_new_file_atomically(&dir.root_path(1), root.bytes())?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `role`'s key lives: `{keys_dir}/<role>.pk8`.
    pub fn key_path(&self, role: OnlineRole) -> PathBuf {
        self.path.join(format!("{role}.{KEY_EXTENSION}"))
    }

    /// Where a rotation under way keeps `role`'s next key: `{keys_dir}/<role>.next.pk8`.
    pub fn next_key_path(&self, role: OnlineRole) -> PathBuf {
        self.path.join(format!("{role}.next.{KEY_EXTENSION}"))
    }

    /// Where root `version` lives: `{keys_dir}/root/{version}.root.json`.
    pub fn root_path(&self, version: u64) -> PathBuf {
        self.path
            .join(ROOT_DIR)
            .join(RoleName::Root.file_name(version))
    }

    /// Root key files kept in this directory (`root-*.pk8`). Only the one-command setup
    /// should have any: a root key on the server lets whoever takes the server sign a root
    /// that replaces every key.
    pub fn root_key_files(&self) -> Result<Vec<PathBuf>, KeysDirError> {
        let mut files: Vec<PathBuf> = self
            .entries(&self.path)?
            .into_iter()
            .filter(|name| name.starts_with("root-") && name.ends_with(".pk8"))
            .map(|name| self.path.join(name))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Reads and verifies every root: `1.root.json` must be signed by its own threshold, and
    /// each next one by a threshold of the one before and of its own, with no version
    /// missing.
    pub fn root_chain(&self) -> Result<RootChain, KeysDirError> {
        let versions = self.root_versions()?;
        let mut roots = Vec::with_capacity(versions.len());
        let mut current: Option<VerifiedRoot> = None;
        for version in versions {
            let path = self.root_path(version);
            let bytes = read_root_file(&path)?;
            let verified = match &current {
                None => VerifiedRoot::from_pinned(&bytes),
                Some(previous) => previous.verify_successor(&bytes),
            }
            .map_err(|source| KeysDirError::RootFile {
                path: path.clone(),
                source: Box::new(source),
            })?;
            // `from_pinned` does not look at the version; the chain must start at 1.
            if verified.version() != version {
                return Err(KeysDirError::RootFile {
                    path,
                    source: Box::new(VerificationError::RootVersion {
                        expected: version,
                        offered: verified.version(),
                    }),
                });
            }
            roots.push(bytes);
            current = Some(verified);
        }
        let current = current.ok_or_else(|| KeysDirError::NoRoot(self.root_path(1)))?;
        Ok(RootChain { roots, current })
    }

    /// Loads what the server signs with: the verified root chain and the online keys, each
    /// checked to be listed by the current root for its role with threshold 1. Refuses a
    /// key file that group or others can access.
    pub fn load(&self) -> Result<StoreKeys, KeysDirError> {
        let RootChain { roots, current } = self.root_chain()?;
        let read = |role| self.read_online_key(role, &current);
        let online = OnlineKeys {
            targets: read(OnlineRole::Targets)?,
            bins: read(OnlineRole::Bins)?,
            snapshot: read(OnlineRole::Snapshot)?,
            timestamp: read(OnlineRole::Timestamp)?,
        };
        let next_bins_path = self.next_key_path(OnlineRole::Bins);
        let next_bins = if next_bins_path.exists() {
            Some(read_key(&next_bins_path)?)
        } else {
            None
        };
        Ok(StoreKeys {
            roots,
            current_root: current,
            online,
            next_bins,
        })
    }

    /// Generates the next key for `role` into `<role>.next.pk8` (`keys rotate`). Refuses when
    /// one is already there: that rotation has to be finished or abandoned first.
    pub fn generate_next_key(&self, role: OnlineRole) -> Result<SigningKey, KeysDirError> {
        let path = self.next_key_path(role);
        if path.exists() {
            return Err(KeysDirError::RotationUnderWay { role, path });
        }
        let key = SigningKey::generate()?;
        write_key(&key, &path)?;
        Ok(key)
    }

    /// Writes a root draft that has collected its signatures as the next root
    /// (`keys finish-root`), then makes each `<role>.next.pk8` the new root lists the role's
    /// key, keeping the old key as `<role>.pk8.old-<N>` (N: the root that listed it).
    ///
    /// The draft must be version N+1 and signed by a threshold of root N's root keys and of
    /// its own. It is refused when the server could no longer sign with it: an online role
    /// whose key (current or next) the new root does not list, or an online threshold
    /// above 1. Running it again after an interruption finishes the key moves.
    pub fn install_root(&self, draft: &RootDraft) -> Result<InstalledRoot, KeysDirError> {
        let RootChain { current, .. } = self.root_chain()?;
        let draft_bytes = draft.to_json()?;
        let (root, already_written) =
            if current.version() == draft.version() && current.bytes() == draft_bytes {
                (current.clone(), true)
            } else {
                if draft.version() != current.version() + 1 {
                    return Err(KeysDirError::DraftVersion {
                        current: current.version(),
                        draft: draft.version(),
                    });
                }
                (draft.finish(Some(&current))?, false)
            };

        let mut promote = Vec::new();
        for role in OnlineRole::ALL {
            let Some(top_level) = role.top_level() else {
                // The bins key is the targets role's delegation, which the server moves.
                continue;
            };
            let (_, threshold) = root.role_key_ids(top_level);
            if threshold != 1 {
                return Err(KeysDirError::OnlineThreshold {
                    role,
                    threshold,
                    root_version: root.version(),
                });
            }
            let next = self.next_key_path(role);
            if next.exists() && root.authorizes(top_level, read_key(&next)?.id()) {
                promote.push(role);
                continue;
            }
            let path = self.key_path(role);
            let key = read_key(&path)?;
            if !root.authorizes(top_level, key.id()) {
                return Err(KeysDirError::KeyNotInNewRoot {
                    role,
                    key: key.id(),
                    path,
                    root_version: root.version(),
                });
            }
        }

        if !already_written {
            write_new_file_atomically(&self.root_path(root.version()), root.bytes())?;
        }
        let old_suffix = (root.version() - 1).to_string();
        for role in &promote {
            self.promote(*role, &old_suffix)?;
        }
        Ok(InstalledRoot {
            root,
            promoted: promote,
            already_written,
        })
    }

    /// Makes `bins.next.pk8` the bins key, keeping the old one as `bins.pk8.old-<now>`. The
    /// server calls it once every bin and the targets role are signed with the new key and
    /// stored; until then a restart must still find the old key in `bins.pk8`. Returns
    /// whether there was a next key.
    pub fn promote_next_bins_key(&self, now: UnixTime) -> Result<bool, KeysDirError> {
        if !self.next_key_path(OnlineRole::Bins).exists() {
            return Ok(false);
        }
        self.promote(OnlineRole::Bins, &now.as_seconds().to_string())?;
        Ok(true)
    }

    fn promote(&self, role: OnlineRole, old_suffix: &str) -> Result<(), KeysDirError> {
        let next = self.next_key_path(role);
        let current = self.key_path(role);
        if current.exists() {
            let old = self
                .path
                .join(format!("{role}.{KEY_EXTENSION}.old-{old_suffix}"));
            if old.exists() {
                return Err(KeysDirError::AlreadyExists(old));
            }
            rename(&current, &old)?;
        }
        rename(&next, &current)?;
        sync_dir(&self.path)
    }

    fn read_online_key(
        &self,
        role: OnlineRole,
        root: &VerifiedRoot,
    ) -> Result<SigningKey, KeysDirError> {
        let path = self.key_path(role);
        if !path.exists() {
            return Err(KeysDirError::MissingKey { role, path });
        }
        let key = read_key(&path)?;
        let Some(top_level) = role.top_level() else {
            return Ok(key);
        };
        let (_, threshold) = root.role_key_ids(top_level);
        if threshold != 1 {
            return Err(KeysDirError::OnlineThreshold {
                role,
                threshold,
                root_version: root.version(),
            });
        }
        if !root.authorizes(top_level, key.id()) {
            let next = self.next_key_path(role);
            let next_is_listed = next.exists()
                && read_key(&next).is_ok_and(|next| root.authorizes(top_level, next.id()));
            return Err(KeysDirError::KeyNotInRoot {
                role,
                key: key.id(),
                path,
                root_version: root.version(),
                next_is_listed,
            });
        }
        Ok(key)
    }

    /// The versions of the `{n}.root.json` files, checked to run 1, 2, … without a gap.
    fn root_versions(&self) -> Result<Vec<u64>, KeysDirError> {
        let root_dir = self.path.join(ROOT_DIR);
        if !root_dir.exists() {
            return Err(KeysDirError::NoRoot(self.root_path(1)));
        }
        let mut versions: Vec<u64> = self
            .entries(&root_dir)?
            .iter()
            .filter_map(|name| {
                let version: u64 = name.strip_suffix(".root.json")?.parse().ok()?;
                // Only the canonical spelling: `01.root.json` or `+1.root.json` would be a
                // second file for one version.
                (RoleName::Root.file_name(version) == *name).then_some(version)
            })
            .collect();
        versions.sort_unstable();
        for (index, &version) in versions.iter().enumerate() {
            let expected = index as u64 + 1;
            if version != expected {
                if expected == 1 {
                    return Err(KeysDirError::NoRoot(self.root_path(1)));
                }
                return Err(KeysDirError::RootGap {
                    missing: self.root_path(expected),
                    found: version,
                });
            }
        }
        Ok(versions)
    }

    fn entries(&self, dir: &Path) -> Result<Vec<String>, KeysDirError> {
        let io_error = |source| KeysDirError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            // Names that are not UTF-8 are none of ours.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// The file name of root key `n` where `keys generate` puts it: `root-{n}.pk8`.
pub fn root_key_file_name(n: usize) -> String {
    format!("root-{n}.{KEY_EXTENSION}")
}

/// The unsigned draft of the root after `current` with one key of `role` replaced by `new`
/// (`keys rotate`); thresholds stay as they are. `old` names the key to replace and may be
/// left out when the role has a single key.
pub fn rotation_draft(
    current: &VerifiedRoot,
    role: TopLevelRole,
    old: Option<KeyId>,
    new: &PublicKey,
    now: UnixTime,
) -> Result<RootDraft, KeysDirError> {
    let mut keys = current.top_level_keys()?;
    let role_keys = match role {
        TopLevelRole::Root => &mut keys.root,
        TopLevelRole::Targets => &mut keys.targets,
        TopLevelRole::Snapshot => &mut keys.snapshot,
        TopLevelRole::Timestamp => &mut keys.timestamp,
    };
    let listed: Vec<KeyId> = role_keys.keys().iter().map(PublicKey::id).collect();
    let old = match old {
        Some(old) if listed.contains(&old) => old,
        Some(old) => return Err(KeysDirError::NotARoleKey { role, key: old }),
        None => match listed.as_slice() {
            [only] => *only,
            _ => {
                return Err(KeysDirError::WhichKey {
                    role,
                    listed: listed.len(),
                });
            }
        },
    };
    let replaced = role_keys
        .keys()
        .iter()
        .map(|key| {
            if key.id() == old {
                new.clone()
            } else {
                key.clone()
            }
        })
        .collect();
    *role_keys = RoleKeys::new(replaced, role_keys.threshold().get())?;
    Ok(RootDraft::successor(current, &keys, now)?)
}

/// Writes `key` to a new 0600 file, never over an existing one.
pub fn write_key(key: &SigningKey, path: &Path) -> Result<(), KeysDirError> {
    if path.exists() {
        return Err(KeysDirError::AlreadyExists(path.to_owned()));
    }
    key.write_new_file(path)
        .map_err(|source| KeysDirError::Key {
            path: path.to_owned(),
            source,
        })
}

fn read_key(path: &Path) -> Result<SigningKey, KeysDirError> {
    SigningKey::read_file(path).map_err(|source| KeysDirError::Key {
        path: path.to_owned(),
        source,
    })
}

fn read_root_file(path: &Path) -> Result<Vec<u8>, KeysDirError> {
    let io_error = |source| KeysDirError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    // The same cap a client applies, so a root the store keeps is one every host accepts.
    File::open(path)
        .map_err(io_error)?
        .take(MAX_ROOT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_ROOT_BYTES {
        return Err(KeysDirError::RootFile {
            path: path.to_owned(),
            source: Box::new(VerificationError::TooLarge {
                file: path.display().to_string(),
                limit: MAX_ROOT_BYTES,
                received: bytes.len() as u64,
            }),
        });
    }
    Ok(bytes)
}

/// A directory that holds a key or a root is in use; setting it up again would overwrite or
/// orphan them.
fn refuse_if_holds_keys(path: &Path) -> Result<(), KeysDirError> {
    let holds = |dir: &Path, is_ours: fn(&str) -> bool| -> Result<Option<PathBuf>, KeysDirError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeysDirError::Io {
                    path: dir.to_owned(),
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| KeysDirError::Io {
                path: dir.to_owned(),
                source,
            })?;
            if entry.file_name().to_str().is_some_and(is_ours) {
                return Ok(Some(entry.path()));
            }
        }
        Ok(None)
    };
    let found = match holds(path, |name| name.contains(".pk8"))? {
        Some(found) => Some(found),
        None => holds(&path.join(ROOT_DIR), |name| name.ends_with(".root.json"))?,
    };
    match found {
        Some(file) => Err(KeysDirError::HoldsKeys {
            dir: path.to_owned(),
            file,
        }),
        None => Ok(()),
    }
}

fn create_private_dir(path: &Path) -> Result<(), KeysDirError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path).map_err(|source| KeysDirError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes through a temporary file and a rename, so a crash never leaves a truncated root
/// that the server would then refuse to start with.
fn write_new_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), KeysDirError> {
    if path.exists() {
        return Err(KeysDirError::AlreadyExists(path.to_owned()));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(KeysDirError::NotADirectory(path.to_owned()));
    };
    let temporary = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| KeysDirError::Io { path, source }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(io_error(&temporary))?;
    file.write_all(bytes).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    rename(&temporary, path)?;
    sync_dir(dir)
}

fn rename(from: &Path, to: &Path) -> Result<(), KeysDirError> {
    fs::rename(from, to).map_err(|source| KeysDirError::Io {
        path: from.to_owned(),
        source,
    })
}

/// Makes a rename durable: on Linux the directory entry is only on disk once the directory
/// itself is synced.
fn sync_dir(dir: &Path) -> Result<(), KeysDirError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| KeysDirError::Io {
            path: dir.to_owned(),
            source,
        })?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Why a keys directory could not be set up, loaded or changed. Each message names the file
/// and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum KeysDirError {
    /// A file or directory that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The keys directory is a file.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// Setting up a directory that already holds keys or roots.
    #[error(
        "{dir} already holds keys ({file}); refusing to set it up again, which would replace a key. Use an empty directory (or remove this one if its keys were never used to publish)"
    )]
    HoldsKeys {
        /// The keys directory.
        dir: PathBuf,
        /// One of the files found.
        file: PathBuf,
    },
    /// A key or root file that would be overwritten.
    #[error("{0} already exists; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    /// No `1.root.json`.
    #[error(
        "{0} is missing: every store's root chain starts at version 1. Run `plugstore-server keys generate` for a new store, or restore the roots the store published (if `keys generate` was interrupted, remove the directory and run it again)"
    )]
    NoRoot(PathBuf),
    /// A root version missing between two present ones.
    #[error(
        "{missing} is missing but {found}.root.json exists: roots must be numbered 1, 2, … without a gap. Restore the missing root from a backup or from what the store served"
    )]
    RootGap {
        /// The first missing file.
        missing: PathBuf,
        /// The version found where it was expected.
        found: u64,
    },
    /// A root file that does not verify against the one before (or against itself).
    #[error(
        "{path} does not verify: {source}. A root must be signed by a threshold of the previous root's keys and of its own; restore the file the store published"
    )]
    RootFile {
        /// The file.
        path: PathBuf,
        /// Why it was refused (boxed: it is large, and this is the rare path).
        source: Box<VerificationError>,
    },
    /// An online key file that is missing.
    #[error(
        "the {role} key {path} is missing. Restore it from a backup, or replace it with `plugstore-server keys rotate --role {role}`"
    )]
    MissingKey {
        /// The role.
        role: OnlineRole,
        /// The file.
        path: PathBuf,
    },
    /// A key file that could not be read, written or used (including one that group or
    /// others can access).
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// An online key that the current root does not list for its role.
    #[error(
        "the {role} key {path} ({key}) is not a {role} key of root {root_version}. {}",
        if *next_is_listed {
            "Its .next.pk8 is: a `keys finish-root` was interrupted; run it again with the same draft"
        } else {
            "Restore the key that root lists, or rotate the role with `keys rotate`"
        }
    )]
    KeyNotInRoot {
        /// The role.
        role: OnlineRole,
        /// The key found.
        key: KeyId,
        /// Its file.
        path: PathBuf,
        /// The current root.
        root_version: u64,
        /// Whether `<role>.next.pk8` is the key the root lists.
        next_is_listed: bool,
    },
    /// A root that would leave an online role without a key the server holds.
    #[error(
        "root {root_version} does not list the {role} key {path} ({key}) and there is no {role}.next.pk8 it lists; the server could not sign {role} with it. Draft the root again with `keys rotate --role {role}`"
    )]
    KeyNotInNewRoot {
        /// The role.
        role: OnlineRole,
        /// The key the server holds.
        key: KeyId,
        /// Its file.
        path: PathBuf,
        /// The new root.
        root_version: u64,
    },
    /// A root that asks for more than one signature on an online role.
    #[error(
        "root {root_version} sets a threshold of {threshold} for {role}; the store signs online roles with one key"
    )]
    OnlineThreshold {
        /// The role.
        role: OnlineRole,
        /// Its threshold.
        threshold: u64,
        /// The root.
        root_version: u64,
    },
    /// A rotation started while another of the same role is under way.
    #[error(
        "{path} already exists: a rotation of {role} is under way. {}, or remove that file to abandon it",
        if *role == OnlineRole::Bins {
            "The server moves the bins to it at its next start"
        } else {
            "Finish it with `keys finish-root`"
        }
    )]
    RotationUnderWay {
        /// The role.
        role: OnlineRole,
        /// The next key's file.
        path: PathBuf,
    },
    /// A draft that is not the next root.
    #[error(
        "the draft is root {draft} but the current root is {current}; only root {} can be added. Draft it again from the current root with `keys rotate`",
        current + 1
    )]
    DraftVersion {
        /// The current root's version.
        current: u64,
        /// The draft's version.
        draft: u64,
    },
    /// A rotation naming a key the role does not have.
    #[error("{key} is not a {role} key of the current root")]
    NotARoleKey {
        /// The role.
        role: TopLevelRole,
        /// The key named.
        key: KeyId,
    },
    /// A rotation of a role with several keys that does not say which one to replace.
    #[error("the current root lists {listed} {role} keys; name the one to replace")]
    WhichKey {
        /// The role.
        role: TopLevelRole,
        /// How many keys it has.
        listed: usize,
    },
    /// Generating, reading or listing a key failed.
    #[error(transparent)]
    KeyMaterial(#[from] KeyError),
    /// A root draft that could not be built, or is not signed enough yet.
    #[error(transparent)]
    Draft(#[from] RootDraftError),
}
