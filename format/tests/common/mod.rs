//! Certificates, keys and signatures made with the real `openssl` command-line tool, the way a
//! publisher using a third-party CA or their own tooling would make them.
//!
//! Shared by the `certs` and `signing` test binaries; each uses a part of it.
#![allow(dead_code)] // Each test binary compiles this module and uses only some of it.

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use plugstore_format::certs::{NoRevocations, TrustAnchors, UnixTime};
use plugstore_format::digest::PackageDigest;
use plugstore_format::signing::{SignatureAlgorithm, SigningPayload};
use tempfile::TempDir;

/// The publisher every "good" leaf is issued for.
pub const PUBLISHER: &str = "acme";

/// A key type openssl can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    EcP256,
    EcP384,
    /// Not supported for signing; for the refusal test.
    EcP521,
    Rsa(u32),
    Ed25519,
}

impl KeySpec {
    fn genpkey_args(self) -> Vec<String> {
        match self {
            Self::EcP256 => vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Self::EcP384 => vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Self::EcP521 => vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            Self::Rsa(_) => vec!["-algorithm", "RSA"],
            Self::Ed25519 => vec!["-algorithm", "ED25519"],
        }
        .into_iter()
        .map(str::to_owned)
        .chain(match self {
            Self::Rsa(bits) => vec!["-pkeyopt".to_owned(), format!("rsa_keygen_bits:{bits}")],
            _ => Vec::new(),
        })
        .collect()
    }

    /// The digest option for certificates this key signs (Ed25519 takes none).
    fn cert_digest(self) -> Option<&'static str> {
        match self {
            Self::EcP384 => Some("-sha384"),
            Self::EcP521 => Some("-sha512"),
            Self::Ed25519 => None,
            _ => Some("-sha256"),
        }
    }
}

/// A certificate and its private key, as bytes (the files live only while openssl runs).
#[derive(Debug, Clone)]
pub struct Credential {
    /// Subject in openssl's `-subj` syntax.
    pub subject: String,
    pub key: KeySpec,
    pub cert_der: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The private key as PKCS#8 DER (`openssl pkcs8 -topk8 -nocrypt -outform DER`).
    pub key_pkcs8_der: Vec<u8>,
}

/// How long a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// From now, for this many days (`openssl x509 -req -days`).
    Days(u32),
    /// Exactly this window, `YYYYMMDDHHMMSSZ` (`openssl ca -startdate/-enddate`; OpenSSL 3.0's
    /// `x509` command has no option for it).
    Window(&'static str, &'static str),
}

/// Extensions of a root CA.
pub const ROOT_EXT: &str = "basicConstraints = critical,CA:true\n\
                            keyUsage = critical,keyCertSign,cRLSign\n\
                            subjectKeyIdentifier = hash\n";

/// Extensions of an intermediate CA: no extendedKeyUsage, like most real intermediates.
pub const INTERMEDIATE_EXT: &str = "basicConstraints = critical,CA:true,pathlen:0\n\
                                    keyUsage = critical,keyCertSign,cRLSign\n\
                                    subjectKeyIdentifier = hash\n\
                                    authorityKeyIdentifier = keyid:always\n";

/// Extensions of a code-signing leaf bound to `publisher` by SAN URI.
pub fn leaf_ext(publisher: &str) -> String {
    format!(
        "basicConstraints = critical,CA:false\n\
         keyUsage = critical,digitalSignature\n\
         extendedKeyUsage = codeSigning\n\
         subjectAltName = URI:urn:plugstore:publisher:{publisher}\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid\n"
    )
}

/// A scratch directory in which openssl runs.
pub struct Openssl {
    dir: TempDir,
}

static NEXT_NAME: AtomicU64 = AtomicU64::new(0);

fn unique(stem: &str) -> String {
    format!("{stem}-{}", NEXT_NAME.fetch_add(1, Ordering::Relaxed))
}

