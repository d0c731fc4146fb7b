//! Our fields in a target's `custom` object, under the namespaced key `plugstore`.
//!
//! ```json
//! "custom": {"plugstore": {
//!   "v": 1, "kind": "package", "plugin": "acme/widget", "version": "1.4.2",
//!   "state": "published", "plugin_kind": "wasm", "platforms": ["any"], "host": ">=2.1, <3",
//!   "capabilities": ["net.http"],
//!   "developer": {"algorithm": "ecdsa-p256-sha256", "signature": "<base64>",
//!                 "leaf_sha256": "<hex>", "chain": {"sha256": "<hex>", "length": 1834}},
//!   "published_at": 1767225600
//! }}
//! ```
//!
//! A patch carries `{"v": 1, "kind": "patch", "plugin", "version", "from", "to", "format"}`.
//!
//! The object is versioned by `v`. A client refuses a `v` it does not know rather than guess
//! at its meaning; within one `v`, fields may be added (a client ignores fields it does not
//! know), so a server can grow optional fields without locking out older hosts. Nothing here
//! is a float (canonical JSON refuses them) and every string is ASCII (so the NFC
//! normalization of tough's canonical JSON never changes a signed byte).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use plugstore_format::certs::CertFingerprint;
use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{Capability, HostCompatibility, PluginId, PluginKind, Target};
use plugstore_format::signing::SignatureAlgorithm;
use semver::Version;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::digest::Sha256;
use crate::layout::{TargetFile, TargetPath};
use crate::time::UnixTime;

/// The key of our object inside a target's `custom`.
pub const CUSTOM_KEY: &str = "plugstore";

/// The only version of our custom object this crate reads and writes.
pub const CUSTOM_SCHEMA_VERSION: u64 = 1;

/// What the store says about one target: whose it is, which version, and (for packages) the
/// facts a host needs to decide whether to install it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginTarget {
    /// The plugin; must agree with the target path.
    pub plugin: PluginId,
    /// The version the target installs; must agree with the target path.
    pub version: Version,
    /// Package or patch facts.
    pub detail: TargetDetail,
}

/// The part of [`PluginTarget`] that depends on the kind of target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TargetDetail {
    /// A full package.
    Package(PackageTarget),
    /// A delta patch from an older package.
    Patch(PatchTarget),
}

/// Where a version is in its life cycle, as the store published it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    /// Offered as an update.
    Published,
    /// Withdrawn by its owner: still installable by digest, never offered as an update.
    Yanked,
    /// Revoked by a moderator: a host must not install it and should remove it. Blocked
    /// versions stay listed so hosts learn of the revocation from signed metadata.
    Blocked,
}

/// The facts about a full package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageTarget {
    /// Published, yanked or blocked.
    pub state: VersionState,
    /// How the entry point runs.
    pub plugin_kind: PluginKind,
    /// The platforms the package runs on.
    pub platforms: Vec<Target>,
    /// The host versions it works with.
    pub host: HostCompatibility,
    /// What it asks the host to allow.
    pub capabilities: Vec<Capability>,
    /// The developer's signature and where to find the signer's certificates.
    pub developer: DeveloperSignature,
    /// When the store published this version.
    pub published_at: UnixTime,
}

/// The developer's signature over the package's `SigningPayload`, and a reference to the
/// certificate chain that vouches for the key.
///
/// The chain is carried by reference, as a content-addressed blob: inline chains would make
/// bins about three times larger, and every version signed with one certificate shares the
/// same chain blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeveloperSignature {
    /// How the signature was made.
    pub algorithm: SignatureAlgorithm,
    /// The signature bytes (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub signature: Vec<u8>,
    /// SHA-256 fingerprint of the leaf certificate (bare hex in JSON).
    #[serde(with = "bare_hex_fingerprint")]
    pub leaf_sha256: CertFingerprint,
    /// The chain blob (`/blobs/sha256/{hex}`), checked against this length and hash.
    pub chain: ChainReference,
}

/// A content-addressed blob holding a certificate chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReference {
    /// SHA-256 of the blob.
    pub sha256: Sha256,
    /// Its length in bytes.
    pub length: u64,
}

/// The facts about a delta patch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchTarget {
    /// Digest of the installed package the patch applies to; must agree with the path.
    #[serde(with = "bare_hex_package")]
    pub from: PackageDigest,
    /// Digest of the package the patch produces; the host checks the result against it (and
    /// against the package target's hash) and falls back to the full download otherwise.
    #[serde(with = "bare_hex_package")]
    pub to: PackageDigest,
    /// The delta format id.
    pub format: String,
}

impl PluginTarget {
    /// The package facts, if this is a package target.
    pub fn package(&self) -> Option<&PackageTarget> {
        match &self.detail {
            TargetDetail::Package(package) => Some(package),
            TargetDetail::Patch(_) => None,
        }
    }

