//! Access tokens: short-lived ES256 JWTs signed by the newest key of a key ring.
//!
//! Keys live as PKCS#8 files (mode 0600) in `auth.jwt_keys_dir`, named
//! `<created-unix>-<kid>.p8` so the newest is the signer. Older keys stay for verification
//! until every token they signed has expired, which is what lets keys rotate without logging
//! anyone out. Replicas that share the directory pick up a rotation on their next reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};

/// A key that superseded another keeps the old one verifiable for this long, which must
/// exceed the longest access-token lifetime (1 day, enforced by config validation).
pub const RETIRED_KEY_GRACE_SECS: i64 = 2 * 24 * 3600;

/// A new key is published in the JWKS and accepted for verification at once, but signs only
/// after this delay, which exceeds the 30 s reload interval of replicas sharing the key
/// directory: no replica ever sees a token from a key it has not loaded yet.
pub const KEY_ACTIVATION_DELAY_SECS: i64 = 90;

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// Issuer: the store's public URL unless configured.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject: the user id.
    pub sub: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Unique token id.
    pub jti: String,
    /// The refresh-token family (login session) this token belongs to; logout revokes it.
    pub sid: String,
}

/// Why the key ring could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Filesystem trouble.
    #[error("JWT key directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// A key file is not a P-256 PKCS#8 key.
    #[error("JWT key file {0} is not a valid P-256 PKCS#8 key")]
    BadKey(PathBuf),
    /// Key generation failed.
    #[error("cannot generate a JWT key")]
    Generate,
    /// Signing failed.
    #[error("cannot sign a JWT: {0}")]
    Sign(String),
}

/// Why a presented token was refused. Kept coarse on the wire (all are 401) but precise in logs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenRejection {
    /// Not three base64url segments, or a header that does not parse.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not ES256 (this refuses `none` and HMAC-with-public-key confusion).
    #[error("token algorithm not accepted")]
    Algorithm,
    /// No `kid`, or a `kid` this store does not know.
    #[error("unknown signing key")]
    UnknownKey,
    /// Signature, issuer, audience, or time checks failed.
    #[error("invalid token: {0}")]
    Invalid(String),
}

struct SigningKey {
    kid: String,
    created_at: i64,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    y: String,
}

/// The set of keys this process signs and verifies with.
pub struct KeyRing {
    dir: PathBuf,
    keys: RwLock<Arc<Vec<SigningKey>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .field("kids", &self.kids())
            .finish()
    }
}

impl KeyRing {
    /// Loads the keys in `dir`, generating the first one when there is none.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        let ring = Self {
            dir: dir.to_owned(),
            keys: RwLock::new(Arc::new(Vec::new())),
        };
        ring.reload()?;
        if ring.current().is_empty() {
            generate_key_file(dir)?;
            ring.reload()?;
        }
        Ok(ring)
    }

    /// Re-reads the directory (picks up a rotation done by another process).
    pub fn reload(&self) -> Result<(), KeyError> {
        let keys = read_keys(&self.dir)?;
        if let Ok(mut slot) = self.keys.write() {
            *slot = Arc::new(keys);
        }
        Ok(())
    }

    fn current(&self) -> Arc<Vec<SigningKey>> {
        self.keys.read().map(|k| Arc::clone(&k)).unwrap_or_default()
    }

    /// Key ids, newest first.
    pub fn kids(&self) -> Vec<String> {
        self.current().iter().map(|k| k.kid.clone()).collect()
    }

    /// Signs claims with the active key (see [`KEY_ACTIVATION_DELAY_SECS`]).
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, KeyError> {
        self.sign_at(claims, crate::db::now())
    }

    fn sign_at(&self, claims: &AccessClaims, now: i64) -> Result<String, KeyError> {
        let keys = self.current();
        // Newest key old enough that every replica has loaded it; on a first start no key is,
        // and the only one signs.
        let key = keys
            .iter()
            .find(|k| now - k.created_at >= KEY_ACTIVATION_DELAY_SECS)
            .or_else(|| keys.last())
            .ok_or(KeyError::Generate)?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// Verifies a token: ES256 only, known `kid`, signature, `iss`, `aud`, `exp`, `nbf`.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        leeway_secs: u64,
    ) -> Result<AccessClaims, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        // Checked before any key is chosen, so an attacker-chosen algorithm never meets a key.
        if header.alg != Algorithm::ES256 {
            return Err(TokenRejection::Algorithm);
        }
        let kid = header.kid.ok_or(TokenRejection::UnknownKey)?;
        let keys = self.current();
        let key = keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenRejection::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| TokenRejection::Invalid(e.to_string()))
    }

    /// The public keys as a JWK Set.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .current()
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                    "kid": k.kid, "x": k.x, "y": k.y,
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Generates a new signing key and removes keys retired longer than the grace period.
    /// Returns the new key id.
    pub fn rotate(&self) -> Result<String, KeyError> {
        let kid = generate_key_file(&self.dir)?;
        prune_retired(&self.dir, crate::db::now())?;
        self.reload()?;
        Ok(kid)
    }
}

