//! The client: fetches metadata through the caller's transport and verifies it in the named
//! steps of TUF 1.0 §5.3–5.6, then answers lookups for the plugins the host asks about,
//! loading only their bins.
//!
//! ```text
//! TrustedState::new(pinned root)
//!   update_root       N+1.root.json until not found; each signed by root N and by itself
//!   update_timestamp  timestamp.json: signatures, no rollback, not expired
//!   update_snapshot   the version the timestamp names: length, hash, signatures, version,
//!                     no role rolled back, not expired
//!   update_targets    the version the snapshot names: signatures, version, delegations to
//!                     the bins only, not expired
//! targets_for_plugin / target_info / target
//!                     the plugin's bin only, at the version the snapshot names: the
//!                     delegation's keys, version, expiry, every path inside the delegation
//! VerifiedTarget::check / reader
//!                     length and SHA-256 of the downloaded bytes
//! ```
//!
//! Nothing is trusted before the step that checks it, each refusal is its own
//! [`VerificationError`] variant, and time is passed in.

use std::collections::HashMap;
use std::io::{self, Read};

use aws_lc_rs::digest::{Context, SHA256};
use plugstore_format::manifest::PluginId;
use semver::Version;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{Metafile, RoleType, Snapshot, Targets, Timestamp};

use crate::custom::{CustomIdentity, IdentityMismatch, PluginTarget, VersionState};
use crate::delegations::TopLevelTargets;
use crate::digest::Sha256;
use crate::envelope::{self, Envelope, malformed};
use crate::error::{RoleName, VerificationError};
use crate::layout::{BinName, Shard, TargetPath, path_matches_pattern};
use crate::root::{TopLevelRole, VerifiedRoot};
use crate::time::UnixTime;

/// Largest root file accepted. A root lists a handful of keys (about 3 KiB with five P-256
/// keys); this leaves room for a hundred keys of any type and still bounds what a mirror can
/// make a client read before any signature is checked.
pub const MAX_ROOT_BYTES: u64 = 512 * 1024;

/// Largest timestamp accepted. A timestamp names one snapshot and is under 1 KiB; it is
/// fetched on every refresh, before anything pins its length, so its cap is the one that
/// matters most against endless data.
pub const MAX_TIMESTAMP_BYTES: u64 = 16 * 1024;

/// Largest snapshot accepted. It lists every bin: about 170 KiB with 4096 bins; 8 MiB leaves
/// room for a split into 65,536 bins. The timestamp's signed length is used when smaller.
pub const MAX_SNAPSHOT_BYTES: u64 = 8 * 1024 * 1024;

/// Largest top-level targets accepted. It delegates to every bin: about 820 KiB with 4096
/// bins. The snapshot's signed length is used when smaller.
pub const MAX_TARGETS_BYTES: u64 = 8 * 1024 * 1024;

/// Largest bin accepted. A bin holds about 24 plugins at 100k plugins (about 190 KiB); 16 MiB
/// leaves a publisher with thousands of versions in one bin room before its neighbours are
/// locked out. The snapshot's signed length is used when smaller.
pub const MAX_BIN_BYTES: u64 = 16 * 1024 * 1024;

/// Most root versions followed in one update. A root rotates a few times a year; a chain
/// longer than this is more likely an attack trying to keep the client busy.
pub const MAX_ROOT_ROTATIONS: u64 = 32;

/// A time before every expiry, for checking saved metadata without its expiry.
const BEFORE_ANY_EXPIRY: UnixTime = UnixTime::from_seconds(i64::MIN);

/// The caller's transport for metadata files.
///
/// `name` is a file name relative to the repository's metadata base (`3.root.json`,
/// `timestamp.json`, `12.bin-3f2.json`). The implementation enforces timeouts and a minimum
/// transfer rate (slow retrieval) and should stop reading after `max_len` bytes; the client
/// refuses anything longer in any case (endless data).
pub trait Fetch {
    /// Fetches `name`, returning at most `max_len` bytes.
    fn fetch(&mut self, name: &str, max_len: u64) -> Result<Vec<u8>, FetchError>;
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The file does not exist (HTTP 403, 404 or 410). For `N.root.json` this ends the root
    /// chain; for any other file it fails the update.
    #[error("not found")]
    NotFound,
    /// Anything else (network, timeout, transfer too slow): fails the update.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// What a timestamp or snapshot says about one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileClaim {
    version: u64,
    length: Option<u64>,
    sha256: Option<Sha256>,
}

impl FileClaim {
    fn read(file: &str, metafile: &Metafile) -> Result<Self, VerificationError> {
        let sha256 = match &metafile.hashes {
            Some(hashes) => Some(
                Sha256::from_slice(&hashes.sha256)
                    .ok_or_else(|| malformed(file, "a sha256 that is not 32 bytes"))?,
            ),
            None => None,
        };
        Ok(Self {
            version: metafile.version.get(),
            length: metafile.length,
            sha256,
        })
    }
}

