//! The producer: signs the repository's metadata from the catalogue the caller passes in, and
//! re-signs only what changed.
//!
//! The state is plain data ([`RepositoryState`]): the current root, the current files of the
//! small top-level roles, and a record (version, length, hash, expiry) of each of the 4096
//! bins, so a server can keep it in its database and never hold every bin in memory. Each
//! operation returns the new files, in the order to make them durable: bins, then targets,
//! then snapshot, then `timestamp.json` last, so the entry point never refers to a file that
//! is not written yet. An operation that fails leaves the state as it was.
//!
//! Nothing here does I/O or reads the clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU64;
use std::time::Duration;

use serde::Serialize;
use tough::TargetName;
use tough::schema::decoded::Decoded;
use tough::schema::{Hashes, Metafile, Snapshot, Target, Targets, Timestamp};

use crate::custom::{CustomFieldError, IdentityMismatch, PluginTarget};
use crate::delegations::{Delegation, DelegationsToBins, RoleTypeTargets, TopLevelTargets};
use crate::digest::Sha256;
use crate::envelope::{SPEC_VERSION, sign_envelope};
use crate::error::{RoleName, VerificationError};
use crate::keys::{KeyError, KeyId, SigningKey};
use crate::layout::{BinName, TargetPath, path_matches_pattern};
use crate::root::{TopLevelRole, VerifiedRoot};
use crate::time::{
    SNAPSHOT_LIFETIME, TARGETS_LIFETIME, TIMESTAMP_LIFETIME, UnixTime, bin_lifetime,
};

/// Re-sign the targets role and a bin when less than this is left before expiry, so a bin
/// that nobody publishes to still never expires (ADR 0004: "under 30 days").
pub const TARGETS_REFRESH_MARGIN: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Re-sign the snapshot when less than this is left: with a one-week lifetime, this re-signs
/// it at least daily even when nothing is published.
pub const SNAPSHOT_REFRESH_MARGIN: Duration = Duration::from_secs(6 * 24 * 60 * 60);

/// Re-sign the timestamp when less than this is left: with a one-day lifetime, this re-signs
/// it every 4 hours, so a client is at most 4 hours behind even without a publication.
pub const TIMESTAMP_REFRESH_MARGIN: Duration = Duration::from_secs(20 * 60 * 60);

/// The online keys the server signs with. Every role has its own key; one key is shared by all
/// bins (the top-level targets role delegates every bin to it).
#[derive(Debug)]
pub struct OnlineKeys {
    /// Signs the top-level targets role.
    pub targets: SigningKey,
    /// Signs every bin.
    pub bins: SigningKey,
    /// Signs the snapshot.
    pub snapshot: SigningKey,
    /// Signs the timestamp.
    pub timestamp: SigningKey,
}

/// What the snapshot and timestamp need to know of a signed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleRecord {
    /// The role's version in this file.
    pub version: NonZeroU64,
    /// The file's length in bytes.
    pub length: u64,
    /// The file's SHA-256.
    pub sha256: Sha256,
    /// When the role expires.
    pub expires: UnixTime,
}

/// A signed role file and its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedFile {
    /// Version, length, hash, expiry.
    pub record: RoleRecord,
    /// The file.
    pub bytes: Vec<u8>,
}

/// A file to publish under the metadata base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataFile {
    /// The role it signs.
    pub role: RoleName,
    /// Its file name (`{version}.{role}.json`, or `timestamp.json`).
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// One target of a bin, as the caller's catalogue describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetEntry {
    /// Where it lives; decides its bin.
    pub path: TargetPath,
    /// Its length in bytes.
    pub length: u64,
    /// Its SHA-256 (for a package, its `PackageDigest`).
    pub sha256: Sha256,
    /// Our custom fields; must describe `path`.
    pub custom: PluginTarget,
}

