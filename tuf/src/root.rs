//! The root role: building a root, collecting its signatures from offline key holders one at a
//! time, and checking a root chain (each root N+1 signed by a threshold of root N and of
//! itself).

use std::collections::HashMap;
use std::num::NonZeroU64;

use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{RoleKeys as ToughRoleKeys, RoleType, Root, Signature};

use crate::envelope::{self, Envelope, SPEC_VERSION, canonical_json, sorted_json};
use crate::error::{RoleName, VerificationError};
use crate::keys::{KeyError, KeyId, PublicKey, RoleKeys, SigningKey, TopLevelKeys};
use crate::time::{ROOT_LIFETIME, UnixTime};

/// A root that is trusted: pinned by the caller, or reached from a trusted root through a
/// verified chain.
#[derive(Clone, Debug)]
pub struct VerifiedRoot {
    bytes: Vec<u8>,
    root: Root,
}

impl VerifiedRoot {
    /// Accepts a root the caller trusts out of band (shipped with the host application, or
    /// the repository's first root). It must be a well-formed root that a threshold of its own
    /// root keys signed, and must not list one public key twice. Its expiry is not checked
    /// here: an expired pinned root is still the start of the chain to a current one.
    pub fn from_pinned(bytes: &[u8]) -> Result<Self, VerificationError> {
        let envelope = Envelope::parse("the pinned root", bytes)?;
        let root = read_root(&envelope)?;
        let verified = Self {
            bytes: bytes.to_vec(),
            root,
        };
        verified.check_signed_by_self(&envelope)?;
        Ok(verified)
    }

    /// Verifies `bytes` as the next root: signed by a threshold of this root's root keys
    /// (so the old key holders approved it) and of its own (so the new key holders can use
    /// it), with version exactly one more than this one.
    pub fn verify_successor(&self, bytes: &[u8]) -> Result<VerifiedRoot, VerificationError> {
        let expected = self.version() + 1;
        let envelope = Envelope::parse(&RoleName::Root.file_name(expected), bytes)?;
        self.check_role(RoleType::Root, &envelope)
            .map_err(|error| match error {
                VerificationError::BadSignatures {
                    valid, threshold, ..
                } => VerificationError::NotSignedByPreviousRoot {
                    version: expected,
                    valid,
                    threshold,
                },
                other => other,
            })?;
        let next = Self {
            bytes: bytes.to_vec(),
            root: read_root(&envelope)?,
        };
        next.check_signed_by_self(&envelope)?;
        if next.version() != expected {
            return Err(VerificationError::RootVersion {
                expected,
                offered: next.version(),
            });
        }
        Ok(next)
    }

    /// The root's version.
    pub fn version(&self) -> u64 {
        self.root.version.get()
    }

    /// When it expires.
    pub fn expires(&self) -> UnixTime {
        UnixTime::from_jiff(self.root.expires)
    }

    /// The signed file, exactly as received or produced.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The file name it is served under (`{version}.root.json`).
    pub fn file_name(&self) -> String {
        RoleName::Root.file_name(self.version())
    }

    /// The key ids of `role` and its threshold, e.g. to compare two roots.
    pub fn role_key_ids(&self, role: TopLevelRole) -> (Vec<KeyId>, u64) {
        match self.root.roles.get(&role.tough()) {
            Some(keys) => {
                let mut ids: Vec<KeyId> =
                    keys.keyids.iter().filter_map(KeyId::from_decoded).collect();
                ids.sort();
                (ids, keys.threshold.get())
            }
            None => (Vec::new(), u64::MAX),
        }
    }

    /// The public keys and thresholds of the four roles, e.g. to draft the next root with one
    /// key replaced.
    pub fn top_level_keys(&self) -> Result<TopLevelKeys, KeyError> {
        top_level_keys(&self.root)
    }

    /// Whether `key` is one of `role`'s keys in this root.
    pub fn authorizes(&self, role: TopLevelRole, key: KeyId) -> bool {
        self.role_key_ids(role).0.contains(&key)
    }

    /// Checks that a threshold of `role`'s keys signed `envelope`.
    pub(crate) fn check_role(
        &self,
        role: RoleType,
        envelope: &Envelope,
    ) -> Result<(), VerificationError> {
        let name = match role {
            RoleType::Root => RoleName::Root,
            RoleType::Timestamp => RoleName::Timestamp,
            RoleType::Snapshot => RoleName::Snapshot,
            RoleType::Targets | RoleType::DelegatedTargets => RoleName::Targets,
        };
        let keys = self
            .root
            .roles
            .get(&role)
            .ok_or_else(|| VerificationError::Malformed {
                file: self.file_name(),
                reason: format!("no keys for the {name} role"),
            })?;
        envelope.check_threshold(name, &self.root.keys, &keys.keyids, keys.threshold.get())
    }

