//! X.509 validation of package signers against certificates made with the `openssl` CLI.
//!
//! Validity windows in the past or future are real certificates issued with
//! `openssl ca -startdate/-enddate` (OpenSSL 3.0's `x509` has no `-not_before`).

mod common;

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use common::{
    Credential, INTERMEDIATE_EXT, KeySpec, NOT_REVOKED, Openssl, PUBLISHER, ROOT_EXT, Validity,
    leaf_ext, now, pki,
};
use plugstore_format::certs::{
    BindingKind, CertError, CertFingerprint, MAX_CHAIN_LEN, PublicKeyKind, SignerPolicy,
    SubjectMapping, TrustAnchorError, TrustAnchors, UnixTime, VerifiedSigner, fingerprint,
    verify_signer,
};
use rustls_pki_types::CertificateDer;

const JAN_1_2021: i64 = 1_609_459_200;
const JAN_1_2090: i64 = 3_786_912_000;

/// Certificates for the refusal cases, each made the way a CA (or a mistake) would make it.
struct Cases {
    expired: Credential,
    not_yet_valid: Credential,
    server_auth_only: Credential,
    no_eku: Credential,
    no_key_usage: Credential,
    key_agreement_only: Credential,
    rsa1024: Credential,
    p521: Credential,
    leaf_is_ca: Credential,
    direct_leaf: Credential,
    not_ca_intermediate: Credential,
    leaf_under_not_ca: Credential,
    server_auth_intermediate: Credential,
    leaf_under_server_auth_intermediate: Credential,
    code_signing_intermediate: Credential,
    leaf_under_code_signing_intermediate: Credential,
    sub_intermediate: Credential,
    leaf_under_sub_intermediate: Credential,
    expired_intermediate: Credential,
    leaf_under_expired_intermediate: Credential,
    unknown_root: Credential,
    leaf_from_unknown_root: Credential,
    impostor_root: Credential,
    leaf_from_impostor: Credential,
    partner_root: Credential,
    partner_leaf: Credential,
    expired_revocable: Credential,
}