/// Which roles [`RepositoryState::due_for_refresh`] found close to expiry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshPlan {
    /// Bins to re-sign (with their current targets) through [`RepositoryState::update_bins`].
    pub bins: Vec<BinName>,
    /// Re-sign the top-level targets ([`RepositoryState::resign_targets`]).
    pub targets: bool,
    /// Re-sign the snapshot ([`RepositoryState::resign_snapshot`]).
    pub snapshot: bool,
    /// Re-sign the timestamp ([`RepositoryState::refresh_timestamp`]).
    pub timestamp: bool,
}

/// The repository's current metadata, as plain data.
#[derive(Clone, Debug)]
pub struct RepositoryState {
    /// The current root.
    pub root: VerifiedRoot,
    /// The key every bin is delegated to by the current top-level targets.
    pub bins_key: KeyId,
    /// The current top-level targets file.
    pub targets: SignedFile,
    /// The record of each bin's current file; every bin of [`BinName::all`] is present.
    pub bins: BTreeMap<BinName, RoleRecord>,
    /// The current snapshot file.
    pub snapshot: SignedFile,
    /// The current timestamp file.
    pub timestamp: SignedFile,
}

impl RepositoryState {
    /// Signs the first metadata of a repository whose root is `root`: top-level targets,
    /// every bin (empty), snapshot and timestamp, all at version 1.
    pub fn create(
        root: VerifiedRoot,
        keys: &OnlineKeys,
        now: UnixTime,
    ) -> Result<(Self, Vec<MetadataFile>), ProducerError> {
        check_authorized(&root, keys)?;
        let mut files = Vec::with_capacity(BinName::all().count() + 3);
        let mut bins = BTreeMap::new();
        for bin in BinName::all() {
            let (record, file) = sign_bin(bin, NonZeroU64::MIN, &[], &keys.bins, now)?;
            bins.insert(bin, record);
            files.push(file);
        }
        let (targets, targets_file) =
            sign_targets(NonZeroU64::MIN, &keys.bins, &keys.targets, now)?;
        files.push(targets_file);
        let (snapshot, snapshot_file) =
            sign_snapshot(NonZeroU64::MIN, &targets.record, &bins, &keys.snapshot, now)?;
        files.push(snapshot_file);
        let (timestamp, timestamp_file) =
            sign_timestamp(NonZeroU64::MIN, &snapshot.record, &keys.timestamp, now)?;
        files.push(timestamp_file);
        let state = Self {
            root,
            bins_key: keys.bins.id(),
            targets,
            bins,
            snapshot,
            timestamp,
        };
        Ok((state, files))
    }

    /// The bins must be signed with the key the top-level targets delegate to (moving them
    /// to another key is [`Self::rotate_bins_key`]).
    fn check_bins_key(&self, keys: &OnlineKeys) -> Result<(), ProducerError> {
        if keys.bins.id() == self.bins_key {
            return Ok(());
        }
        Err(ProducerError::BinsKeyChanged {
            delegated: self.bins_key,
            offered: keys.bins.id(),
        })
    }

    /// Re-signs each bin in `changed` with exactly the targets given (its whole new content),
    /// one version up, then a new snapshot and timestamp. Other bins are untouched.
    pub fn update_bins(
        &mut self,
        keys: &OnlineKeys,
        changed: &BTreeMap<BinName, Vec<TargetEntry>>,
        now: UnixTime,
    ) -> Result<Vec<MetadataFile>, ProducerError> {
        check_authorized(&self.root, keys)?;
        self.check_bins_key(keys)?;
        let mut bins = self.bins.clone();
        let mut files = Vec::with_capacity(changed.len() + 2);
        for (&bin, entries) in changed {
            let version = next_version(bins.get(&bin).map(|record| record.version));
            let (record, file) = sign_bin(bin, version, entries, &keys.bins, now)?;
            bins.insert(bin, record);
            files.push(file);
        }
        let targets = self.targets.clone();
        self.finish_with_snapshot(keys, targets, bins, files, now)
    }