impl Openssl {
    /// A fresh workspace; panics with instructions when `openssl` is not installed.
    pub fn new() -> Self {
        match Command::new("openssl").arg("version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "`openssl version` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!(
                "these tests make their certificates with the `openssl` command-line tool, which \
                 could not be run ({e}); install it (scripts/install-tools.sh does)"
            ),
        }
        Self {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// Writes a scratch file; returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write a scratch file");
        path
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read a file openssl wrote")
    }

    /// Runs openssl in the workspace; panics with its output when it fails.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Vec<u8> {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Runs openssl and reports whether it succeeded (for `-verify`).
    pub fn succeeds(&self, args: &[&str]) -> bool {
        Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl")
            .status
            .success()
    }

    fn new_key(&self, stem: &str, key: KeySpec) -> (String, Vec<u8>, Vec<u8>) {
        let key_file = self.path(&format!("{stem}.key"));
        let mut args = vec!["genpkey".to_owned()];
        args.extend(key.genpkey_args());
        args.extend(["-out".to_owned(), key_file.clone()]);
        self.run(&args);
        let der_file = self.path(&format!("{stem}.p8"));
        self.run(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", &key_file, "-outform", "DER", "-out", &der_file,
        ]);
        let pem = std::fs::read(&key_file).expect("read key");
        let der = std::fs::read(&der_file).expect("read key");
        (key_file, pem, der)
    }

    /// A fresh private key, PKCS#8 DER.
    pub fn private_key(&self, key: KeySpec) -> Vec<u8> {
        self.new_key(&unique("key"), key).2
    }

    fn req_config(&self, stem: &str, extensions: &str) -> String {
        self.write(
            &format!("{stem}.cnf"),
            format!("[req]\ndistinguished_name = dn\n[dn]\n[ext]\n{extensions}").as_bytes(),
        )
    }

    fn finish(
        &self,
        stem: &str,
        subject: &str,
        key: KeySpec,
        key_pem: Vec<u8>,
        key_der: Vec<u8>,
    ) -> Credential {
        let pem_file = self.path(&format!("{stem}.pem"));
        let der_file = self.path(&format!("{stem}.der"));
        self.run(&[
            "x509", "-in", &pem_file, "-outform", "DER", "-out", &der_file,
        ]);
        Credential {
            subject: subject.to_owned(),
            key,
            cert_der: self.read(&format!("{stem}.der")),
            cert_pem: self.read(&format!("{stem}.pem")),
            key_pem,
            key_pkcs8_der: key_der,
        }
    }

    /// A self-signed certificate (`openssl req -x509`) with the given extensions.
    pub fn self_signed(&self, subject: &str, key: KeySpec, extensions: &str) -> Credential {
        let stem = unique("root");
        let (key_file, key_pem, key_der) = self.new_key(&stem, key);
        let config = self.req_config(&stem, extensions);
        let out = self.path(&format!("{stem}.pem"));
        let mut args = vec![
            "req",
            "-x509",
            "-new",
            "-key",
            &key_file,
            "-config",
            &config,
            "-extensions",
            "ext",
            "-subj",
            subject,
            "-days",
            "3650",
            "-out",
            &out,
        ];
        args.extend(key.cert_digest());
        self.run(&args);
        self.finish(&stem, subject, key, key_pem, key_der)
    }

    /// A root CA with [`ROOT_EXT`].
    pub fn root_ca(&self, subject: &str, key: KeySpec) -> Credential {
        self.self_signed(subject, key, ROOT_EXT)
    }

