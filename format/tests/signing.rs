//! The signing payload, the envelope, and signatures made with the `openssl` CLI (and with
//! [`sign_payload`], checked by openssl).

mod common;

use std::collections::HashSet;

use common::{Credential, KeySpec, NOT_REVOKED, Openssl, PUBLISHER, now, payload, pki};
use plugstore_format::certs::{
    CertError, CertFingerprint, MAX_CHAIN_LEN, PublicKeyKind, SignerPolicy, fingerprint,
};
use plugstore_format::digest::PackageDigest;
use plugstore_format::signing::{
    EnvelopeError, MAX_ENVELOPE_SIZE, PayloadError, SignatureAlgorithm, SignatureEnvelope,
    SignatureError, SigningError, SigningPayload, sign_payload, verify_package_signature,
    verify_signature,
};

const PLUGIN: &str = "acme/hello";

fn hello(version: &str) -> SigningPayload {
    payload(PLUGIN, version, 7)
}

/// Signs `signed` with openssl using `signer`'s key and ships `presented`'s chain in the
/// envelope (normally the same credential), round-tripping the envelope through JSON as it
/// would travel.
fn envelope_signed_by(
    signer: &Credential,
    presented: &Credential,
    algorithm: SignatureAlgorithm,
    signed: &SigningPayload,
) -> SignatureEnvelope {
    let signature = Openssl::new().sign(signer, algorithm, &signed.to_bytes());
    let envelope = SignatureEnvelope::new(algorithm, signature, pki().chain(presented));
    SignatureEnvelope::from_json(envelope.to_json().unwrap().as_bytes()).unwrap()
}

/// [`envelope_signed_by`] the leaf whose chain it carries.
fn envelope_by_openssl(
    leaf: &Credential,
    algorithm: SignatureAlgorithm,
    signed: &SigningPayload,
) -> SignatureEnvelope {
    envelope_signed_by(leaf, leaf, algorithm, signed)
}

fn verify(envelope: &SignatureEnvelope, checked: &SigningPayload) -> Result<(), SignatureError> {
    let pki = pki();
    verify_package_signature(
        envelope,
        checked,
        &pki.anchors(),
        &SignerPolicy::default(),
        now(),
        &NOT_REVOKED,
    )
    .map(|signer| {
        assert_eq!(
            signer.leaf_fingerprint,
            fingerprint(&envelope.certificate_chain[0])
        );
    })
}

// ---- the payload ----

#[test]
fn payload_bytes_are_canonical() {
    let digest = PackageDigest::from_bytes([0xab; 32]);
    let payload = SigningPayload::new("acme/hello", "1.2.3-beta.1+build.5", digest).unwrap();
    let expected = format!(
        "plugstore-package-signature-v1\nacme/hello\n1.2.3-beta.1+build.5\nsha256:{}\n",
        "ab".repeat(32)
    );
    assert_eq!(String::from_utf8(payload.to_bytes()).unwrap(), expected);
    assert_eq!(payload.publisher(), "acme");
    assert_eq!(payload.plugin_id(), "acme/hello");
    assert_eq!(payload.version(), "1.2.3-beta.1+build.5");
    assert_eq!(payload.package_digest(), &digest);
}

#[test]
fn payload_refuses_ambiguous_ids_and_versions() {
    let digest = PackageDigest::from_bytes([0; 32]);
    let new = |id: &str, version: &str| SigningPayload::new(id, version, digest);
    for id in [
        "acme/hello\n",
        "acme/hel\nlo",
        "acme/ hello",
        "acme/hello\r",
        "acme/\u{0}x",
    ] {
        assert_eq!(
            new(id, "1.0.0").unwrap_err(),
            PayloadError::PluginIdCharacter(id.to_owned()),
            "{id:?}"
        );
    }
    for id in ["hello", "/hello", "acme/", "acme/hello/extra", ""] {
        assert_eq!(
            new(id, "1.0.0").unwrap_err(),
            PayloadError::PluginIdShape(id.to_owned()),
            "{id:?}"
        );
    }
    for version in [
        "1.0",
        "1.0.0\n",
        "v1.0.0",
        "01.0.0",
        "1.0.0\nacme/other",
        "",
    ] {
        assert!(
            matches!(
                new("acme/hello", version),
                Err(PayloadError::Version { .. })
            ),
            "{version:?}"
        );
    }
}

// ---- the envelope ----

