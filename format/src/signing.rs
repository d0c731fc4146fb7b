//! The developer signature over a package: the canonical signing payload, the signature
//! envelope that travels with the package, and the checks of both.
//!
//! A developer signs [`SigningPayload::to_bytes`], not the package itself:
//!
//! ```text
//! plugstore-package-signature-v1\n
//! <plugin id>\n
//! <version>\n
//! sha256:<package digest, lowercase hex>\n
//! ```
//!
//! The domain tag makes the signature useless as anything but a plugstore package signature;
//! naming the plugin and the version means it cannot be moved to another plugin or replayed for
//! another version with the same bytes. The signature and the signer's certificate chain are
//! carried in a [`SignatureEnvelope`] (JSON). [`verify_package_signature`] runs the whole
//! pipeline; [`verify_signature`] is the cryptographic step alone.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, UnparsedPublicKey, VerificationAlgorithm};
use serde::{Deserialize, Serialize};

use crate::certs::{
    CertError, MAX_CHAIN_LEN, PublicKeyKind, RevocationList, SignerPolicy, TrustAnchors, UnixTime,
    VerifiedSigner, parse_certificate, public_key_kind, verify_signer,
};
use crate::digest::PackageDigest;

/// The first line of every signing payload.
pub const SIGNING_PAYLOAD_DOMAIN: &[u8] = b"plugstore-package-signature-v1\n";

/// The envelope format this crate writes and reads.
pub const ENVELOPE_FORMAT: u32 = 1;

/// Largest serialized envelope accepted, checked before parsing.
pub const MAX_ENVELOPE_SIZE: usize = 64 * 1024;

/// Largest signature accepted: an RSA-8192 signature is 1024 bytes, every other one is smaller.
pub const MAX_SIGNATURE_LEN: usize = 1024;

/// What a developer signs for one package version.
///
/// Built only through [`SigningPayload::new`], so every value has an encoding that cannot be
/// confused with another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningPayload {
    plugin_id: String,
    version: String,
    package_digest: PackageDigest,
}

/// Why a signing payload cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The plugin id is not of the form `publisher/name`.
    #[error("plugin id {0:?} is not of the form publisher/name")]
    PluginIdShape(String),
    /// The plugin id contains whitespace or a control character (a newline would make the
    /// payload ambiguous).
    #[error("plugin id {0:?} contains whitespace or a control character")]
    PluginIdCharacter(String),
    /// The version is not a semantic version.
    #[error("version {version:?} is not a semantic version: {reason}")]
    Version {
        /// The refused version.
        version: String,
        /// What semver said.
        reason: String,
    },
}

impl SigningPayload {
    /// The payload for version `version` of plugin `plugin_id` (`publisher/name`) whose package
    /// is `package_digest`.
    ///
    /// Only the shape needed for an unambiguous encoding is checked here (one `/`, no
    /// whitespace or control characters, a semantic version); the manifest enforces the full
    /// id grammar.
    pub fn new(
        plugin_id: &str,
        version: &str,
        package_digest: PackageDigest,
    ) -> Result<Self, PayloadError> {
        if plugin_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(PayloadError::PluginIdCharacter(plugin_id.to_owned()));
        }
        match plugin_id.split_once('/') {
            Some((publisher, name))
                if !publisher.is_empty() && !name.is_empty() && !name.contains('/') => {}
            _ => return Err(PayloadError::PluginIdShape(plugin_id.to_owned())),
        }
        // semver's grammar has no room for whitespace or newlines; printing the parsed value
        // gives the one canonical spelling.
        let parsed = semver::Version::parse(version).map_err(|e| PayloadError::Version {
            version: version.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            plugin_id: plugin_id.to_owned(),
            version: parsed.to_string(),
            package_digest,
        })
    }

    /// The plugin id, `publisher/name`.
    pub fn plugin_id(&self) -> &str {
        &self.plugin_id
    }

    /// The publisher part of the plugin id: whom the signing certificate must be bound to.
    pub fn publisher(&self) -> &str {
        self.plugin_id
            .split_once('/')
            .map_or(self.plugin_id.as_str(), |(publisher, _)| publisher)
    }

    /// The version, in canonical semver spelling.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The package's identity.
    pub fn package_digest(&self) -> &PackageDigest {
        &self.package_digest
    }

    /// The canonical bytes that are signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(
            SIGNING_PAYLOAD_DOMAIN.len() + self.plugin_id.len() + self.version.len() + 76,
        );
        bytes.extend_from_slice(SIGNING_PAYLOAD_DOMAIN);
        bytes.extend_from_slice(self.plugin_id.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(self.version.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(b"sha256:");
        bytes.extend_from_slice(self.package_digest.to_hex().as_bytes());
        bytes.push(b'\n');
        bytes
    }
}