#[derive(Clone, Debug)]
struct TrustedTimestamp {
    bytes: Vec<u8>,
    version: u64,
    expires: UnixTime,
    snapshot: FileClaim,
}

#[derive(Clone, Debug)]
struct TrustedSnapshot {
    bytes: Vec<u8>,
    version: u64,
    expires: UnixTime,
    targets: FileClaim,
    bins: HashMap<BinName, FileClaim>,
}

#[derive(Clone, Debug)]
struct BinDelegation {
    keyids: Vec<Decoded<Hex>>,
    threshold: u64,
    patterns: Vec<String>,
}

#[derive(Clone, Debug)]
struct TrustedTargets {
    bytes: Vec<u8>,
    version: u64,
    expires: UnixTime,
    keys: HashMap<Decoded<Hex>, Key>,
    bins: HashMap<BinName, BinDelegation>,
}

#[derive(Clone, Debug)]
struct BinTarget {
    path: TargetPath,
    length: u64,
    sha256: Sha256,
    custom: HashMap<String, serde_json::Value>,
}

#[derive(Clone, Debug)]
struct TrustedBin {
    version: u64,
    expires: UnixTime,
    targets: HashMap<String, BinTarget>,
}

/// What a client trusts: a root, and the timestamp, snapshot, top-level targets and bins it
/// has verified since.
#[derive(Clone, Debug)]
pub struct TrustedState {
    root: VerifiedRoot,
    /// The roots `root` was reached from through [`TrustedState::update_root`], oldest first.
    /// They are saved with it: a restart follows the saved chain from its pinned root one
    /// version at a time, and a missing link would leave it checking saved roles against an
    /// older root's keys.
    followed_roots: Vec<VerifiedRoot>,
    timestamp: Option<TrustedTimestamp>,
    snapshot: Option<TrustedSnapshot>,
    targets: Option<TrustedTargets>,
    bins: HashMap<BinName, TrustedBin>,
}

impl TrustedState {
    /// Starts from a root the host trusts out of band (shipped with the application, or the
    /// newest one it stored after verifying it). See [`VerifiedRoot::from_pinned`].
    pub fn new(pinned_root: &[u8]) -> Result<Self, VerificationError> {
        Ok(Self::from_root(VerifiedRoot::from_pinned(pinned_root)?))
    }

    /// Starts from an already verified root.
    pub fn from_root(root: VerifiedRoot) -> Self {
        Self {
            root,
            followed_roots: Vec::new(),
            timestamp: None,
            snapshot: None,
            targets: None,
            bins: HashMap::new(),
        }
    }

    /// The trusted root (to store it after an update, so the next start begins there).
    pub fn root(&self) -> &VerifiedRoot {
        &self.root
    }

