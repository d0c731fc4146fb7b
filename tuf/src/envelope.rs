//! Signed envelopes (`{"signed": …, "signatures": […]}`): canonical JSON, signing, and the
//! threshold check.
//!
//! Signatures are checked over the canonical JSON of the `signed` object *as received*, not
//! over a re-serialization of tough's structs (ADR 0004, gap 6): a field tough drops or a
//! change in how it formats a value cannot make valid metadata fail, or make changed metadata
//! pass. tough's `Root::verify_role` is not used for the count for the same reason, and
//! because it counts key ids, not keys: the same public key listed under two ids (PEM and hex
//! spellings hash differently) would count twice. Here each public key counts once.

use std::collections::{HashMap, HashSet};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ED25519, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey,
    VerificationAlgorithm,
};
use olpc_cjson::CanonicalFormatter;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tough::schema::Signature;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{EcdsaScheme, Ed25519Scheme, Key, RsaScheme};

use crate::error::{RoleName, VerificationError};
use crate::keys::{KeyError, KeyId, SigningKey};

/// The TUF specification major version this crate implements and writes.
pub(crate) const SPEC_VERSION: &str = "1.0.31";

/// The OLPC canonical JSON of `value`, which is what TUF signs. Fails on floats.
pub(crate) fn canonical_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, CanonicalFormatter::new());
    value.serialize(&mut serializer)?;
    Ok(out)
}

/// Compact JSON with object keys sorted, for the files we write: deterministic (equal
/// metadata has equal bytes, whatever the map types inside or serde_json's `preserve_order`),
/// and, unlike canonical JSON, valid JSON (canonical JSON leaves the newlines of PEM keys
/// unescaped, which other JSON parsers refuse).
pub(crate) fn sorted_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    fn write(value: &Value, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push(b'{');
                for (index, (key, item)) in entries.into_iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, key)?;
                    out.push(b':');
                    write(item, out)?;
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    write(item, out)?;
                }
                out.push(b']');
            }
            leaf => serde_json::to_writer(&mut *out, leaf)?,
        }
        Ok(())
    }
    let mut out = Vec::new();
    write(&serde_json::to_value(value)?, &mut out)?;
    Ok(out)
}

/// Signs the canonical JSON of `signed` with each key and returns the whole envelope as a
/// file ([`sorted_json`]).
pub(crate) fn sign_envelope<T: Serialize>(
    signed: &T,
    keys: &[&SigningKey],
) -> Result<Vec<u8>, KeyError> {
    let message = canonical_json(signed).map_err(|_| KeyError::Sign)?;
    let mut signatures = Vec::with_capacity(keys.len());
    for key in keys {
        signatures.push(Signature {
            keyid: key.id().to_decoded(),
            sig: key.sign(&message)?.into(),
        });
    }
    let envelope = tough::schema::Signed { signed, signatures };
    sorted_json(&envelope).map_err(|_| KeyError::Sign)
}

/// Signs an arbitrary `signed` object. For tools and tests that need metadata the producer
/// would refuse to write (e.g. to check that a client refuses it).
pub fn sign_metadata_json(signed: &Value, keys: &[&SigningKey]) -> Result<Vec<u8>, KeyError> {
    sign_envelope(signed, keys)
}

/// A parsed envelope whose signatures have not been checked yet.
#[derive(Clone, Debug)]
pub(crate) struct Envelope {
    file: String,
    signed: Value,
    signatures: Vec<Signature>,
}

#[derive(serde::Deserialize)]
struct WireEnvelope {
    signed: Value,
    signatures: Vec<Signature>,
}

impl Envelope {
    /// Parses the envelope of `file` without trusting anything in it.
    pub(crate) fn parse(file: &str, bytes: &[u8]) -> Result<Self, VerificationError> {
        let wire: WireEnvelope =
            serde_json::from_slice(bytes).map_err(|error| malformed(file, error))?;
        Ok(Self {
            file: file.to_owned(),
            signed: wire.signed,
            signatures: wire.signatures,
        })
    }

    /// The file it came from, for error messages.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// The signed object read as the role type `T` (tough's schema type). Refuses another
    /// `_type` and a `spec_version` other than 1.x.
    pub(crate) fn read_signed<T: DeserializeOwned>(&self) -> Result<T, VerificationError> {
        let spec = self
            .signed
            .get("spec_version")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if spec.split('.').next() != Some("1") {
            return Err(VerificationError::UnsupportedSpecVersion {
                file: self.file.clone(),
                found: spec.to_owned(),
            });
        }
        serde_json::from_value(self.signed.clone()).map_err(|error| malformed(&self.file, error))
    }

    /// Checks that `threshold` distinct keys among `authorized` (looked up in `keys`) signed
    /// the canonical form of the signed object.
    pub(crate) fn check_threshold(
        &self,
        role: RoleName,
        keys: &HashMap<Decoded<Hex>, Key>,
        authorized: &[Decoded<Hex>],
        threshold: u64,
    ) -> Result<(), VerificationError> {
        let message = canonical_json(&self.signed).map_err(|error| malformed(&self.file, error))?;
        let mut counted = HashSet::new();
        let mut valid = 0u64;
        for signature in &self.signatures {
            if !authorized.contains(&signature.keyid) {
                continue;
            }
            let Some(key) = keys.get(&signature.keyid) else {
                continue;
            };
            let material = public_key_material(key);
            if counted.contains(&material) {
                continue;
            }
            if verify_signature(key, &message, &signature.sig) {
                counted.insert(material);
                valid += 1;
            }
        }
        if valid < threshold {
            return Err(VerificationError::BadSignatures {
                role,
                valid,
                threshold,
            });
        }
        Ok(())
    }
}

