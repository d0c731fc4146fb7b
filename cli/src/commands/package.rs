//! `pack`, `sign` and `verify`: everything that works on package files without an account.
//!
//! Reading, signing and verifying use the `plugstore-format` crate, the same code the store
//! runs on upload, so what passes here passes there (given the same trust configuration).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plugstore_format::certs::{
    CertError, CertFingerprint, PUBLISHER_URI_PREFIX, SignerPolicy, TrustAnchors, UnixTime,
    fingerprint, issuer_serial,
};
use plugstore_format::digest::PackageDigest;
use plugstore_format::limits::PackageLimits;
use plugstore_format::manifest::Manifest;
use plugstore_format::package::{PackageBuilder, PackageContents, read_package};
use plugstore_format::signing::{
    SignatureAlgorithm, SignatureEnvelope, SignatureError, SigningPayload, sign_payload,
    verify_package_signature, verify_signature,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Serialize;

use crate::api::{CertificateView, RegistryClient};
use crate::commands::keys::load_key;
use crate::config::{ConfigDir, FileMode, normalize_registry, set_mode, write_atomically};
use crate::context::{Globals, rfc3339};
use crate::hints::{HintExt as _, hinted};
use crate::keys::load_chain;

/// What `pack` made, for `--json`.
#[derive(Debug, Serialize)]
pub struct PackedPackage {
    /// `publisher/name`.
    pub plugin: String,
    /// Version from plugin.toml.
    pub version: String,
    /// The package file.
    pub file: String,
    /// `sha256:<hex>`.
    pub digest: PackageDigest,
    /// Bytes.
    pub size: u64,
}

/// `plugstore pack DIR`.
pub fn pack(globals: &Globals, dir: &Path, out: Option<PathBuf>) -> anyhow::Result<()> {
    let builder = package_builder(dir)?;
    let manifest = builder.manifest();
    let out = out.unwrap_or_else(|| default_package_name(manifest));
    let (digest, size) = write_package(&builder, &out)?;
    let packed = PackedPackage {
        plugin: manifest.id().to_string(),
        version: manifest.version().to_string(),
        file: out.display().to_string(),
        digest,
        size,
    };
    globals.out.print(&packed, || {
        format!(
            "packed {} {} into {}\n  digest: {}\n  size:   {} bytes",
            packed.plugin, packed.version, packed.file, packed.digest, packed.size
        )
    })
}

/// `<name>-<version>.tar` in the current directory.
fn default_package_name(manifest: &Manifest) -> PathBuf {
    PathBuf::from(format!(
        "{}-{}.tar",
        manifest.id().name(),
        manifest.version()
    ))
}

/// Checks a plugin directory and prepares its package.
pub fn package_builder(dir: &Path) -> anyhow::Result<PackageBuilder> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    PackageBuilder::from_dir(dir)
        .with_context(|| format!("cannot package {}", dir.display()))
        .hint("fix what the message names; the publisher guide's package format page lists every rule")
}

/// Writes the package to `out` (through a temporary file, so `out` is whole or untouched).
fn write_package(builder: &PackageBuilder, out: &Path) -> anyhow::Result<(PackageDigest, u64)> {
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let temp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let (digest, size) = write_package_to(builder, temp.as_file())?;
    set_mode(temp.path(), FileMode::Public)?;
    temp.persist(out)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok((digest, size))
}

/// Streams the package into `file` and makes it durable.
pub fn write_package_to(
    builder: &PackageBuilder,
    file: &File,
) -> anyhow::Result<(PackageDigest, u64)> {
    let mut writer = BufWriter::new(file);
    let (digest, size) = builder.write_to(&mut writer)?;
    writer.flush()?;
    file.sync_all()?;
    Ok((digest, size))
}

/// Reads a package file with the strict reader (the store's own checks).
pub fn read_package_file(path: &Path) -> anyhow::Result<PackageContents> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_package(BufReader::new(file), &PackageLimits::default())
        .with_context(|| format!("{} is not a valid package", path.display()))
}