    /// The version of the newest snapshot verified, once one is.
    pub fn snapshot_version(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|snapshot| snapshot.version)
    }

    /// The verified files a host should save after an update, by file name, in the order to
    /// write them: every root of the chain this state followed (oldest first, ending with the
    /// trusted root), then the top-level targets, the snapshot and last the timestamp.
    /// Restoring them with [`TrustedState::restore`] keeps the rollback protection across
    /// restarts. Bins are not included: they are fetched again on demand, pinned by the
    /// snapshot's versions.
    ///
    /// The order is what keeps a crash part-way through a save harmless, as long as each file
    /// is replaced atomically and no old file is removed before the last is written: until
    /// the timestamp is replaced, the old timestamp still names the old snapshot, which
    /// names the old targets, all still on disk. (Written timestamp first, a crash would
    /// leave a timestamp naming a snapshot that is not there, and a restore would trust the
    /// timestamp alone, with no snapshot to check the next one's targets version against.)
    pub fn saved_files(&self) -> Vec<(String, &[u8])> {
        let mut files: Vec<(String, &[u8])> = self
            .followed_roots
            .iter()
            .chain(std::iter::once(&self.root))
            .map(|root| (root.file_name(), root.bytes()))
            .collect();
        if let Some(targets) = &self.targets {
            files.push((RoleName::Targets.file_name(targets.version), &targets.bytes));
        }
        if let Some(snapshot) = &self.snapshot {
            files.push((
                RoleName::Snapshot.file_name(snapshot.version),
                &snapshot.bytes,
            ));
        }
        if let Some(timestamp) = &self.timestamp {
            files.push((RoleName::Timestamp.file_name(0), &timestamp.bytes));
        }
        files
    }

    /// Restores a state from files saved with [`TrustedState::saved_files`]: `root` is the
    /// root the saved roles were verified under (the newest saved one, unless a save was cut
    /// short after writing a newer root), and `saved` serves the other saved files by name. To start from a newer root than that, restore, then
    /// [`TrustedState::adopt_root`].
    ///
    /// Each file goes through the same steps as from the network, except the expiry check:
    /// an expired timestamp still tells which versions a mirror may no longer offer. Lookups
    /// refuse expired metadata until the next [`TrustedState::refresh`]. A saved file that
    /// is missing ends the restore there (a first run); one that fails a check is an error,
    /// never a silent reason to skip the rollback checks.
    pub fn restore<F: Fetch + ?Sized>(
        root: &[u8],
        saved: &mut F,
    ) -> Result<Self, VerificationError> {
        let mut state = Self::new(root)?;
        let restored = state
            .update_timestamp(saved, BEFORE_ANY_EXPIRY)
            .and_then(|()| state.update_snapshot(saved, BEFORE_ANY_EXPIRY))
            .and_then(|()| state.update_targets(saved, BEFORE_ANY_EXPIRY));
        match restored {
            Ok(())
            | Err(VerificationError::Fetch {
                source: FetchError::NotFound,
                ..
            }) => {}
            Err(error) => return Err(error),
        }
        Ok(state)
    }

    /// Runs the update steps in order: root, timestamp, snapshot, top-level targets. Bins are
    /// loaded later, on demand.
    pub fn refresh<F: Fetch + ?Sized>(
        &mut self,
        fetch: &mut F,
        now: UnixTime,
    ) -> Result<(), VerificationError> {
        self.update_root(fetch, now)?;
        self.update_timestamp(fetch, now)?;
        self.update_snapshot(fetch, now)?;
        self.update_targets(fetch, now)
    }

    /// §5.3: follows the root chain. Fetches `N+1.root.json` until the fetcher reports
    /// [`FetchError::NotFound`]; each must be signed by a threshold of root N and of itself
    /// and be version N+1 (and is trusted as soon as it is verified). Then the final root must
    /// not be expired. When a rotation changes the timestamp or snapshot keys, the trusted
    /// timestamp and snapshot are dropped (so a fast-forward attack with the old keys cannot
    /// lock the client out); when it changes the targets keys, the targets and bins are.
    pub fn update_root<F: Fetch + ?Sized>(
        &mut self,
        fetch: &mut F,
        now: UnixTime,
    ) -> Result<(), VerificationError> {
        let mut rotations = 0;
        loop {
            let file = RoleName::Root.file_name(self.root.version() + 1);
            let bytes = match fetch.fetch(&file, MAX_ROOT_BYTES) {
                Ok(bytes) => bytes,
                Err(FetchError::NotFound) => break,
                Err(source) => return Err(VerificationError::Fetch { file, source }),
            };
            check_size(&file, &bytes, MAX_ROOT_BYTES)?;
            if rotations == MAX_ROOT_ROTATIONS {
                return Err(VerificationError::TooManyRootRotations {
                    limit: MAX_ROOT_ROTATIONS,
                });
            }
            let next = self.root.verify_successor(&bytes)?;
            self.forget_rotated_roles(&next);
            self.followed_roots
                .push(std::mem::replace(&mut self.root, next));
            rotations += 1;
        }
        check_expiry(RoleName::Root, self.root.expires(), now)
    }

    /// Moves to `root`, a root the caller trusts out of band and newer than the trusted one:
    /// typically a pinned root the application ships after the store rotated keys, while the
    /// saved state was verified under an older root. As when a rotation is followed, the
    /// roles whose keys `root` changed are dropped and the others kept; a kept role was
    /// verified with the same keys and threshold `root` assigns it, so it stays trusted.
    /// Adopting the trusted root itself changes nothing; any other root that is not newer is
    /// refused, as the root chain never goes back.
    pub fn adopt_root(&mut self, root: VerifiedRoot) -> Result<(), VerificationError> {
        if root.bytes() == self.root.bytes() {
            return Ok(());
        }
        if root.version() <= self.root.version() {
            return Err(VerificationError::Rollback {
                role: RoleName::Root,
                trusted: self.root.version(),
                offered: root.version(),
            });
        }
        self.forget_rotated_roles(&root);
        self.root = root;
        Ok(())
    }

    /// §5.4: fetches `timestamp.json` (at most [`MAX_TIMESTAMP_BYTES`]) and checks the
    /// root's timestamp keys signed it, that neither its version nor the snapshot version it
    /// names is below the trusted ones (rollback), and that it has not expired (freeze).
    pub fn update_timestamp<F: Fetch + ?Sized>(
        &mut self,
        fetch: &mut F,
        now: UnixTime,
    ) -> Result<(), VerificationError> {
        let file = RoleName::Timestamp.file_name(0);
        let bytes = fetch_limited(fetch, &file, MAX_TIMESTAMP_BYTES)?;
        let envelope = Envelope::parse(&file, &bytes)?;
        self.root.check_role(RoleType::Timestamp, &envelope)?;
        let timestamp: Timestamp = envelope.read_signed()?;
        let listed = timestamp.meta.get(&RoleName::Snapshot.meta_key()).ok_or(
            VerificationError::NotListed {
                role: RoleName::Snapshot,
                listed_in: RoleName::Timestamp,
            },
        )?;
        let offered = TrustedTimestamp {
            bytes,
            version: timestamp.version.get(),
            expires: UnixTime::from_jiff(timestamp.expires),
            snapshot: FileClaim::read(&file, listed)?,
        };
        if let Some(trusted) = &self.timestamp {
            check_not_older(RoleName::Timestamp, trusted.version, offered.version)?;
            check_not_older(
                RoleName::Snapshot,
                trusted.snapshot.version,
                offered.snapshot.version,
            )?;
            if offered.version == trusted.version {
                // Nothing new: keep what was verified first, but it must still be fresh.
                return check_expiry(RoleName::Timestamp, trusted.expires, now);
            }
        }
        check_expiry(RoleName::Timestamp, offered.expires, now)?;
        self.timestamp = Some(offered);
        Ok(())
    }

    /// §5.5: fetches the snapshot version the timestamp names (unless it is the trusted one),
    /// at most its signed length; checks its length and hash against the timestamp, the
    /// root's snapshot keys, that its version is the one the timestamp names (mix-and-match),
    /// that every role the trusted snapshot lists is still listed at no lower version
    /// (rollback), and that it has not expired.
    pub fn update_snapshot<F: Fetch + ?Sized>(
        &mut self,
        fetch: &mut F,
        now: UnixTime,
    ) -> Result<(), VerificationError> {
        let claim = self
            .timestamp
            .as_ref()
            .ok_or(VerificationError::NotLoaded {
                role: RoleName::Timestamp,
            })?
            .snapshot;
        if let Some(trusted) = &self.snapshot
            && trusted.version == claim.version
        {
            return check_expiry(RoleName::Snapshot, trusted.expires, now);
        }
        let file = RoleName::Snapshot.file_name(claim.version);
        let bytes = fetch_claimed(fetch, &file, claim, MAX_SNAPSHOT_BYTES)?;
        let envelope = Envelope::parse(&file, &bytes)?;
        self.root.check_role(RoleType::Snapshot, &envelope)?;
        let snapshot: Snapshot = envelope.read_signed()?;
        check_version_named(
            RoleName::Snapshot,
            RoleName::Timestamp,
            claim.version,
            snapshot.version.get(),
        )?;
        let offered = read_snapshot(&file, &snapshot, bytes)?;
        if let Some(trusted) = &self.snapshot {
            check_no_role_rolled_back(trusted, &offered)?;
        }
        check_expiry(RoleName::Snapshot, offered.expires, now)?;
        self.snapshot = Some(offered);
        Ok(())
    }

    /// §5.6 for the top-level targets: fetches the version the snapshot names (unless it is
    /// the trusted one), checks length and hash where the snapshot gives them, the root's
    /// targets keys, the version (mix-and-match) and expiry, and that it only delegates, to
    /// bins, with terminating delegations and no key listed twice.
    pub fn update_targets<F: Fetch + ?Sized>(
        &mut self,
        fetch: &mut F,
        now: UnixTime,
    ) -> Result<(), VerificationError> {
        let claim = self
            .snapshot
            .as_ref()
            .ok_or(VerificationError::NotLoaded {
                role: RoleName::Snapshot,
            })?
            .targets;
        if let Some(trusted) = &self.targets
            && trusted.version == claim.version
        {
            return check_expiry(RoleName::Targets, trusted.expires, now);
        }
        let file = RoleName::Targets.file_name(claim.version);
        let bytes = fetch_claimed(fetch, &file, claim, MAX_TARGETS_BYTES)?;
        let envelope = Envelope::parse(&file, &bytes)?;
        self.root.check_role(RoleType::Targets, &envelope)?;
        let targets: TopLevelTargets = envelope.read_signed()?;
        check_version_named(
            RoleName::Targets,
            RoleName::Snapshot,
            claim.version,
            targets.version.get(),
        )?;
        let expires = UnixTime::from_jiff(targets.expires);
        check_expiry(RoleName::Targets, expires, now)?;
        let offered = read_delegations(&file, targets, expires, bytes)?;
        // Bins were verified with the previous delegations' keys; verify them again.
        self.bins.clear();
        self.targets = Some(offered);
        Ok(())
    }

    /// Every target (packages and patches, in every state) of `plugin`, from its bin. This is
    /// how a host learns the newest version from signed metadata; only this plugin's bin is
    /// fetched (or reused when the snapshot names the version already verified).
    pub fn targets_for_plugin<F: Fetch + ?Sized>(
        &mut self,
        fetch: &mut F,
        plugin: &PluginId,
        now: UnixTime,
    ) -> Result<Vec<VerifiedTarget>, VerificationError> {
        let bin = self.load_bin(fetch, Shard::of(plugin).bin(), now)?;
        let mut found = bin
            .targets
            .values()
            .filter(|target| target.path.plugin() == plugin)
            .map(verified_target)
            .collect::<Result<Vec<_>, _>>()?;
        found.sort_by(|a, b| {
            (a.path.version(), a.path.to_string()).cmp(&(b.path.version(), b.path.to_string()))
        });
        Ok(found)
    }

    /// The signed entry of the full package of `plugin` at `version`.
    pub fn target_info<F: Fetch + ?Sized>(
        &mut self,
        fetch: &mut F,
        plugin: &PluginId,
        version: &Version,
        now: UnixTime,
    ) -> Result<VerifiedTarget, VerificationError> {
        let path = TargetPath::package(plugin.clone(), version.clone());
        self.target(fetch, &path, now)
    }

    /// The signed entry for `path` (a package or a patch), from its bin.
    pub fn target<F: Fetch + ?Sized>(
        &mut self,
        fetch: &mut F,
        path: &TargetPath,
        now: UnixTime,
    ) -> Result<VerifiedTarget, VerificationError> {
        let text = path.to_string();
        let bin = self.load_bin(fetch, path.bin(), now)?;
        let target = bin
            .targets
            .get(&text)
            .ok_or(VerificationError::UnknownTarget { path: text })?;
        verified_target(target)
    }

    /// Checks downloaded `bytes` against the signed entry for `path`: the length, then the
    /// SHA-256.
    pub fn verify_target<F: Fetch + ?Sized>(
        &mut self,
        fetch: &mut F,
        path: &TargetPath,
        bytes: &[u8],
        now: UnixTime,
    ) -> Result<VerifiedTarget, VerificationError> {
        let target = self.target(fetch, path, now)?;
        target.check(bytes)?;
        Ok(target)
    }

    /// §5.6 for one bin: at the version the snapshot names, at most its signed length,
    /// signed by a threshold of the keys the top-level targets delegates the bin to, not
    /// expired, delegating nothing further, and every target inside the delegation and
    /// described by custom fields of the same plugin and version.
    fn load_bin<F: Fetch + ?Sized>(
        &mut self,
        fetch: &mut F,
        bin: BinName,
        now: UnixTime,
    ) -> Result<&TrustedBin, VerificationError> {
        self.check_fresh(now)?;
        let role = RoleName::Bin(bin);
        let (Some(snapshot), Some(targets)) = (&self.snapshot, &self.targets) else {
            return Err(VerificationError::NotLoaded {
                role: RoleName::Targets,
            });
        };
        let claim = *snapshot
            .bins
            .get(&bin)
            .ok_or(VerificationError::NotListed {
                role,
                listed_in: RoleName::Snapshot,
            })?;
        let cached = self
            .bins
            .get(&bin)
            .is_some_and(|trusted| trusted.version == claim.version);
        if !cached {
            let delegation = targets.bins.get(&bin).ok_or(VerificationError::NotListed {
                role,
                listed_in: RoleName::Targets,
            })?;
            let file = role.file_name(claim.version);
            let bytes = fetch_claimed(fetch, &file, claim, MAX_BIN_BYTES)?;
            let envelope = Envelope::parse(&file, &bytes)?;
            envelope.check_threshold(
                role,
                &targets.keys,
                &delegation.keyids,
                delegation.threshold,
            )?;
            let signed: Targets = envelope.read_signed()?;
            check_version_named(
                role,
                RoleName::Snapshot,
                claim.version,
                signed.version.get(),
            )?;
            let trusted = read_bin(bin, delegation, signed)?;
            self.bins.insert(bin, trusted);
        }
        let trusted = self
            .bins
            .get(&bin)
            .ok_or(VerificationError::NotLoaded { role })?;
        check_expiry(role, trusted.expires, now)?;
        Ok(trusted)
    }

    /// Lookups happen after the update, possibly much later: everything they rely on must
    /// still be fresh at `now`, or a frozen client would keep answering from old metadata.
    fn check_fresh(&self, now: UnixTime) -> Result<(), VerificationError> {
        check_expiry(RoleName::Root, self.root.expires(), now)?;
        let timestamp = self
            .timestamp
            .as_ref()
            .ok_or(VerificationError::NotLoaded {
                role: RoleName::Timestamp,
            })?;
        check_expiry(RoleName::Timestamp, timestamp.expires, now)?;
        let snapshot = self.snapshot.as_ref().ok_or(VerificationError::NotLoaded {
            role: RoleName::Snapshot,
        })?;
        check_expiry(RoleName::Snapshot, snapshot.expires, now)?;
        let targets = self.targets.as_ref().ok_or(VerificationError::NotLoaded {
            role: RoleName::Targets,
        })?;
        check_expiry(RoleName::Targets, targets.expires, now)
    }

    fn forget_rotated_roles(&mut self, next: &VerifiedRoot) {
        let changed = |role| self.root.role_key_ids(role) != next.role_key_ids(role);
        if changed(TopLevelRole::Timestamp) || changed(TopLevelRole::Snapshot) {
            self.timestamp = None;
            self.snapshot = None;
        }
        if changed(TopLevelRole::Targets) {
            self.targets = None;
            self.bins.clear();
        }
    }
}