/// What identifies a public key regardless of how it is spelled in JSON: its algorithm family
/// and its decoded bytes.
pub(crate) fn public_key_material(key: &Key) -> (&'static str, Vec<u8>) {
    match key {
        Key::Ecdsa { keyval, .. } | Key::EcdsaOld { keyval, .. } => {
            ("ecdsa", keyval.public.to_vec())
        }
        Key::Ed25519 { keyval, .. } => ("ed25519", keyval.public.to_vec()),
        Key::Rsa { keyval, .. } => ("rsa", keyval.public.to_vec()),
    }
}

/// Refuses a key map that lists one public key under two ids.
pub(crate) fn check_distinct_keys(
    holder: RoleName,
    keys: &HashMap<Decoded<Hex>, Key>,
) -> Result<(), VerificationError> {
    let mut seen: HashMap<(&'static str, Vec<u8>), KeyId> = HashMap::new();
    // Sorted so the error names the same pair on every run.
    let mut entries: Vec<_> = keys.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (id, key) in entries {
        // tough checked on parse that each id is the SHA-256 of its key.
        let id = KeyId::from_decoded(id).ok_or_else(|| VerificationError::Malformed {
            file: holder.to_string(),
            reason: format!("key id {} is not a SHA-256", hex::encode(id)),
        })?;
        if let Some(first) = seen.insert(public_key_material(key), id) {
            return Err(VerificationError::DuplicatePublicKey {
                holder,
                first,
                second: id,
            });
        }
    }
    Ok(())
}

fn verify_signature(key: &Key, message: &[u8], signature: &[u8]) -> bool {
    let (algorithm, public): (&'static dyn VerificationAlgorithm, &[u8]) = match key {
        Key::Ecdsa {
            keyval,
            scheme: EcdsaScheme::EcdsaSha2Nistp256,
            ..
        }
        | Key::EcdsaOld {
            keyval,
            scheme: EcdsaScheme::EcdsaSha2Nistp256,
            ..
        } => (&ECDSA_P256_SHA256_ASN1, &keyval.public),
        Key::Ed25519 {
            keyval,
            scheme: Ed25519Scheme::Ed25519,
            ..
        } => (&ED25519, &keyval.public),
        Key::Rsa {
            keyval,
            scheme: RsaScheme::RsassaPssSha256,
            ..
        } => (&RSA_PSS_2048_8192_SHA256, &keyval.public),
    };
    UnparsedPublicKey::new(algorithm, public)
        .verify(message, signature)
        .is_ok()
}

pub(crate) fn malformed(file: &str, error: impl std::fmt::Display) -> VerificationError {
    VerificationError::Malformed {
        file: file.to_owned(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn one_public_key_under_two_ids_counts_once() {
        let key = SigningKey::generate().unwrap();
        let pem_key = key.public_key().tuf_key().clone();
        let Key::Ecdsa { keyval, .. } = &pem_key else {
            unreachable!("generated keys are ECDSA")
        };
        let hex_key: Key = serde_json::from_value(json!({
            "keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256",
            "keyval": {"public": hex::encode(&keyval.public)}
        }))
        .unwrap();
        let (pem_id, hex_id) = (pem_key.key_id().unwrap(), hex_key.key_id().unwrap());
        assert_ne!(pem_id, hex_id);
        let keys = HashMap::from([(pem_id.clone(), pem_key), (hex_id.clone(), hex_key)]);

        let signed = json!({"_type": "timestamp", "version": 1});
        let message = canonical_json(&signed).unwrap();
        let signature = |id: &Decoded<Hex>| Signature {
            keyid: id.clone(),
            sig: key.sign(&message).unwrap().into(),
        };
        let envelope = Envelope {
            file: "timestamp.json".to_owned(),
            signatures: vec![signature(&pem_id), signature(&hex_id), signature(&pem_id)],
            signed,
        };
        let authorized = [pem_id, hex_id];
        assert!(matches!(
            envelope.check_threshold(RoleName::Timestamp, &keys, &authorized, 2),
            Err(VerificationError::BadSignatures {
                valid: 1,
                threshold: 2,
                ..
            })
        ));
        assert!(
            envelope
                .check_threshold(RoleName::Timestamp, &keys, &authorized, 1)
                .is_ok()
        );
        assert!(matches!(
            check_distinct_keys(RoleName::Root, &keys),
            Err(VerificationError::DuplicatePublicKey { .. })
        ));
    }

    #[test]
    fn signatures_cover_the_received_object_not_a_reserialization() {
        let key = SigningKey::generate().unwrap();
        // A field tough's structs do not know survives: it is part of what was signed.
        let signed = json!({"_type": "timestamp", "future_field": {"b": 1, "a": [true]}});
        let bytes = sign_metadata_json(&signed, &[&key]).unwrap();
        let envelope = Envelope::parse("timestamp.json", &bytes).unwrap();
        let keys = HashMap::from([(key.id().to_decoded(), key.public_key().tuf_key().clone())]);
        let authorized = [key.id().to_decoded()];
        assert!(
            envelope
                .check_threshold(RoleName::Timestamp, &keys, &authorized, 1)
                .is_ok()
        );
        let tampered = String::from_utf8(bytes).unwrap().replace("true", "false");
        let envelope = Envelope::parse("timestamp.json", tampered.as_bytes()).unwrap();
        assert!(matches!(
            envelope.check_threshold(RoleName::Timestamp, &keys, &authorized, 1),
            Err(VerificationError::BadSignatures { valid: 0, .. })
        ));
    }
}