fn cases() -> &'static Cases {
    static CASES: OnceLock<Cases> = OnceLock::new();
    CASES.get_or_init(|| {
        let pki = pki();
        let openssl = Openssl::new();
        let acme = leaf_ext(PUBLISHER);
        let under_intermediate = |subject: &str, key: KeySpec, ext: &str, validity: Validity| {
            openssl.issue(subject, key, &pki.intermediate, ext, validity)
        };
        let days = Validity::Days(30);
        let p256 = KeySpec::EcP256;

        let not_ca_intermediate = openssl.issue(
            "/CN=Not A CA/O=Plugstore Test",
            p256,
            &pki.root,
            "basicConstraints = critical,CA:false\nkeyUsage = critical,digitalSignature,keyCertSign\n",
            Validity::Days(3650),
        );
        let server_auth_intermediate = openssl.issue(
            "/CN=TLS Only CA/O=Plugstore Test",
            p256,
            &pki.root,
            &format!("{INTERMEDIATE_EXT}extendedKeyUsage = serverAuth\n"),
            Validity::Days(3650),
        );
        let code_signing_intermediate = openssl.issue(
            "/CN=Code Signing CA/O=Plugstore Test",
            p256,
            &pki.root,
            &format!("{INTERMEDIATE_EXT}extendedKeyUsage = codeSigning\n"),
            Validity::Days(3650),
        );
        // The shared intermediate has pathlen:0, so a CA below it cannot issue anything.
        let sub_intermediate = openssl.issue(
            "/CN=Too Deep CA/O=Plugstore Test",
            p256,
            &pki.intermediate,
            INTERMEDIATE_EXT,
            Validity::Days(3650),
        );
        let expired_intermediate = openssl.issue(
            "/CN=Retired CA/O=Plugstore Test",
            p256,
            &pki.root,
            INTERMEDIATE_EXT,
            Validity::Window("20200101000000Z", "20210101000000Z"),
        );
        let unknown_root = openssl.root_ca("/CN=Unknown Root/O=Elsewhere", p256);
        // Same name as the trusted root, different key: only the signature can tell them apart.
        let impostor_root = openssl.root_ca("/CN=Plugstore Test Root/O=Plugstore Test", p256);
        let partner_root = openssl.root_ca("/CN=Partner Code Signing Root/O=Partner CA", KeySpec::Rsa(3072));

        Cases {
            expired: under_intermediate(
                "/CN=Acme Expired/O=Acme",
                p256,
                &acme,
                Validity::Window("20200101000000Z", "20210101000000Z"),
            ),
            not_yet_valid: under_intermediate(
                "/CN=Acme Future/O=Acme",
                p256,
                &acme,
                Validity::Window("20900101000000Z", "20910101000000Z"),
            ),
            server_auth_only: under_intermediate(
                "/CN=Acme TLS/O=Acme",
                p256,
                &acme.replace("extendedKeyUsage = codeSigning", "extendedKeyUsage = serverAuth"),
                days,
            ),
            no_eku: under_intermediate(
                "/CN=Acme No EKU/O=Acme",
                p256,
                &acme.replace("extendedKeyUsage = codeSigning\n", ""),
                days,
            ),
            no_key_usage: under_intermediate(
                "/CN=Acme No KU/O=Acme",
                p256,
                &acme.replace("keyUsage = critical,digitalSignature\n", ""),
                days,
            ),
            key_agreement_only: under_intermediate(
                "/CN=Acme KA/O=Acme",
                p256,
                &acme.replace("keyUsage = critical,digitalSignature", "keyUsage = critical,keyAgreement"),
                days,
            ),
            rsa1024: under_intermediate("/CN=Acme RSA-1024/O=Acme", KeySpec::Rsa(1024), &acme, days),
            p521: under_intermediate("/CN=Acme P-521/O=Acme", KeySpec::EcP521, &acme, days),
            leaf_is_ca: under_intermediate(
                "/CN=Acme CA Leaf/O=Acme",
                p256,
                &acme
                    .replace("CA:false", "CA:true")
                    .replace("critical,digitalSignature", "critical,digitalSignature,keyCertSign"),
                days,
            ),
            direct_leaf: openssl.issue("/CN=Acme Direct/O=Acme", p256, &pki.root, &acme, days),
            leaf_under_not_ca: openssl.issue(
                "/CN=Acme Under Not CA/O=Acme",
                p256,
                &not_ca_intermediate,
                &acme,
                days,
            ),
            leaf_under_server_auth_intermediate: openssl.issue(
                "/CN=Acme Under TLS CA/O=Acme",
                p256,
                &server_auth_intermediate,
                &acme,
                days,
            ),
            leaf_under_code_signing_intermediate: openssl.issue(
                "/CN=Acme Under Code Signing CA/O=Acme",
                p256,
                &code_signing_intermediate,
                &acme,
                days,
            ),
            leaf_under_sub_intermediate: openssl.issue(
                "/CN=Acme Too Deep/O=Acme",
                p256,
                &sub_intermediate,
                &acme,
                days,
            ),
            leaf_under_expired_intermediate: openssl.issue(
                "/CN=Acme Under Retired CA/O=Acme",
                p256,
                &expired_intermediate,
                &acme,
                days,
            ),
            leaf_from_unknown_root: openssl.issue(
                "/CN=Acme Elsewhere/O=Acme",
                p256,
                &unknown_root,
                &acme,
                days,
            ),
            leaf_from_impostor: openssl.issue(
                "/CN=Acme Impostor/O=Acme",
                p256,
                &impostor_root,
                &acme,
                days,
            ),
            // A third-party CA that knows nothing of plugstore URIs: bound by subject mapping.
            partner_leaf: openssl.issue(
                "/CN=Acme Signing/O=Acme Corp",
                KeySpec::Rsa(2048),
                &partner_root,
                "basicConstraints = critical,CA:false\nkeyUsage = critical,digitalSignature\n\
                 extendedKeyUsage = codeSigning\n",
                days,
            ),
            expired_revocable: under_intermediate(
                "/CN=Acme Expired And Revoked/O=Acme",
                p256,
                &acme,
                Validity::Window("20200101000000Z", "20210101000000Z"),
            ),
            not_ca_intermediate,
            server_auth_intermediate,
            code_signing_intermediate,
            sub_intermediate,
            expired_intermediate,
            unknown_root,
            impostor_root,
            partner_root,
        }
    })
}

fn chain(certs: &[&Credential]) -> Vec<Vec<u8>> {
    certs.iter().map(|c| c.cert_der.clone()).collect()
}

/// Verifies `leaf` + the shared intermediate for `acme` now, with the default policy.
fn verify_via_intermediate(leaf: &Credential) -> Result<VerifiedSigner, CertError> {
    let pki = pki();
    verify_signer(
        &pki.chain(leaf),
        &pki.anchors(),
        &SignerPolicy::default(),
        PUBLISHER,
        now(),
        &NOT_REVOKED,
    )
}

