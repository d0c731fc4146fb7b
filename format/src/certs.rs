//! X.509 validation of a package signer and its binding to a publisher.
//!
//! A developer signature is only worth something when the key that made it belongs to a
//! certificate that chains to a root the store trusts, is meant for code signing, and names the
//! publisher whose plugin is signed. [`verify_signer`] decides that for a chain taken from a
//! [`SignatureEnvelope`](crate::signing::SignatureEnvelope).
//!
//! Path building and the RFC 5280 checks (signatures along the chain, validity windows,
//! `basicConstraints`, path length, extended key usage) are done by rustls-webpki, the validator
//! rustls uses; x509-parser reads what webpki does not expose: SAN URIs and subject attributes
//! for the publisher binding, key types and sizes, `keyUsage`, and the details that make an
//! error message useful.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde::{Deserialize, Serialize};
use x509_parser::certificate::{Validity, X509Certificate};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use crate::signing::SignatureAlgorithm;

/// The validation time, in seconds since the Unix epoch (re-exported from `rustls-pki-types`).
pub use rustls_pki_types::UnixTime;

/// Most certificates a signature envelope may carry: the leaf and up to four issuers.
///
/// Real code-signing chains have one or two intermediates; the bound keeps path building and
/// parsing cheap for envelopes that come from strangers.
pub const MAX_CHAIN_LEN: usize = 5;

/// The DER content bytes of the `id-kp-codeSigning` extended key usage, 1.3.6.1.5.5.7.3.3.
pub const CODE_SIGNING_OID_DER_VALUE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// The SAN URI prefix by which a certificate names its publisher: `urn:plugstore:publisher:<id>`.
///
/// The store's own CA puts exactly one such URI into every certificate it issues.
pub const PUBLISHER_URI_PREFIX: &str = "urn:plugstore:publisher:";

/// The smallest RSA modulus accepted whatever the policy says; ring verifies nothing smaller.
pub const MIN_RSA_BITS_FLOOR: usize = 2048;

/// The SHA-256 of a certificate's DER encoding: how certificates are named in revocation lists,
/// trust configuration and subject mappings.
///
/// Displays and serialises as `sha256:<64 lowercase hex digits>`, like
/// [`PackageDigest`](crate::digest::PackageDigest); parses from that, from bare hex, and from
/// the uppercase, `:`-separated form `openssl x509 -noout -fingerprint -sha256` prints, so
/// operators can paste either into configuration.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertFingerprint(pub [u8; 32]);

impl CertFingerprint {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for CertFingerprint {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

/// Why a string is not a certificate fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a certificate fingerprint is `sha256:` and 64 hex digits, optionally separated by ':'")]
pub struct FingerprintParseError;

impl FromStr for CertFingerprint {
    type Err = FingerprintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim().to_ascii_lowercase();
        let text = text
            .strip_prefix("sha256 fingerprint=")
            .or_else(|| text.strip_prefix("sha256:"))
            .unwrap_or(&text);
        let digits: String = text.chars().filter(|c| *c != ':').collect();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes).map_err(|_| FingerprintParseError)?;
        Ok(Self(bytes))
    }
}

impl Serialize for CertFingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CertFingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The SHA-256 fingerprint of a DER-encoded certificate.
pub fn fingerprint(der: &[u8]) -> CertFingerprint {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    CertFingerprint(bytes)
}

/// A certificate's issuer and serial number, as a CRL names it, rendered as
/// [`VerifiedSigner::issuer`] and [`VerifiedSigner::serial_hex`] are.
///
/// Unlike the [`fingerprint`], it is the same for every encoding of one certificate. An
/// ECDSA signature (r, s) verifies as (r, n − s) too, so anyone holding a certificate can
/// make a second, equally valid one with a different fingerprint; a revocation must reach
/// both, and only what the issuer signed identifies the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssuerSerial {
    /// The issuer's distinguished name.
    pub issuer: String,
    /// The serial number, lowercase hex of its encoded bytes.
    pub serial_hex: String,
}