    /// Re-signs the top-level targets (when it nears expiry, or the targets key changed in the
    /// root), then a new snapshot and timestamp.
    pub fn resign_targets(
        &mut self,
        keys: &OnlineKeys,
        now: UnixTime,
    ) -> Result<Vec<MetadataFile>, ProducerError> {
        check_authorized(&self.root, keys)?;
        self.check_bins_key(keys)?;
        let version = next_version(Some(self.targets.record.version));
        let (targets, file) = sign_targets(version, &keys.bins, &keys.targets, now)?;
        let bins = self.bins.clone();
        self.finish_with_snapshot(keys, targets, bins, vec![file], now)
    }

    /// Moves the bins to a new key: re-signs the top-level targets to delegate to
    /// `keys.bins`, and every bin with it. `all_bins` must give the content of every bin,
    /// since a bin left signed by the old key would no longer verify.
    pub fn rotate_bins_key(
        &mut self,
        keys: &OnlineKeys,
        all_bins: &BTreeMap<BinName, Vec<TargetEntry>>,
        now: UnixTime,
    ) -> Result<Vec<MetadataFile>, ProducerError> {
        check_authorized(&self.root, keys)?;
        if let Some(missing) = BinName::all().find(|bin| !all_bins.contains_key(bin)) {
            return Err(ProducerError::MissingBin(missing));
        }
        let mut bins = self.bins.clone();
        let mut files = Vec::with_capacity(all_bins.len() + 3);
        for (&bin, entries) in all_bins {
            let version = next_version(bins.get(&bin).map(|record| record.version));
            let (record, file) = sign_bin(bin, version, entries, &keys.bins, now)?;
            bins.insert(bin, record);
            files.push(file);
        }
        let version = next_version(Some(self.targets.record.version));
        let (targets, file) = sign_targets(version, &keys.bins, &keys.targets, now)?;
        files.push(file);
        let files = self.finish_with_snapshot(keys, targets, bins, files, now)?;
        self.bins_key = keys.bins.id();
        Ok(files)
    }

    /// Re-signs the snapshot as it is (when it nears expiry, or the snapshot key changed),
    /// then the timestamp.
    pub fn resign_snapshot(
        &mut self,
        keys: &OnlineKeys,
        now: UnixTime,
    ) -> Result<Vec<MetadataFile>, ProducerError> {
        check_authorized(&self.root, keys)?;
        let (targets, bins) = (self.targets.clone(), self.bins.clone());
        self.finish_with_snapshot(keys, targets, bins, Vec::new(), now)
    }

    /// Re-signs the timestamp alone, one version up, pointing at the current snapshot. This is
    /// the periodic job that keeps clients from being frozen on old metadata.
    pub fn refresh_timestamp(
        &mut self,
        keys: &OnlineKeys,
        now: UnixTime,
    ) -> Result<MetadataFile, ProducerError> {
        check_key(&self.root, TopLevelRole::Timestamp, &keys.timestamp)?;
        let version = next_version(Some(self.timestamp.record.version));
        let (timestamp, file) =
            sign_timestamp(version, &self.snapshot.record, &keys.timestamp, now)?;
        self.timestamp = timestamp;
        Ok(file)
    }

    /// Accepts the next root (signed offline by the old and the new root keys) and returns the
    /// file to publish. If it changed an online role's key, re-sign that role next
    /// ([`RepositoryState::resign_targets`], [`RepositoryState::resign_snapshot`],
    /// [`RepositoryState::refresh_timestamp`]) with the new keys.
    pub fn install_root(&mut self, next_root: &[u8]) -> Result<MetadataFile, ProducerError> {
        let next = self
            .root
            .verify_successor(next_root)
            .map_err(ProducerError::Root)?;
        let file = MetadataFile {
            role: RoleName::Root,
            name: next.file_name(),
            bytes: next.bytes().to_vec(),
        };
        self.root = next;
        Ok(file)
    }

