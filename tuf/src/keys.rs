//! TUF signing keys: ECDSA P-256 in PKCS#8, their public TUF form and key ids, and the sets of
//! keys (with thresholds) that the root assigns to each role.
//!
//! Every key this crate generates is ECDSA P-256 (`keytype` `ecdsa`, scheme
//! `ecdsa-sha2-nistp256`, public key as a PEM SPKI): what tough signs with, what hardware
//! tokens and cloud KMSs offer, and what the store's CA and JWT keys already use. The client
//! also verifies Ed25519 and RSA-PSS keys that other tools may have put in a root.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{EcdsaKey, EcdsaScheme, Key};

use crate::digest::Sha256;
use crate::envelope::{self, sorted_json};

/// The PEM label of a PKCS#8 private key.
const PKCS8_PEM_TAG: &str = "PRIVATE KEY";

/// A TUF key id: the SHA-256 of the canonical JSON of the public key object, which is how
/// tough and python-tuf compute it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Sha256);

impl KeyId {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub(crate) fn from_decoded(id: &Decoded<Hex>) -> Option<Self> {
        Sha256::from_slice(id).map(Self)
    }

    pub(crate) fn to_decoded(self) -> Decoded<Hex> {
        Decoded::from(self.0.as_bytes().to_vec())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0.to_hex())
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse()
            .map(Self)
            .map_err(|_| KeyError::MalformedKeyId(text.to_owned()))
    }
}

/// A public key in its TUF form, with its key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: Key,
    id: KeyId,
}

impl PublicKey {
    /// The key id roles and signatures refer to it by.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The TUF key object as JSON, e.g. for `keys generate` to print or for a root draft to
    /// be assembled on another machine.
    pub fn to_json(&self) -> String {
        // A `Key` is strings only, so serializing it cannot fail.
        String::from_utf8(sorted_json(&self.key).unwrap_or_default()).unwrap_or_default()
    }

    /// Reads a TUF key object (any key type the client verifies).
    pub fn from_json(json: &str) -> Result<Self, KeyError> {
        let key: Key = serde_json::from_str(json)
            .map_err(|error| KeyError::MalformedPublicKey(error.to_string()))?;
        Self::from_tuf(key)
    }

    pub(crate) fn from_tuf(key: Key) -> Result<Self, KeyError> {
        let id = key
            .key_id()
            .ok()
            .and_then(|id| KeyId::from_decoded(&id))
            .ok_or_else(|| KeyError::MalformedPublicKey("cannot compute its key id".into()))?;
        Ok(Self { key, id })
    }

    pub(crate) fn tuf_key(&self) -> &Key {
        &self.key
    }
}

/// An ECDSA P-256 private key that signs TUF metadata.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private material, not even in a debug log.
        f.debug_struct("SigningKey")
            .field("id", &self.public.id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh P-256 key.
    pub fn generate() -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|_| KeyError::Generate)?;
        Self::from_pair(pair)
    }

    /// Reads a PKCS#8 P-256 key, DER or PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, KeyError> {
        let der = if bytes.starts_with(b"-----BEGIN") {
            let pem = pem::parse(bytes).map_err(|_| KeyError::NotPkcs8P256)?;
            if pem.tag() != PKCS8_PEM_TAG {
                return Err(KeyError::NotPkcs8P256);
            }
            pem.into_contents()
        } else {
            bytes.to_vec()
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
            .map_err(|_| KeyError::NotPkcs8P256)?;
        Self::from_pair(pair)
    }

    /// The key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        self.pair
            .to_pkcs8v1()
            .map(|document| document.as_ref().to_vec())
            .map_err(|_| KeyError::Generate)
    }

    /// The key as a PKCS#8 PEM document.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        Ok(pem::encode(&pem::Pem::new(
            PKCS8_PEM_TAG,
            self.to_pkcs8_der()?,
        )))
    }

    /// Writes the key as PKCS#8 PEM to a new file readable only by its owner (mode 0600).
    /// Refuses to overwrite an existing file: a key that was replaced by mistake is gone.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        let io_error = |source| KeyError::File {
            path: path.to_owned(),
            source,
        };
        let pem = self.to_pkcs8_pem()?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io_error)?;
        file.write_all(pem.as_bytes()).map_err(io_error)?;
        file.sync_all().map_err(io_error)
    }

    /// Reads a PKCS#8 key file (DER or PEM). On Unix, refuses a file that group or others
    /// can read or write: a private key that leaked through permissions is not one to keep
    /// signing with (the same rule as ssh).
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let io_error = |source| KeyError::File {
            path: path.to_owned(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(path).map_err(io_error)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(KeyError::FileTooOpen {
                    path: path.to_owned(),
                    mode: mode & 0o777,
                });
            }
        }
        let bytes = fs::read(path).map_err(io_error)?;
        Self::from_pkcs8(&bytes)
    }

    /// The public half in TUF form.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key id of the public half.
    pub fn id(&self) -> KeyId {
        self.public.id
    }

    /// Signs `message` (ASN.1 DER ECDSA signature, as TUF's `ecdsa-sha2-nistp256` expects).
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        // aws-lc-rs draws its own randomness; the parameter exists for ring compatibility.
        self.pair
            .sign(&SystemRandom::new(), message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| KeyError::Sign)
    }

    fn from_pair(pair: EcdsaKeyPair) -> Result<Self, KeyError> {
        let key = Key::Ecdsa {
            keyval: EcdsaKey {
                public: pair.public_key().as_ref().to_vec().into(),
                _extra: HashMap::new(),
            },
            scheme: EcdsaScheme::EcdsaSha2Nistp256,
            _extra: HashMap::new(),
        };
        let public = PublicKey::from_tuf(key)?;
        Ok(Self { pair, public })
    }
}

