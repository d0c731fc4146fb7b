//! The developer's signature: the second signature a host needs besides the store's.
//!
//! The store's TUF metadata carries the developer's signature, the algorithm, the leaf's
//! fingerprint and a reference (length and SHA-256) to the certificate-chain blob. The
//! client downloads the chain, checks it against that reference before parsing it, rebuilds
//! the [`SignatureEnvelope`] the developer uploaded, and verifies it with
//! `plugstore-format`'s pipeline: the chain leads to a trusted root, is valid for code
//! signing at the publication time the store vouches for, is bound to the plugin's
//! publisher (by SAN URI from the store's CA only, or an operator's subject mapping), and
//! the signature covers this plugin, version and package digest.
//!
//! Revocation is not checked here: the store marks every version signed by a revoked
//! certificate `blocked` in its signed metadata, and blocked versions never get this far.

use std::time::Duration;

use plugstore_format::certs::{
    CertFingerprint, NoRevocations, SignerPolicy, TrustAnchors, VerifiedSigner, fingerprint,
};
use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::PluginId;
use plugstore_format::signing::{
    PayloadError, SignatureEnvelope, SignatureError, SigningPayload, verify_package_signature,
};
use plugstore_tuf::custom::PackageTarget;
use semver::Version;

/// Largest certificate-chain blob accepted: five certificates (the envelope's limit) of a few
/// KiB each in PEM.
pub const MAX_CHAIN_BYTES: u64 = 64 * 1024;

/// Why the developer signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeveloperError {
    /// The signed metadata references a chain larger than [`MAX_CHAIN_BYTES`].
    #[error("the certificate chain blob is {length} bytes; at most {MAX_CHAIN_BYTES} are accepted")]
    ChainTooLarge {
        /// The signed length.
        length: u64,
    },
    /// The chain blob is not PEM certificates.
    #[error("the certificate chain blob is not PEM certificates: {0}")]
    ChainMalformed(String),
    /// The chain's first certificate is not the leaf the signed metadata names.
    #[error("the chain's leaf is {found}, the signed metadata names {expected}")]
    LeafMismatch {
        /// `developer.leaf_sha256` from the metadata.
        expected: CertFingerprint,
        /// The fingerprint of the chain's first certificate.
        found: CertFingerprint,
    },
    /// The publication time is not a time a certificate can be checked at.
    #[error("the publication time {0} is before 1970")]
    BadPublicationTime(i64),
    /// The plugin id or version cannot form a signing payload.
    #[error("signing payload: {0}")]
    Payload(#[from] PayloadError),
    /// The chain or the signature was refused.
    #[error("developer signature: {0}")]
    Signature(#[from] SignatureError),
}

/// Reads the certificate-chain blob: `CERTIFICATE` PEM blocks, leaf first.
pub fn parse_chain(blob: &[u8]) -> Result<Vec<Vec<u8>>, DeveloperError> {
    let blocks =
        pem::parse_many(blob).map_err(|error| DeveloperError::ChainMalformed(error.to_string()))?;
    let mut chain = Vec::with_capacity(blocks.len());
    for block in blocks {
        if block.tag() != "CERTIFICATE" {
            return Err(DeveloperError::ChainMalformed(format!(
                "a `{}` block where only certificates belong",
                block.tag()
            )));
        }
        chain.push(block.into_contents());
    }
    if chain.is_empty() {
        return Err(DeveloperError::ChainMalformed(
            "no certificate in it".to_owned(),
        ));
    }
    Ok(chain)
}

/// Verifies the developer signature of `plugin` `version` whose package is `digest`, from
/// the package's signed metadata and its certificate chain (DER, leaf first).
pub fn verify_developer(
    plugin: &PluginId,
    version: &Version,
    digest: PackageDigest,
    package: &PackageTarget,
    chain: Vec<Vec<u8>>,
    anchors: &TrustAnchors,
    policy: &SignerPolicy,
) -> Result<VerifiedSigner, DeveloperError> {
    let developer = &package.developer;
    let leaf = chain
        .first()
        .ok_or_else(|| DeveloperError::ChainMalformed("no certificate in it".to_owned()))?;
    let found = fingerprint(leaf);
    if found != developer.leaf_sha256 {
        return Err(DeveloperError::LeafMismatch {
            expected: developer.leaf_sha256,
            found,
        });
    }
    let published = package.published_at.as_seconds();
    let seconds =
        u64::try_from(published).map_err(|_| DeveloperError::BadPublicationTime(published))?;
    let at = plugstore_format::certs::UnixTime::since_unix_epoch(Duration::from_secs(seconds));
    let envelope = SignatureEnvelope::new(developer.algorithm, developer.signature.clone(), chain);
    let payload = SigningPayload::new(&plugin.to_string(), &version.to_string(), digest)?;
    Ok(verify_package_signature(
        &envelope,
        &payload,
        anchors,
        policy,
        at,
        &NoRevocations,
    )?)
}