    /// The roles that should be re-signed now because their expiry is near (see the
    /// `*_REFRESH_MARGIN` constants).
    pub fn due_for_refresh(&self, now: UnixTime) -> RefreshPlan {
        let due = |expires: UnixTime, margin: Duration| expires <= now.plus(margin);
        RefreshPlan {
            bins: self
                .bins
                .iter()
                .filter(|(_, record)| due(record.expires, TARGETS_REFRESH_MARGIN))
                .map(|(&bin, _)| bin)
                .collect(),
            targets: due(self.targets.record.expires, TARGETS_REFRESH_MARGIN),
            snapshot: due(self.snapshot.record.expires, SNAPSHOT_REFRESH_MARGIN),
            timestamp: due(self.timestamp.record.expires, TIMESTAMP_REFRESH_MARGIN),
        }
    }

    /// Signs a snapshot over `targets` and `bins` and a timestamp over it, and only then
    /// commits all of it to the state.
    fn finish_with_snapshot(
        &mut self,
        keys: &OnlineKeys,
        targets: SignedFile,
        bins: BTreeMap<BinName, RoleRecord>,
        mut files: Vec<MetadataFile>,
        now: UnixTime,
    ) -> Result<Vec<MetadataFile>, ProducerError> {
        let snapshot_version = next_version(Some(self.snapshot.record.version));
        let (snapshot, snapshot_file) = sign_snapshot(
            snapshot_version,
            &targets.record,
            &bins,
            &keys.snapshot,
            now,
        )?;
        let timestamp_version = next_version(Some(self.timestamp.record.version));
        let (timestamp, timestamp_file) =
            sign_timestamp(timestamp_version, &snapshot.record, &keys.timestamp, now)?;
        files.push(snapshot_file);
        files.push(timestamp_file);
        self.targets = targets;
        self.bins = bins;
        self.snapshot = snapshot;
        self.timestamp = timestamp;
        Ok(files)
    }
}

fn next_version(current: Option<NonZeroU64>) -> NonZeroU64 {
    current.map_or(NonZeroU64::MIN, |version| version.saturating_add(1))
}

fn check_authorized(root: &VerifiedRoot, keys: &OnlineKeys) -> Result<(), ProducerError> {
    check_key(root, TopLevelRole::Targets, &keys.targets)?;
    check_key(root, TopLevelRole::Snapshot, &keys.snapshot)?;
    check_key(root, TopLevelRole::Timestamp, &keys.timestamp)
}

/// Refuses to sign with a key the root does not list for the role: clients would refuse the
/// result, and it is better to learn that before publishing.
fn check_key(
    root: &VerifiedRoot,
    role: TopLevelRole,
    key: &SigningKey,
) -> Result<(), ProducerError> {
    let (ids, threshold) = root.role_key_ids(role);
    if !ids.contains(&key.id()) {
        return Err(ProducerError::KeyNotInRoot {
            role,
            key: key.id(),
        });
    }
    // Online roles are signed unattended by one key; a higher threshold cannot be met here.
    if threshold != 1 {
        return Err(ProducerError::OnlineThreshold { role, threshold });
    }
    Ok(())
}

fn expiry(now: UnixTime, lifetime: Duration) -> Result<jiff::Timestamp, ProducerError> {
    now.plus(lifetime)
        .to_jiff()
        .ok_or(ProducerError::ExpiryOutOfRange)
}

fn signed_file<T: Serialize>(
    role: RoleName,
    signed: &T,
    version: NonZeroU64,
    expires: jiff::Timestamp,
    key: &SigningKey,
) -> Result<(SignedFile, MetadataFile), ProducerError> {
    let bytes = sign_envelope(signed, &[key])?;
    let record = RoleRecord {
        version,
        length: bytes.len() as u64,
        sha256: Sha256::of(&bytes),
        expires: UnixTime::from_jiff(expires),
    };
    let file = MetadataFile {
        role,
        name: role.file_name(version.get()),
        bytes: bytes.clone(),
    };
    Ok((SignedFile { record, bytes }, file))
}