/// The payload a package's signature covers.
pub fn payload_of(manifest: &Manifest, digest: PackageDigest) -> anyhow::Result<SigningPayload> {
    Ok(SigningPayload::new(
        &manifest.id().to_string(),
        &manifest.version().to_string(),
        digest,
    )?)
}

/// Where the key and certificate chain come from.
#[derive(Debug, Default, Clone)]
pub struct SignerFiles {
    /// Private key (default: the default key).
    pub key: Option<PathBuf>,
    /// Certificate chain, leaf first (default: `keys/<publisher>.chain.pem`).
    pub cert: Option<PathBuf>,
    /// Algorithm (default: the key's natural one).
    pub algorithm: Option<SignatureAlgorithm>,
}

/// How much of the certificate `sign` checks before signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafChecks {
    /// Validity window and the publisher named by its `urn:plugstore:publisher:` URI.
    Full,
    /// Validity window only: when the store is asked next, its answer (membership, subject
    /// mappings) is more precise than a local guess about the binding.
    ValidityOnly,
}

/// Signs `payload`, after checking locally what the store would refuse anyway: a key that
/// does not belong to the certificate, an expired certificate, and (with
/// [`LeafChecks::Full`]) a certificate for another publisher.
pub fn sign(
    config: Option<&ConfigDir>,
    files: &SignerFiles,
    payload: &SigningPayload,
    checks: LeafChecks,
) -> anyhow::Result<SignatureEnvelope> {
    let publisher = payload.publisher();
    let default_dir = || match config {
        Some(config) => Ok(config.clone()),
        None => ConfigDir::locate(),
    };
    let key_path = match &files.key {
        Some(path) => path.clone(),
        None => default_dir()?.default_key_path(),
    };
    let cert_path = match &files.cert {
        Some(path) => path.clone(),
        None => default_dir()?.default_chain_path(publisher),
    };
    let key = load_key(&key_path)?;
    if !cert_path.exists() {
        return Err(hinted(
            anyhow::anyhow!(
                "there is no certificate chain for publisher {publisher} at {}",
                cert_path.display()
            ),
            format!(
                "get one with `plugstore cert request --publisher {publisher}` (or pass --cert FILE)"
            ),
        ));
    }
    let chain = load_chain(&cert_path)?;
    let cert_hint =
        format!("request a new certificate with `plugstore cert request --publisher {publisher}`");
    check_leaf(&chain[0], publisher, &cert_path, checks).hint(cert_hint)?;
    let algorithm = files
        .algorithm
        .unwrap_or_else(|| key.kind().default_algorithm());
    let signature = sign_payload(algorithm, key.pkcs8_der(), payload)?;
    let envelope = SignatureEnvelope::new(algorithm, signature, chain);
    verify_signature(&envelope, payload, &envelope.certificate_chain[0]).map_err(|e| {
        hinted(
            anyhow::anyhow!(
                "the key {} does not belong to the certificate in {} ({e})",
                key_path.display(),
                cert_path.display()
            ),
            format!(
                "get a certificate for this key with `plugstore cert request --publisher {publisher} --key {}`",
                key_path.display()
            ),
        )
    })?;
    Ok(envelope)
}