/// The issuer and serial of a DER certificate; `None` when it does not parse (verification
/// then refuses it as malformed).
pub fn issuer_serial(der: &[u8]) -> Option<IssuerSerial> {
    let certificate = parse_certificate(der).ok()?;
    Some(IssuerSerial {
        issuer: name_to_string(certificate.issuer()),
        serial_hex: hex::encode(certificate.raw_serial()),
    })
}

/// The kind of public key a certificate holds, as far as package signing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PublicKeyKind {
    /// An RSA key (`rsaEncryption`) with a modulus of `bits` bits.
    Rsa {
        /// The size of the modulus in bits.
        bits: usize,
    },
    /// An ECDSA key on NIST P-256.
    EcP256,
    /// An ECDSA key on NIST P-384.
    EcP384,
    /// An Ed25519 key.
    Ed25519,
}

impl fmt::Display for PublicKeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
            Self::EcP256 => f.write_str("EC P-256"),
            Self::EcP384 => f.write_str("EC P-384"),
            Self::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// Reads the key type (and RSA size) of a subject public key; `Err` describes a key type that
/// package signing does not support.
pub(crate) fn public_key_kind(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKeyKind, String> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Ok(PublicKeyKind::Rsa {
                bits: unsigned_bit_length(rsa.modulus),
            }),
            _ => Err("an RSA key whose encoding is malformed".to_owned()),
        }
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|parameters| parameters.as_oid().ok());
        match curve {
            Some(curve) if curve == OID_EC_P256 => Ok(PublicKeyKind::EcP256),
            Some(curve) if curve == OID_NIST_EC_P384 => Ok(PublicKeyKind::EcP384),
            Some(curve) => Err(format!(
                "an EC key on curve {curve}; only P-256 and P-384 are supported"
            )),
            None => Err("an EC key without a named curve".to_owned()),
        }
    } else if *algorithm == OID_SIG_ED25519 {
        Ok(PublicKeyKind::Ed25519)
    } else {
        Err(format!(
            "a key of algorithm {algorithm}, which is not supported"
        ))
    }
}