fn sign_bin(
    bin: BinName,
    version: NonZeroU64,
    entries: &[TargetEntry],
    key: &SigningKey,
    now: UnixTime,
) -> Result<(RoleRecord, MetadataFile), ProducerError> {
    let patterns = bin.path_patterns();
    let mut targets = HashMap::with_capacity(entries.len());
    let mut seen = HashSet::with_capacity(entries.len());
    for entry in entries {
        let path = entry.path.to_string();
        if entry.path.bin() != bin {
            return Err(ProducerError::TargetInWrongBin {
                path,
                bin,
                expected: entry.path.bin(),
            });
        }
        // Our own patterns cover every path of the bin by construction; checking here keeps
        // the producer from ever publishing what a client would refuse.
        if !patterns
            .iter()
            .any(|pattern| path_matches_pattern(&path, pattern))
        {
            return Err(ProducerError::TargetInWrongBin {
                path,
                bin,
                expected: entry.path.bin(),
            });
        }
        entry
            .custom
            .check_describes(&entry.path)
            .map_err(|mismatch| ProducerError::TargetIdentity {
                path: path.clone(),
                mismatch,
            })?;
        if !seen.insert(path.clone()) {
            return Err(ProducerError::DuplicateTarget { path });
        }
        let custom = entry
            .custom
            .to_custom()
            .map_err(|source| ProducerError::Custom {
                path: path.clone(),
                source,
            })?;
        let name = TargetName::new(path.clone()).map_err(|error| ProducerError::Custom {
            path: path.clone(),
            source: CustomFieldError::Invalid(error.to_string()),
        })?;
        targets.insert(
            name,
            Target {
                length: entry.length,
                hashes: Hashes {
                    sha256: Decoded::from(entry.sha256.as_bytes().to_vec()),
                    _extra: HashMap::new(),
                },
                custom,
                _extra: HashMap::new(),
            },
        );
    }
    let expires = expiry(now, bin_lifetime(bin.index()))?;
    let role = Targets {
        spec_version: SPEC_VERSION.to_owned(),
        version,
        expires,
        targets,
        delegations: None,
        _extra: HashMap::new(),
    };
    let (signed, file) = signed_file(RoleName::Bin(bin), &role, version, expires, key)?;
    Ok((signed.record, file))
}

fn sign_targets(
    version: NonZeroU64,
    bins_key: &SigningKey,
    targets_key: &SigningKey,
    now: UnixTime,
) -> Result<(SignedFile, MetadataFile), ProducerError> {
    let bins_key_id = bins_key.id().to_decoded();
    let roles = BinName::all()
        .map(|bin| Delegation {
            name: bin.to_string(),
            keyids: vec![bins_key_id.clone()],
            threshold: NonZeroU64::MIN,
            paths: Some(bin.path_patterns()),
            terminating: true,
            other: serde_json::Map::new(),
        })
        .collect();
    let expires = expiry(now, TARGETS_LIFETIME)?;
    let role = TopLevelTargets {
        kind: RoleTypeTargets::Targets,
        spec_version: SPEC_VERSION.to_owned(),
        version,
        expires,
        targets: serde_json::Map::new(),
        delegations: Some(DelegationsToBins {
            keys: HashMap::from([(bins_key_id, bins_key.public_key().tuf_key().clone())]),
            roles,
        }),
    };
    signed_file(RoleName::Targets, &role, version, expires, targets_key)
}

fn sign_snapshot(
    version: NonZeroU64,
    targets: &RoleRecord,
    bins: &BTreeMap<BinName, RoleRecord>,
    key: &SigningKey,
    now: UnixTime,
) -> Result<(SignedFile, MetadataFile), ProducerError> {
    // Versions and lengths, no hashes: consistent-snapshot files are immutable, so the version
    // names one file, and 4096 hashes would add ~260 KiB of incompressible hex.
    let listing = |record: &RoleRecord| Metafile {
        length: Some(record.length),
        hashes: None,
        version: record.version,
        _extra: HashMap::new(),
    };
    let mut meta = HashMap::with_capacity(bins.len() + 1);
    meta.insert(RoleName::Targets.meta_key(), listing(targets));
    for (&bin, record) in bins {
        meta.insert(bin.meta_key(), listing(record));
    }
    let expires = expiry(now, SNAPSHOT_LIFETIME)?;
    let mut role = Snapshot::new(SPEC_VERSION.to_owned(), version, expires);
    role.meta = meta;
    signed_file(RoleName::Snapshot, &role, version, expires, key)
}

