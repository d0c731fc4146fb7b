//! The store's own certificate authority: it issues short-lived code-signing certificates to
//! publisher members from a CSR, bound to the publisher by a SAN URI
//! (`urn:plugstore:publisher:<name>`).
//!
//! Created on first start (ECDSA P-256, 10 years) under `<keys>/ca/`, or loaded from operator
//! files (`signing.ca_cert`, `signing.ca_key`), e.g. an intermediate of a company PKI.

use std::path::{Path, PathBuf};

use plugstore_format::certs::fingerprint;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// Validity of a CA the store creates for itself.
pub const GENERATED_CA_LIFETIME_DAYS: i64 = 3650;
/// Issued certificates start this much in the past, tolerating clients with slow clocks.
pub const BACKDATE_MINUTES: i64 = 5;

/// Why the CA could not be opened or could not issue.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing the CA files failed.
    #[error("CA file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The operator's CA certificate or key does not parse or does not match.
    #[error("CA certificate or key is not usable: {0}")]
    BadCa(String),
    /// The CSR is malformed or its self-signature does not verify.
    #[error("the CSR is not valid: {0}")]
    BadCsr(String),
    /// The CSR's key is of a type or size the store does not accept.
    #[error("the CSR's key is not accepted: {0}")]
    WeakKey(String),
    /// Signing failed.
    #[error("issuing the certificate failed: {0}")]
    Issue(String),
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// PEM of the certificate.
    pub pem: String,
    /// Serial number, hex.
    pub serial_hex: String,
    /// SHA-256 of the DER, hex.
    pub fingerprint_hex: String,
    /// Subject, RFC 4514-style.
    pub subject: String,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
}

/// The store's CA.
pub struct StoreCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for StoreCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCa")
            .field(
                "fingerprint",
                &hex::encode(fingerprint(&self.cert_der).as_bytes()),
            )
            .finish()
    }
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.into(),
        source,
    })
}

impl StoreCa {
    /// Loads the CA from `cert`/`key` when given, else from `dir` (generating it there on the
    /// first start; the key file is 0600).
    pub fn open(
        dir: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
        common_name: &str,
    ) -> Result<Self, CaError> {
        let (cert_path, key_path) = match (cert, key) {
            (Some(c), Some(k)) => (c.to_owned(), k.to_owned()),
            _ => {
                let (c, k) = (dir.join("ca.pem"), dir.join("ca.key"));
                if !c.exists() {
                    Self::generate(&c, &k, common_name)?;
                }
                (c, k)
            }
        };
        let cert_pem = read(&cert_path)?;
        let key = KeyPair::from_pem(&read(&key_path)?)
            .map_err(|e| CaError::BadCa(format!("{}: {e}", key_path.display())))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| CaError::BadCa(format!("{}: {e}", cert_path.display())))?;
        let cert_der = pem_to_der(&cert_pem).ok_or_else(|| {
            CaError::BadCa(format!("{} holds no certificate", cert_path.display()))
        })?;
        Ok(Self {
            cert_pem,
            cert_der,
            issuer,
        })
    }

    fn generate(cert_path: &Path, key_path: &Path, common_name: &str) -> Result<(), CaError> {
        let key = KeyPair::generate().map_err(|e| CaError::Issue(e.to_string()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| CaError::Issue(e.to_string()))?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "plugstore");
        // Path length 0: this CA signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(BACKDATE_MINUTES);
        params.not_after = now + Duration::days(GENERATED_CA_LIFETIME_DAYS);
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::Issue(e.to_string()))?;
        crate::secrets::write_private_file(key_path, key.serialize_pem().as_bytes()).map_err(
            |source| CaError::Io {
                path: key_path.into(),
                source,
            },
        )?;
        crate::secrets::write_private_file(cert_path, cert.pem().as_bytes()).map_err(|source| {
            CaError::Io {
                path: cert_path.into(),
                source,
            }
        })?;
        tracing::info!(path = %cert_path.display(), "created the store's code-signing CA");
        Ok(())
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Issues a code-signing certificate for `publisher` from a PEM CSR. Only the CSR's key and
    /// subject common name are taken; every extension is set by the store.
    pub fn issue(
        &self,
        csr_pem: &str,
        publisher: &str,
        lifetime_days: u32,
    ) -> Result<IssuedCertificate, CaError> {
        // Key policy first: for a weak RSA key the self-signature check below fails too, with
        // a less helpful message.
        check_csr_key(csr_pem)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| CaError::Issue(e.to_string()))?;
        let cn = csr
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .map(dn_text)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| publisher.to_owned());
        params
            .distinguished_name
            .push(DnType::CommonName, cn.clone());
        params.distinguished_name.push(
            DnType::OrganizationName,
            format!("plugstore publisher {publisher}"),
        );
        let uri = format!("urn:plugstore:publisher:{publisher}");
        params.subject_alt_names = vec![SanType::URI(
            uri.as_str()
                .try_into()
                .map_err(|e: rcgen::Error| CaError::Issue(e.to_string()))?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(BACKDATE_MINUTES);
        params.not_after = now + Duration::days(i64::from(lifetime_days.max(1)));
        let serial = random_serial();
        let serial_hex = hex::encode(serial.as_ref());
        params.serial_number = Some(serial);
        let issued = CertificateSigningRequestParams {
            params: params.clone(),
            public_key: csr.public_key,
        };
        let cert = issued
            .signed_by(&self.issuer)
            .map_err(|e| CaError::Issue(e.to_string()))?;
        let der = cert.der().to_vec();
        Ok(IssuedCertificate {
            fingerprint_hex: hex::encode(fingerprint(&der).as_bytes()),
            pem: cert.pem(),
            der,
            serial_hex,
            subject: format!("CN={cn}, O=plugstore publisher {publisher}"),
            not_before: params.not_before.unix_timestamp(),
            not_after: params.not_after.unix_timestamp(),
        })
    }
}

