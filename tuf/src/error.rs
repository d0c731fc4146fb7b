//! Why metadata or a target was refused: one variant per check, so a host can log, count and
//! test each attack separately.

use std::fmt;

use crate::client::FetchError;
use crate::custom::{CustomFieldError, IdentityMismatch};
use crate::digest::Sha256;
use crate::keys::KeyId;
use crate::layout::BinName;
use crate::time::UnixTime;

/// A metadata role of this repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleName {
    /// `root`.
    Root,
    /// `timestamp`.
    Timestamp,
    /// `snapshot`.
    Snapshot,
    /// The top-level `targets`.
    Targets,
    /// One delegated hash bin.
    Bin(BinName),
}

impl RoleName {
    /// The key under which the snapshot (or, for the snapshot, the timestamp) lists this role.
    pub fn meta_key(self) -> String {
        format!("{self}.json")
    }

    /// The file name the repository serves this role's version `version` under: consistent
    /// snapshots (`{version}.{role}.json`), except the timestamp, which is the one mutable
    /// entry point (`timestamp.json`, whatever `version` is).
    pub fn file_name(self, version: u64) -> String {
        match self {
            Self::Timestamp => "timestamp.json".to_owned(),
            _ => format!("{version}.{self}.json"),
        }
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => f.write_str("root"),
            Self::Timestamp => f.write_str("timestamp"),
            Self::Snapshot => f.write_str("snapshot"),
            Self::Targets => f.write_str("targets"),
            Self::Bin(bin) => bin.fmt(f),
        }
    }
}

/// Why metadata, or a target checked against it, was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    /// The caller's fetcher failed (a missing file, a timeout, a transfer too slow).
    #[error("fetching {file}: {source}")]
    Fetch {
        /// The file asked for.
        file: String,
        /// What the fetcher reported.
        source: FetchError,
    },
    /// More bytes than the limit for the file, or a signed length above that limit (endless
    /// data).
    #[error("{file}: {received} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The file.
        file: String,
        /// The most this client accepts for it.
        limit: u64,
        /// What was received or announced.
        received: u64,
    },
    /// Not JSON, not the expected role, or a field of the wrong shape.
    #[error("{file} is malformed: {reason}")]
    Malformed {
        /// The file.
        file: String,
        /// The parser's explanation.
        reason: String,
    },
    /// A `spec_version` this client does not implement.
    #[error("{file} has spec_version {found}; this client implements TUF 1.x")]
    UnsupportedSpecVersion {
        /// The file.
        file: String,
        /// The version found.
        found: String,
    },
    /// Fewer valid signatures from distinct authorized keys than the threshold.
    #[error("{role}: {valid} valid signature(s) from distinct trusted keys, {threshold} required")]
    BadSignatures {
        /// The role being verified.
        role: RoleName,
        /// Signatures that verified, each public key counted once.
        valid: u64,
        /// Signatures required.
        threshold: u64,
    },
    /// A key holder (a root, or the delegations of a targets role) lists one public key under
    /// two key ids, which would let one key count twice toward a threshold.
    #[error("{holder} lists one public key under two key ids ({first} and {second})")]
    DuplicatePublicKey {
        /// `root` or `targets` (whose delegations list the key).
        holder: RoleName,
        /// One key id.
        first: KeyId,
        /// The other.
        second: KeyId,
    },
    /// A version lower than the one already trusted (rollback).
    #[error("{role}: offered version {offered} is older than the trusted version {trusted}")]
    Rollback {
        /// The role.
        role: RoleName,
        /// The version already trusted.
        trusted: u64,
        /// The version offered.
        offered: u64,
    },
    /// A role the trusted snapshot listed is missing from the new snapshot (a rollback of that
    /// role to "never existed").
    #[error("{role} was listed by the trusted snapshot and is missing from the new one")]
    RoleDropped {
        /// The role.
        role: RoleName,
    },
    /// A version other than the one the timestamp or snapshot names (mix-and-match).
    #[error("{role}: version {offered} offered, but {named_by} names version {expected}")]
    MixAndMatch {
        /// The role.
        role: RoleName,
        /// The role that names the version (timestamp or snapshot).
        named_by: RoleName,
        /// The version named.
        expected: u64,
        /// The version offered.
        offered: u64,
    },
    /// A new root that the trusted root's keys did not approve: fewer valid signatures from
    /// its root keys than its root threshold.
    #[error(
        "root {version}: {valid} valid signature(s) from the trusted root's keys, {threshold} required"
    )]
    NotSignedByPreviousRoot {
        /// The version of the new root.
        version: u64,
        /// Signatures by the trusted root's root keys that verified.
        valid: u64,
        /// The trusted root's root threshold.
        threshold: u64,
    },
    /// Root N+1 is not version N+1.
    #[error("root {expected} was requested, the file holds version {offered}")]
    RootVersion {
        /// The version requested.
        expected: u64,
        /// The version in the file.
        offered: u64,
    },
    /// More new roots than [`MAX_ROOT_ROTATIONS`](crate::client::MAX_ROOT_ROTATIONS) in one
    /// update.
    #[error("more than {limit} root rotations in one update")]
    TooManyRootRotations {
        /// The limit.
        limit: u64,
    },
    /// Metadata past its expiry (freeze).
    #[error("{role} expired at {expires}")]
    Expired {
        /// The role.
        role: RoleName,
        /// When it expired.
        expires: UnixTime,
    },
    /// A role the timestamp or snapshot should list is not listed.
    #[error("{listed_in} does not list {role}")]
    NotListed {
        /// The missing role.
        role: RoleName,
        /// Where it should be listed.
        listed_in: RoleName,
    },
    /// A file or target of another length than the signed one.
    #[error("{file}: {actual} bytes, the signed length is {expected}")]
    LengthMismatch {
        /// The file or target path.
        file: String,
        /// The signed length.
        expected: u64,
        /// The length received.
        actual: u64,
    },
    /// A file or target whose SHA-256 is not the signed one (an arbitrary package).
    #[error("{file}: SHA-256 {actual}, the signed one is {expected}")]
    HashMismatch {
        /// The file or target path.
        file: String,
        /// The signed digest.
        expected: Sha256,
        /// The digest of what was received.
        actual: Sha256,
    },
    /// The top-level targets role does something other than delegate to the bins.
    #[error("targets: {reason}")]
    UnexpectedTargets {
        /// What it does.
        reason: String,
    },
    /// A bin holds a target outside its delegation, or delegates further.
    #[error("{bin}: {reason}")]
    WrongDelegation {
        /// The bin.
        bin: BinName,
        /// What is wrong.
        reason: String,
    },
    /// A target's custom fields describe another plugin, version or kind than its path.
    #[error("{path}: {mismatch}")]
    TargetIdentity {
        /// The target path.
        path: String,
        /// How they disagree.
        mismatch: IdentityMismatch,
    },
    /// A target's custom fields are missing, malformed or of an unknown schema version.
    #[error("{path}: {source}")]
    BadCustom {
        /// The target path.
        path: String,
        /// What is wrong with them.
        source: CustomFieldError,
    },
    /// No signed entry for this path.
    #[error("{path} is not a signed target")]
    UnknownTarget {
        /// The path asked for.
        path: String,
    },
    /// A step ran before the one it depends on (e.g. a lookup before `refresh`).
    #[error("{role} is not loaded yet; run the update steps first")]
    NotLoaded {
        /// The role that is missing.
        role: RoleName,
    },
}