    fn check_signed_by_self(&self, envelope: &Envelope) -> Result<(), VerificationError> {
        envelope::check_distinct_keys(RoleName::Root, &self.root.keys)?;
        self.check_role(RoleType::Root, envelope)
    }
}

/// The four top-level roles a root assigns keys to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopLevelRole {
    /// `root`.
    Root,
    /// `targets`.
    Targets,
    /// `snapshot`.
    Snapshot,
    /// `timestamp`.
    Timestamp,
}

impl std::fmt::Display for TopLevelRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Root => "root",
            Self::Targets => "targets",
            Self::Snapshot => "snapshot",
            Self::Timestamp => "timestamp",
        })
    }
}

impl TopLevelRole {
    pub(crate) fn tough(self) -> RoleType {
        match self {
            Self::Root => RoleType::Root,
            Self::Targets => RoleType::Targets,
            Self::Snapshot => RoleType::Snapshot,
            Self::Timestamp => RoleType::Timestamp,
        }
    }
}

fn read_root(envelope: &Envelope) -> Result<Root, VerificationError> {
    let root: Root = envelope.read_signed()?;
    for role in [
        RoleType::Root,
        RoleType::Targets,
        RoleType::Snapshot,
        RoleType::Timestamp,
    ] {
        if !root.roles.contains_key(&role) {
            return Err(VerificationError::Malformed {
                file: envelope.file().to_owned(),
                reason: format!("the root assigns no keys to the {role} role"),
            });
        }
    }
    Ok(root)
}

fn top_level_keys(root: &Root) -> Result<TopLevelKeys, KeyError> {
    let role_keys = |role: TopLevelRole| -> Result<RoleKeys, KeyError> {
        let Some(assigned) = root.roles.get(&role.tough()) else {
            // A root read through `read_root` always has all four roles.
            return Err(KeyError::MalformedPublicKey(format!(
                "the root assigns no keys to {role}"
            )));
        };
        let keys = assigned
            .keyids
            .iter()
            .map(|id| {
                let key = root.keys.get(id).ok_or_else(|| {
                    KeyError::MalformedPublicKey(format!(
                        "the root lists key {} for {role} without its public key",
                        hex::encode(id)
                    ))
                })?;
                PublicKey::from_tuf(key.clone())
            })
            .collect::<Result<Vec<_>, _>>()?;
        RoleKeys::new(keys, assigned.threshold.get())
    };
    Ok(TopLevelKeys {
        root: role_keys(TopLevelRole::Root)?,
        targets: role_keys(TopLevelRole::Targets)?,
        snapshot: role_keys(TopLevelRole::Snapshot)?,
        timestamp: role_keys(TopLevelRole::Timestamp)?,
    })
}

/// A root being assembled: unsigned or partly signed, passed from one offline key holder to
/// the next as JSON ([`RootDraft::to_json`] / [`RootDraft::from_json`]).
#[derive(Clone, Debug)]
pub struct RootDraft {
    root: Root,
    signatures: Vec<Signature>,
}

impl RootDraft {
    /// A root of `version` that expires at `expires` and lists `keys`.
    pub fn new(
        version: NonZeroU64,
        expires: UnixTime,
        keys: &TopLevelKeys,
    ) -> Result<Self, RootDraftError> {
        let expires = expires.to_jiff().ok_or(RootDraftError::ExpiryOutOfRange)?;
        let mut all_keys: HashMap<Decoded<Hex>, tough::schema::key::Key> = HashMap::new();
        let mut roles = HashMap::new();
        for (role, role_keys) in [
            (RoleType::Root, &keys.root),
            (RoleType::Targets, &keys.targets),
            (RoleType::Snapshot, &keys.snapshot),
            (RoleType::Timestamp, &keys.timestamp),
        ] {
            for key in role_keys.keys() {
                all_keys.insert(key.id().to_decoded(), key.tuf_key().clone());
            }
            roles.insert(role, tough_role_keys(role_keys));
        }
        Ok(Self {
            root: Root {
                spec_version: SPEC_VERSION.to_owned(),
                consistent_snapshot: true,
                version,
                expires,
                keys: all_keys,
                roles,
                _extra: HashMap::new(),
            },
            signatures: Vec::new(),
        })
    }

    /// The first root of a repository: version 1, valid for [`ROOT_LIFETIME`].
    pub fn first(keys: &TopLevelKeys, now: UnixTime) -> Result<Self, RootDraftError> {
        Self::new(NonZeroU64::MIN, now.plus(ROOT_LIFETIME), keys)
    }