/// Validity window and publisher URI of the signing certificate.
fn check_leaf(der: &[u8], publisher: &str, path: &Path, checks: LeafChecks) -> anyhow::Result<()> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
        anyhow::anyhow!(
            "the first certificate in {} is malformed: {e}",
            path.display()
        )
    })?;
    let validity = cert.validity();
    let now = ASN1Time::now();
    if validity.not_after < now {
        anyhow::bail!(
            "the certificate in {} expired on {}",
            path.display(),
            rfc3339(validity.not_after.timestamp())
        );
    }
    if validity.not_before > now {
        anyhow::bail!(
            "the certificate in {} is not valid before {}",
            path.display(),
            rfc3339(validity.not_before.timestamp())
        );
    }
    if checks == LeafChecks::ValidityOnly {
        return Ok(());
    }
    let mut bound: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(named) = uri.strip_prefix(PUBLISHER_URI_PREFIX)
            {
                bound.push(named.to_owned());
            }
        }
    }
    // A certificate without the URI may be bound by the store's subject mappings; only a
    // certificate naming another publisher is certainly wrong.
    if !bound.is_empty() && !bound.iter().any(|b| b == publisher) {
        anyhow::bail!(
            "the certificate in {} is for publisher {}, not {publisher}",
            path.display(),
            bound.join(", ")
        );
    }
    Ok(())
}

/// What `sign` wrote, for `--json`.
#[derive(Debug, Serialize)]
struct SignedPackage {
    plugin: String,
    version: String,
    digest: PackageDigest,
    algorithm: SignatureAlgorithm,
    signature_file: String,
}

/// `plugstore sign PKG`.
pub fn sign_command(
    globals: &Globals,
    package: &Path,
    files: &SignerFiles,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let contents = read_package_file(package)?;
    let payload = payload_of(&contents.manifest, contents.digest)?;
    let envelope = sign(None, files, &payload, LeafChecks::Full)?;
    let out = out.unwrap_or_else(|| {
        let mut name = package.as_os_str().to_owned();
        name.push(".sig.json");
        PathBuf::from(name)
    });
    let json = envelope.to_json()?;
    write_atomically(&out, json.as_bytes(), FileMode::Public)?;
    let signed = SignedPackage {
        plugin: payload.plugin_id().to_owned(),
        version: payload.version().to_owned(),
        digest: contents.digest,
        algorithm: envelope.algorithm,
        signature_file: out.display().to_string(),
    };
    globals.out.print(&signed, || {
        format!(
            "signed {} {} ({}) with {}\n  signature: {}",
            signed.plugin, signed.version, signed.digest, signed.algorithm, signed.signature_file
        )
    })
}

/// Reads a signature envelope file.
pub fn read_envelope(path: &Path) -> anyhow::Result<SignatureEnvelope> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SignatureEnvelope::from_json(&bytes)
        .with_context(|| format!("{} is not a plugstore signature", path.display()))
}

/// The verified signer, for `verify --json`.
#[derive(Debug, Serialize)]
struct SignerReport {
    subject: String,
    issuer: String,
    fingerprint: CertFingerprint,
    serial: String,
    not_before: String,
    not_after: String,
    key: String,
    trust_anchor: CertFingerprint,
}

/// What `verify` established, for `--json`.
#[derive(Debug, Serialize)]
struct VerifyReport {
    verified: bool,
    plugin: String,
    version: String,
    digest: PackageDigest,
    size: u64,
    algorithm: SignatureAlgorithm,
    signer: SignerReport,
}

/// Options of `verify`.
#[derive(Debug)]
pub struct VerifyRequest<'a> {
    /// The package file.
    pub package: &'a Path,
    /// Its signature envelope.
    pub signature: &'a Path,
    /// Trusted roots (PEM files).
    pub ca: &'a [PathBuf],
    /// A registry whose CA (and revocations) to use.
    pub publisher_ca_from: Option<&'a str>,
}