fn verify_chain(
    certs: &[&Credential],
    anchors: &TrustAnchors,
) -> Result<VerifiedSigner, CertError> {
    verify_signer(
        &chain(certs),
        anchors,
        &SignerPolicy::default(),
        PUBLISHER,
        now(),
        &NOT_REVOKED,
    )
}

/// The subject as the errors print it (RFC 4514 style), from openssl's `-subj` syntax.
fn subject(cert: &Credential) -> String {
    cert.subject
        .trim_start_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .join(", ")
}

fn at_unix(seconds: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(seconds.try_into().unwrap()))
}

// ---- accepted ----

#[test]
fn accepts_p256_leaf_via_intermediate_to_root() {
    let pki = pki();
    let signer = verify_via_intermediate(&pki.leaf_p256).unwrap();
    assert_eq!(signer.binding, BindingKind::PublisherUri);
    assert_eq!(signer.key, PublicKeyKind::EcP256);
    assert_eq!(
        signer.leaf_fingerprint,
        fingerprint(&pki.leaf_p256.cert_der)
    );
    assert_eq!(signer.anchor_fingerprint, fingerprint(&pki.root.cert_der));
    assert_eq!(signer.subject, subject(&pki.leaf_p256));
    assert_eq!(signer.issuer, subject(&pki.intermediate));
    assert!(signer.not_before <= signer.not_after);
    assert_eq!(signer.not_after - signer.not_before, 30 * 24 * 3600);

    let openssl = Openssl::new();
    let pem = openssl.write("leaf.pem", &pki.leaf_p256.cert_pem);
    let serial =
        String::from_utf8(openssl.run(&["x509", "-in", &pem, "-noout", "-serial"])).unwrap();
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    assert_eq!(
        signer.serial_hex.trim_start_matches("00"),
        serial.trim_start_matches("00")
    );
}

#[test]
fn accepts_each_supported_key_type() {
    let pki = pki();
    for (leaf, key) in [
        (&pki.leaf_p384, PublicKeyKind::EcP384),
        (&pki.leaf_rsa2048, PublicKeyKind::Rsa { bits: 2048 }),
        (&pki.leaf_ed25519, PublicKeyKind::Ed25519),
    ] {
        let signer = verify_via_intermediate(leaf)
            .unwrap_or_else(|e| panic!("{} refused: {e}", leaf.subject));
        assert_eq!(signer.key, key);
    }
}

#[test]
fn accepts_leaf_issued_by_the_root_itself() {
    let (pki, cases) = (pki(), cases());
    let signer = verify_chain(&[&cases.direct_leaf], &pki.anchors()).unwrap();
    assert_eq!(signer.issuer, subject(&pki.root));
}

#[test]
fn accepts_a_chain_that_carries_the_root_too() {
    let pki = pki();
    verify_chain(
        &[&pki.leaf_p256, &pki.intermediate, &pki.root],
        &pki.anchors(),
    )
    .unwrap();
}

#[test]
fn accepts_intermediate_whose_eku_includes_code_signing() {
    let (pki, cases) = (pki(), cases());
    verify_chain(
        &[
            &cases.leaf_under_code_signing_intermediate,
            &cases.code_signing_intermediate,
        ],
        &pki.anchors(),
    )
    .unwrap();
}

#[test]
fn accepts_anchors_loaded_from_a_pem_bundle() {
    let (pki, cases) = (pki(), cases());
    let mut bundle = cases.partner_root.cert_pem.clone();
    bundle.extend_from_slice(&pki.root.cert_pem);
    let anchors = TrustAnchors::from_pem(&bundle).unwrap();
    assert_eq!(anchors.len(), 2);
    assert_eq!(
        anchors.certificates()[1].fingerprint,
        fingerprint(&pki.root.cert_der)
    );
    verify_chain(&[&pki.leaf_p256, &pki.intermediate], &anchors).unwrap();
}

// ---- validity windows ----

#[test]
fn refuses_expired_leaf() {
    let cases = cases();
    let err = verify_via_intermediate(&cases.expired).unwrap_err();
    assert_eq!(
        err,
        CertError::Expired {
            subject: subject(&cases.expired),
            not_after: JAN_1_2021
        }
    );
    assert!(err.to_string().contains("2021"), "{err}");
}