/// The bit length of a big-endian unsigned integer as DER stores it (possibly with a leading
/// zero byte). x509-parser's own `key_size` is off for moduli without the zero byte.
fn unsigned_bit_length(bytes: &[u8]) -> usize {
    let significant = match bytes.iter().position(|b| *b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    let leading_zeros = significant[0].leading_zeros() as usize;
    significant.len() * 8 - leading_zeros
}

/// The certificates an operator trusts as roots for developer signatures.
///
/// Keeps, for each root, webpki's [`TrustAnchor`] (for path building) and the owned DER (for
/// fingerprints, subject mappings and display). Only CA certificates (`basicConstraints
/// CA:true`) are accepted, so a leaf pasted into the trust configuration by mistake is refused
/// rather than silently trusted. Like webpki, anchors are trusted as configured: their own
/// validity window is not checked.
#[derive(Debug, Default, Clone)]
pub struct TrustAnchors {
    anchors: Vec<TrustAnchor<'static>>,
    certificates: Vec<TrustedCertificate>,
}

/// One trusted root, as loaded.
#[derive(Debug, Clone)]
pub struct TrustedCertificate {
    /// The DER encoding.
    pub der: Vec<u8>,
    /// SHA-256 of [`der`](Self::der).
    pub fingerprint: CertFingerprint,
    /// The subject, for display.
    pub subject: String,
}

/// Why a trust anchor could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustAnchorError {
    /// The PEM text could not be read.
    #[error("cannot read PEM certificates: {0}")]
    Pem(String),
    /// The input held no certificate at all.
    #[error("no certificate found")]
    NoCertificates,
    /// A certificate could not be parsed.
    #[error("trust anchor {index} is malformed: {reason}")]
    Malformed {
        /// Position of the certificate in the input.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate is not a CA certificate.
    #[error("trust anchor {subject:?} is not a CA certificate (basicConstraints CA:true missing)")]
    NotCa {
        /// The subject of the refused certificate.
        subject: String,
    },
}

impl TrustAnchors {
    /// An empty set: nothing verifies against it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts each DER-encoded certificate of `certificates`.
    pub fn from_der_certs<I>(certificates: I) -> Result<Self, TrustAnchorError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut anchors = Self::new();
        for (index, der) in certificates.into_iter().enumerate() {
            anchors.add_der_at(der.as_ref(), index)?;
        }
        if anchors.is_empty() {
            return Err(TrustAnchorError::NoCertificates);
        }
        Ok(anchors)
    }

    /// Trusts every `CERTIFICATE` block of a PEM text (other blocks are ignored).
    pub fn from_pem(pem: &[u8]) -> Result<Self, TrustAnchorError> {
        let mut anchors = Self::new();
        anchors.add_pem(pem)?;
        Ok(anchors)
    }

    /// Adds one DER-encoded certificate; returns its fingerprint. Adding a root twice is a no-op.
    pub fn add_der(&mut self, der: &[u8]) -> Result<CertFingerprint, TrustAnchorError> {
        self.add_der_at(der, 0)
    }

    /// Adds every `CERTIFICATE` block of a PEM text; returns how many certificates it held.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<usize, TrustAnchorError> {
        let mut count = 0;
        for (index, block) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let der = block.map_err(|e| TrustAnchorError::Pem(e.to_string()))?;
            self.add_der_at(der.as_ref(), index)?;
            count += 1;
        }
        if count == 0 {
            return Err(TrustAnchorError::NoCertificates);
        }
        Ok(count)
    }

    fn add_der_at(
        &mut self,
        der: &[u8],
        index: usize,
    ) -> Result<CertFingerprint, TrustAnchorError> {
        let malformed = |reason: String| TrustAnchorError::Malformed { index, reason };
        let parsed = parse_certificate(der).map_err(malformed)?;
        let subject = name_to_string(parsed.subject());
        if !parsed.is_ca() {
            return Err(TrustAnchorError::NotCa { subject });
        }
        let fingerprint = fingerprint(der);
        if self
            .certificates
            .iter()
            .any(|c| c.fingerprint == fingerprint)
        {
            return Ok(fingerprint);
        }
        let cert_der = CertificateDer::from(der);
        let anchor = webpki::anchor_from_trusted_cert(&cert_der)
            .map_err(|e| malformed(format!("{e:?}")))?
            .to_owned();
        self.anchors.push(anchor);
        self.certificates.push(TrustedCertificate {
            der: der.to_vec(),
            fingerprint,
            subject,
        });
        Ok(fingerprint)
    }

    /// How many roots are trusted.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// Whether no root is trusted.
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    /// The trusted roots, in the order they were added.
    pub fn certificates(&self) -> &[TrustedCertificate] {
        &self.certificates
    }

    /// The trusted root webpki chose for a verified path.
    fn certificate_for(&self, anchor: &TrustAnchor<'_>) -> Option<&TrustedCertificate> {
        let position = self
            .anchors
            .iter()
            .position(|a| std::ptr::eq(a, anchor))
            .or_else(|| {
                self.anchors.iter().position(|a| {
                    a.subject == anchor.subject
                        && a.subject_public_key_info == anchor.subject_public_key_info
                })
            })?;
        self.certificates.get(position)
    }
}

/// An operator's rule binding certificates from another CA (one that does not issue
/// `urn:plugstore:publisher:` URIs) to a publisher by their subject.
///
/// Every field that is given must match exactly (byte for byte, case-sensitive); a subject
/// attribute matches only when the subject holds exactly one attribute of that type. A mapping
/// that names neither an organization nor a common name matches nothing: "everything from this
/// CA is publisher X" must be written as a subject rule, never by accident. Give
/// `anchor_fingerprint` whenever more than one root is trusted, or any CA willing to put that
/// organization name in a certificate can sign for the publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectMapping {
    /// The trusted root the chain must end in.
    #[serde(default)]
    pub anchor_fingerprint: Option<CertFingerprint>,
    /// The subject's organization (O) must be exactly this.
    #[serde(default)]
    pub subject_organization: Option<String>,
    /// The subject's common name (CN) must be exactly this.
    #[serde(default)]
    pub subject_common_name: Option<String>,
    /// The publisher such a certificate signs for.
    pub publisher: String,
}