    /// The root after `current`, listing `keys`, valid for [`ROOT_LIFETIME`]. It needs the
    /// signatures of a threshold of `current`'s root keys and of its own.
    pub fn successor(
        current: &VerifiedRoot,
        keys: &TopLevelKeys,
        now: UnixTime,
    ) -> Result<Self, RootDraftError> {
        let version = current
            .root
            .version
            .checked_add(1)
            .ok_or(RootDraftError::VersionOverflow)?;
        Self::new(version, now.plus(ROOT_LIFETIME), keys)
    }

    /// The version this root will have.
    pub fn version(&self) -> u64 {
        self.root.version.get()
    }

    /// When it will expire.
    pub fn expires(&self) -> UnixTime {
        UnixTime::from_jiff(self.root.expires)
    }

    /// The keys and thresholds it lists, so a key holder can see what they are about to sign.
    pub fn top_level_keys(&self) -> Result<TopLevelKeys, KeyError> {
        top_level_keys(&self.root)
    }

    /// The keys that signed it so far.
    pub fn signed_by(&self) -> Vec<KeyId> {
        self.signatures
            .iter()
            .filter_map(|signature| KeyId::from_decoded(&signature.keyid))
            .collect()
    }

    /// Adds `key`'s signature, replacing an earlier one by the same key. Any key may sign:
    /// the old root's keys that the new root drops must, to approve the change.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), RootDraftError> {
        let message = canonical_json(&self.root).map_err(|_| KeyError::Sign)?;
        let signature = Signature {
            keyid: key.id().to_decoded(),
            sig: key.sign(&message)?.into(),
        };
        self.signatures
            .retain(|existing| existing.keyid != signature.keyid);
        self.signatures.push(signature);
        Ok(())
    }

    /// The draft with the signatures so far, as a root file.
    pub fn to_json(&self) -> Result<Vec<u8>, RootDraftError> {
        let envelope = tough::schema::Signed {
            signed: &self.root,
            signatures: self.signatures.clone(),
        };
        sorted_json(&envelope).map_err(|error| RootDraftError::Malformed(error.to_string()))
    }

    /// Reads a draft written by [`RootDraft::to_json`] (possibly with signatures added on
    /// other machines). Nothing in it is trusted until [`RootDraft::finish`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, RootDraftError> {
        let envelope = Envelope::parse("root draft", bytes)
            .map_err(|error| RootDraftError::Malformed(error.to_string()))?;
        let root =
            read_root(&envelope).map_err(|error| RootDraftError::Malformed(error.to_string()))?;
        let signatures: tough::schema::Signed<serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|error| RootDraftError::Malformed(error.to_string()))?;
        Ok(Self {
            root,
            signatures: signatures.signatures,
        })
    }

    /// Checks the signatures collected so far and returns the trusted root: a first root must
    /// meet its own threshold; a successor must meet `previous`'s threshold and its own, and be
    /// version `previous + 1`.
    pub fn finish(&self, previous: Option<&VerifiedRoot>) -> Result<VerifiedRoot, RootDraftError> {
        let bytes = self.to_json()?;
        let verified = match previous {
            Some(previous) => previous.verify_successor(&bytes),
            None => VerifiedRoot::from_pinned(&bytes),
        };
        verified.map_err(RootDraftError::NotYetValid)
    }
}

/// Adds one key holder's signature to a root draft (see [`RootDraft::sign`]).
pub fn sign_root(draft: &mut RootDraft, key: &SigningKey) -> Result<(), RootDraftError> {
    draft.sign(key)
}

fn tough_role_keys(keys: &RoleKeys) -> ToughRoleKeys {
    ToughRoleKeys {
        keyids: keys
            .keys()
            .iter()
            .map(|key: &PublicKey| key.id().to_decoded())
            .collect(),
        threshold: keys.threshold(),
        _extra: HashMap::new(),
    }
}