fn sign_timestamp(
    version: NonZeroU64,
    snapshot: &RoleRecord,
    key: &SigningKey,
    now: UnixTime,
) -> Result<(SignedFile, MetadataFile), ProducerError> {
    let expires = expiry(now, TIMESTAMP_LIFETIME)?;
    let mut role = Timestamp::new(SPEC_VERSION.to_owned(), version, expires);
    role.meta.insert(
        RoleName::Snapshot.meta_key(),
        Metafile {
            length: Some(snapshot.length),
            hashes: Some(Hashes {
                sha256: Decoded::from(snapshot.sha256.as_bytes().to_vec()),
                _extra: HashMap::new(),
            }),
            version: snapshot.version,
            _extra: HashMap::new(),
        },
    );
    signed_file(RoleName::Timestamp, &role, version, expires, key)
}

/// Why the producer refused to sign.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// Signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A key the current root does not list for its role.
    #[error("key {key} is not a {role} key of the current root")]
    KeyNotInRoot {
        /// The role.
        role: TopLevelRole,
        /// The key offered.
        key: KeyId,
    },
    /// The root asks for more than one signature on an online role.
    #[error(
        "the root sets a threshold of {threshold} for the online {role} role; the store signs online roles with one key"
    )]
    OnlineThreshold {
        /// The role.
        role: TopLevelRole,
        /// Its threshold in the root.
        threshold: u64,
    },
    /// A bins key other than the one the targets role delegates to (use
    /// [`RepositoryState::rotate_bins_key`]).
    #[error("the bins are delegated to key {delegated}, not {offered}; rotate the bins key first")]
    BinsKeyChanged {
        /// The key the current targets role delegates to.
        delegated: KeyId,
        /// The key offered.
        offered: KeyId,
    },
    /// A bins key rotation without the content of every bin.
    #[error("rotating the bins key re-signs every bin; {0} was not given")]
    MissingBin(BinName),
    /// A target listed under a bin that is not responsible for its path.
    #[error("{path} belongs in {expected}, not {bin}")]
    TargetInWrongBin {
        /// The target path.
        path: String,
        /// The bin it was listed under.
        bin: BinName,
        /// The bin responsible for it.
        expected: BinName,
    },
    /// Custom fields that describe another target than the path.
    #[error("{path}: {mismatch}")]
    TargetIdentity {
        /// The target path.
        path: String,
        /// How they disagree.
        mismatch: IdentityMismatch,
    },
    /// One path listed twice in a bin.
    #[error("{path} is listed twice")]
    DuplicateTarget {
        /// The target path.
        path: String,
    },
    /// Custom fields that cannot be written.
    #[error("{path}: {source}")]
    Custom {
        /// The target path.
        path: String,
        /// What is wrong.
        source: CustomFieldError,
    },
    /// An expiry beyond what TUF timestamps can express.
    #[error("an expiry is out of range")]
    ExpiryOutOfRange,
    /// The next root does not verify against the current one.
    #[error("the new root was refused: {0}")]
    Root(VerificationError),
}

#[cfg(test)]
mod tests {
    use plugstore_format::certs::CertFingerprint;
    use plugstore_format::manifest::{PluginId, PluginKind, Target as Platform};
    use plugstore_format::signing::SignatureAlgorithm;
    use semver::Version;
    use std::collections::BTreeSet;

    use super::*;
    use crate::custom::{
        ChainReference, DeveloperSignature, PackageTarget, TargetDetail, VersionState,
    };
    use crate::keys::{RoleKeys, TopLevelKeys};
    use crate::root::{RootDraft, sign_root};

    fn now() -> UnixTime {
        UnixTime::from_seconds(1_767_225_600)
    }