#[test]
fn refuses_not_yet_valid_leaf() {
    let cases = cases();
    let err = verify_via_intermediate(&cases.not_yet_valid).unwrap_err();
    assert_eq!(
        err,
        CertError::NotYetValid {
            subject: subject(&cases.not_yet_valid),
            not_before: JAN_1_2090
        }
    );
}

#[test]
fn validation_time_is_the_callers() {
    let pki = pki();
    let chain = pki.chain(&pki.leaf_p256);
    let verify_at = |at| {
        verify_signer(
            &chain,
            &pki.anchors(),
            &SignerPolicy::default(),
            PUBLISHER,
            at,
            &NOT_REVOKED,
        )
    };
    let leaf_subject = subject(&pki.leaf_p256);
    assert!(matches!(
        verify_at(at_unix(JAN_1_2021)),
        Err(CertError::NotYetValid { subject, .. }) if subject == leaf_subject
    ));
    assert!(matches!(
        verify_at(at_unix(JAN_1_2090)),
        Err(CertError::Expired { subject, .. }) if subject == leaf_subject
    ));
}

#[test]
fn refuses_expired_intermediate_and_names_it() {
    let (pki, cases) = (pki(), cases());
    let err = verify_chain(
        &[
            &cases.leaf_under_expired_intermediate,
            &cases.expired_intermediate,
        ],
        &pki.anchors(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        CertError::Expired {
            subject: subject(&cases.expired_intermediate),
            not_after: JAN_1_2021
        }
    );
}

// ---- the leaf's profile ----

#[test]
fn refuses_leaf_with_server_auth_only() {
    let cases = cases();
    assert_eq!(
        verify_via_intermediate(&cases.server_auth_only).unwrap_err(),
        CertError::MissingCodeSigning {
            subject: subject(&cases.server_auth_only)
        }
    );
}

#[test]
fn refuses_leaf_without_extended_key_usage() {
    let cases = cases();
    assert_eq!(
        verify_via_intermediate(&cases.no_eku).unwrap_err(),
        CertError::MissingCodeSigning {
            subject: subject(&cases.no_eku)
        }
    );
}

#[test]
fn refuses_leaf_without_digital_signature() {
    let cases = cases();
    assert_eq!(
        verify_via_intermediate(&cases.no_key_usage).unwrap_err(),
        CertError::MissingDigitalSignature {
            subject: subject(&cases.no_key_usage),
            key_usage_present: false
        }
    );
    assert_eq!(
        verify_via_intermediate(&cases.key_agreement_only).unwrap_err(),
        CertError::MissingDigitalSignature {
            subject: subject(&cases.key_agreement_only),
            key_usage_present: true
        }
    );
}

#[test]
fn refuses_rsa_1024_leaf() {
    assert_eq!(
        verify_via_intermediate(&cases().rsa1024).unwrap_err(),
        CertError::WeakKey {
            bits: 1024,
            min_bits: 2048
        }
    );
}

#[test]
fn policy_can_raise_the_rsa_minimum_but_not_lower_it() {
    let pki = pki();
    let verify_with_min = |min_rsa_bits, leaf: &Credential| {
        let policy = SignerPolicy {
            min_rsa_bits,
            ..SignerPolicy::default()
        };
        verify_signer(
            &pki.chain(leaf),
            &pki.anchors(),
            &policy,
            PUBLISHER,
            now(),
            &NOT_REVOKED,
        )
    };
    assert_eq!(
        verify_with_min(3072, &pki.leaf_rsa2048).unwrap_err(),
        CertError::WeakKey {
            bits: 2048,
            min_bits: 3072
        }
    );
    assert_eq!(
        verify_with_min(512, &cases().rsa1024).unwrap_err(),
        CertError::WeakKey {
            bits: 1024,
            min_bits: 2048
        }
    );
}

#[test]
fn refuses_ec_key_on_an_unsupported_curve() {
    let err = verify_via_intermediate(&cases().p521).unwrap_err();
    let CertError::UnsupportedKey { key } = &err else {
        panic!("expected UnsupportedKey, got {err:?}");
    };
    assert!(key.contains("1.3.132.0.35"), "{key}");
}

#[test]
fn refuses_leaf_that_is_itself_a_ca() {
    let cases = cases();
    assert_eq!(
        verify_via_intermediate(&cases.leaf_is_ca).unwrap_err(),
        CertError::LeafIsCa {
            subject: subject(&cases.leaf_is_ca)
        }
    );
}

// ---- the chain ----

#[test]
fn refuses_intermediate_that_is_not_a_ca() {
    let (pki, cases) = (pki(), cases());
    assert_eq!(
        verify_chain(
            &[&cases.leaf_under_not_ca, &cases.not_ca_intermediate],
            &pki.anchors()
        )
        .unwrap_err(),
        CertError::IssuerNotCa {
            subject: subject(&cases.not_ca_intermediate)
        }
    );
}

#[test]
fn refuses_intermediate_whose_eku_excludes_code_signing() {
    let (pki, cases) = (pki(), cases());
    assert_eq!(
        verify_chain(
            &[
                &cases.leaf_under_server_auth_intermediate,
                &cases.server_auth_intermediate
            ],
            &pki.anchors()
        )
        .unwrap_err(),
        CertError::MissingCodeSigning {
            subject: subject(&cases.server_auth_intermediate)
        }
    );
}

#[test]
fn refuses_chain_longer_than_path_len_allows() {
    let (pki, cases) = (pki(), cases());
    assert_eq!(
        verify_chain(
            &[
                &cases.leaf_under_sub_intermediate,
                &cases.sub_intermediate,
                &pki.intermediate
            ],
            &pki.anchors()
        )
        .unwrap_err(),
        CertError::PathLenExceeded
    );
}

#[test]
fn refuses_chain_to_an_unknown_root() {
    let (pki, cases) = (pki(), cases());
    assert_eq!(
        verify_chain(&[&cases.leaf_from_unknown_root], &pki.anchors()).unwrap_err(),
        CertError::UnknownIssuer {
            issuer: subject(&cases.unknown_root)
        }
    );
    // Also when the unknown root is presented in the chain: presenting a root does not make it
    // trusted.
    assert_eq!(
        verify_chain(
            &[&cases.leaf_from_unknown_root, &cases.unknown_root],
            &pki.anchors()
        )
        .unwrap_err(),
        CertError::UnknownIssuer {
            issuer: subject(&cases.unknown_root)
        }
    );
}

#[test]
fn refuses_chain_signed_by_an_impostor_of_the_root() {
    let (pki, cases) = (pki(), cases());
    assert_eq!(cases.impostor_root.subject, pki.root.subject);
    assert_eq!(
        verify_chain(&[&cases.leaf_from_impostor], &pki.anchors()).unwrap_err(),
        CertError::BadChainSignature
    );
}

#[test]
fn refuses_leaf_with_an_intermediate_it_was_not_issued_by() {
    // The partner leaf's issuer name matches no certificate here: no path.
    let (pki, cases) = (pki(), cases());
    assert!(matches!(
        verify_chain(&[&cases.partner_leaf, &pki.intermediate], &pki.anchors()),
        Err(CertError::UnknownIssuer { .. })
    ));
}

#[test]
fn refuses_malformed_or_badly_shaped_chains() {
    let pki = pki();
    let verify = |chain: &[Vec<u8>]| {
        verify_signer(
            chain,
            &pki.anchors(),
            &SignerPolicy::default(),
            PUBLISHER,
            now(),
            &NOT_REVOKED,
        )
    };
    assert_eq!(verify(&[]).unwrap_err(), CertError::EmptyChain);
    let too_long = vec![pki.leaf_p256.cert_der.clone(); MAX_CHAIN_LEN + 1];
    assert_eq!(
        verify(&too_long).unwrap_err(),
        CertError::ChainTooLong {
            len: MAX_CHAIN_LEN + 1,
            max: MAX_CHAIN_LEN
        }
    );
    let garbage = vec![
        pki.leaf_p256.cert_der.clone(),
        b"not a certificate".to_vec(),
    ];
    assert!(matches!(
        verify(&garbage),
        Err(CertError::Malformed { index: 1, .. })
    ));
    let mut trailing = pki.leaf_p256.cert_der.clone();
    trailing.push(0);
    assert!(matches!(
        verify(&[trailing, pki.intermediate.cert_der.clone()]),
        Err(CertError::Malformed { index: 0, .. })
    ));
}

// ---- revocation ----

#[test]
fn refuses_revoked_leaf() {
    let pki = pki();
    let revoked: HashSet<CertFingerprint> = [fingerprint(&pki.leaf_p256.cert_der)].into();
    let err = verify_signer(
        &pki.chain(&pki.leaf_p256),
        &pki.anchors(),
        &SignerPolicy::default(),
        PUBLISHER,
        now(),
        &revoked,
    )
    .unwrap_err();
    assert_eq!(
        err,
        CertError::Revoked {
            fingerprint: fingerprint(&pki.leaf_p256.cert_der),
            subject: subject(&pki.leaf_p256)
        }
    );
    // Other leaves of the same CA are unaffected.
    verify_signer(
        &pki.chain(&pki.leaf_p384),
        &pki.anchors(),
        &SignerPolicy::default(),
        PUBLISHER,
        now(),
        &revoked,
    )
    .unwrap();
}

#[test]
fn refuses_leaf_under_a_revoked_intermediate_or_root() {
    let pki = pki();
    for revoked_cert in [&pki.intermediate, &pki.root] {
        let revoked_fingerprint = fingerprint(&revoked_cert.cert_der);
        let is_revoked = |fp: &CertFingerprint| *fp == revoked_fingerprint;
        let err = verify_signer(
            &pki.chain(&pki.leaf_p256),
            &pki.anchors(),
            &SignerPolicy::default(),
            PUBLISHER,
            now(),
            &is_revoked,
        )
        .unwrap_err();
        assert_eq!(
            err,
            CertError::Revoked {
                fingerprint: revoked_fingerprint,
                subject: subject(revoked_cert)
            }
        );
    }
}

#[test]
fn revocation_is_reported_before_expiry() {
    let cases = cases();
    let pki = pki();
    let revoked: HashSet<CertFingerprint> = [fingerprint(&cases.expired_revocable.cert_der)].into();
    let err = verify_signer(
        &pki.chain(&cases.expired_revocable),
        &pki.anchors(),
        &SignerPolicy::default(),
        PUBLISHER,
        now(),
        &revoked,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::Revoked { .. }), "{err:?}");
}