fn io_err(dir: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        dir: dir.to_owned(),
        source,
    }
}

/// Lists key files as (created_at, kid, path), newest first.
fn list_key_files(dir: &Path) -> Result<Vec<(i64, String, PathBuf)>, KeyError> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".p8"))
        else {
            continue;
        };
        let Some((created, kid)) = stem.split_once('-') else {
            continue;
        };
        let Ok(created) = created.parse::<i64>() else {
            continue;
        };
        files.push((created, kid.to_owned(), path));
    }
    files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    Ok(files)
}

fn read_keys(dir: &Path) -> Result<Vec<SigningKey>, KeyError> {
    let mut keys = Vec::new();
    for (created_at, kid, path) in list_key_files(dir)? {
        let pkcs8 = std::fs::read(&path).map_err(io_err(dir))?;
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| KeyError::BadKey(path.clone()))?;
        let point = pair.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        );
        let decoding =
            DecodingKey::from_ec_components(&x, &y).map_err(|_| KeyError::BadKey(path.clone()))?;
        keys.push(SigningKey {
            kid,
            created_at,
            encoding: EncodingKey::from_ec_der(&pkcs8),
            decoding,
            x,
            y,
        });
    }
    Ok(keys)
}

/// RFC 7638 thumbprint of a P-256 public key, used as its `kid`.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

fn generate_key_file(dir: &Path) -> Result<String, KeyError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| KeyError::Generate)?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| KeyError::Generate)?;
    let point = pair.public_key().as_ref();
    let kid = thumbprint(
        &URL_SAFE_NO_PAD.encode(&point[1..33]),
        &URL_SAFE_NO_PAD.encode(&point[33..65]),
    );
    // A rotation in the same second as the previous key must still sort after it.
    let newest = list_key_files(dir)?.first().map(|f| f.0).unwrap_or(0);
    let created = crate::db::now().max(newest + 1);
    crate::secrets::write_private_file(&dir.join(format!("{created}-{kid}.p8")), pkcs8.as_ref())
        .map_err(io_err(dir))?;
    Ok(kid)
}

/// Deletes keys that were superseded more than [`RETIRED_KEY_GRACE_SECS`] ago.
fn prune_retired(dir: &Path, now: i64) -> Result<(), KeyError> {
    let files = list_key_files(dir)?;
    // files[i] was superseded when files[i-1] was created.
    for pair in files.windows(2) {
        let (superseded_at, old) = (pair[0].0, &pair[1]);
        if now - superseded_at > RETIRED_KEY_GRACE_SECS {
            std::fs::remove_file(&old.2).map_err(io_err(dir))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://store".into(),
            aud: "plugstore".into(),
            sub: "1".into(),
            exp: now + 60,
            nbf: now,
            iat: now,
            jti: "j".into(),
            sid: "s".into(),
        }
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path()).unwrap();
        let now = crate::db::now();
        let old_token = ring.sign(&claims(now)).unwrap();
        let new_kid = ring.rotate().unwrap();
        assert_eq!(ring.kids().len(), 2);
        assert_eq!(ring.kids()[0], new_kid);
        assert!(
            ring.verify(&old_token, "https://store", "plugstore", 0)
                .is_ok()
        );
        let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let old_kid = kid_of(&old_token);
        // Until every replica has had time to load the new key, the old one keeps signing.
        assert_eq!(kid_of(&ring.sign(&claims(now)).unwrap()), old_kid);
        let later = now + KEY_ACTIVATION_DELAY_SECS + 1;
        let new_token = ring.sign_at(&claims(now), later).unwrap();
        assert_eq!(kid_of(&new_token), new_kid);
        // Another process sharing the directory sees the rotation after reloading.
        let other = KeyRing::open(dir.path()).unwrap();
        assert!(
            other
                .verify(&new_token, "https://store", "plugstore", 0)
                .is_ok()
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        KeyRing::open(dir.path()).unwrap();
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn retired_keys_are_pruned_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path()).unwrap();
        ring.rotate().unwrap();
        prune_retired(dir.path(), crate::db::now() + RETIRED_KEY_GRACE_SECS + 10).unwrap();
        ring.reload().unwrap();
        assert_eq!(ring.kids().len(), 1);
    }
}