/// A target entry from signed metadata: where it is, its length and hash, and our fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTarget {
    path: TargetPath,
    length: u64,
    sha256: Sha256,
    info: PluginTarget,
}

impl VerifiedTarget {
    /// The target path.
    pub fn path(&self) -> &TargetPath {
        &self.path
    }

    /// The signed length: a downloader stops reading here.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The signed SHA-256 (for a package, its `PackageDigest`; also its blob address).
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }

    /// Our custom fields.
    pub fn info(&self) -> &PluginTarget {
        &self.info
    }

    /// The version's state (published, yanked, blocked) for a package; `None` for a patch.
    /// A host must never install a blocked version and should remove it.
    pub fn state(&self) -> Option<VersionState> {
        self.info.package().map(|package| package.state)
    }

    /// Checks complete downloaded bytes: the length, then the SHA-256.
    pub fn check(&self, bytes: &[u8]) -> Result<(), VerificationError> {
        let actual = bytes.len() as u64;
        if actual != self.length {
            return Err(VerificationError::LengthMismatch {
                file: self.path.to_string(),
                expected: self.length,
                actual,
            });
        }
        check_hash(&self.path.to_string(), self.sha256, Sha256::of(bytes))
    }

    /// Wraps a download stream so that it yields at most the signed length and fails (with an
    /// [`io::ErrorKind::InvalidData`] error carrying a [`VerificationError`]) instead of
    /// returning the last bytes when the SHA-256 does not match, when the stream ends early,
    /// or when it goes on past the signed length.
    pub fn reader<R: Read>(&self, inner: R) -> VerifyingReader<R> {
        VerifyingReader {
            inner,
            path: self.path.to_string(),
            length: self.length,
            expected: self.sha256,
            read: 0,
            digest: Context::new(&SHA256),
            verified: false,
        }
    }
}