// ---- publisher binding ----

#[test]
fn refuses_certificate_bound_to_another_publisher() {
    let pki = pki();
    let err = verify_via_intermediate(&pki.leaf_other).unwrap_err();
    let CertError::NotBoundToPublisher { publisher, found } = &err else {
        panic!("expected NotBoundToPublisher, got {err:?}");
    };
    assert_eq!(publisher, PUBLISHER);
    assert!(found.contains("urn:plugstore:publisher:other"), "{found}");
}

#[test]
fn publisher_uri_must_match_exactly() {
    let pki = pki();
    for publisher in ["acm", "acme2", "ACME", "", "acme/tool"] {
        let result = verify_signer(
            &pki.chain(&pki.leaf_p256),
            &pki.anchors(),
            &SignerPolicy::default(),
            publisher,
            now(),
            &NOT_REVOKED,
        );
        assert!(
            matches!(result, Err(CertError::NotBoundToPublisher { .. })),
            "{publisher:?}: {result:?}"
        );
    }
}

#[test]
fn publisher_uris_can_be_limited_to_the_stores_own_ca() {
    let (pki, cases) = (pki(), cases());
    let mut anchors = pki.anchors();
    anchors.add_der(&cases.partner_root.cert_der).unwrap();
    let only = |root: &Credential| SignerPolicy {
        publisher_uri_anchors: Some(vec![fingerprint(&root.cert_der)]),
        ..SignerPolicy::default()
    };
    let verify = |policy: &SignerPolicy| {
        verify_signer(
            &pki.chain(&pki.leaf_p256),
            &anchors,
            policy,
            PUBLISHER,
            now(),
            &NOT_REVOKED,
        )
    };
    assert_eq!(
        verify(&only(&pki.root)).unwrap().binding,
        BindingKind::PublisherUri
    );
    assert!(matches!(
        verify(&only(&cases.partner_root)),
        Err(CertError::NotBoundToPublisher { .. })
    ));
}