    fn repository() -> (RepositoryState, OnlineKeys, Vec<MetadataFile>) {
        let root_key = SigningKey::generate().unwrap();
        let keys = OnlineKeys {
            targets: SigningKey::generate().unwrap(),
            bins: SigningKey::generate().unwrap(),
            snapshot: SigningKey::generate().unwrap(),
            timestamp: SigningKey::generate().unwrap(),
        };
        let top = TopLevelKeys {
            root: RoleKeys::single(root_key.public_key()),
            targets: RoleKeys::single(keys.targets.public_key()),
            snapshot: RoleKeys::single(keys.snapshot.public_key()),
            timestamp: RoleKeys::single(keys.timestamp.public_key()),
        };
        let mut draft = RootDraft::first(&top, now()).unwrap();
        sign_root(&mut draft, &root_key).unwrap();
        let root = draft.finish(None).unwrap();
        let (state, files) = RepositoryState::create(root, &keys, now()).unwrap();
        (state, keys, files)
    }

    fn package(plugin: &str, version: &str) -> TargetEntry {
        let plugin: PluginId = plugin.parse().unwrap();
        let version: Version = version.parse().unwrap();
        let bytes = format!("{plugin} {version}");
        TargetEntry {
            path: TargetPath::package(plugin.clone(), version.clone()),
            length: bytes.len() as u64,
            sha256: Sha256::of(bytes.as_bytes()),
            custom: PluginTarget {
                plugin,
                version,
                detail: TargetDetail::Package(PackageTarget {
                    state: VersionState::Published,
                    plugin_kind: PluginKind::Wasm,
                    platforms: vec![Platform::Any],
                    host: ">=1".parse().unwrap(),
                    capabilities: Vec::new(),
                    developer: DeveloperSignature {
                        algorithm: SignatureAlgorithm::EcdsaP256Sha256,
                        signature: vec![1, 2, 3],
                        leaf_sha256: CertFingerprint([1; 32]),
                        chain: ChainReference {
                            sha256: Sha256::of(b"chain"),
                            length: 5,
                        },
                    },
                    published_at: now(),
                }),
            },
        }
    }

