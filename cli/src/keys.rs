//! Signing keys and certificate chains on disk: generation (ring for EC and Ed25519,
//! aws-lc-rs for RSA, which ring cannot generate), PKCS#8 PEM files, and which signature
//! algorithm a key signs with.

use std::fmt;
use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::ValueEnum;
use plugstore_format::signing::SignatureAlgorithm;
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, KeyPair as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// Key types `plugstore keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (the default: small, fast, supported everywhere).
    P256,
    /// ECDSA on NIST P-384.
    P384,
    /// Ed25519.
    Ed25519,
    /// RSA, 2048-bit modulus.
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
    /// RSA, 4096-bit modulus.
    Rsa4096,
}

/// The kind of a loaded private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256.
    EcP256,
    /// ECDSA P-384.
    EcP384,
    /// Ed25519.
    Ed25519,
    /// RSA with a modulus of this many bits.
    Rsa {
        /// Modulus size.
        bits: usize,
    },
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcP256 => f.write_str("ECDSA P-256"),
            Self::EcP384 => f.write_str("ECDSA P-384"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
        }
    }
}

impl KeyKind {
    /// The algorithm packages are signed with by default: ECDSA with the curve's hash,
    /// RSA-PSS with SHA-256, Ed25519.
    pub fn default_algorithm(self) -> SignatureAlgorithm {
        match self {
            Self::EcP256 => SignatureAlgorithm::EcdsaP256Sha256,
            Self::EcP384 => SignatureAlgorithm::EcdsaP384Sha384,
            Self::Ed25519 => SignatureAlgorithm::Ed25519,
            Self::Rsa { .. } => SignatureAlgorithm::RsaPssSha256,
        }
    }

    fn rcgen_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

/// A private key loaded from a PKCS#8 file.
pub struct SigningKey {
    pkcs8_der: Vec<u8>,
    kind: KeyKind,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) key file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_pem(&pem)
            .with_context(|| format!("{} is not a usable signing key", path.display()))
    }

    /// Reads a PKCS#8 PEM key.
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<Self> {
        let text = String::from_utf8_lossy(pem);
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            bail!(
                "the key is encrypted; decrypt it with `openssl pkcs8 -in KEY -out plain.key` (keep the result private)"
            );
        }
        if text.contains("-----BEGIN EC PRIVATE KEY-----")
            || text.contains("-----BEGIN RSA PRIVATE KEY-----")
        {
            bail!(
                "the key is not PKCS#8; convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out key.p8.pem`"
            );
        }
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem)
            .map_err(|e| anyhow::anyhow!("no PKCS#8 `PRIVATE KEY` PEM block: {e}"))?;
        Self::from_pkcs8_der(der.secret_pkcs8_der().to_vec())
    }

    /// Recognises a PKCS#8 DER key.
    pub fn from_pkcs8_der(pkcs8_der: Vec<u8>) -> anyhow::Result<Self> {
        let kind = detect_kind(&pkcs8_der)?;
        Ok(Self { pkcs8_der, kind })
    }

    /// The key's type.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The PKCS#8 DER bytes.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    /// The key as rcgen needs it to sign a CSR.
    pub fn rcgen_key_pair(&self) -> anyhow::Result<rcgen::KeyPair> {
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(self.pkcs8_der.as_slice()),
            self.kind.rcgen_algorithm(),
        )
        .map_err(|e| anyhow::anyhow!("cannot use the {} key for a CSR: {e}", self.kind))
    }
}

fn detect_kind(der: &[u8]) -> anyhow::Result<KeyKind> {
    let rng = SystemRandom::new();
    if ring_sig::EcdsaKeyPair::from_pkcs8(&ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
        .is_ok()
    {
        return Ok(KeyKind::EcP256);
    }
    if ring_sig::EcdsaKeyPair::from_pkcs8(&ring_sig::ECDSA_P384_SHA384_ASN1_SIGNING, der, &rng)
        .is_ok()
    {
        return Ok(KeyKind::EcP384);
    }
    if ring_sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).is_ok() {
        return Ok(KeyKind::Ed25519);
    }
    match ring_sig::RsaKeyPair::from_pkcs8(der) {
        Ok(rsa) => Ok(KeyKind::Rsa {
            bits: rsa.public().modulus_len() * 8,
        }),
        Err(e) if e.to_string() == "TooSmall" => {
            bail!("an RSA key must have at least 2048 bits")
        }
        Err(_) => bail!(
            "not a supported key; use ECDSA P-256/P-384, Ed25519 or RSA (≥ 2048 bits), e.g. from `plugstore keygen`"
        ),
    }
}