/// The keys trusted for one role and how many of them must sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleKeys {
    keys: Vec<PublicKey>,
    threshold: NonZeroU64,
}

impl RoleKeys {
    /// `threshold` of `keys` must sign. Refuses a threshold of 0 or above the number of keys
    /// (the role could never be signed) and the same public key listed twice (it would look
    /// like two signers).
    pub fn new(keys: Vec<PublicKey>, threshold: u64) -> Result<Self, KeyError> {
        let mut seen = HashSet::new();
        for key in &keys {
            if !seen.insert(envelope::public_key_material(&key.key)) {
                return Err(KeyError::DuplicateKey(key.id));
            }
        }
        let threshold = NonZeroU64::new(threshold)
            .filter(|threshold| threshold.get() <= keys.len() as u64)
            .ok_or(KeyError::Threshold {
                threshold,
                keys: keys.len(),
            })?;
        Ok(Self { keys, threshold })
    }

    /// One key, threshold 1: what the online roles use (the store signs unattended).
    pub fn single(key: &PublicKey) -> Self {
        Self {
            keys: vec![key.clone()],
            threshold: NonZeroU64::MIN,
        }
    }

    /// The keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// How many of them must sign.
    pub fn threshold(&self) -> NonZeroU64 {
        self.threshold
    }
}

/// The keys of the four top-level roles, as a root lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopLevelKeys {
    /// Signs the root; offline, typically 2 of 3 in production.
    pub root: RoleKeys,
    /// Signs the top-level targets (the delegations to the bins).
    pub targets: RoleKeys,
    /// Signs the snapshot.
    pub snapshot: RoleKeys,
    /// Signs the timestamp.
    pub timestamp: RoleKeys,
}

/// Why a key was refused or could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The system could not generate or serialize a key.
    #[error("could not generate or serialize a P-256 key")]
    Generate,
    /// The bytes are not an unencrypted PKCS#8 ECDSA P-256 key.
    #[error("not an unencrypted PKCS#8 ECDSA P-256 private key (DER or `BEGIN PRIVATE KEY` PEM)")]
    NotPkcs8P256,
    /// Signing failed inside the crypto library.
    #[error("signing failed")]
    Sign,
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A key file that group or others may access.
    #[error(
        "key file {path} has mode {mode:o}; private keys must be readable by their owner only (chmod 600)"
    )]
    FileTooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A public key object that is not valid TUF JSON.
    #[error("not a TUF public key object: {0}")]
    MalformedPublicKey(String),
    /// A key id that is not 64 lowercase hex digits.
    #[error("`{0}` is not a key id (64 lowercase hex digits)")]
    MalformedKeyId(String),
    /// One public key listed twice for a role.
    #[error(
        "key {0} is listed twice (possibly under another key id); it would count twice toward the threshold"
    )]
    DuplicateKey(KeyId),
    /// A threshold the role's keys can never meet, or zero.
    #[error(
        "threshold {threshold} is impossible with {keys} key(s); it must be between 1 and the number of keys"
    )]
    Threshold {
        /// The threshold asked for.
        threshold: u64,
        /// The number of keys.
        keys: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs8_round_trips_through_pem_and_der() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            SigningKey::from_pkcs8(pem.as_bytes()).unwrap().id(),
            key.id()
        );
        let der = key.to_pkcs8_der().unwrap();
        assert_eq!(SigningKey::from_pkcs8(&der).unwrap().id(), key.id());
        assert!(matches!(
            SigningKey::from_pkcs8(b"not a key"),
            Err(KeyError::NotPkcs8P256)
        ));
    }

    #[test]
    fn key_id_is_what_tough_computes() {
        let key = SigningKey::generate().unwrap();
        let tough_id = key.public_key().tuf_key().key_id().unwrap();
        assert_eq!(key.id().to_string(), hex::encode(&tough_id));
        let json = key.public_key().to_json();
        assert!(json.contains(r#""keytype":"ecdsa""#));
        assert!(json.contains(r#""scheme":"ecdsa-sha2-nistp256""#));
        assert_eq!(PublicKey::from_json(&json).unwrap().id(), key.id());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.pem");
        let key = SigningKey::generate().unwrap();
        key.write_new_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(SigningKey::read_file(&path).unwrap().id(), key.id());
        assert!(matches!(
            key.write_new_file(&path),
            Err(KeyError::File { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SigningKey::read_file(&path),
            Err(KeyError::FileTooOpen { mode: 0o644, .. })
        ));
    }

    #[test]
    fn role_keys_refuse_impossible_thresholds_and_duplicates() {
        let a = SigningKey::generate().unwrap().public_key().clone();
        let b = SigningKey::generate().unwrap().public_key().clone();
        assert!(RoleKeys::new(vec![a.clone(), b.clone()], 2).is_ok());
        assert!(matches!(
            RoleKeys::new(vec![a.clone(), b.clone()], 3),
            Err(KeyError::Threshold { .. })
        ));
        assert!(matches!(
            RoleKeys::new(vec![a.clone()], 0),
            Err(KeyError::Threshold { .. })
        ));
        assert!(matches!(
            RoleKeys::new(vec![a.clone(), a], 2),
            Err(KeyError::DuplicateKey(_))
        ));
    }
}