/// `plugstore verify PKG --signature FILE --ca FILE`.
pub async fn verify(globals: &Globals, request: VerifyRequest<'_>) -> anyhow::Result<()> {
    if request.ca.is_empty() && request.publisher_ca_from.is_none() {
        return Err(hinted(
            anyhow::anyhow!("nothing to verify against: no trusted CA was given"),
            "pass --ca FILE (a store's CA is at REGISTRY/ca.pem) or --publisher-ca-from REGISTRY",
        ));
    }
    let mut anchors = TrustAnchors::new();
    let mut publisher_uri_anchors = Vec::new();
    for path in request.ca {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        add_anchors(&mut anchors, &mut publisher_uri_anchors, &pem)
            .with_context(|| format!("--ca {}", path.display()))?;
    }
    let contents = read_package_file(request.package)?;
    let payload = payload_of(&contents.manifest, contents.digest)?;
    let envelope = read_envelope(request.signature)?;
    let mut revoked: HashSet<CertFingerprint> = HashSet::new();
    if let Some(url) = request.publisher_ca_from {
        let registry = RegistryClient::new(&normalize_registry(url)?)?;
        let pem = registry.ca_pem().await?;
        add_anchors(&mut anchors, &mut publisher_uri_anchors, pem.as_bytes())
            .with_context(|| format!("the CA certificate of {}", registry.base()))?;
        // The store's revocations of this publisher's certificates.
        let listed = registry.revoked_certificates(payload.publisher()).await?;
        revoked.extend(revoked_in_chain(&envelope.certificate_chain, &listed));
    }
    let policy = SignerPolicy {
        publisher_uri_anchors: Some(publisher_uri_anchors),
        ..SignerPolicy::default()
    };
    let signer = verify_package_signature(
        &envelope,
        &payload,
        &anchors,
        &policy,
        UnixTime::now(),
        &revoked,
    )
    .map_err(|e| {
        let hint = verify_hint(&e);
        hinted(
            anyhow::anyhow!(
                "the signature of {} {} is not valid: {e}",
                payload.plugin_id(),
                payload.version()
            ),
            hint,
        )
    })?;
    let report = VerifyReport {
        verified: true,
        plugin: payload.plugin_id().to_owned(),
        version: payload.version().to_owned(),
        digest: contents.digest,
        size: contents.length,
        algorithm: envelope.algorithm,
        signer: SignerReport {
            subject: signer.subject,
            issuer: signer.issuer,
            fingerprint: signer.leaf_fingerprint,
            serial: signer.serial_hex,
            not_before: rfc3339(signer.not_before),
            not_after: rfc3339(signer.not_after),
            key: signer.key.to_string(),
            trust_anchor: signer.anchor_fingerprint,
        },
    };
    globals.out.print(&report, || {
        format!(
            "verified {} {}\n  digest:      {}\n  signed with: {} ({} key)\n  signer:      {}\n  certificate: {} (valid until {})\n  issuer:      {}\n  trusted via: {}",
            report.plugin,
            report.version,
            report.digest,
            report.algorithm,
            report.signer.key,
            report.signer.subject,
            report.signer.fingerprint,
            report.signer.not_after,
            report.signer.issuer,
            report.signer.trust_anchor,
        )
    })
}

/// Trusts every certificate of `pem`; each may bind publishers by SAN URI.
fn add_anchors(
    anchors: &mut TrustAnchors,
    uri_anchors: &mut Vec<CertFingerprint>,
    pem: &[u8],
) -> anyhow::Result<()> {
    let mut added = 0;
    for block in CertificateDer::pem_slice_iter(pem) {
        let der = block.map_err(|e| anyhow::anyhow!("not valid PEM: {e}"))?;
        uri_anchors.push(anchors.add_der(der.as_ref())?);
        added += 1;
    }
    if added == 0 {
        anyhow::bail!("no CERTIFICATE block found");
    }
    Ok(())
}

fn verify_hint(error: &SignatureError) -> String {
    match error {
        SignatureError::BadSignature { .. } => {
            "the package, its id or its version differ from what was signed: do not install it".into()
        }
        SignatureError::Signer(CertError::UnknownIssuer { .. }) => {
            "pass the CA that issued the signer's certificate with --ca (a store's CA is at REGISTRY/ca.pem)".into()
        }
        SignatureError::Signer(CertError::NotBoundToPublisher { .. }) => {
            "offline, only the --ca roots bind publishers, by the certificate's urn:plugstore:publisher: URI; certificates from other CAs are bound by the store's subject mappings, which only the store knows".into()
        }
        SignatureError::Signer(CertError::Expired { .. } | CertError::NotYetValid { .. }) => {
            "the signer must sign again with a currently valid certificate".into()
        }
        SignatureError::Signer(CertError::Revoked { .. }) => {
            "the store revoked the signer's certificate: do not install this package".into()
        }
        _ => "the signature or its certificate chain is not acceptable; see the message".into(),
    }
}