#[test]
fn envelope_round_trips_through_json() {
    let pki = pki();
    let envelope = SignatureEnvelope::new(
        SignatureAlgorithm::RsaPssSha256,
        vec![1, 2, 3],
        pki.chain(&pki.leaf_p256),
    );
    let json = envelope.to_json().unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["format"], 1);
    assert_eq!(value["algorithm"], "rsa-pss-sha256");
    assert_eq!(value["signature"], "AQID");
    assert_eq!(value["certificate_chain"].as_array().unwrap().len(), 2);
    assert_eq!(
        SignatureEnvelope::from_json(json.as_bytes()).unwrap(),
        envelope
    );
}

#[test]
fn envelope_refuses_unknown_fields() {
    let json = r#"{"format":1,"algorithm":"ed25519","signature":"AQID","certificate_chain":["AQID"],
                  "note":"trust me"}"#;
    let err = SignatureEnvelope::from_json(json.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::Json(e) if e.to_string().contains("unknown field `note`")),
        "{err}"
    );
}

#[test]
fn envelope_refuses_oversized_input_before_parsing() {
    let huge = vec![b' '; MAX_ENVELOPE_SIZE + 1];
    assert!(matches!(
        SignatureEnvelope::from_json(&huge),
        Err(EnvelopeError::TooLarge { size, max }) if size == MAX_ENVELOPE_SIZE + 1 && max == MAX_ENVELOPE_SIZE
    ));
    // A chain of large certificates can make an envelope too big to write.
    let envelope = SignatureEnvelope::new(
        SignatureAlgorithm::Ed25519,
        vec![0; 64],
        vec![vec![0; MAX_ENVELOPE_SIZE / 2]; 2],
    );
    assert!(matches!(
        envelope.to_json(),
        Err(EnvelopeError::TooLarge { .. })
    ));
}

#[test]
fn envelope_refuses_too_many_certificates() {
    let chain = vec![pki().leaf_p256.cert_der.clone(); MAX_CHAIN_LEN + 1];
    let envelope = SignatureEnvelope::new(SignatureAlgorithm::EcdsaP256Sha256, vec![1; 70], chain);
    assert!(matches!(
        envelope.to_json(),
        Err(EnvelopeError::ChainTooLong { len, max }) if len == MAX_CHAIN_LEN + 1 && max == MAX_CHAIN_LEN
    ));
    let json = serde_json::to_string(&envelope).unwrap();
    assert!(matches!(
        SignatureEnvelope::from_json(json.as_bytes()),
        Err(EnvelopeError::ChainTooLong { .. })
    ));
}