    /// The patch facts, if this is a patch target.
    pub fn patch(&self) -> Option<&PatchTarget> {
        match &self.detail {
            TargetDetail::Patch(patch) => Some(patch),
            TargetDetail::Package(_) => None,
        }
    }

    /// Reads our object from a target's `custom` map.
    pub fn from_custom(custom: &HashMap<String, Value>) -> Result<Self, CustomFieldError> {
        let object = custom.get(CUSTOM_KEY).ok_or(CustomFieldError::Missing)?;
        let schema = object
            .get("v")
            .ok_or(CustomFieldError::MissingSchemaVersion)?;
        if schema.as_u64() != Some(CUSTOM_SCHEMA_VERSION) {
            return Err(CustomFieldError::UnsupportedSchemaVersion(
                schema.to_string(),
            ));
        }
        let wire: WireV1 = serde_json::from_value(object.clone())
            .map_err(|error| CustomFieldError::Invalid(error.to_string()))?;
        Ok(Self {
            plugin: wire.plugin,
            version: wire.version,
            detail: wire.detail,
        })
    }

    /// Our object as a target's `custom` map.
    pub fn to_custom(&self) -> Result<HashMap<String, Value>, CustomFieldError> {
        let wire = WireV1Ref {
            v: CUSTOM_SCHEMA_VERSION,
            plugin: &self.plugin,
            version: &self.version,
            detail: &self.detail,
        };
        let value = serde_json::to_value(wire)
            .map_err(|error| CustomFieldError::Invalid(error.to_string()))?;
        Ok(HashMap::from([(CUSTOM_KEY.to_owned(), value)]))
    }

    /// Checks that these fields describe the target at `path`: same plugin, same version, and
    /// a package at a package path or a patch from the path's base digest.
    pub fn check_describes(&self, path: &TargetPath) -> Result<(), IdentityMismatch> {
        if &self.plugin != path.plugin() {
            return Err(IdentityMismatch::Plugin {
                in_path: path.plugin().clone(),
                in_custom: self.plugin.clone(),
            });
        }
        if &self.version != path.version() {
            return Err(IdentityMismatch::Version {
                in_path: path.version().clone(),
                in_custom: self.version.clone(),
            });
        }
        match (path.file(), &self.detail) {
            (TargetFile::Package, TargetDetail::Package(_)) => Ok(()),
            (TargetFile::Patch { base }, TargetDetail::Patch(patch)) if base == patch.from => {
                Ok(())
            }
            (TargetFile::Patch { base }, TargetDetail::Patch(patch)) => {
                Err(IdentityMismatch::PatchBase {
                    in_path: base,
                    in_custom: patch.from,
                })
            }
            _ => Err(IdentityMismatch::Kind),
        }
    }
}

/// The identity part of our object, which every schema version keeps. A client checks it
/// against the path when it loads a bin, before (and independently of) the full parse.
#[derive(Deserialize)]
pub(crate) struct CustomIdentity {
    pub(crate) plugin: PluginId,
    pub(crate) version: Version,
}

impl CustomIdentity {
    pub(crate) fn from_custom(custom: &HashMap<String, Value>) -> Result<Self, CustomFieldError> {
        let object = custom.get(CUSTOM_KEY).ok_or(CustomFieldError::Missing)?;
        serde_json::from_value(object.clone())
            .map_err(|error| CustomFieldError::Invalid(error.to_string()))
    }
}

#[derive(Deserialize)]
struct WireV1 {
    plugin: PluginId,
    version: Version,
    #[serde(flatten)]
    detail: TargetDetail,
}

#[derive(Serialize)]
struct WireV1Ref<'a> {
    v: u64,
    plugin: &'a PluginId,
    version: &'a Version,
    #[serde(flatten)]
    detail: &'a TargetDetail,
}

/// Why a target's custom fields were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomFieldError {
    /// There is no `custom.plugstore` object.
    #[error("the target has no `custom.{CUSTOM_KEY}` object")]
    Missing,
    /// The object has no `v`.
    #[error("`custom.{CUSTOM_KEY}` has no schema version `v`")]
    MissingSchemaVersion,
    /// The object is of a schema version this crate does not read.
    #[error(
        "`custom.{CUSTOM_KEY}` has schema version {0}; this client reads version {CUSTOM_SCHEMA_VERSION} (a newer plugstore wrote it)"
    )]
    UnsupportedSchemaVersion(String),
    /// A field is missing or malformed.
    #[error("`custom.{CUSTOM_KEY}` is malformed: {0}")]
    Invalid(String),
}