/// The fingerprints to treat as revoked when verifying `chain` against the store's list of
/// revoked certificates: every listed one, and every certificate of the chain that has a
/// listed certificate's issuer and serial. An ECDSA signature re-encoded as (r, n − s) makes
/// another, equally valid encoding of a certificate with another fingerprint, which the
/// store may never have seen; the store revokes the issuer and serial, as a CRL does, and so
/// does this check.
fn revoked_in_chain(chain: &[Vec<u8>], listed: &[CertificateView]) -> HashSet<CertFingerprint> {
    let revoked: Vec<&CertificateView> = listed
        .iter()
        .filter(|certificate| certificate.revoked_at.is_some())
        .collect();
    let identities: HashSet<(&str, &str)> = revoked
        .iter()
        .map(|certificate| (certificate.serial.as_str(), certificate.issuer.as_str()))
        .collect();
    let listed_fingerprints = revoked
        .iter()
        .filter_map(|certificate| certificate.fingerprint.parse().ok());
    let same_identity = chain
        .iter()
        .filter(|der| {
            issuer_serial(der).is_some_and(|identity| {
                identities.contains(&(identity.serial_hex.as_str(), identity.issuer.as_str()))
            })
        })
        .map(|der| fingerprint(der));
    listed_fingerprints.chain(same_identity).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate made by the `openssl` CLI, DER.
    fn openssl_certificate(name: &str) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!(
            "plugstore-cli-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("cert.der");
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-outform",
                "DER",
            ])
            .arg("-subj")
            .arg(format!("/O=plugstore test/CN={name}"))
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(&out)
            .output()
            .expect("openssl");
        assert!(status.status.success(), "{status:?}");
        let der = std::fs::read(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        der
    }

    fn listed(fingerprint: &str, der: &[u8], revoked: bool) -> CertificateView {
        let identity = issuer_serial(der).unwrap();
        CertificateView {
            fingerprint: fingerprint.to_owned(),
            serial: identity.serial_hex,
            subject: identity.issuer.clone(),
            issuer: identity.issuer,
            origin: "external".into(),
            not_before: String::new(),
            not_after: String::new(),
            revoked_at: revoked.then(|| "2026-12-03T00:00:00Z".to_owned()),
            revoked_reason: None,
        }
    }

    #[test]
    fn another_encoding_of_a_revoked_certificate_counts_as_revoked() {
        let leaf = openssl_certificate("leaf");
        let other = openssl_certificate("other");
        // The store has only ever seen another encoding: its fingerprint differs, its issuer
        // and serial are the leaf's.
        let twin_fingerprint = hex::encode([7u8; 32]);
        let revoked = revoked_in_chain(
            std::slice::from_ref(&leaf),
            &[listed(&twin_fingerprint, &leaf, true)],
        );
        assert!(revoked.contains(&fingerprint(&leaf)), "{revoked:?}");
        assert!(revoked.contains(&twin_fingerprint.parse().unwrap()));

        // Another certificate's revocation, or an unrevoked row, does not touch the leaf.
        let unrelated = revoked_in_chain(
            std::slice::from_ref(&leaf),
            &[
                listed(&twin_fingerprint, &other, true),
                listed(&hex::encode(fingerprint(&leaf).as_bytes()), &leaf, false),
            ],
        );
        assert!(!unrelated.contains(&fingerprint(&leaf)), "{unrelated:?}");
    }
}
