//! Who the store trusts to sign packages: its own CA, operator-configured anchors, and the
//! subject mappings that bind third-party certificates to publishers.

use anyhow::Context as _;
use plugstore_format::certs::{CertFingerprint, SignerPolicy, SubjectMapping, TrustAnchors};

use crate::ca::StoreCa;
use crate::config::SigningSettings;

/// Trust anchors and policy, built once at start.
#[derive(Debug)]
pub struct SigningTrust {
    /// Roots a developer certificate chain may end in.
    pub anchors: TrustAnchors,
    /// Algorithms, key sizes and bindings.
    pub policy: SignerPolicy,
    /// The store CA's fingerprint.
    pub store_ca: CertFingerprint,
}

impl SigningTrust {
    /// The store's CA plus `signing.trust_anchors`. Only the store's CA may bind a publisher by
    /// SAN URI: another CA could write any publisher's URI into a certificate it issues, so its
    /// certificates are bound through explicit `signing.subject_mappings` instead.
    pub fn new(ca: &StoreCa, settings: &SigningSettings) -> anyhow::Result<Self> {
        let mut anchors = TrustAnchors::new();
        let store_ca = anchors
            .add_der(ca.certificate_der())
            .context("the store's CA certificate is not a usable trust anchor")?;
        for path in &settings.trust_anchors {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading trust anchor {path} (signing.trust_anchors)"))?;
            let added = anchors
                .add_pem(&pem)
                .with_context(|| format!("trust anchor {path} (signing.trust_anchors)"))?;
            anyhow::ensure!(added > 0, "trust anchor file {path} holds no certificate");
        }
        let mut subject_mappings = Vec::new();
        for mapping in &settings.subject_mappings {
            let anchor_fingerprint = match &mapping.anchor_sha256 {
                Some(hex) => Some(hex.parse::<CertFingerprint>().map_err(|_| {
                    anyhow::anyhow!(
                        "signing.subject_mappings: anchor_sha256 `{hex}` is not a SHA-256 fingerprint (64 hex digits, optionally colon-separated as openssl prints it)"
                    )
                })?),
                None => None,
            };
            subject_mappings.push(SubjectMapping {
                anchor_fingerprint,
                subject_organization: mapping.organization.clone(),
                subject_common_name: mapping.common_name.clone(),
                publisher: mapping.publisher.clone(),
            });
        }
        let policy = SignerPolicy {
            subject_mappings,
            publisher_uri_anchors: Some(vec![store_ca]),
            ..SignerPolicy::default()
        };
        Ok(Self {
            anchors,
            policy,
            store_ca,
        })
    }
}
