//! The `plugstore` binary without a registry: keys of every type from `keygen`, `pack`,
//! `sign` with a certificate from a test CA, and `verify`, including its refusals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

const BIN: &str = env!("CARGO_BIN_EXE_plugstore");

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("hello")).unwrap();
        std::fs::write(
            dir.path().join("hello/plugin.toml"),
            "format = 1\n[plugin]\nid = \"acme/hello\"\nversion = \"1.0.0\"\nkind = \"wasm\"\n\
             entry = \"plugin.wasm\"\ntargets = [\"any\"]\ndescription = \"Says hello\"\n\
             [host]\ncompatibility = \">=1.0.0\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("hello/plugin.wasm"), b"\0asm\x01\0\0\0").unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BIN);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PLUGSTORE_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("PLUGSTORE_CONFIG_DIR", self.path("config"))
            .output()
            .unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend(args);
        let out = self.run(&full);
        assert!(
            out.status.success(),
            "plugstore {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    #[track_caller]
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "plugstore {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// A CA like the store's: self-signed, path length 0.
fn test_ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let cert = params.self_signed(&key).unwrap();
    (Issuer::new(params, key), cert.pem())
}

/// A code-signing certificate for the key in `key_file`, bound to `publisher` by SAN URI.
fn issue(ca: &Issuer<'static, KeyPair>, key_file: &Path, publisher: &str) -> String {
    let key = KeyPair::from_pem(&std::fs::read_to_string(key_file).unwrap()).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "release");
    params.subject_alt_names = vec![SanType::URI(
        format!("urn:plugstore:publisher:{publisher}")
            .try_into()
            .unwrap(),
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    params.signed_by(&key, ca).unwrap().pem()
}

#[test]
fn every_key_type_signs_packages_that_verify() {
    let ws = Workspace::new();
    let (ca, ca_pem) = test_ca("Test CA");
    std::fs::write(ws.path("ca.pem"), &ca_pem).unwrap();
    let packed = ws.ok(&["pack", "hello"]);
    assert_eq!(packed["file"], "hello-1.0.0.tar");
    let again = ws.ok(&["pack", "hello", "--out", "again.tar"]);
    assert_eq!(
        packed["digest"], again["digest"],
        "packing is deterministic"
    );

    for (algorithm, signature) in [
        ("p256", "ecdsa-p256-sha256"),
        ("p384", "ecdsa-p384-sha384"),
        ("ed25519", "ed25519"),
        ("rsa2048", "rsa-pss-sha256"),
    ] {
        let key = format!("{algorithm}.key");
        let generated = ws.ok(&["keygen", "--algorithm", algorithm, "--out", &key]);
        assert_eq!(generated["signature_algorithm"], signature);
        let chain = format!("{}{ca_pem}", issue(&ca, &ws.path(&key), "acme"));
        let chain_file = format!("{algorithm}.chain.pem");
        std::fs::write(ws.path(&chain_file), chain).unwrap();
        let sig = format!("{algorithm}.sig.json");
        let signed = ws.ok(&[
            "sign",
            "hello-1.0.0.tar",
            "--key",
            &key,
            "--cert",
            &chain_file,
            "--out",
            &sig,
        ]);
        assert_eq!(signed["algorithm"], signature);
        let verified = ws.ok(&[
            "verify",
            "hello-1.0.0.tar",
            "--signature",
            &sig,
            "--ca",
            "ca.pem",
        ]);
        assert_eq!(verified["verified"], true);
        assert_eq!(verified["algorithm"], signature);
        assert_eq!(verified["digest"], packed["digest"]);
        assert_eq!(verified["signer"]["subject"], "CN=release");
    }

    // RSA keys may also sign with PKCS#1 v1.5.
    let signed = ws.ok(&[
        "sign",
        "hello-1.0.0.tar",
        "--key",
        "rsa2048.key",
        "--cert",
        "rsa2048.chain.pem",
        "--algorithm",
        "rsa-pkcs1-sha256",
        "--out",
        "pkcs1.sig.json",
    ]);
    assert_eq!(signed["algorithm"], "rsa-pkcs1-sha256");
    ws.ok(&[
        "verify",
        "hello-1.0.0.tar",
        "--signature",
        "pkcs1.sig.json",
        "--ca",
        "ca.pem",
    ]);
}

#[test]
fn verify_and_sign_refuse_with_the_reason() {
    let ws = Workspace::new();
    let (ca, ca_pem) = test_ca("Test CA");
    let (_, other_ca_pem) = test_ca("Another CA");
    std::fs::write(ws.path("ca.pem"), &ca_pem).unwrap();
    std::fs::write(ws.path("other-ca.pem"), &other_ca_pem).unwrap();
    ws.ok(&["pack", "hello"]);
    ws.ok(&["keygen", "--out", "k.key"]);
    std::fs::write(
        ws.path("acme.pem"),
        format!("{}{ca_pem}", issue(&ca, &ws.path("k.key"), "acme")),
    )
    .unwrap();
    std::fs::write(
        ws.path("beta.pem"),
        format!("{}{ca_pem}", issue(&ca, &ws.path("k.key"), "beta")),
    )
    .unwrap();

    let wrong_publisher = ws.fails(&[
        "sign",
        "hello-1.0.0.tar",
        "--key",
        "k.key",
        "--cert",
        "beta.pem",
    ]);
    assert!(
        wrong_publisher.contains("is for publisher beta, not acme"),
        "{wrong_publisher}"
    );
    assert!(
        wrong_publisher.contains("hint: request a new certificate"),
        "{wrong_publisher}"
    );

    ws.ok(&["keygen", "--out", "other.key"]);
    let wrong_key = ws.fails(&[
        "sign",
        "hello-1.0.0.tar",
        "--key",
        "other.key",
        "--cert",
        "acme.pem",
    ]);
    assert!(
        wrong_key.contains("does not belong to the certificate"),
        "{wrong_key}"
    );

    ws.ok(&[
        "sign",
        "hello-1.0.0.tar",
        "--key",
        "k.key",
        "--cert",
        "acme.pem",
    ]);
    let untrusted = ws.fails(&[
        "verify",
        "hello-1.0.0.tar",
        "--signature",
        "hello-1.0.0.tar.sig.json",
        "--ca",
        "other-ca.pem",
    ]);
    assert!(
        untrusted.contains("does not lead to a trusted root"),
        "{untrusted}"
    );
    let no_ca = ws.fails(&[
        "verify",
        "hello-1.0.0.tar",
        "--signature",
        "hello-1.0.0.tar.sig.json",
    ]);
    assert!(no_ca.contains("no trusted CA was given"), "{no_ca}");

    // A signature moved to another version of the same files is refused.
    let toml = std::fs::read_to_string(ws.path("hello/plugin.toml")).unwrap();
    std::fs::write(ws.path("hello/plugin.toml"), toml.replace("1.0.0", "1.0.1")).unwrap();
    ws.ok(&["pack", "hello"]);
    let moved = ws.fails(&[
        "verify",
        "hello-1.0.1.tar",
        "--signature",
        "hello-1.0.0.tar.sig.json",
        "--ca",
        "ca.pem",
    ]);
    assert!(
        moved.contains("does not match this plugin, version and package digest"),
        "{moved}"
    );

    let not_a_package = ws.fails(&[
        "verify",
        "hello-1.0.0.tar.sig.json",
        "--signature",
        "hello-1.0.0.tar.sig.json",
        "--ca",
        "ca.pem",
    ]);
    assert!(
        not_a_package.contains("is not a valid package"),
        "{not_a_package}"
    );
}