#[test]
fn envelope_refuses_other_malformations() {
    let parse = |json: &str| SignatureEnvelope::from_json(json.as_bytes());
    assert!(matches!(
        parse(
            r#"{"format":2,"algorithm":"ed25519","signature":"AQID","certificate_chain":["AQID"]}"#
        ),
        Err(EnvelopeError::UnsupportedFormat(2))
    ));
    assert!(matches!(
        parse(r#"{"format":1,"algorithm":"ed25519","signature":"AQID","certificate_chain":[]}"#),
        Err(EnvelopeError::EmptyChain)
    ));
    assert!(matches!(
        parse(r#"{"format":1,"algorithm":"ed25519","signature":"","certificate_chain":["AQID"]}"#),
        Err(EnvelopeError::EmptySignature)
    ));
    assert!(matches!(
        parse(
            r#"{"format":1,"algorithm":"ed25519","signature":"!!","certificate_chain":["AQID"]}"#
        ),
        Err(EnvelopeError::Json(_))
    ));
    assert!(matches!(
        parse(
            r#"{"format":1,"algorithm":"dsa-sha1","signature":"AQID","certificate_chain":["AQID"]}"#
        ),
        Err(EnvelopeError::Json(_))
    ));
    assert!(matches!(
        parse(r#"{"format":1,"algorithm":"ed25519","signature":"AQID"}"#),
        Err(EnvelopeError::Json(_))
    ));
    let long = SignatureEnvelope::new(SignatureAlgorithm::Ed25519, vec![0; 1025], vec![vec![1]]);
    assert!(matches!(
        long.to_json(),
        Err(EnvelopeError::SignatureTooLong {
            len: 1025,
            max: 1024
        })
    ));
}

#[test]
fn algorithm_names_are_stable() {
    let names: Vec<String> = SignatureAlgorithm::ALL
        .iter()
        .map(|a| {
            serde_json::to_value(a)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "ecdsa-p256-sha256",
            "ecdsa-p384-sha384",
            "rsa-pkcs1-sha256",
            "rsa-pkcs1-sha384",
            "rsa-pkcs1-sha512",
            "rsa-pss-sha256",
            "rsa-pss-sha384",
            "rsa-pss-sha512",
            "ed25519"
        ]
    );
    for algorithm in SignatureAlgorithm::ALL {
        assert_eq!(
            algorithm.as_str().parse::<SignatureAlgorithm>().unwrap(),
            algorithm
        );
        assert_eq!(algorithm.to_string(), algorithm.as_str());
    }
    assert!("rsa-sha1".parse::<SignatureAlgorithm>().is_err());
}

// ---- signatures made by openssl: accepted ----

#[test]
fn accepts_ecdsa_p256_via_intermediate() {
    let pki = pki();
    let signed = hello("1.0.0");
    let envelope =
        envelope_by_openssl(&pki.leaf_p256, SignatureAlgorithm::EcdsaP256Sha256, &signed);
    verify(&envelope, &signed).unwrap();
}

#[test]
fn accepts_ecdsa_p384() {
    let pki = pki();
    let signed = hello("1.0.0");
    let envelope =
        envelope_by_openssl(&pki.leaf_p384, SignatureAlgorithm::EcdsaP384Sha384, &signed);
    verify(&envelope, &signed).unwrap();
}

#[test]
fn accepts_rsa_pkcs1() {
    let pki = pki();
    let signed = hello("2.0.0");
    for algorithm in [
        SignatureAlgorithm::RsaPkcs1Sha256,
        SignatureAlgorithm::RsaPkcs1Sha384,
        SignatureAlgorithm::RsaPkcs1Sha512,
    ] {
        let envelope = envelope_by_openssl(&pki.leaf_rsa2048, algorithm, &signed);
        verify(&envelope, &signed).unwrap_or_else(|e| panic!("{algorithm}: {e}"));
    }
}

#[test]
fn accepts_rsa_pss() {
    let pki = pki();
    let signed = hello("2.0.0");
    for algorithm in [
        SignatureAlgorithm::RsaPssSha256,
        SignatureAlgorithm::RsaPssSha384,
        SignatureAlgorithm::RsaPssSha512,
    ] {
        let envelope = envelope_by_openssl(&pki.leaf_rsa2048, algorithm, &signed);
        verify(&envelope, &signed).unwrap_or_else(|e| panic!("{algorithm}: {e}"));
    }
}

#[test]
fn accepts_ed25519() {
    let pki = pki();
    let signed = hello("0.1.0");
    let envelope = envelope_by_openssl(&pki.leaf_ed25519, SignatureAlgorithm::Ed25519, &signed);
    assert_eq!(envelope.signature.len(), 64);
    verify(&envelope, &signed).unwrap();
}

// ---- refused ----

#[test]
fn refuses_signature_over_another_version() {
    let pki = pki();
    let envelope = envelope_by_openssl(
        &pki.leaf_p256,
        SignatureAlgorithm::EcdsaP256Sha256,
        &hello("1.0.0"),
    );
    assert!(matches!(
        verify(&envelope, &hello("1.0.1")),
        Err(SignatureError::BadSignature {
            algorithm: SignatureAlgorithm::EcdsaP256Sha256
        })
    ));
}

#[test]
fn refuses_signature_moved_to_another_plugin() {
    let pki = pki();
    let envelope = envelope_by_openssl(
        &pki.leaf_rsa2048,
        SignatureAlgorithm::RsaPssSha256,
        &hello("1.0.0"),
    );
    // Same publisher, same version and bytes, other plugin.
    assert!(matches!(
        verify(&envelope, &payload("acme/goodbye", "1.0.0", 7)),
        Err(SignatureError::BadSignature { .. })
    ));
    // Another publisher's plugin: the certificate does not speak for it at all.
    assert!(matches!(
        verify(&envelope, &payload("other/hello", "1.0.0", 7)),
        Err(SignatureError::Signer(CertError::NotBoundToPublisher { publisher, .. })) if publisher == "other"
    ));
}

#[test]
fn refuses_tampered_package_digest() {
    let pki = pki();
    let envelope = envelope_by_openssl(
        &pki.leaf_ed25519,
        SignatureAlgorithm::Ed25519,
        &hello("1.0.0"),
    );
    let mut digest = [7u8; 32];
    digest[31] ^= 1;
    let tampered = SigningPayload::new(PLUGIN, "1.0.0", PackageDigest::from_bytes(digest)).unwrap();
    assert!(matches!(
        verify(&envelope, &tampered),
        Err(SignatureError::BadSignature {
            algorithm: SignatureAlgorithm::Ed25519
        })
    ));
}

#[test]
fn refuses_algorithm_that_does_not_fit_the_key() {
    let pki = pki();
    let signed = hello("1.0.0");
    let cases = [
        (
            &pki.leaf_p256,
            SignatureAlgorithm::EcdsaP256Sha256,
            SignatureAlgorithm::RsaPkcs1Sha256,
            PublicKeyKind::EcP256,
        ),
        (
            &pki.leaf_p384,
            SignatureAlgorithm::EcdsaP384Sha384,
            SignatureAlgorithm::EcdsaP256Sha256,
            PublicKeyKind::EcP384,
        ),
        (
            &pki.leaf_rsa2048,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignatureAlgorithm::Ed25519,
            PublicKeyKind::Rsa { bits: 2048 },
        ),
        (
            &pki.leaf_ed25519,
            SignatureAlgorithm::Ed25519,
            SignatureAlgorithm::EcdsaP256Sha256,
            PublicKeyKind::Ed25519,
        ),
    ];
    for (leaf, made_with, declared, key) in cases {
        let mut envelope = envelope_by_openssl(leaf, made_with, &signed);
        envelope.algorithm = declared;
        let err = verify(&envelope, &signed).unwrap_err();
        assert!(
            matches!(err, SignatureError::AlgorithmKeyMismatch { algorithm, key: k } if algorithm == declared && k == key),
            "{declared} with {key}: {err:?}"
        );
        assert!(err.to_string().contains(&key.to_string()), "{err}");
    }
}

#[test]
fn refuses_pkcs1_signature_declared_as_pss() {
    let pki = pki();
    let signed = hello("1.0.0");
    let mut envelope = envelope_by_openssl(
        &pki.leaf_rsa2048,
        SignatureAlgorithm::RsaPkcs1Sha256,
        &signed,
    );
    envelope.algorithm = SignatureAlgorithm::RsaPssSha256;
    assert!(matches!(
        verify(&envelope, &signed),
        Err(SignatureError::BadSignature {
            algorithm: SignatureAlgorithm::RsaPssSha256
        })
    ));
}

#[test]
fn refuses_garbage_signature() {
    let pki = pki();
    let signed = hello("1.0.0");
    for (leaf, algorithm, garbage) in [
        (
            &pki.leaf_p256,
            SignatureAlgorithm::EcdsaP256Sha256,
            vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
        ),
        (
            &pki.leaf_rsa2048,
            SignatureAlgorithm::RsaPkcs1Sha256,
            vec![0x55; 256],
        ),
        (&pki.leaf_ed25519, SignatureAlgorithm::Ed25519, vec![0; 64]),
        (
            &pki.leaf_ed25519,
            SignatureAlgorithm::Ed25519,
            b"not a signature".to_vec(),
        ),
    ] {
        let envelope = SignatureEnvelope::new(algorithm, garbage, pki.chain(leaf));
        assert!(
            matches!(
                verify(&envelope, &signed),
                Err(SignatureError::BadSignature { .. })
            ),
            "{algorithm}"
        );
    }
}

#[test]
fn refuses_signature_made_with_another_key() {
    // The other publisher's key signs acme's payload; acme's certificate is presented.
    let pki = pki();
    let signed = hello("1.0.0");
    let envelope = envelope_signed_by(
        &pki.leaf_other,
        &pki.leaf_p256,
        SignatureAlgorithm::EcdsaP256Sha256,
        &signed,
    );
    assert!(matches!(
        verify(&envelope, &signed),
        Err(SignatureError::BadSignature { .. })
    ));
}

#[test]
fn refuses_algorithm_the_policy_does_not_allow() {
    let pki = pki();
    let signed = hello("1.0.0");
    let envelope = envelope_by_openssl(
        &pki.leaf_rsa2048,
        SignatureAlgorithm::RsaPkcs1Sha256,
        &signed,
    );
    let policy = SignerPolicy {
        allowed_algorithms: vec![
            SignatureAlgorithm::RsaPssSha256,
            SignatureAlgorithm::EcdsaP256Sha256,
        ],
        ..SignerPolicy::default()
    };
    assert!(matches!(
        verify_package_signature(
            &envelope,
            &signed,
            &pki.anchors(),
            &policy,
            now(),
            &NOT_REVOKED
        ),
        Err(SignatureError::AlgorithmNotAllowed(
            SignatureAlgorithm::RsaPkcs1Sha256
        ))
    ));
}

#[test]
fn refuses_valid_signature_from_a_revoked_certificate() {
    let pki = pki();
    let signed = hello("1.0.0");
    let envelope =
        envelope_by_openssl(&pki.leaf_p256, SignatureAlgorithm::EcdsaP256Sha256, &signed);
    let revoked: HashSet<CertFingerprint> = [fingerprint(&pki.leaf_p256.cert_der)].into();
    assert!(matches!(
        verify_package_signature(
            &envelope,
            &signed,
            &pki.anchors(),
            &SignerPolicy::default(),
            now(),
            &revoked
        ),
        Err(SignatureError::Signer(CertError::Revoked { .. }))
    ));
}

#[test]
fn verify_signature_alone_refuses_a_malformed_leaf() {
    let pki = pki();
    let signed = hello("1.0.0");
    let envelope =
        envelope_by_openssl(&pki.leaf_p256, SignatureAlgorithm::EcdsaP256Sha256, &signed);
    verify_signature(&envelope, &signed, &pki.leaf_p256.cert_der).unwrap();
    assert!(matches!(
        verify_signature(&envelope, &signed, b"junk"),
        Err(SignatureError::MalformedCertificate(_))
    ));
}

// ---- sign_payload (ring) interoperates with openssl ----

#[test]
fn sign_payload_makes_signatures_openssl_accepts() {
    let pki = pki();
    let openssl = Openssl::new();
    let signed = hello("3.1.4");
    let cases = [
        (&pki.leaf_p256, SignatureAlgorithm::EcdsaP256Sha256),
        (&pki.leaf_p384, SignatureAlgorithm::EcdsaP384Sha384),
        (&pki.leaf_rsa2048, SignatureAlgorithm::RsaPkcs1Sha256),
        (&pki.leaf_rsa2048, SignatureAlgorithm::RsaPkcs1Sha384),
        (&pki.leaf_rsa2048, SignatureAlgorithm::RsaPkcs1Sha512),
        (&pki.leaf_rsa2048, SignatureAlgorithm::RsaPssSha256),
        (&pki.leaf_rsa2048, SignatureAlgorithm::RsaPssSha384),
        (&pki.leaf_rsa2048, SignatureAlgorithm::RsaPssSha512),
        (&pki.leaf_ed25519, SignatureAlgorithm::Ed25519),
    ];
    for (leaf, algorithm) in cases {
        let signature = sign_payload(algorithm, &leaf.key_pkcs8_der, &signed)
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert!(
            openssl.verify(leaf, algorithm, &signed.to_bytes(), &signature),
            "openssl refuses our {algorithm} signature"
        );
        let envelope = SignatureEnvelope::new(algorithm, signature, pki.chain(leaf));
        verify(&envelope, &signed).unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert!(matches!(
            verify(&envelope, &hello("3.1.5")),
            Err(SignatureError::BadSignature { .. })
        ));
    }
}

#[test]
fn sign_payload_refuses_a_key_of_the_wrong_kind_or_size() {
    let pki = pki();
    let signed = hello("1.0.0");
    let rsa1024 = Openssl::new().private_key(KeySpec::Rsa(1024));
    for (key, algorithm) in [
        (
            &pki.leaf_p256.key_pkcs8_der,
            SignatureAlgorithm::RsaPkcs1Sha256,
        ),
        (
            &pki.leaf_p256.key_pkcs8_der,
            SignatureAlgorithm::EcdsaP384Sha384,
        ),
        (&pki.leaf_rsa2048.key_pkcs8_der, SignatureAlgorithm::Ed25519),
        (
            &pki.leaf_ed25519.key_pkcs8_der,
            SignatureAlgorithm::EcdsaP256Sha256,
        ),
        (&rsa1024, SignatureAlgorithm::RsaPssSha256),
    ] {
        assert!(
            matches!(sign_payload(algorithm, key, &signed), Err(SigningError::UnusableKey { algorithm: a, .. }) if a == algorithm),
            "{algorithm}"
        );
    }
}

#[test]
fn publisher_comes_from_the_plugin_id() {
    // An `other` certificate signing an `acme` plugin is refused even with a valid signature.
    let pki = pki();
    let signed = hello("1.0.0");
    let envelope = envelope_by_openssl(
        &pki.leaf_other,
        SignatureAlgorithm::EcdsaP256Sha256,
        &signed,
    );
    assert!(matches!(
        verify(&envelope, &signed),
        Err(SignatureError::Signer(CertError::NotBoundToPublisher { publisher, .. })) if publisher == PUBLISHER
    ));
}