/// Why a root draft could not be built, signed or accepted.
#[derive(Debug, thiserror::Error)]
pub enum RootDraftError {
    /// The expiry is beyond what TUF timestamps can express.
    #[error("the root expiry is out of range")]
    ExpiryOutOfRange,
    /// The current root already has the largest version.
    #[error("the root version cannot grow further")]
    VersionOverflow,
    /// Signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The draft file is not a root.
    #[error("not a root draft: {0}")]
    Malformed(String),
    /// The signatures collected so far do not make it a valid root (yet).
    #[error("the draft is not a valid root yet: {0}")]
    NotYetValid(VerificationError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::sign_envelope;

    fn keys_with_root(root: RoleKeys, online: &SigningKey) -> TopLevelKeys {
        let online = RoleKeys::single(online.public_key());
        TopLevelKeys {
            root,
            targets: online.clone(),
            snapshot: online.clone(),
            timestamp: online,
        }
    }

    fn now() -> UnixTime {
        UnixTime::from_seconds(1_767_225_600)
    }

    #[test]
    fn a_first_root_needs_its_threshold() {
        let (a, b, online) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        let root_keys =
            RoleKeys::new(vec![a.public_key().clone(), b.public_key().clone()], 2).unwrap();
        let mut draft = RootDraft::first(&keys_with_root(root_keys, &online), now()).unwrap();
        sign_root(&mut draft, &a).unwrap();
        assert!(matches!(
            draft.finish(None),
            Err(RootDraftError::NotYetValid(
                VerificationError::BadSignatures {
                    role: RoleName::Root,
                    valid: 1,
                    threshold: 2
                }
            ))
        ));
        // The second holder signs on another machine, from the draft file.
        let mut elsewhere = RootDraft::from_json(&draft.to_json().unwrap()).unwrap();
        sign_root(&mut elsewhere, &b).unwrap();
        let root = elsewhere.finish(None).unwrap();
        assert_eq!(root.version(), 1);
        assert_eq!(root.expires(), now().plus(ROOT_LIFETIME));
        assert_eq!(
            VerifiedRoot::from_pinned(root.bytes()).unwrap().version(),
            1
        );
    }

    #[test]
    fn a_rotation_needs_the_old_and_the_new_root_keys() {
        let (old, new, online) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        let mut first = RootDraft::first(
            &keys_with_root(RoleKeys::single(old.public_key()), &online),
            now(),
        )
        .unwrap();
        sign_root(&mut first, &old).unwrap();
        let first = first.finish(None).unwrap();

        let new_keys = keys_with_root(RoleKeys::single(new.public_key()), &online);
        let mut second = RootDraft::successor(&first, &new_keys, now()).unwrap();
        assert_eq!(second.version(), 2);
        sign_root(&mut second, &new).unwrap();
        assert!(matches!(
            second.finish(Some(&first)),
            Err(RootDraftError::NotYetValid(
                VerificationError::NotSignedByPreviousRoot {
                    version: 2,
                    valid: 0,
                    threshold: 1
                }
            ))
        ));
        let mut only_old = RootDraft::successor(&first, &new_keys, now()).unwrap();
        sign_root(&mut only_old, &old).unwrap();
        assert!(matches!(
            only_old.finish(Some(&first)),
            Err(RootDraftError::NotYetValid(
                VerificationError::BadSignatures {
                    role: RoleName::Root,
                    ..
                }
            ))
        ));
        sign_root(&mut second, &old).unwrap();
        assert_eq!(second.signed_by().len(), 2);
        let second = second.finish(Some(&first)).unwrap();
        assert!(second.authorizes(TopLevelRole::Root, new.id()));
        assert!(!second.authorizes(TopLevelRole::Root, old.id()));
        // Skipping a version is refused even with every signature.
        let mut third = RootDraft::successor(&second, &new_keys, now()).unwrap();
        sign_root(&mut third, &new).unwrap();
        assert!(matches!(
            first.verify_successor(&third.to_json().unwrap()),
            Err(VerificationError::NotSignedByPreviousRoot { .. })
                | Err(VerificationError::RootVersion { .. })
        ));
    }

    #[test]
    fn a_root_listing_one_key_twice_is_refused() {
        let (key, online) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        let mut draft = RootDraft::first(
            &keys_with_root(RoleKeys::single(key.public_key()), &online),
            now(),
        )
        .unwrap();
        sign_root(&mut draft, &key).unwrap();
        let mut root: serde_json::Value =
            serde_json::from_slice(&draft.to_json().unwrap()).unwrap();
        // The same P-256 key spelled as hex instead of PEM gets another key id.
        let tough::schema::key::Key::Ecdsa { keyval, .. } = key.public_key().tuf_key() else {
            unreachable!("generated keys are ECDSA")
        };
        let point = hex::encode(&keyval.public);
        let alias = serde_json::json!({"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256",
            "keyval": {"public": point}});
        let alias_id = PublicKey::from_json(&alias.to_string())
            .unwrap()
            .id()
            .to_string();
        let signed = &mut root["signed"];
        signed["keys"][&alias_id] = alias;
        signed["roles"]["root"]["keyids"]
            .as_array_mut()
            .unwrap()
            .push(alias_id.clone().into());
        signed["roles"]["root"]["threshold"] = 2.into();
        let message = canonical_json(&signed).unwrap();
        let signature = hex::encode(key.sign(&message).unwrap());
        let mut bytes: serde_json::Value =
            serde_json::from_slice(&sign_envelope(&*signed, &[&key]).unwrap()).unwrap();
        bytes["signatures"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"keyid": alias_id, "sig": signature}));
        let bytes = serde_json::to_vec(&bytes).unwrap();
        assert!(matches!(
            VerifiedRoot::from_pinned(&bytes),
            Err(VerificationError::DuplicatePublicKey {
                holder: RoleName::Root,
                ..
            })
        ));
    }
}