impl SubjectMapping {
    fn matches(&self, leaf: &X509Certificate<'_>, anchor: &CertFingerprint) -> bool {
        if self.subject_organization.is_none() && self.subject_common_name.is_none() {
            return false;
        }
        let anchor_ok = self
            .anchor_fingerprint
            .is_none_or(|wanted| wanted == *anchor);
        let organization_ok = self.subject_organization.as_deref().is_none_or(|wanted| {
            single_attribute(leaf.subject().iter_organization()) == Some(wanted)
        });
        let common_name_ok = self.subject_common_name.as_deref().is_none_or(|wanted| {
            single_attribute(leaf.subject().iter_common_name()) == Some(wanted)
        });
        anchor_ok && organization_ok && common_name_ok
    }
}

/// The value of the only attribute of a kind, or `None` when there are none, several, or it is
/// not a string.
fn single_attribute<'a, 'b: 'a>(
    mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'b>>,
) -> Option<&'b str> {
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.as_str().ok()
}

/// What the operator accepts from developer signers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignerPolicy {
    /// Extra subject-based bindings for certificates from other CAs.
    pub subject_mappings: Vec<SubjectMapping>,
    /// Smallest RSA modulus accepted for the signing key; never below [`MIN_RSA_BITS_FLOOR`].
    pub min_rsa_bits: usize,
    /// Signature algorithms a package signature may use.
    pub allowed_algorithms: Vec<SignatureAlgorithm>,
    /// Roots whose certificates may bind a publisher by SAN URI. `None`: every trusted root.
    ///
    /// Set it to the store's own CA when other roots are trusted too, so that a third-party CA
    /// cannot bind a publisher merely by writing `urn:plugstore:publisher:<id>` into a
    /// certificate it issues.
    pub publisher_uri_anchors: Option<Vec<CertFingerprint>>,
}

impl Default for SignerPolicy {
    fn default() -> Self {
        Self {
            subject_mappings: Vec::new(),
            min_rsa_bits: MIN_RSA_BITS_FLOOR,
            allowed_algorithms: SignatureAlgorithm::ALL.to_vec(),
            publisher_uri_anchors: None,
        }
    }
}

/// The store's revoked certificates, by [`fingerprint`].
///
/// Implemented for closures, `HashSet`/`BTreeSet` of fingerprints and [`NoRevocations`].
pub trait RevocationList {
    /// Whether the certificate with this fingerprint is revoked.
    fn is_revoked(&self, fingerprint: &CertFingerprint) -> bool;
}

impl<F: Fn(&CertFingerprint) -> bool> RevocationList for F {
    fn is_revoked(&self, fingerprint: &CertFingerprint) -> bool {
        self(fingerprint)
    }
}

impl RevocationList for HashSet<CertFingerprint> {
    fn is_revoked(&self, fingerprint: &CertFingerprint) -> bool {
        self.contains(fingerprint)
    }
}

impl RevocationList for BTreeSet<CertFingerprint> {
    fn is_revoked(&self, fingerprint: &CertFingerprint) -> bool {
        self.contains(fingerprint)
    }
}

/// A revocation list with nothing on it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRevocations;

impl RevocationList for NoRevocations {
    fn is_revoked(&self, _: &CertFingerprint) -> bool {
        false
    }
}

/// How a verified certificate is bound to the publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum BindingKind {
    /// The certificate carries the SAN URI `urn:plugstore:publisher:<publisher>`.
    PublisherUri,
    /// The operator's subject mapping at this index of [`SignerPolicy::subject_mappings`] matched.
    SubjectMapping {
        /// Index into the policy's mappings.
        index: usize,
    },
}