    #[test]
    fn creates_every_role_at_version_one() {
        let (state, _, files) = repository();
        assert_eq!(files.len(), 4096 + 3);
        assert_eq!(files[0].name, "1.bin-000.json");
        let names: Vec<&str> = files[4096..].iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["1.targets.json", "1.snapshot.json", "timestamp.json"]
        );
        assert_eq!(state.bins.len(), 4096);
        assert_eq!(
            state.timestamp.record.expires,
            now().plus(TIMESTAMP_LIFETIME)
        );
        assert_eq!(state.snapshot.record.expires, now().plus(SNAPSHOT_LIFETIME));
        assert_eq!(state.targets.record.expires, now().plus(TARGETS_LIFETIME));
        assert_eq!(
            state.bins[&BinName::from_index(0).unwrap()].expires,
            now().plus(crate::time::BIN_LIFETIME)
        );
        // Spread over a month, so they do not all come due for re-signing in one round.
        let expiries: BTreeSet<UnixTime> = state.bins.values().map(|bin| bin.expires).collect();
        let first = *expiries.first().unwrap();
        let last = *expiries.last().unwrap();
        assert!(
            expiries.len() > 4000,
            "{} distinct expiries",
            expiries.len()
        );
        assert!(last.as_seconds() - first.as_seconds() > 28 * 24 * 3600);
        assert!(first > now().plus(TARGETS_REFRESH_MARGIN));
        let snapshot: serde_json::Value = serde_json::from_slice(&state.snapshot.bytes).unwrap();
        assert_eq!(snapshot["signed"]["meta"].as_object().unwrap().len(), 4097);
        assert_eq!(snapshot["signed"]["meta"]["bin-fff.json"]["version"], 1);
        assert!(
            snapshot["signed"]["meta"]["bin-fff.json"]
                .get("hashes")
                .is_none()
        );
        let timestamp: serde_json::Value = serde_json::from_slice(&state.timestamp.bytes).unwrap();
        let listed = &timestamp["signed"]["meta"]["snapshot.json"];
        assert_eq!(listed["length"], state.snapshot.bytes.len());
        assert_eq!(
            listed["hashes"]["sha256"],
            Sha256::of(&state.snapshot.bytes).to_hex()
        );
    }

    #[test]
    fn a_changed_bin_bumps_only_itself_the_snapshot_and_the_timestamp() {
        let (mut state, keys, _) = repository();
        let entry = package("acme/widget", "1.0.0");
        let bin = entry.path.bin();
        let before = state.clone();
        let later = now().plus(Duration::from_secs(60));
        let files = state
            .update_bins(&keys, &BTreeMap::from([(bin, vec![entry.clone()])]), later)
            .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("2.{bin}.json").as_str(),
                "2.snapshot.json",
                "timestamp.json"
            ]
        );
        assert_eq!(state.bins[&bin].version.get(), 2);
        assert_eq!(state.targets, before.targets);
        for other in BinName::all().filter(|other| *other != bin) {
            assert_eq!(state.bins[&other], before.bins[&other]);
        }
        assert_eq!(state.snapshot.record.version.get(), 2);
        assert_eq!(state.timestamp.record.version.get(), 2);
        let bin_file: serde_json::Value = serde_json::from_slice(&files[0].bytes).unwrap();
        let listed = &bin_file["signed"]["targets"][entry.path.to_string()];
        assert_eq!(listed["length"], entry.length);
        assert_eq!(listed["custom"]["plugstore"]["plugin"], "acme/widget");

        let file = state.refresh_timestamp(&keys, later).unwrap();
        assert_eq!(file.name, "timestamp.json");
        assert_eq!(state.timestamp.record.version.get(), 3);
        assert_eq!(state.snapshot.record.version.get(), 2);
    }

    #[test]
    fn refuses_targets_the_client_would_refuse_and_keeps_its_state() {
        let (mut state, keys, _) = repository();
        let entry = package("acme/widget", "1.0.0");
        let wrong_bin = BinName::from_index((entry.path.bin().index() + 1) % 4096).unwrap();
        let before = state.clone();
        assert!(matches!(
            state.update_bins(
                &keys,
                &BTreeMap::from([(wrong_bin, vec![entry.clone()])]),
                now()
            ),
            Err(ProducerError::TargetInWrongBin { .. })
        ));
        let mut lying = entry.clone();
        lying.custom.version = Version::new(9, 9, 9);
        assert!(matches!(
            state.update_bins(
                &keys,
                &BTreeMap::from([(entry.path.bin(), vec![lying])]),
                now()
            ),
            Err(ProducerError::TargetIdentity { .. })
        ));
        assert!(matches!(
            state.update_bins(
                &keys,
                &BTreeMap::from([(entry.path.bin(), vec![entry.clone(), entry.clone()])]),
                now()
            ),
            Err(ProducerError::DuplicateTarget { .. })
        ));
        assert_eq!(state.snapshot, before.snapshot);
        assert_eq!(state.bins, before.bins);

        let stranger = OnlineKeys {
            timestamp: SigningKey::generate().unwrap(),
            ..keys
        };
        assert!(matches!(
            state.refresh_timestamp(&stranger, now()),
            Err(ProducerError::KeyNotInRoot {
                role: TopLevelRole::Timestamp,
                ..
            })
        ));
    }

    #[test]
    fn plans_refreshes_before_expiry() {
        let (state, _, _) = repository();
        assert_eq!(state.due_for_refresh(now()), RefreshPlan::default());
        let plan = state.due_for_refresh(now().plus(Duration::from_secs(5 * 60 * 60)));
        assert!(plan.timestamp && !plan.snapshot && !plan.targets && plan.bins.is_empty());
        let plan = state.due_for_refresh(now().plus(Duration::from_secs(61 * 24 * 60 * 60)));
        assert!(plan.timestamp && plan.snapshot && plan.targets);
        assert_eq!(plan.bins.len(), 4096);
    }
}