    /// A certificate for a new key, issued by `issuer` from a CSR (`openssl req -new`, then
    /// `openssl x509 -req` or, for a fixed window, `openssl ca`).
    pub fn issue(
        &self,
        subject: &str,
        key: KeySpec,
        issuer: &Credential,
        extensions: &str,
        validity: Validity,
    ) -> Credential {
        let stem = unique("cert");
        let (key_file, key_pem, key_der) = self.new_key(&stem, key);
        let config = self.req_config(&stem, extensions);
        let csr = self.path(&format!("{stem}.csr"));
        self.run(&[
            "req", "-new", "-key", &key_file, "-config", &config, "-subj", subject, "-out", &csr,
        ]);
        let issuer_cert = self.write(&format!("{stem}.issuer.pem"), &issuer.cert_pem);
        let issuer_key = self.write(&format!("{stem}.issuer.key"), &issuer.key_pem);
        let out = self.path(&format!("{stem}.pem"));
        match validity {
            Validity::Days(days) => {
                let days = days.to_string();
                let mut args = vec![
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &issuer_cert,
                    "-CAkey",
                    &issuer_key,
                    "-CAcreateserial",
                    "-days",
                    &days,
                    "-extfile",
                    &config,
                    "-extensions",
                    "ext",
                    "-out",
                    &out,
                ];
                args.extend(issuer.key.cert_digest());
                self.run(&args);
            }
            Validity::Window(not_before, not_after) => {
                let index = self.write(&format!("{stem}.index"), b"");
                let serial = self.write(&format!("{stem}.serial"), b"1000\n");
                let ca_config = self.write(
                    &format!("{stem}.ca.cnf"),
                    format!(
                        "[ca]\ndefault_ca = ca_default\n\
                         [ca_default]\ndatabase = {index}\nnew_certs_dir = {dir}\n\
                         serial = {serial}\npolicy = policy_any\nunique_subject = no\n\
                         copy_extensions = none\n\
                         [policy_any]\ncommonName = supplied\norganizationName = optional\n",
                        dir = self.dir.path().display(),
                    )
                    .as_bytes(),
                );
                let digest = issuer.key.cert_digest().map_or("default", |d| &d[1..]);
                self.run(&[
                    "ca",
                    "-batch",
                    "-config",
                    &ca_config,
                    "-cert",
                    &issuer_cert,
                    "-keyfile",
                    &issuer_key,
                    "-in",
                    &csr,
                    "-out",
                    &out,
                    "-startdate",
                    not_before,
                    "-enddate",
                    not_after,
                    "-extfile",
                    &config,
                    "-extensions",
                    "ext",
                    "-notext",
                    "-md",
                    digest,
                    "-preserveDN",
                    "-rand_serial",
                ]);
            }
        }
        self.finish(&stem, subject, key, key_pem, key_der)
    }

    /// Signs `message` with `signer`'s key the way the openssl documentation says.
    pub fn sign(
        &self,
        signer: &Credential,
        algorithm: SignatureAlgorithm,
        message: &[u8],
    ) -> Vec<u8> {
        let stem = unique("sig");
        let key = self.write(&format!("{stem}.key"), &signer.key_pem);
        let input = self.write(&format!("{stem}.payload"), message);
        let sig = self.path(&format!("{stem}.sig"));
        let args: Vec<&str> = match algorithm {
            SignatureAlgorithm::Ed25519 => {
                vec![
                    "pkeyutl", "-sign", "-rawin", "-inkey", &key, "-in", &input, "-out", &sig,
                ]
            }
            _ => {
                let mut args = vec!["dgst", digest_option(algorithm), "-sign", &key];
                args.extend(pss_options(algorithm));
                args.extend(["-out", &sig, &input]);
                args
            }
        };
        self.run(&args);
        std::fs::read(&sig).expect("read signature")
    }

    /// Verifies `signature` over `message` with the public key of `signer`'s certificate.
    pub fn verify(
        &self,
        signer: &Credential,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        let stem = unique("verify");
        let cert = self.write(&format!("{stem}.pem"), &signer.cert_pem);
        let public_key = self.run(&["x509", "-in", &cert, "-noout", "-pubkey"]);
        let public_key = self.write(&format!("{stem}.pub"), &public_key);
        let input = self.write(&format!("{stem}.payload"), message);
        let sig = self.write(&format!("{stem}.sig"), signature);
        match algorithm {
            SignatureAlgorithm::Ed25519 => self.succeeds(&[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                &public_key,
                "-rawin",
                "-in",
                &input,
                "-sigfile",
                &sig,
            ]),
            _ => {
                let mut args = vec![
                    "dgst",
                    digest_option(algorithm),
                    "-verify",
                    &public_key,
                    "-signature",
                    &sig,
                ];
                args.extend(pss_options(algorithm));
                args.push(&input);
                self.succeeds(&args)
            }
        }
    }