/// A signer certificate that passed [`verify_signer`], with what is worth recording about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSigner {
    /// SHA-256 of the leaf certificate.
    pub leaf_fingerprint: CertFingerprint,
    /// SHA-256 of the trusted root the chain ends in.
    pub anchor_fingerprint: CertFingerprint,
    /// The leaf's subject, RFC 4514 style.
    pub subject: String,
    /// The leaf's issuer, RFC 4514 style.
    pub issuer: String,
    /// The leaf's serial number, lowercase hex.
    pub serial_hex: String,
    /// Start of the leaf's validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of the leaf's validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// The leaf's key.
    pub key: PublicKeyKind,
    /// How the leaf is bound to the publisher.
    pub binding: BindingKind,
}

/// Why a signer certificate chain is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// No certificate at all.
    #[error("the certificate chain is empty")]
    EmptyChain,
    /// More certificates than [`MAX_CHAIN_LEN`].
    #[error("the certificate chain has {len} certificates; at most {max} are accepted")]
    ChainTooLong {
        /// Certificates given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A certificate is not valid DER X.509.
    #[error("certificate {index} of the chain is malformed: {reason}")]
    Malformed {
        /// Position in the chain (0 is the leaf).
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate of the chain (or its root) is on the store's revocation list.
    #[error("certificate {subject:?} ({fingerprint}) has been revoked")]
    Revoked {
        /// The revoked certificate.
        fingerprint: CertFingerprint,
        /// Its subject.
        subject: String,
    },
    /// The signing certificate is a CA certificate.
    #[error(
        "the signing certificate {subject:?} is a CA certificate (basicConstraints CA:true); \
         packages must be signed with an end-entity certificate"
    )]
    LeafIsCa {
        /// The leaf's subject.
        subject: String,
    },
    /// A certificate of the chain is not valid for code signing.
    #[error(
        "certificate {subject:?} is not valid for code signing: its extendedKeyUsage does not \
         include codeSigning (1.3.6.1.5.5.7.3.3)"
    )]
    MissingCodeSigning {
        /// The subject of the certificate that lacks it (the leaf or an issuer).
        subject: String,
    },
    /// The signing certificate's keyUsage does not allow digital signatures.
    #[error("the signing certificate {subject:?} {}", missing_digital_signature(*.key_usage_present))]
    MissingDigitalSignature {
        /// The leaf's subject.
        subject: String,
        /// Whether a keyUsage extension is present (without digitalSignature) or absent.
        key_usage_present: bool,
    },
    /// The signing key is an RSA key below the policy's minimum.
    #[error("the signing key is RSA-{bits}; at least {min_bits} bits are required")]
    WeakKey {
        /// Size of the key's modulus.
        bits: usize,
        /// The policy's minimum.
        min_bits: usize,
    },
    /// The signing key is of a type package signing does not support.
    #[error("the signing certificate holds {key}")]
    UnsupportedKey {
        /// Description of the key.
        key: String,
    },
    /// A certificate of the chain had expired at the validation time.
    #[error("certificate {subject:?} expired on {}", human_time(*.not_after))]
    Expired {
        /// The expired certificate's subject.
        subject: String,
        /// Its notAfter, seconds since the Unix epoch.
        not_after: i64,
    },
    /// A certificate of the chain was not yet valid at the validation time.
    #[error("certificate {subject:?} is not valid before {}", human_time(*.not_before))]
    NotYetValid {
        /// The certificate's subject.
        subject: String,
        /// Its notBefore, seconds since the Unix epoch.
        not_before: i64,
    },
    /// An issuing certificate of the chain is not a CA.
    #[error(
        "certificate {subject:?} issues another certificate but is not a CA (basicConstraints CA:true missing)"
    )]
    IssuerNotCa {
        /// The subject of the non-CA issuer.
        subject: String,
    },
    /// An issuer's pathLenConstraint forbids a chain this long.
    #[error("the chain has more intermediate CAs than an issuer's pathLenConstraint allows")]
    PathLenExceeded,
    /// The chain does not lead to any trusted root.
    #[error("the chain does not lead to a trusted root (top issuer: {issuer:?})")]
    UnknownIssuer {
        /// The issuer named by the last certificate of the chain.
        issuer: String,
    },
    /// A certificate's signature does not verify with its issuer's key.
    #[error("a certificate of the chain is not signed by the issuer it names")]
    BadChainSignature,
    /// The certificate is valid but does not speak for this publisher.
    #[error("the signing certificate is not bound to publisher {publisher:?} (found {found})")]
    NotBoundToPublisher {
        /// The publisher the signature was checked for.
        publisher: String,
        /// What the certificate does name: SAN URIs, subject and root.
        found: String,
    },
    /// Any other validation failure, as webpki reports it.
    #[error("the certificate chain is invalid: {0}")]
    Invalid(String),
}