/// A reader that checks a target's signed length and SHA-256 as it streams (see
/// [`VerifiedTarget::reader`]).
pub struct VerifyingReader<R> {
    inner: R,
    path: String,
    length: u64,
    expected: Sha256,
    read: u64,
    digest: Context,
    verified: bool,
}

impl<R> std::fmt::Debug for VerifyingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingReader")
            .field("path", &self.path)
            .field("length", &self.length)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl<R> VerifyingReader<R> {
    fn verify_digest(&mut self) -> io::Result<()> {
        let digest = self.digest.clone().finish();
        let actual = Sha256::from_slice(digest.as_ref())
            .ok_or_else(|| invalid_data(malformed(&self.path, "SHA-256 of unexpected length")))?;
        check_hash(&self.path, self.expected, actual).map_err(invalid_data)?;
        self.verified = true;
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.verified && self.read == self.length {
            // An empty target: nothing to read, but the hash must still be checked.
            self.verify_digest()?;
        }
        if self.verified {
            // The signed length is reached; anything more is endless data.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(invalid_data(VerificationError::TooLarge {
                    file: self.path.clone(),
                    limit: self.length,
                    received: self.length + 1,
                })),
            };
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let wanted = usize::try_from(self.length - self.read)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let count = self.inner.read(&mut buf[..wanted])?;
        if count == 0 {
            return Err(invalid_data(VerificationError::LengthMismatch {
                file: self.path.clone(),
                expected: self.length,
                actual: self.read,
            }));
        }
        self.digest.update(&buf[..count]);
        self.read += count as u64;
        if self.read == self.length {
            // Verify before handing out the last bytes, so no caller ever holds a complete,
            // unverified package.
            self.verify_digest()?;
        }
        Ok(count)
    }
}