/// How a target's custom fields disagree with its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityMismatch {
    /// The path is of one plugin, the custom fields name another.
    #[error("the path is of plugin {in_path}, the custom fields name {in_custom}")]
    Plugin {
        /// The plugin in the path.
        in_path: PluginId,
        /// The plugin in `custom.plugstore.plugin`.
        in_custom: PluginId,
    },
    /// The path is of one version, the custom fields name another.
    #[error("the path is of version {in_path}, the custom fields name {in_custom}")]
    Version {
        /// The version in the path.
        in_path: Version,
        /// The version in `custom.plugstore.version`.
        in_custom: Version,
    },
    /// A package path with patch fields, or the reverse.
    #[error("the path and the custom fields disagree on package or patch")]
    Kind,
    /// The patch path's base is not the custom `from`.
    #[error("the patch path starts from {in_path}, the custom fields from {in_custom}")]
    PatchBase {
        /// The base digest in the path.
        in_path: PackageDigest,
        /// `custom.plugstore.from`.
        in_custom: PackageDigest,
    },
}

mod base64_bytes {
    use super::*;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Digests inside our object are bare hex: the field name already says SHA-256, and it is the
/// spelling of the path's `from-{hex}` and of blob keys.
mod bare_hex_package {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        digest: &PackageDigest,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&digest.to_hex())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<PackageDigest, D::Error> {
        Sha256::deserialize(deserializer).map(PackageDigest::from)
    }
}

mod bare_hex_fingerprint {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        fingerprint: &CertFingerprint,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(fingerprint.as_bytes()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<CertFingerprint, D::Error> {
        Sha256::deserialize(deserializer).map(|digest| CertFingerprint(*digest.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package() -> PluginTarget {
        PluginTarget {
            plugin: "acme/widget".parse().unwrap(),
            version: Version::new(1, 4, 2),
            detail: TargetDetail::Package(PackageTarget {
                state: VersionState::Published,
                plugin_kind: PluginKind::Wasm,
                platforms: vec![Target::Any],
                host: ">=2.1, <3".parse().unwrap(),
                capabilities: vec![Capability::NetHttp, Capability::FsRead],
                developer: DeveloperSignature {
                    algorithm: SignatureAlgorithm::EcdsaP256Sha256,
                    signature: vec![0x30, 0x45, 0x02],
                    leaf_sha256: CertFingerprint([7; 32]),
                    chain: ChainReference {
                        sha256: Sha256::of(b"chain"),
                        length: 1834,
                    },
                },
                published_at: UnixTime::from_seconds(1_767_225_600),
            }),
        }
    }

    #[test]
    fn round_trips_in_the_documented_shape() {
        let target = package();
        let custom = target.to_custom().unwrap();
        let object = &custom[CUSTOM_KEY];
        assert_eq!(object["v"], 1);
        assert_eq!(object["kind"], "package");
        assert_eq!(object["plugin"], "acme/widget");
        assert_eq!(object["state"], "published");
        assert_eq!(object["developer"]["signature"], "MEUC");
        assert_eq!(object["developer"]["leaf_sha256"], "07".repeat(32));
        assert_eq!(object["published_at"], 1_767_225_600);
        assert_eq!(PluginTarget::from_custom(&custom).unwrap(), target);
    }

    #[test]
    fn patches_round_trip() {
        let target = PluginTarget {
            plugin: "acme/widget".parse().unwrap(),
            version: Version::new(1, 4, 2),
            detail: TargetDetail::Patch(PatchTarget {
                from: PackageDigest::of(b"old"),
                to: PackageDigest::of(b"new"),
                format: "bsdiff-v1".to_owned(),
            }),
        };
        let custom = target.to_custom().unwrap();
        assert_eq!(
            custom[CUSTOM_KEY]["from"],
            PackageDigest::of(b"old").to_hex()
        );
        assert_eq!(PluginTarget::from_custom(&custom).unwrap(), target);
    }

    #[test]
    fn refuses_unknown_schema_versions_and_tolerates_new_fields() {
        let mut custom = package().to_custom().unwrap();
        custom.get_mut(CUSTOM_KEY).unwrap()["added_later"] = Value::from("x");
        assert!(PluginTarget::from_custom(&custom).is_ok());
        custom.get_mut(CUSTOM_KEY).unwrap()["v"] = Value::from(2);
        assert_eq!(
            PluginTarget::from_custom(&custom),
            Err(CustomFieldError::UnsupportedSchemaVersion("2".to_owned()))
        );
        assert_eq!(
            PluginTarget::from_custom(&HashMap::new()),
            Err(CustomFieldError::Missing)
        );
    }

    #[test]
    fn checks_that_it_describes_the_path() {
        let target = package();
        let right = TargetPath::package(target.plugin.clone(), target.version.clone());
        assert_eq!(target.check_describes(&right), Ok(()));
        let other_plugin =
            TargetPath::package("acme/gadget".parse().unwrap(), Version::new(1, 4, 2));
        assert!(matches!(
            target.check_describes(&other_plugin),
            Err(IdentityMismatch::Plugin { .. })
        ));
        let patch_path = TargetPath::patch(
            target.plugin.clone(),
            target.version.clone(),
            PackageDigest::of(b"old"),
        );
        assert_eq!(
            target.check_describes(&patch_path),
            Err(IdentityMismatch::Kind)
        );
    }
}