fn missing_digital_signature(key_usage_present: bool) -> &'static str {
    if key_usage_present {
        "has a keyUsage extension without digitalSignature"
    } else {
        "has no keyUsage extension; digitalSignature is required"
    }
}

fn human_time(seconds: i64) -> String {
    ASN1Time::from_timestamp(seconds)
        .ok()
        .and_then(|time| time.to_rfc2822().ok())
        .unwrap_or_else(|| format!("{seconds} (Unix time)"))
}

/// Decides whether `chain` (DER, leaf first, then its issuers) identifies a signer of packages
/// for `publisher` at time `at`.
///
/// The checks run in this order, so that the first error is the most useful one:
///
/// 1. Shape: the chain is not empty and has at most [`MAX_CHAIN_LEN`] certificates
///    ([`CertError::EmptyChain`], [`CertError::ChainTooLong`]).
/// 2. Every certificate parses as X.509 ([`CertError::Malformed`]).
/// 3. No certificate given is revoked ([`CertError::Revoked`]): the store's explicit decision
///    is the most important thing to tell, whatever else is wrong.
/// 4. The leaf's own profile, which no chain can repair: not a CA ([`CertError::LeafIsCa`]),
///    an extendedKeyUsage that includes codeSigning ([`CertError::MissingCodeSigning`]), a
///    keyUsage that includes digitalSignature ([`CertError::MissingDigitalSignature`]; an
///    absent keyUsage is refused too, since every CA that issues code-signing certificates
///    sets it, and requiring it keeps the leaf's purpose explicit), a supported key of
///    sufficient size ([`CertError::UnsupportedKey`], [`CertError::WeakKey`]).
/// 5. Path building and validation by webpki: signatures along the chain, validity windows of
///    leaf and intermediates, basicConstraints and pathLenConstraint of issuers, and
///    codeSigning in every extendedKeyUsage that an intermediate carries
///    ([`CertError::Expired`], [`CertError::NotYetValid`], [`CertError::IssuerNotCa`],
///    [`CertError::PathLenExceeded`], [`CertError::MissingCodeSigning`],
///    [`CertError::BadChainSignature`], [`CertError::UnknownIssuer`], [`CertError::Invalid`]).
/// 6. The root the path ends in is not revoked ([`CertError::Revoked`]).
/// 7. The leaf is bound to `publisher`, by SAN URI or by a subject mapping
///    ([`CertError::NotBoundToPublisher`]). This comes last: only a certificate that is valid
///    in every other respect is worth telling "you signed for the wrong publisher".
///
/// webpki is asked for codeSigning with `KeyUsage::required_if_present`, not `required`:
/// webpki applies the EKU check to intermediates as well, and `required` would refuse every
/// intermediate without an extendedKeyUsage extension, which is the common case. The leaf's
/// EKU is made mandatory by step 4 instead.
pub fn verify_signer(
    chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    policy: &SignerPolicy,
    publisher: &str,
    at: UnixTime,
    revocations: &(impl RevocationList + ?Sized),
) -> Result<VerifiedSigner, CertError> {
    // 1. Shape.
    if chain.is_empty() {
        return Err(CertError::EmptyChain);
    }
    if chain.len() > MAX_CHAIN_LEN {
        return Err(CertError::ChainTooLong {
            len: chain.len(),
            max: MAX_CHAIN_LEN,
        });
    }

    // 2. Parse.
    let parsed = chain
        .iter()
        .enumerate()
        .map(|(index, der)| {
            parse_certificate(der).map_err(|reason| CertError::Malformed { index, reason })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = &parsed[0];
    let leaf_subject = name_to_string(leaf.subject());

    // 3. Revocation of what was presented.
    for (der, cert) in chain.iter().zip(&parsed) {
        let fingerprint = fingerprint(der);
        if revocations.is_revoked(&fingerprint) {
            return Err(CertError::Revoked {
                fingerprint,
                subject: name_to_string(cert.subject()),
            });
        }
    }

    // 4. Leaf profile.
    let key = check_leaf_profile(leaf, &leaf_subject, policy)?;

    // 5. Path validation.
    let leaf_der = CertificateDer::from(chain[0].as_slice());
    let end_entity =
        webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| CertError::Malformed {
            index: 0,
            reason: format!("{e:?}"),
        })?;
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let path = end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors.anchors,
            &intermediates,
            at,
            webpki::KeyUsage::required_if_present(CODE_SIGNING_OID_DER_VALUE),
            None,
            None,
        )
        .map_err(|e| map_webpki_error(e, &parsed))?;
    let anchor = anchors.certificate_for(path.anchor()).ok_or_else(|| {
        CertError::Invalid("the verified path ends in an unknown root".to_owned())
    })?;

    // 6. Revocation of the root.
    if revocations.is_revoked(&anchor.fingerprint) {
        return Err(CertError::Revoked {
            fingerprint: anchor.fingerprint,
            subject: anchor.subject.clone(),
        });
    }

    // 7. Publisher binding.
    let binding = bind_to_publisher(leaf, &leaf_subject, &anchor.fingerprint, policy, publisher)?;

    Ok(VerifiedSigner {
        leaf_fingerprint: fingerprint(&chain[0]),
        anchor_fingerprint: anchor.fingerprint,
        subject: leaf_subject,
        issuer: name_to_string(leaf.issuer()),
        serial_hex: hex::encode(leaf.raw_serial()),
        not_before: leaf.validity().not_before.timestamp(),
        not_after: leaf.validity().not_after.timestamp(),
        key,
        binding,
    })
}