fn dn_text(v: &rcgen::DnValue) -> String {
    match v {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_owned(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_owned(),
        rcgen::DnValue::TeletexString(s) => s.as_str().to_owned(),
        _ => String::new(),
    }
}

/// Refuses keys the signature checks would later refuse anyway, so a publisher learns at once.
fn check_csr_key(csr_pem: &str) -> Result<(), CaError> {
    use x509_parser::prelude::*;
    let der = pem_to_der_labelled(csr_pem, "CERTIFICATE REQUEST")
        .ok_or_else(|| CaError::BadCsr("no CERTIFICATE REQUEST block in the PEM".into()))?;
    let (_, csr) =
        X509CertificationRequest::from_der(&der).map_err(|e| CaError::BadCsr(e.to_string()))?;
    let spki = &csr.certification_request_info.subject_pki;
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if bits < 2048 {
                return Err(CaError::WeakKey(format!(
                    "RSA keys need at least 2048 bits; this one has {bits}"
                )));
            }
        }
        Ok(x509_parser::public_key::PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            let p256 = x509_parser::oid_registry::OID_EC_P256;
            let p384 = x509_parser::oid_registry::OID_NIST_EC_P384;
            if curve.as_ref() != Some(&p256) && curve.as_ref() != Some(&p384) {
                return Err(CaError::WeakKey("EC keys must be on P-256 or P-384".into()));
            }
        }
        _ if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => {}
        _ => {
            return Err(CaError::WeakKey(
                "use an ECDSA P-256/P-384, RSA (≥ 2048 bits) or Ed25519 key".into(),
            ));
        }
    }
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    // Positive and without a leading zero byte, as RFC 5280 asks of serials.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    pem_to_der_labelled(pem, "CERTIFICATE")
}

/// The first PEM block with `label`, decoded; `None` when there is none or the text is not
/// well-formed PEM (RFC 7468, as the `pem` crate reads it).
pub fn pem_to_der_labelled(pem: &str, label: &str) -> Option<Vec<u8>> {
    pem::parse_many(pem)
        .ok()?
        .into_iter()
        .find(|block| block.tag() == label)
        .map(pem::Pem::into_contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_found_by_label_and_malformed_pem_is_refused() {
        let two = "junk before\n-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n\
                   -----BEGIN CERTIFICATE REQUEST-----\nBAUG\n-----END CERTIFICATE REQUEST-----\n";
        assert_eq!(
            pem_to_der_labelled(two, "CERTIFICATE REQUEST"),
            Some(vec![4, 5, 6])
        );
        assert_eq!(pem_to_der_labelled(two, "PRIVATE KEY"), Some(vec![1, 2, 3]));
        assert_eq!(pem_to_der_labelled(two, "CERTIFICATE"), None);
        // Not base64, an END that does not match its BEGIN, no END at all.
        for bad in [
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE REQUEST-----\n",
            "-----BEGIN CERTIFICATE-----\nAQID\n",
        ] {
            assert_eq!(pem_to_der_labelled(bad, "CERTIFICATE"), None, "{bad}");
        }
    }
}