/// Generates a key; returns PKCS#8 DER.
pub fn generate(algorithm: KeyAlgorithm) -> anyhow::Result<Vec<u8>> {
    let rng = SystemRandom::new();
    let failed = |what: &str| anyhow::anyhow!("generating the {what} key failed");
    let der = match algorithm {
        KeyAlgorithm::P256 => {
            ring_sig::EcdsaKeyPair::generate_pkcs8(&ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .map_err(|_| failed("P-256"))?
                .as_ref()
                .to_vec()
        }
        KeyAlgorithm::P384 => {
            ring_sig::EcdsaKeyPair::generate_pkcs8(&ring_sig::ECDSA_P384_SHA384_ASN1_SIGNING, &rng)
                .map_err(|_| failed("P-384"))?
                .as_ref()
                .to_vec()
        }
        KeyAlgorithm::Ed25519 => ring_sig::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| failed("Ed25519"))?
            .as_ref()
            .to_vec(),
        KeyAlgorithm::Rsa2048 => generate_rsa(aws_lc_rs::rsa::KeySize::Rsa2048)?,
        KeyAlgorithm::Rsa3072 => generate_rsa(aws_lc_rs::rsa::KeySize::Rsa3072)?,
        KeyAlgorithm::Rsa4096 => generate_rsa(aws_lc_rs::rsa::KeySize::Rsa4096)?,
    };
    Ok(der)
}

fn generate_rsa(size: aws_lc_rs::rsa::KeySize) -> anyhow::Result<Vec<u8>> {
    use aws_lc_rs::encoding::AsDer as _;
    let key = aws_lc_rs::rsa::KeyPair::generate(size)
        .map_err(|_| anyhow::anyhow!("generating the RSA key failed"))?;
    let der = key
        .as_der()
        .map_err(|_| anyhow::anyhow!("encoding the RSA key as PKCS#8 failed"))?;
    Ok(der.as_ref().to_vec())
}

/// The public half of a PKCS#8 key, for display (hex of the first bytes is enough to compare).
pub fn public_key_summary(key: &SigningKey) -> Option<String> {
    let rng = SystemRandom::new();
    let public: Vec<u8> = match key.kind {
        KeyKind::EcP256 => ring_sig::EcdsaKeyPair::from_pkcs8(
            &ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING,
            &key.pkcs8_der,
            &rng,
        )
        .ok()?
        .public_key()
        .as_ref()
        .to_vec(),
        KeyKind::EcP384 => ring_sig::EcdsaKeyPair::from_pkcs8(
            &ring_sig::ECDSA_P384_SHA384_ASN1_SIGNING,
            &key.pkcs8_der,
            &rng,
        )
        .ok()?
        .public_key()
        .as_ref()
        .to_vec(),
        KeyKind::Ed25519 => ring_sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&key.pkcs8_der)
            .ok()?
            .public_key()
            .as_ref()
            .to_vec(),
        KeyKind::Rsa { .. } => ring_sig::RsaKeyPair::from_pkcs8(&key.pkcs8_der)
            .ok()?
            .public_key()
            .as_ref()
            .to_vec(),
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &public);
    Some(format!("sha256:{}", hex::encode(digest.as_ref())))
}

/// PEM text of one block, lines of 64 characters.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// Every `CERTIFICATE` block of a PEM file, in order (leaf first in a chain file).
pub fn load_chain(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .map(|block| block.map(|der| der.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{} is not valid PEM: {e}", path.display()))?;
    if chain.is_empty() {
        bail!("{} holds no CERTIFICATE block", path.display());
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_recognised_with_their_algorithm() {
        for (algorithm, kind, signature) in [
            (
                KeyAlgorithm::P256,
                KeyKind::EcP256,
                SignatureAlgorithm::EcdsaP256Sha256,
            ),
            (
                KeyAlgorithm::P384,
                KeyKind::EcP384,
                SignatureAlgorithm::EcdsaP384Sha384,
            ),
            (
                KeyAlgorithm::Ed25519,
                KeyKind::Ed25519,
                SignatureAlgorithm::Ed25519,
            ),
            (
                KeyAlgorithm::Rsa2048,
                KeyKind::Rsa { bits: 2048 },
                SignatureAlgorithm::RsaPssSha256,
            ),
        ] {
            let der = generate(algorithm).unwrap();
            let pem = pem_encode("PRIVATE KEY", &der);
            let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
            assert_eq!(key.kind(), kind, "{algorithm:?}");
            assert_eq!(key.kind().default_algorithm(), signature);
            key.rcgen_key_pair().unwrap();
            assert!(public_key_summary(&key).is_some());
        }
    }

    #[test]
    fn other_key_encodings_get_a_conversion_hint() {
        let err = SigningKey::from_pem(
            b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
        let err = SigningKey::from_pem(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
    }

    #[test]
    fn pem_lines_are_64_characters() {
        let pem = pem_encode("X", &[7u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN X-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END X-----"));
    }
}