#[test]
fn subject_mapping_binds_only_on_matching_organization_common_name_and_anchor() {
    let (pki, cases) = (pki(), cases());
    let mut anchors = pki.anchors();
    anchors.add_der(&cases.partner_root.cert_der).unwrap();
    let partner_root = fingerprint(&cases.partner_root.cert_der);
    let store_root = fingerprint(&pki.root.cert_der);
    let mapping =
        |anchor: Option<CertFingerprint>, o: Option<&str>, cn: Option<&str>, publisher: &str| {
            SubjectMapping {
                anchor_fingerprint: anchor,
                subject_organization: o.map(str::to_owned),
                subject_common_name: cn.map(str::to_owned),
                publisher: publisher.to_owned(),
            }
        };
    let verify = |mappings: Vec<SubjectMapping>| {
        let policy = SignerPolicy {
            subject_mappings: mappings,
            ..SignerPolicy::default()
        };
        verify_signer(
            &chain(&[&cases.partner_leaf]),
            &anchors,
            &policy,
            PUBLISHER,
            now(),
            &NOT_REVOKED,
        )
    };

    // Without a mapping the partner's certificate binds nobody.
    let err = verify(vec![]).unwrap_err();
    let CertError::NotBoundToPublisher { found, .. } = &err else {
        panic!("expected NotBoundToPublisher, got {err:?}");
    };
    assert!(
        found.contains("no SAN URI") && found.contains("O=Acme Corp"),
        "{found}"
    );

    let accepted = [
        mapping(None, Some("Acme Corp"), None, "acme"),
        mapping(None, None, Some("Acme Signing"), "acme"),
        mapping(
            Some(partner_root),
            Some("Acme Corp"),
            Some("Acme Signing"),
            "acme",
        ),
    ];
    for m in accepted {
        let signer = verify(vec![
            mapping(None, Some("Other Corp"), None, "acme"),
            m.clone(),
        ])
        .unwrap_or_else(|e| panic!("{m:?}: {e}"));
        assert_eq!(signer.binding, BindingKind::SubjectMapping { index: 1 });
        assert_eq!(signer.anchor_fingerprint, partner_root);
        assert_eq!(signer.key, PublicKeyKind::Rsa { bits: 2048 });
    }

    let refused = [
        mapping(None, Some("Acme"), None, "acme"),
        mapping(None, Some("acme corp"), None, "acme"),
        mapping(None, Some("Acme Corp"), Some("Someone Else"), "acme"),
        mapping(Some(store_root), Some("Acme Corp"), None, "acme"),
        mapping(None, Some("Acme Corp"), None, "other"),
        // Names no subject attribute: matches nothing, even with the right anchor.
        mapping(Some(partner_root), None, None, "acme"),
    ];
    for m in refused {
        assert!(
            matches!(
                verify(vec![m.clone()]),
                Err(CertError::NotBoundToPublisher { .. })
            ),
            "{m:?} should not bind"
        );
    }
}