    /// The SHA-256 fingerprint line openssl prints for a certificate.
    pub fn fingerprint_line(&self, cert: &Credential) -> String {
        let file = self.write(&unique("fp"), &cert.cert_pem);
        String::from_utf8(self.run(&["x509", "-in", &file, "-noout", "-fingerprint", "-sha256"]))
            .expect("openssl prints ASCII")
    }
}

impl Default for Openssl {
    fn default() -> Self {
        Self::new()
    }
}

fn digest_option(algorithm: SignatureAlgorithm) -> &'static str {
    use SignatureAlgorithm::*;
    match algorithm {
        EcdsaP256Sha256 | RsaPkcs1Sha256 | RsaPssSha256 => "-sha256",
        EcdsaP384Sha384 | RsaPkcs1Sha384 | RsaPssSha384 => "-sha384",
        RsaPkcs1Sha512 | RsaPssSha512 => "-sha512",
        Ed25519 => unreachable!("Ed25519 signs the message itself"),
    }
}

fn pss_options(algorithm: SignatureAlgorithm) -> Vec<&'static str> {
    use SignatureAlgorithm::*;
    match algorithm {
        RsaPssSha256 | RsaPssSha384 | RsaPssSha512 => vec![
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ],
        _ => Vec::new(),
    }
}

/// The PKI most tests share: a root, an intermediate under it, and one `acme` leaf per key type
/// under the intermediate.
pub struct Pki {
    pub root: Credential,
    pub intermediate: Credential,
    pub leaf_p256: Credential,
    pub leaf_p384: Credential,
    pub leaf_rsa2048: Credential,
    pub leaf_ed25519: Credential,
    /// A valid leaf for publisher `other`.
    pub leaf_other: Credential,
}

impl Pki {
    fn generate() -> Self {
        let openssl = Openssl::new();
        let root = openssl.root_ca("/CN=Plugstore Test Root/O=Plugstore Test", KeySpec::EcP256);
        let intermediate = openssl.issue(
            "/CN=Plugstore Test Signing CA/O=Plugstore Test",
            KeySpec::EcP256,
            &root,
            INTERMEDIATE_EXT,
            Validity::Days(3650),
        );
        let leaf = |subject: &str, key: KeySpec, publisher: &str| {
            openssl.issue(
                subject,
                key,
                &intermediate,
                &leaf_ext(publisher),
                Validity::Days(30),
            )
        };
        Self {
            leaf_p256: leaf("/CN=Acme P-256/O=Acme", KeySpec::EcP256, PUBLISHER),
            leaf_p384: leaf("/CN=Acme P-384/O=Acme", KeySpec::EcP384, PUBLISHER),
            leaf_rsa2048: leaf("/CN=Acme RSA/O=Acme", KeySpec::Rsa(2048), PUBLISHER),
            leaf_ed25519: leaf("/CN=Acme Ed25519/O=Acme", KeySpec::Ed25519, PUBLISHER),
            leaf_other: leaf("/CN=Other Signer/O=Other", KeySpec::EcP256, "other"),
            root,
            intermediate,
        }
    }

    /// The trust anchors: just the root.
    pub fn anchors(&self) -> TrustAnchors {
        TrustAnchors::from_der_certs([&self.root.cert_der]).expect("the root is a CA")
    }

    /// `leaf`, then the intermediate: what a publisher ships in an envelope.
    pub fn chain(&self, leaf: &Credential) -> Vec<Vec<u8>> {
        vec![leaf.cert_der.clone(), self.intermediate.cert_der.clone()]
    }
}

/// The shared PKI, generated once per test binary.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::generate)
}

/// The time the tests verify at.
pub fn now() -> UnixTime {
    UnixTime::now()
}

/// No certificate revoked.
pub const NOT_REVOKED: NoRevocations = NoRevocations;

/// A payload for `acme/hello` with a digest made of `seed`.
pub fn payload(plugin_id: &str, version: &str, seed: u8) -> SigningPayload {
    SigningPayload::new(plugin_id, version, PackageDigest::from_bytes([seed; 32]))
        .expect("a valid payload")
}
