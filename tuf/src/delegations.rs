//! The top-level targets role, read and written with our own small schema type.
//!
//! tough's `Targets`/`DelegatedRole` compile every `paths` pattern into a regex (globset) when
//! they are deserialized. The top-level targets role has 4096 bins with two patterns each:
//! 8192 regexes, seconds of CPU and megabytes of memory on every client start, for matching
//! that we do ourselves anyway (fixed-depth, per component). This type keeps the patterns as
//! strings. The JSON is exactly TUF's, so tough and python-tuf still read what we write.

use std::collections::HashMap;
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;

/// The `signed` object of the top-level targets role.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TopLevelTargets {
    /// Always `targets`.
    #[serde(rename = "_type")]
    pub(crate) kind: RoleTypeTargets,
    pub(crate) spec_version: String,
    pub(crate) version: NonZeroU64,
    #[serde(with = "expires_format")]
    pub(crate) expires: jiff::Timestamp,
    /// Must stay empty: the top-level role delegates everything to the bins.
    pub(crate) targets: Map<String, Value>,
    pub(crate) delegations: Option<DelegationsToBins>,
}

/// The `_type` tag, which only accepts `targets`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum RoleTypeTargets {
    /// `targets`.
    #[serde(rename = "targets")]
    Targets,
}

/// The `delegations` object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DelegationsToBins {
    pub(crate) keys: HashMap<Decoded<Hex>, Key>,
    pub(crate) roles: Vec<Delegation>,
}

/// One delegated role. Unknown members (such as `path_hash_prefixes`, which we never write)
/// are kept so that a delegation we cannot interpret is refused rather than misread.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Delegation {
    pub(crate) name: String,
    pub(crate) keyids: Vec<Decoded<Hex>>,
    pub(crate) threshold: NonZeroU64,
    #[serde(default)]
    pub(crate) paths: Option<Vec<String>>,
    pub(crate) terminating: bool,
    #[serde(flatten)]
    pub(crate) other: Map<String, Value>,
}

/// RFC 3339 in whole seconds when the value has no fraction (all we write), the same text
/// tough writes; sub-second values from other producers keep their digits.
mod expires_format {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        expires: &jiff::Timestamp,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(expires)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<jiff::Timestamp, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