/// A signature algorithm a developer may sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignatureAlgorithm {
    /// ECDSA on P-256 with SHA-256, ASN.1 DER signature (`openssl dgst -sha256 -sign`).
    #[serde(rename = "ecdsa-p256-sha256")]
    EcdsaP256Sha256,
    /// ECDSA on P-384 with SHA-384, ASN.1 DER signature.
    #[serde(rename = "ecdsa-p384-sha384")]
    EcdsaP384Sha384,
    /// RSA PKCS#1 v1.5 with SHA-256.
    #[serde(rename = "rsa-pkcs1-sha256")]
    RsaPkcs1Sha256,
    /// RSA PKCS#1 v1.5 with SHA-384.
    #[serde(rename = "rsa-pkcs1-sha384")]
    RsaPkcs1Sha384,
    /// RSA PKCS#1 v1.5 with SHA-512.
    #[serde(rename = "rsa-pkcs1-sha512")]
    RsaPkcs1Sha512,
    /// RSA-PSS with SHA-256, MGF1-SHA-256, salt length 32.
    #[serde(rename = "rsa-pss-sha256")]
    RsaPssSha256,
    /// RSA-PSS with SHA-384, MGF1-SHA-384, salt length 48.
    #[serde(rename = "rsa-pss-sha384")]
    RsaPssSha384,
    /// RSA-PSS with SHA-512, MGF1-SHA-512, salt length 64.
    #[serde(rename = "rsa-pss-sha512")]
    RsaPssSha512,
    /// Ed25519 over the payload itself (64-byte signature, `openssl pkeyutl -sign -rawin`).
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl SignatureAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [Self; 9] = [
        Self::EcdsaP256Sha256,
        Self::EcdsaP384Sha384,
        Self::RsaPkcs1Sha256,
        Self::RsaPkcs1Sha384,
        Self::RsaPkcs1Sha512,
        Self::RsaPssSha256,
        Self::RsaPssSha384,
        Self::RsaPssSha512,
        Self::Ed25519,
    ];

    /// The name used in JSON and on the command line, e.g. `ecdsa-p256-sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::EcdsaP384Sha384 => "ecdsa-p384-sha384",
            Self::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
            Self::RsaPkcs1Sha384 => "rsa-pkcs1-sha384",
            Self::RsaPkcs1Sha512 => "rsa-pkcs1-sha512",
            Self::RsaPssSha256 => "rsa-pss-sha256",
            Self::RsaPssSha384 => "rsa-pss-sha384",
            Self::RsaPssSha512 => "rsa-pss-sha512",
            Self::Ed25519 => "ed25519",
        }
    }

    /// Whether a key of this kind can make signatures of this algorithm.
    pub fn accepts_key(self, key: PublicKeyKind) -> bool {
        matches!(
            (self, key),
            (Self::EcdsaP256Sha256, PublicKeyKind::EcP256)
                | (Self::EcdsaP384Sha384, PublicKeyKind::EcP384)
                | (
                    Self::RsaPkcs1Sha256
                        | Self::RsaPkcs1Sha384
                        | Self::RsaPkcs1Sha512
                        | Self::RsaPssSha256
                        | Self::RsaPssSha384
                        | Self::RsaPssSha512,
                    PublicKeyKind::Rsa { .. }
                )
                | (Self::Ed25519, PublicKeyKind::Ed25519)
        )
    }

    /// The key an algorithm needs, for error messages.
    fn required_key(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "an EC P-256 key",
            Self::EcdsaP384Sha384 => "an EC P-384 key",
            Self::Ed25519 => "an Ed25519 key",
            _ => "an RSA key",
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Self::EcdsaP256Sha256 => &ring_sig::ECDSA_P256_SHA256_ASN1,
            Self::EcdsaP384Sha384 => &ring_sig::ECDSA_P384_SHA384_ASN1,
            Self::RsaPkcs1Sha256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
            Self::RsaPkcs1Sha384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
            Self::RsaPkcs1Sha512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
            Self::RsaPssSha256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
            Self::RsaPssSha384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
            Self::RsaPssSha512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
            Self::Ed25519 => &ring_sig::ED25519,
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of [`SignatureAlgorithm::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature algorithm {0:?}")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for SignatureAlgorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_str() == s)
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// A developer signature as it travels with a package (JSON, binary fields in base64).
///
/// ```json
/// {"format":1,"algorithm":"ecdsa-p256-sha256","signature":"MEUC…",
///  "certificate_chain":["MIIB…","MIIB…"]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEnvelope {
    /// Always [`ENVELOPE_FORMAT`].
    pub format: u32,
    /// How [`signature`](Self::signature) was made.
    pub algorithm: SignatureAlgorithm,
    /// The signature over [`SigningPayload::to_bytes`].
    #[serde(with = "base64_bytes")]
    pub signature: Vec<u8>,
    /// The signer's certificate chain, DER, leaf first; the root may be left out.
    #[serde(with = "base64_chain")]
    pub certificate_chain: Vec<Vec<u8>>,
}

/// Why an envelope is refused before any cryptography.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The serialized envelope is larger than [`MAX_ENVELOPE_SIZE`].
    #[error("the signature envelope is {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON of the envelope's shape (unknown fields are refused).
    #[error("the signature envelope is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A format this crate does not know.
    #[error("signature envelope format {0} is not supported (expected {ENVELOPE_FORMAT})")]
    UnsupportedFormat(u32),
    /// No signature bytes.
    #[error("the signature envelope has an empty signature")]
    EmptySignature,
    /// A signature longer than [`MAX_SIGNATURE_LEN`].
    #[error("the signature is {len} bytes; at most {max} are accepted")]
    SignatureTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No certificate.
    #[error("the signature envelope has no certificate")]
    EmptyChain,
    /// More certificates than [`MAX_CHAIN_LEN`].
    #[error("the signature envelope has {len} certificates; at most {max} are accepted")]
    ChainTooLong {
        /// Certificates given.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl SignatureEnvelope {
    /// An envelope of the current format.
    pub fn new(
        algorithm: SignatureAlgorithm,
        signature: Vec<u8>,
        certificate_chain: Vec<Vec<u8>>,
    ) -> Self {
        Self {
            format: ENVELOPE_FORMAT,
            algorithm,
            signature,
            certificate_chain,
        }
    }

    /// Reads an envelope, refusing oversized input before parsing it.
    pub fn from_json(json: &[u8]) -> Result<Self, EnvelopeError> {
        if json.len() > MAX_ENVELOPE_SIZE {
            return Err(EnvelopeError::TooLarge {
                size: json.len(),
                max: MAX_ENVELOPE_SIZE,
            });
        }
        let envelope: Self = serde_json::from_slice(json)?;
        envelope.check_limits()?;
        Ok(envelope)
    }

    /// Writes the envelope; refuses one that [`from_json`](Self::from_json) would refuse.
    pub fn to_json(&self) -> Result<String, EnvelopeError> {
        self.check_limits()?;
        let json = serde_json::to_string(self)?;
        if json.len() > MAX_ENVELOPE_SIZE {
            return Err(EnvelopeError::TooLarge {
                size: json.len(),
                max: MAX_ENVELOPE_SIZE,
            });
        }
        Ok(json)
    }

    /// The signing certificate, if there is one.
    pub fn leaf_certificate(&self) -> Option<&[u8]> {
        self.certificate_chain.first().map(Vec::as_slice)
    }

    /// The structural limits, shared by reading, writing and verifying.
    pub fn check_limits(&self) -> Result<(), EnvelopeError> {
        if self.format != ENVELOPE_FORMAT {
            return Err(EnvelopeError::UnsupportedFormat(self.format));
        }
        if self.signature.is_empty() {
            return Err(EnvelopeError::EmptySignature);
        }
        if self.signature.len() > MAX_SIGNATURE_LEN {
            return Err(EnvelopeError::SignatureTooLong {
                len: self.signature.len(),
                max: MAX_SIGNATURE_LEN,
            });
        }
        if self.certificate_chain.is_empty() {
            return Err(EnvelopeError::EmptyChain);
        }
        if self.certificate_chain.len() > MAX_CHAIN_LEN {
            return Err(EnvelopeError::ChainTooLong {
                len: self.certificate_chain.len(),
                max: MAX_CHAIN_LEN,
            });
        }
        Ok(())
    }
}

mod base64_bytes {
    use super::BASE64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(deserializer)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

mod base64_chain {
    use super::BASE64;
    use base64::Engine as _;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(chain: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(chain.len()))?;
        for der in chain {
            seq.serialize_element(&BASE64.encode(der))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let texts = Vec::<&str>::deserialize(deserializer)?;
        texts
            .into_iter()
            .map(|text| BASE64.decode(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Why a package signature is refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The envelope breaks a structural limit.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The policy does not allow the envelope's algorithm.
    #[error("signature algorithm {0} is not allowed by the store's policy")]
    AlgorithmNotAllowed(SignatureAlgorithm),
    /// The signer's certificate chain is refused.
    #[error(transparent)]
    Signer(#[from] CertError),
    /// The signing certificate could not be read.
    #[error("the signing certificate is malformed: {0}")]
    MalformedCertificate(String),
    /// The signing certificate holds a key package signing does not support.
    #[error("the signing certificate holds {0}")]
    UnsupportedKey(String),
    /// The declared algorithm does not fit the certificate's key.
    #[error("algorithm {algorithm} needs {} but the signing certificate holds an {key} key", .algorithm.required_key())]
    AlgorithmKeyMismatch {
        /// The envelope's algorithm.
        algorithm: SignatureAlgorithm,
        /// The certificate's key.
        key: PublicKeyKind,
    },
    /// The signature does not verify: wrong plugin, version or package, or not a signature.
    #[error("the {algorithm} signature does not match this plugin, version and package digest")]
    BadSignature {
        /// The envelope's algorithm.
        algorithm: SignatureAlgorithm,
    },
}

/// Checks the signature of `envelope` over `payload` with the public key of the certificate
/// `leaf_certificate_der`.
///
/// This is the cryptographic step only: it does not decide whether the certificate is
/// trustworthy. Call it with a leaf that [`verify_signer`] accepted, or use
/// [`verify_package_signature`], which does both.
pub fn verify_signature(
    envelope: &SignatureEnvelope,
    payload: &SigningPayload,
    leaf_certificate_der: &[u8],
) -> Result<(), SignatureError> {
    envelope.check_limits()?;
    let leaf =
        parse_certificate(leaf_certificate_der).map_err(SignatureError::MalformedCertificate)?;
    let spki = leaf.public_key();
    let key = public_key_kind(spki).map_err(SignatureError::UnsupportedKey)?;
    let algorithm = envelope.algorithm;
    if !algorithm.accepts_key(key) {
        return Err(SignatureError::AlgorithmKeyMismatch { algorithm, key });
    }
    UnparsedPublicKey::new(algorithm.verification(), &spki.subject_public_key.data)
        .verify(&payload.to_bytes(), &envelope.signature)
        .map_err(|_| SignatureError::BadSignature { algorithm })
}

/// The whole check of a developer signature, as the server and the host client run it:
///
/// 1. the envelope's structural limits ([`SignatureError::Envelope`]);
/// 2. the algorithm is allowed by `policy` ([`SignatureError::AlgorithmNotAllowed`]);
/// 3. the certificate chain is valid at `at`, not revoked, and bound to the publisher of
///    `payload`'s plugin id ([`SignatureError::Signer`], see [`verify_signer`]);
/// 4. the signature verifies with the leaf's key ([`verify_signature`]).
///
/// The chain is checked before the signature so that no key is used before it is trusted.
pub fn verify_package_signature(
    envelope: &SignatureEnvelope,
    payload: &SigningPayload,
    anchors: &TrustAnchors,
    policy: &SignerPolicy,
    at: UnixTime,
    revocations: &(impl RevocationList + ?Sized),
) -> Result<VerifiedSigner, SignatureError> {
    envelope.check_limits()?;
    if !policy.allowed_algorithms.contains(&envelope.algorithm) {
        return Err(SignatureError::AlgorithmNotAllowed(envelope.algorithm));
    }
    let signer = verify_signer(
        &envelope.certificate_chain,
        anchors,
        policy,
        payload.publisher(),
        at,
        revocations,
    )?;
    verify_signature(envelope, payload, &envelope.certificate_chain[0])?;
    Ok(signer)
}

/// Why [`sign_payload`] could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The private key is not a PKCS#8 key usable with the algorithm (wrong type or curve, or
    /// an RSA key below 2048 bits).
    #[error("the private key cannot sign with {algorithm}: {reason}")]
    UnusableKey {
        /// The requested algorithm.
        algorithm: SignatureAlgorithm,
        /// ring's reason.
        reason: String,
    },
    /// ring failed to sign.
    #[error("signing with {0} failed")]
    Failed(SignatureAlgorithm),
}

/// Signs `payload` with a PKCS#8 (DER) private key, producing the bytes that go into
/// [`SignatureEnvelope::signature`]: DER for ECDSA, raw for RSA and Ed25519.
///
/// For the CLI and tests; the result verifies with `openssl` as described on
/// [`SignatureAlgorithm`]'s variants.
pub fn sign_payload(
    algorithm: SignatureAlgorithm,
    pkcs8_der: &[u8],
    payload: &SigningPayload,
) -> Result<Vec<u8>, SigningError> {
    let message = payload.to_bytes();
    let rng = SystemRandom::new();
    let unusable = |e: ring::error::KeyRejected| SigningError::UnusableKey {
        algorithm,
        reason: e.to_string(),
    };
    let ecdsa = |signing: &'static ring_sig::EcdsaSigningAlgorithm| {
        let key = ring_sig::EcdsaKeyPair::from_pkcs8(signing, pkcs8_der, &rng).map_err(unusable)?;
        key.sign(&rng, &message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| SigningError::Failed(algorithm))
    };
    let rsa = |padding: &'static dyn ring_sig::RsaEncoding| {
        // ring refuses RSA keys below 2048 bits here.
        let key = ring_sig::RsaKeyPair::from_pkcs8(pkcs8_der).map_err(unusable)?;
        let mut signature = vec![0u8; key.public().modulus_len()];
        key.sign(padding, &rng, &message, &mut signature)
            .map_err(|_| SigningError::Failed(algorithm))?;
        Ok(signature)
    };
    match algorithm {
        SignatureAlgorithm::EcdsaP256Sha256 => ecdsa(&ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING),
        SignatureAlgorithm::EcdsaP384Sha384 => ecdsa(&ring_sig::ECDSA_P384_SHA384_ASN1_SIGNING),
        SignatureAlgorithm::RsaPkcs1Sha256 => rsa(&ring_sig::RSA_PKCS1_SHA256),
        SignatureAlgorithm::RsaPkcs1Sha384 => rsa(&ring_sig::RSA_PKCS1_SHA384),
        SignatureAlgorithm::RsaPkcs1Sha512 => rsa(&ring_sig::RSA_PKCS1_SHA512),
        SignatureAlgorithm::RsaPssSha256 => rsa(&ring_sig::RSA_PSS_SHA256),
        SignatureAlgorithm::RsaPssSha384 => rsa(&ring_sig::RSA_PSS_SHA384),
        SignatureAlgorithm::RsaPssSha512 => rsa(&ring_sig::RSA_PSS_SHA512),
        SignatureAlgorithm::Ed25519 => {
            let key = ring_sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_der)
                .map_err(unusable)?;
            Ok(key.sign(&message).as_ref().to_vec())
        }
    }
}