/// Parses one DER certificate strictly: no trailing bytes.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok((rest, _)) if !rest.is_empty() => {
            Err(format!("{} bytes after the certificate", rest.len()))
        }
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(e.to_string()),
    }
}

fn name_to_string(name: &X509Name<'_>) -> String {
    let text = name.to_string();
    if text.is_empty() {
        "(empty subject)".to_owned()
    } else {
        text
    }
}

/// Step 4 of [`verify_signer`]: what the leaf must be on its own.
fn check_leaf_profile(
    leaf: &X509Certificate<'_>,
    subject: &str,
    policy: &SignerPolicy,
) -> Result<PublicKeyKind, CertError> {
    let malformed = |e: x509_parser::error::X509Error| CertError::Malformed {
        index: 0,
        reason: e.to_string(),
    };

    let is_ca = leaf
        .basic_constraints()
        .map_err(malformed)?
        .is_some_and(|bc| bc.value.ca);
    if is_ca {
        return Err(CertError::LeafIsCa {
            subject: subject.to_owned(),
        });
    }

    let code_signing = leaf
        .extended_key_usage()
        .map_err(malformed)?
        .is_some_and(|eku| eku.value.code_signing);
    if !code_signing {
        return Err(CertError::MissingCodeSigning {
            subject: subject.to_owned(),
        });
    }

    let key_usage = leaf.key_usage().map_err(malformed)?;
    if !key_usage
        .as_ref()
        .is_some_and(|ku| ku.value.digital_signature())
    {
        return Err(CertError::MissingDigitalSignature {
            subject: subject.to_owned(),
            key_usage_present: key_usage.is_some(),
        });
    }

    let key =
        public_key_kind(leaf.public_key()).map_err(|key| CertError::UnsupportedKey { key })?;
    let min_bits = policy.min_rsa_bits.max(MIN_RSA_BITS_FLOOR);
    if let PublicKeyKind::Rsa { bits } = key
        && bits < min_bits
    {
        return Err(CertError::WeakKey { bits, min_bits });
    }
    Ok(key)
}