#[test]
fn policy_reads_from_configuration() {
    let root = fingerprint(&pki().root.cert_der);
    let json = format!(
        r#"{{"min_rsa_bits": 3072,
            "allowed_algorithms": ["ecdsa-p256-sha256", "ed25519"],
            "publisher_uri_anchors": ["{root}"],
            "subject_mappings": [{{"anchor_fingerprint": "{root}",
                                   "subject_organization": "Acme Corp", "publisher": "acme"}}]}}"#
    );
    let policy: SignerPolicy = serde_json::from_str(&json).unwrap();
    assert_eq!(policy.min_rsa_bits, 3072);
    assert_eq!(policy.allowed_algorithms.len(), 2);
    assert_eq!(policy.publisher_uri_anchors, Some(vec![root]));
    assert_eq!(policy.subject_mappings[0].anchor_fingerprint, Some(root));
    assert!(serde_json::from_str::<SignerPolicy>(r#"{"min_rsa_bit": 1}"#).is_err());
    let defaults: SignerPolicy = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, SignerPolicy::default());
}

// ---- trust anchors and fingerprints ----

#[test]
fn trust_anchors_refuse_non_ca_and_garbage() {
    let pki = pki();
    assert_eq!(
        TrustAnchors::from_der_certs([&pki.leaf_p256.cert_der]).unwrap_err(),
        TrustAnchorError::NotCa {
            subject: subject(&pki.leaf_p256)
        }
    );
    assert!(matches!(
        TrustAnchors::from_der_certs([b"junk".as_slice()]),
        Err(TrustAnchorError::Malformed { index: 0, .. })
    ));
    assert_eq!(
        TrustAnchors::from_pem(b"no pem here").unwrap_err(),
        TrustAnchorError::NoCertificates
    );
    let truncated = &pki.root.cert_pem[..pki.root.cert_pem.len() - 30];
    assert!(matches!(
        TrustAnchors::from_pem(truncated),
        Err(TrustAnchorError::Pem(_))
    ));

    let mut anchors = pki.anchors();
    anchors.add_der(&pki.root.cert_der).unwrap();
    assert_eq!(anchors.len(), 1, "adding a root twice is a no-op");
}

#[test]
fn an_empty_anchor_set_trusts_nothing() {
    let pki = pki();
    assert!(matches!(
        verify_chain(&[&pki.leaf_p256, &pki.intermediate], &TrustAnchors::new()),
        Err(CertError::UnknownIssuer { .. })
    ));
}