fn invalid_data(error: VerificationError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn verified_target(target: &BinTarget) -> Result<VerifiedTarget, VerificationError> {
    let path = target.path.to_string();
    let info = PluginTarget::from_custom(&target.custom).map_err(|source| {
        VerificationError::BadCustom {
            path: path.clone(),
            source,
        }
    })?;
    info.check_describes(&target.path)
        .map_err(|mismatch| VerificationError::TargetIdentity { path, mismatch })?;
    Ok(VerifiedTarget {
        path: target.path.clone(),
        length: target.length,
        sha256: target.sha256,
        info,
    })
}

fn read_snapshot(
    file: &str,
    snapshot: &Snapshot,
    bytes: Vec<u8>,
) -> Result<TrustedSnapshot, VerificationError> {
    let mut targets = None;
    let mut bins = HashMap::with_capacity(snapshot.meta.len());
    for (key, metafile) in &snapshot.meta {
        let claim = FileClaim::read(file, metafile)?;
        if *key == RoleName::Targets.meta_key() {
            targets = Some(claim);
            continue;
        }
        // This repository has a fixed shape; a role we do not know is one we could not
        // protect against rollback, so the snapshot is refused rather than half-read.
        let bin = key
            .strip_suffix(".json")
            .and_then(|name| name.parse::<BinName>().ok())
            .ok_or_else(|| {
                malformed(
                    file,
                    format!("lists `{key}`, which is not a role of this repository"),
                )
            })?;
        bins.insert(bin, claim);
    }
    Ok(TrustedSnapshot {
        bytes,
        version: snapshot.version.get(),
        expires: UnixTime::from_jiff(snapshot.expires),
        targets: targets.ok_or(VerificationError::NotListed {
            role: RoleName::Targets,
            listed_in: RoleName::Snapshot,
        })?,
        bins,
    })
}

fn check_no_role_rolled_back(
    trusted: &TrustedSnapshot,
    offered: &TrustedSnapshot,
) -> Result<(), VerificationError> {
    check_not_older(
        RoleName::Targets,
        trusted.targets.version,
        offered.targets.version,
    )?;
    for (bin, old) in &trusted.bins {
        let role = RoleName::Bin(*bin);
        let new = offered
            .bins
            .get(bin)
            .ok_or(VerificationError::RoleDropped { role })?;
        check_not_older(role, old.version, new.version)?;
    }
    Ok(())
}

fn read_delegations(
    file: &str,
    targets: TopLevelTargets,
    expires: UnixTime,
    bytes: Vec<u8>,
) -> Result<TrustedTargets, VerificationError> {
    let unexpected = |reason: String| VerificationError::UnexpectedTargets { reason };
    if !targets.targets.is_empty() {
        return Err(unexpected(format!(
            "lists {} target(s) of its own; it must only delegate to the bins",
            targets.targets.len()
        )));
    }
    let delegations = targets
        .delegations
        .ok_or_else(|| unexpected("delegates to no bins".to_owned()))?;
    for (id, key) in &delegations.keys {
        let computed = key.key_id().map_err(|error| malformed(file, error))?;
        if *id != computed {
            return Err(malformed(
                file,
                format!("key id {} is not the id of its key", hex::encode(id)),
            ));
        }
    }
    envelope::check_distinct_keys(RoleName::Targets, &delegations.keys)?;
    let mut bins = HashMap::with_capacity(delegations.roles.len());
    for role in delegations.roles {
        let bin: BinName = role
            .name
            .parse()
            .map_err(|_| unexpected(format!("delegates to `{}`, which is not a bin", role.name)))?;
        if !role.terminating {
            return Err(unexpected(format!(
                "the delegation to {bin} is not terminating"
            )));
        }
        if !role.other.is_empty() {
            let fields: Vec<&String> = role.other.keys().collect();
            return Err(unexpected(format!(
                "the delegation to {bin} has fields this client does not interpret: {fields:?}"
            )));
        }
        let patterns = role
            .paths
            .ok_or_else(|| unexpected(format!("the delegation to {bin} lists no paths")))?;
        let delegation = BinDelegation {
            keyids: role.keyids,
            threshold: role.threshold.get(),
            patterns,
        };
        if bins.insert(bin, delegation).is_some() {
            return Err(unexpected(format!("delegates to {bin} twice")));
        }
    }
    Ok(TrustedTargets {
        bytes,
        version: targets.version.get(),
        expires,
        keys: delegations.keys,
        bins,
    })
}

fn read_bin(
    bin: BinName,
    delegation: &BinDelegation,
    signed: Targets,
) -> Result<TrustedBin, VerificationError> {
    let wrong = |reason: String| VerificationError::WrongDelegation { bin, reason };
    if signed
        .delegations
        .as_ref()
        .is_some_and(|delegations| !delegations.roles.is_empty())
    {
        return Err(wrong("a bin may not delegate further".to_owned()));
    }
    let mut targets = HashMap::with_capacity(signed.targets.len());
    for (name, target) in signed.targets {
        let raw = name.raw();
        if name.resolved() != raw {
            return Err(wrong(format!("`{raw}` is not a normalized path")));
        }
        let path: TargetPath = raw
            .parse()
            .map_err(|error| wrong(format!("holds a target that is not a plugin path: {error}")))?;
        if path.bin() != bin {
            return Err(wrong(format!(
                "holds {raw}, which belongs in {}",
                path.bin()
            )));
        }
        if !delegation
            .patterns
            .iter()
            .any(|pattern| path_matches_pattern(raw, pattern))
        {
            return Err(wrong(format!("holds {raw}, outside its delegated paths")));
        }
        let identity = CustomIdentity::from_custom(&target.custom).map_err(|source| {
            VerificationError::BadCustom {
                path: raw.to_owned(),
                source,
            }
        })?;
        if &identity.plugin != path.plugin() {
            return Err(VerificationError::TargetIdentity {
                path: raw.to_owned(),
                mismatch: IdentityMismatch::Plugin {
                    in_path: path.plugin().clone(),
                    in_custom: identity.plugin,
                },
            });
        }
        if &identity.version != path.version() {
            return Err(VerificationError::TargetIdentity {
                path: raw.to_owned(),
                mismatch: IdentityMismatch::Version {
                    in_path: path.version().clone(),
                    in_custom: identity.version,
                },
            });
        }
        let sha256 = Sha256::from_slice(&target.hashes.sha256)
            .ok_or_else(|| wrong(format!("{raw} has a sha256 that is not 32 bytes")))?;
        targets.insert(
            raw.to_owned(),
            BinTarget {
                path,
                length: target.length,
                sha256,
                custom: target.custom,
            },
        );
    }
    Ok(TrustedBin {
        version: signed.version.get(),
        expires: UnixTime::from_jiff(signed.expires),
        targets,
    })
}

fn fetch_limited<F: Fetch + ?Sized>(
    fetch: &mut F,
    file: &str,
    limit: u64,
) -> Result<Vec<u8>, VerificationError> {
    let bytes = fetch
        .fetch(file, limit)
        .map_err(|source| VerificationError::Fetch {
            file: file.to_owned(),
            source,
        })?;
    check_size(file, &bytes, limit)?;
    Ok(bytes)
}

/// Fetches a file whose length and hash another role may have signed: reads at most the
/// signed length (or `cap` when none is signed, refusing a signed length above `cap`), then
/// checks the length and hash.
fn fetch_claimed<F: Fetch + ?Sized>(
    fetch: &mut F,
    file: &str,
    claim: FileClaim,
    cap: u64,
) -> Result<Vec<u8>, VerificationError> {
    let limit = match claim.length {
        Some(length) if length > cap => {
            return Err(VerificationError::TooLarge {
                file: file.to_owned(),
                limit: cap,
                received: length,
            });
        }
        Some(length) => length,
        None => cap,
    };
    let bytes = fetch_limited(fetch, file, limit)?;
    if let Some(expected) = claim.length
        && bytes.len() as u64 != expected
    {
        return Err(VerificationError::LengthMismatch {
            file: file.to_owned(),
            expected,
            actual: bytes.len() as u64,
        });
    }
    if let Some(expected) = claim.sha256 {
        check_hash(file, expected, Sha256::of(&bytes))?;
    }
    Ok(bytes)
}

fn check_size(file: &str, bytes: &[u8], limit: u64) -> Result<(), VerificationError> {
    let received = bytes.len() as u64;
    if received > limit {
        return Err(VerificationError::TooLarge {
            file: file.to_owned(),
            limit,
            received,
        });
    }
    Ok(())
}

fn check_hash(file: &str, expected: Sha256, actual: Sha256) -> Result<(), VerificationError> {
    if actual != expected {
        return Err(VerificationError::HashMismatch {
            file: file.to_owned(),
            expected,
            actual,
        });
    }
    Ok(())
}

fn check_expiry(role: RoleName, expires: UnixTime, now: UnixTime) -> Result<(), VerificationError> {
    if now >= expires {
        return Err(VerificationError::Expired { role, expires });
    }
    Ok(())
}

fn check_not_older(role: RoleName, trusted: u64, offered: u64) -> Result<(), VerificationError> {
    if offered < trusted {
        return Err(VerificationError::Rollback {
            role,
            trusted,
            offered,
        });
    }
    Ok(())
}

fn check_version_named(
    role: RoleName,
    named_by: RoleName,
    expected: u64,
    offered: u64,
) -> Result<(), VerificationError> {
    if offered != expected {
        return Err(VerificationError::MixAndMatch {
            role,
            named_by,
            expected,
            offered,
        });
    }
    Ok(())
}