/// Turns webpki's verdict into a [`CertError`] naming the certificate at fault where webpki
/// does not say which one it was.
fn map_webpki_error(error: webpki::Error, chain: &[X509Certificate<'_>]) -> CertError {
    let subject_of = |cert: &X509Certificate<'_>| name_to_string(cert.subject());
    let issuers = || chain.iter().skip(1);
    // webpki gives the offending time but not the certificate: find the one that has it.
    let subject_with_time = |time: i64, of: fn(&Validity) -> &ASN1Time| {
        subject_of(
            chain
                .iter()
                .find(|c| of(c.validity()).timestamp() == time)
                .unwrap_or(&chain[0]),
        )
    };
    let seconds = |time: UnixTime| i64::try_from(time.as_secs()).unwrap_or(i64::MAX);
    match error {
        webpki::Error::CertExpired { not_after, .. } => {
            let not_after = seconds(not_after);
            CertError::Expired {
                subject: subject_with_time(not_after, |v| &v.not_after),
                not_after,
            }
        }
        webpki::Error::CertNotValidYet { not_before, .. } => {
            let not_before = seconds(not_before);
            CertError::NotYetValid {
                subject: subject_with_time(not_before, |v| &v.not_before),
                not_before,
            }
        }
        webpki::Error::EndEntityUsedAsCa => match issuers().find(|c| !c.is_ca()) {
            Some(cert) => CertError::IssuerNotCa {
                subject: subject_of(cert),
            },
            None => CertError::Invalid("an issuer of the chain is not a CA".to_owned()),
        },
        webpki::Error::CaUsedAsEndEntity => CertError::LeafIsCa {
            subject: subject_of(&chain[0]),
        },
        webpki::Error::PathLenConstraintViolated => CertError::PathLenExceeded,
        webpki::Error::RequiredEkuNotFoundContext(_) | webpki::Error::EmptyEkuExtension => {
            let lacking = issuers().find(|c| {
                c.extended_key_usage()
                    .ok()
                    .flatten()
                    .is_some_and(|eku| !eku.value.code_signing)
            });
            CertError::MissingCodeSigning {
                subject: subject_of(lacking.unwrap_or(&chain[0])),
            }
        }
        webpki::Error::InvalidSignatureForPublicKey => CertError::BadChainSignature,
        webpki::Error::UnknownIssuer => CertError::UnknownIssuer {
            issuer: chain
                .last()
                .map(|top| name_to_string(top.issuer()))
                .unwrap_or_default(),
        },
        other => CertError::Invalid(format!("{other:?}")),
    }
}

/// Step 7 of [`verify_signer`].
fn bind_to_publisher(
    leaf: &X509Certificate<'_>,
    subject: &str,
    anchor: &CertFingerprint,
    policy: &SignerPolicy,
    publisher: &str,
) -> Result<BindingKind, CertError> {
    let uris: Vec<&str> = match leaf.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            return Err(CertError::Malformed {
                index: 0,
                reason: e.to_string(),
            });
        }
    };

    if !publisher.is_empty() {
        let wanted = format!("{PUBLISHER_URI_PREFIX}{publisher}");
        let anchor_may_bind = policy
            .publisher_uri_anchors
            .as_ref()
            .is_none_or(|allowed| allowed.contains(anchor));
        if anchor_may_bind && uris.contains(&wanted.as_str()) {
            return Ok(BindingKind::PublisherUri);
        }
        if let Some(index) = policy
            .subject_mappings
            .iter()
            .position(|m| m.publisher == publisher && m.matches(leaf, anchor))
        {
            return Ok(BindingKind::SubjectMapping { index });
        }
    }

    let uris = if uris.is_empty() {
        "no SAN URI".to_owned()
    } else {
        format!("SAN URIs [{}]", uris.join(", "))
    };
    Err(CertError::NotBoundToPublisher {
        publisher: publisher.to_owned(),
        found: format!("{uris}; subject {subject:?}; root {anchor}"),
    })
}