#[test]
fn fingerprint_matches_openssl_and_parses_its_output() {
    let pki = pki();
    let line = Openssl::new().fingerprint_line(&pki.root);
    let from_openssl: CertFingerprint = line.parse().unwrap();
    let ours = fingerprint(&pki.root.cert_der);
    assert_eq!(from_openssl, ours);
    assert_eq!(ours.to_string().parse::<CertFingerprint>().unwrap(), ours);
    assert!(ours.to_string().starts_with("sha256:"));
    assert!("sha256:abcd".parse::<CertFingerprint>().is_err());
}

/// Records which webpki error each refusal starts from, so an upgrade that changes them is
/// noticed here rather than as a vaguer message in production.
#[test]
fn webpki_errors_behind_the_refusals() {
    let (pki, cases) = (pki(), cases());
    let anchors =
        [
            webpki::anchor_from_trusted_cert(&CertificateDer::from(pki.root.cert_der.as_slice()))
                .unwrap()
                .to_owned(),
        ];
    let code_signing = plugstore_format::certs::CODE_SIGNING_OID_DER_VALUE;
    let raw = |certs: &[&Credential], usage: webpki::KeyUsage| {
        let ders: Vec<CertificateDer<'_>> = certs
            .iter()
            .map(|c| CertificateDer::from(c.cert_der.as_slice()))
            .collect();
        let leaf = webpki::EndEntityCert::try_from(&ders[0]).unwrap();
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &ders[1..],
            now(),
            usage,
            None,
            None,
        )
        .map(|_| ())
    };
    let if_present = || webpki::KeyUsage::required_if_present(code_signing);

    assert!(matches!(
        raw(&[&cases.expired, &pki.intermediate], if_present()),
        Err(webpki::Error::CertExpired { .. })
    ));
    assert!(matches!(
        raw(&[&cases.not_yet_valid, &pki.intermediate], if_present()),
        Err(webpki::Error::CertNotValidYet { .. })
    ));
    assert!(matches!(
        raw(&[&cases.server_auth_only, &pki.intermediate], if_present()),
        Err(webpki::Error::RequiredEkuNotFoundContext(_))
    ));
    assert_eq!(
        raw(
            &[&cases.leaf_under_not_ca, &cases.not_ca_intermediate],
            if_present()
        ),
        Err(webpki::Error::EndEntityUsedAsCa)
    );
    assert_eq!(
        raw(&[&cases.leaf_is_ca, &pki.intermediate], if_present()),
        Err(webpki::Error::CaUsedAsEndEntity)
    );
    assert_eq!(
        raw(
            &[
                &cases.leaf_under_sub_intermediate,
                &cases.sub_intermediate,
                &pki.intermediate
            ],
            if_present()
        ),
        Err(webpki::Error::PathLenConstraintViolated)
    );
    assert_eq!(
        raw(&[&cases.leaf_from_unknown_root], if_present()),
        Err(webpki::Error::UnknownIssuer)
    );
    assert_eq!(
        raw(&[&cases.leaf_from_impostor], if_present()),
        Err(webpki::Error::InvalidSignatureForPublicKey)
    );
    // webpki does not look at the leaf's key size: that check is ours.
    assert_eq!(
        raw(&[&cases.rsa1024, &pki.intermediate], if_present()),
        Ok(())
    );
    // A leaf without any EKU passes `required_if_present`; our own leaf check refuses it.
    assert_eq!(
        raw(&[&cases.no_eku, &pki.intermediate], if_present()),
        Ok(())
    );
    // Why `required` is not used: webpki applies it to intermediates too, and refuses the
    // usual intermediate that carries no extendedKeyUsage at all.
    assert!(matches!(
        raw(
            &[&pki.leaf_p256, &pki.intermediate],
            webpki::KeyUsage::required(code_signing)
        ),
        Err(webpki::Error::RequiredEkuNotFoundContext(_))
    ));
    assert_eq!(
        raw(
            &[&cases.direct_leaf],
            webpki::KeyUsage::required(code_signing)
        ),
        Ok(())
    );
}

#[test]
fn root_extensions_are_what_the_tests_assume() {
    // Guards the helper: a root made with ROOT_EXT is a CA that TrustAnchors accepts.
    let openssl = Openssl::new();
    let root = openssl.self_signed("/CN=Scratch Root", KeySpec::Ed25519, ROOT_EXT);
    TrustAnchors::from_der_certs([&root.cert_der]).unwrap();
}
