//! "Bring your own company-CA certificate", exactly as docs/src/publisher/guide.md tells it:
//! a CA and a code-signing leaf made with openssl, a signature made with `openssl dgst` over
//! the signing payload and wrapped in an envelope by hand, and a store configured with the
//! company root as a trust anchor and a subject mapping to the publisher.

use std::path::Path;
use std::process::Command;

use plugstore_e2e::{Cli, Store, binaries, plugin_dir};

/// The guide's commands for the company root.
const MAKE_ROOT: &str = r#"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out acme-root.key
openssl req -x509 -new -key acme-root.key -sha256 -days 3650 \
  -subj "/CN=Acme Code Signing Root/O=Acme Corp" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out acme-root.pem
"#;

/// The guide's commands for the release key and its code-signing certificate.
const MAKE_LEAF: &str = r#"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out release.key
openssl req -new -key release.key -subj "/CN=Acme Release Signing/O=Acme Corp" -out release.csr
cat > codesign.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl x509 -req -in release.csr -CA acme-root.pem -CAkey acme-root.key -CAcreateserial \
  -days 365 -sha256 -extfile codesign.ext -out release.pem
cat release.pem acme-root.pem > release.chain.pem
"#;

/// The guide's commands for signing elsewhere and uploading the envelope.
const SIGN_WITH_OPENSSL: &str = r#"
plugstore pack ./hello --out hello-1.0.0.tar
DIGEST=$(sha256sum hello-1.0.0.tar | cut -d' ' -f1)
printf 'plugstore-package-signature-v1\n%s\n%s\nsha256:%s\n' acme/hello 1.0.0 "$DIGEST" > payload.txt

openssl dgst -sha256 -sign release.key -out payload.sig payload.txt
b64() { openssl base64 -A; }
cat > hello-1.0.0.sig.json <<EOF
{"format": 1,
 "algorithm": "ecdsa-p256-sha256",
 "signature": "$(b64 < payload.sig)",
 "certificate_chain": ["$(openssl x509 -in release.pem -outform DER | b64)",
                       "$(openssl x509 -in acme-root.pem -outform DER | b64)"]}
EOF
plugstore publish hello-1.0.0.tar --signature hello-1.0.0.sig.json
"#;

fn sh(dir: &Path, script: &str) -> String {
    let output = Command::new("sh")
        .args(["-euc", script])
        .current_dir(dir)
        .output()
        .expect("sh and openssl (scripts/install-tools.sh installs openssl)");
    assert!(
        output.status.success(),
        "{script}\nfailed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_company_ca_certificate_publishes_through_a_subject_mapping() {
    let bins = binaries();
    let pki = tempfile::tempdir().unwrap();
    sh(pki.path(), MAKE_ROOT);
    let fingerprint = sh(
        pki.path(),
        "openssl x509 -in acme-root.pem -noout -fingerprint -sha256",
    );
    let root = pki.path().join("acme-root.pem");
    let config = format!(
        "[signing]\ntrust_anchors = [{root:?}]\n\n[[signing.subject_mappings]]\npublisher = \"acme\"\norganization = \"Acme Corp\"\nanchor_sha256 = {fingerprint:?}\n",
        root = root.display().to_string(),
        fingerprint = fingerprint.trim(),
    );
    let store = Store::start_with_config(&bins, Some(&config));

    let alice = Cli::new(&bins, &store);
    alice.register_and_login("alice", "correct horse battery staple");
    alice.run(&["publisher", "create", "acme"]).ok();
    let work = alice.work_dir();
    for file in ["acme-root.pem", "acme-root.key"] {
        std::fs::copy(pki.path().join(file), work.join(file)).unwrap();
    }
    sh(&work, MAKE_LEAF);
    plugin_dir(&work, "hello", "acme/hello", "1.0.0");

    let published = alice.run_script(SIGN_WITH_OPENSSL).ok().to_owned();
    assert!(
        published.contains("published acme/hello 1.0.0 (state: published)"),
        "{published}"
    );
    let version = store.get_json("/api/v1/plugins/acme/hello/versions/1.0.0");
    assert_eq!(version["state"], "published");

    // With the key file at hand, the CLI signs with the company certificate itself.
    plugin_dir(&work, "hello-next", "acme/hello", "1.0.1");
    let signed_here = alice
        .run(&[
            "publish",
            "hello-next",
            "--key",
            "release.key",
            "--cert",
            "release.chain.pem",
        ])
        .ok()
        .to_owned();
    assert!(
        signed_here.contains("published acme/hello 1.0.1"),
        "{signed_here}"
    );

    // The store recorded the company certificate as an external signer of acme.
    let certificates = store.get_json("/api/v1/publishers/acme/certificates");
    assert!(
        certificates["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["origin"] == "external"
                && c["subject"]
                    .as_str()
                    .unwrap()
                    .contains("Acme Release Signing")),
        "{certificates}"
    );

    // Offline, only URI bindings exist: the guide says verify reports the mapping it
    // cannot know.
    let offline = alice
        .run(&[
            "verify",
            "hello-1.0.0.tar",
            "--signature",
            "hello-1.0.0.sig.json",
            "--ca",
            "acme-root.pem",
        ])
        .failed()
        .to_owned();
    assert!(offline.contains("not bound to publisher"), "{offline}");
    assert!(offline.contains("subject mappings"), "{offline}");
}
