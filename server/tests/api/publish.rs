//! Publishing signed packages: the happy path, idempotent retries, yanking, and every refusal
//! leaving nothing behind (no version row, no blob).

use std::process::Command;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use plugstore_format::digest::PackageDigest;
use plugstore_format::package::PackageBuilder;
use plugstore_format::signing::{
    SignatureAlgorithm, SignatureEnvelope, SigningPayload, sign_payload,
};
use serde_json::json;

use crate::both_stacks;
use crate::harness::{Stack, TestApp, TestResponse, TestUser};

#[path = "../../../format/tests/common/mod.rs"]
mod openssl_pki;

/// A developer's signing identity: a P-256 key made by openssl, certified by the store's CA.
pub struct StoreSigner {
    pub key_pkcs8: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    pub fingerprint: String,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (scripts/install-tools.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The order of P-256's group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Splits one DER element off `input`: (tag, content, the whole element, the rest).
fn der_element(input: &[u8]) -> (u8, &[u8], &[u8], &[u8]) {
    let (tag, first) = (input[0], input[1]);
    let (length, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let octets = (first & 0x7f) as usize;
        let length = input[2..2 + octets]
            .iter()
            .fold(0usize, |n, byte| n << 8 | *byte as usize);
        (length, 2 + octets)
    };
    let end = header + length;
    (tag, &input[header..end], &input[..end], &input[end..])
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xff => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A DER certificate whose issuer's P-256 signature (r, s) is rewritten as (r, n − s).
fn negate_ecdsa_s(certificate: &[u8]) -> Vec<u8> {
    let (_, fields, _, _) = der_element(certificate);
    let (_, _, tbs, rest) = der_element(fields);
    let (_, _, algorithm, rest) = der_element(rest);
    let (bit_string_tag, bits, _, _) = der_element(rest);
    assert_eq!(
        (bit_string_tag, bits[0]),
        (0x03, 0),
        "a signature BIT STRING"
    );
    let (_, signature, _, _) = der_element(&bits[1..]);
    let (_, _, r, rest) = der_element(signature);
    let (_, s, _, _) = der_element(rest);
    let mut s_bytes = [0u8; 32];
    let s = &s[s.len().saturating_sub(32)..];
    s_bytes[32 - s.len()..].copy_from_slice(s);
    let mut negated = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut digit = P256_ORDER[i] as i16 - s_bytes[i] as i16 - borrow;
        borrow = i16::from(digit < 0);
        if digit < 0 {
            digit += 256;
        }
        negated[i] = digit as u8;
    }
    let mut integer: Vec<u8> = negated
        .iter()
        .copied()
        .skip_while(|byte| *byte == 0)
        .collect();
    if integer[0] & 0x80 != 0 {
        integer.insert(0, 0);
    }
    let signature = der(0x30, &[r, &der(0x02, &integer)].concat());
    let bits = der(0x03, &[&[0u8][..], &signature].concat());
    der(0x30, &[tbs, algorithm, &bits].concat())
}

fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    plugstore_server::ca::pem_to_der_labelled(pem, label).expect("PEM block")
}

impl StoreSigner {
    /// Key and CSR with openssl, certificate from `POST /publishers/{p}/certificates`.
    pub async fn new(app: &TestApp, user: &TestUser, publisher: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "k.pem",
            ],
        );
        openssl(
            dir.path(),
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "k.pem", "-outform", "DER", "-out", "k.der",
            ],
        );
        openssl(
            dir.path(),
            &[
                "req",
                "-new",
                "-key",
                "k.pem",
                "-subj",
                "/CN=release",
                "-out",
                "r.csr",
            ],
        );
        let csr = std::fs::read_to_string(dir.path().join("r.csr")).unwrap();
        let issued = app
            .post(
                &format!("/api/v1/publishers/{publisher}/certificates"),
                Some(&user.access),
                json!({"csr": csr}),
            )
            .await;
        assert_eq!(
            issued.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&issued.body)
        );
        let body = issued.json();
        let ca = String::from_utf8(app.get("/ca.pem", None).await.body.to_vec()).unwrap();
        Self {
            key_pkcs8: std::fs::read(dir.path().join("k.der")).unwrap(),
            chain: vec![
                pem_der(body["certificate_pem"].as_str().unwrap(), "CERTIFICATE"),
                pem_der(&ca, "CERTIFICATE"),
            ],
            fingerprint: body["fingerprint"].as_str().unwrap().to_owned(),
        }
    }

    /// The same signer with its certificate's ECDSA signature re-encoded as (r, n − s): as
    /// valid as the one the store issued, but with another fingerprint.
    pub fn reencoded(&self) -> Self {
        let leaf = negate_ecdsa_s(&self.chain[0]);
        let mut chain = self.chain.clone();
        chain[0] = leaf.clone();
        Self {
            key_pkcs8: self.key_pkcs8.clone(),
            chain,
            fingerprint: hex::encode(plugstore_format::certs::fingerprint(&leaf).as_bytes()),
        }
    }

    /// An envelope signing `plugin_id`@`version` with package digest `digest`.
    pub fn envelope(&self, plugin_id: &str, version: &str, digest: PackageDigest) -> Vec<u8> {
        let payload = SigningPayload::new(plugin_id, version, digest).unwrap();
        let signature = sign_payload(
            SignatureAlgorithm::EcdsaP256Sha256,
            &self.key_pkcs8,
            &payload,
        )
        .unwrap();
        SignatureEnvelope::new(
            SignatureAlgorithm::EcdsaP256Sha256,
            signature,
            self.chain.clone(),
        )
        .to_json()
        .unwrap()
        .into_bytes()
    }

    /// Signs `package` as `plugin_id`@`version` and uploads it with `token`.
    pub async fn upload(
        &self,
        app: &TestApp,
        token: &str,
        plugin_id: &str,
        version: &str,
        package: &[u8],
    ) -> TestResponse {
        let envelope = self.envelope(plugin_id, version, PackageDigest::of(package));
        upload(
            app,
            token,
            plugin_id,
            version,
            upload_body(&envelope, package),
        )
        .await
    }
}

pub fn manifest(id: &str, version: &str) -> String {
    format!(
        "format = 1\n[plugin]\nid = \"{id}\"\nversion = \"{version}\"\nkind = \"wasm\"\nentry = \"plugin.wasm\"\n\
         targets = [\"any\"]\ndescription = \"Says hello\"\ncapabilities = [\"log\"]\n[host]\ncompatibility = \">=1.0.0\"\n"
    )
}

pub fn package(id: &str, version: &str, payload: &[u8]) -> Vec<u8> {
    PackageBuilder::from_files([
        ("plugin.toml", manifest(id, version).into_bytes()),
        ("plugin.wasm", payload.to_vec()),
    ])
    .unwrap()
    .to_vec()
    .unwrap()
}

/// The upload framing: u32 BE envelope length, envelope, package.
pub fn upload_body(envelope: &[u8], package: &[u8]) -> Vec<u8> {
    let mut body = (envelope.len() as u32).to_be_bytes().to_vec();
    body.extend_from_slice(envelope);
    body.extend_from_slice(package);
    body
}

pub async fn upload(
    app: &TestApp,
    token: &str,
    id: &str,
    version: &str,
    body: Vec<u8>,
) -> TestResponse {
    app.send(
        Request::put(format!("/api/v1/plugins/{id}/versions/{version}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/vnd.plugstore.upload.v1")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

/// Asserts nothing of a refused upload was kept: no version row, no blob, no temp file.
async fn assert_nothing_stored(app: &TestApp, package: &[u8]) {
    let versions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM plugin_versions")
        .fetch_one(&app.app.db.pool)
        .await
        .unwrap();
    assert_eq!(versions, 0, "a refused upload left a version row");
    let digest: plugstore_server::blobs::BlobDigest =
        PackageDigest::of(package).to_hex().parse().unwrap();
    assert_eq!(
        app.app.blobs.size_of(&digest).await.unwrap(),
        None,
        "a refused upload left its blob"
    );
    let tmp = std::path::Path::new(&app.app.settings.blobs.dir).join("tmp");
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        assert_eq!(entries.count(), 0, "a refused upload left a temporary file");
    }
}

async fn refused(
    app: &TestApp,
    token: &str,
    id: &str,
    version: &str,
    envelope: &[u8],
    package: &[u8],
    (problem, code): (&str, &str),
) {
    let response = upload(app, token, id, version, upload_body(envelope, package)).await;
    assert_eq!(
        response.problem_type(),
        problem,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.json()["code"],
        code,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_nothing_stored(app, package).await;
}

/// A minimal ustar entry, for packages the builder would never make.
fn raw_entry(path: &str, typeflag: u8, link: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..path.len()].copy_from_slice(path.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", content.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = typeflag;
    header[157..157 + link.len()].copy_from_slice(link.as_bytes());
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn raw_package(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

async fn publisher_with_signer(app: &TestApp) -> (TestUser, StoreSigner) {
    let owner = app.signup("owner").await;
    app.publisher(&owner, "acme").await;
    let signer = StoreSigner::new(app, &owner, "acme").await;
    (owner, signer)
}

both_stacks! {
    async fn publish_read_back_retry_and_yank(app) {
        let (owner, signer) = publisher_with_signer(&app).await;
        let pkg = package("acme/hello", "1.0.0", b"\0asm wasm bytes");
        let digest = PackageDigest::of(&pkg);
        let envelope = signer.envelope("acme/hello", "1.0.0", digest);
        let created = upload(&app, &owner.access, "acme/hello", "1.0.0", upload_body(&envelope, &pkg)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&created.body));
        let body = created.json();
        assert_eq!(body["state"], "published");
        assert_eq!(body["package_digest"], digest.to_string());
        assert_eq!(body["url"], "http://store.test/api/v1/plugins/acme/hello/versions/1.0.0");

        let read = app.get("/api/v1/plugins/acme/hello/versions/1.0.0", None).await.json();
        assert_eq!(read["package_size"], pkg.len());
        assert_eq!(app.get("/api/v1/plugins/acme/hello", None).await.json()["description"], "Says hello");
        let blob = app.get(&format!("/blobs/sha256/{}", digest.to_hex()), None).await;
        assert_eq!(blob.body.as_ref(), &pkg[..], "the stored bytes are the uploaded package");
        let signer_row: String = sqlx::query_scalar("SELECT signer_fingerprint FROM plugin_versions").fetch_one(&app.app.db.pool).await.unwrap();
        assert_eq!(signer_row, signer.fingerprint);
        // The store-issued certificate is known once, not again as an external one.
        let certificates: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM certificates").fetch_one(&app.app.db.pool).await.unwrap();
        assert_eq!(certificates, 1);

        // Retrying the same upload is idempotent.
        let again = upload(&app, &owner.access, "acme/hello", "1.0.0", upload_body(&envelope, &pkg)).await;
        assert_eq!(again.status, StatusCode::OK);
        // Different bytes under the same version are refused, also after a yank.
        let other = package("acme/hello", "1.0.0", b"\0asm other bytes");
        let other_env = signer.envelope("acme/hello", "1.0.0", PackageDigest::of(&other));
        let conflict = upload(&app, &owner.access, "acme/hello", "1.0.0", upload_body(&other_env, &other)).await;
        assert_eq!(conflict.problem_type(), "/problems/version-exists");
        let yanked = app.post("/api/v1/plugins/acme/hello/versions/1.0.0/yank", Some(&owner.access), json!({"reason": "broken on Windows"})).await;
        assert_eq!(yanked.json()["state"], "yanked");
        let after_yank = upload(&app, &owner.access, "acme/hello", "1.0.0", upload_body(&other_env, &other)).await;
        assert_eq!(after_yank.problem_type(), "/problems/version-exists");
        // Yanked versions stay downloadable by digest.
        assert_eq!(app.get(&format!("/blobs/sha256/{}", digest.to_hex()), None).await.status, StatusCode::OK);
        let unyanked = app.post("/api/v1/plugins/acme/hello/versions/1.0.0/unyank", Some(&owner.access), json!({"reason": "fixed by host update"})).await;
        assert_eq!(unyanked.json()["state"], "published");
        let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id").fetch_all(&app.app.db.pool).await.unwrap();
        assert_eq!(actions, vec!["publisher.create", "certificate.issue", "version.upload", "version.yank", "version.unyank"]);
    }

    async fn refusals_leave_nothing_behind(app) {
        let (owner, signer) = publisher_with_signer(&app).await;
        let t = owner.access.clone();
        let good = package("acme/hello", "1.0.0", b"payload");
        let good_digest = PackageDigest::of(&good);

        // The manifest names another plugin than the URL.
        let wrong_id = package("acme/other", "1.0.0", b"payload");
        let env = signer.envelope("acme/hello", "1.0.0", PackageDigest::of(&wrong_id));
        refused(&app, &t, "acme/hello", "1.0.0", &env, &wrong_id, ("/problems/manifest-mismatch", "id-mismatch")).await;
        // The signature covers another version, another plugin, or other bytes.
        let env = signer.envelope("acme/hello", "1.0.1", good_digest);
        refused(&app, &t, "acme/hello", "1.0.0", &env, &good, ("/problems/invalid-signature", "bad-signature")).await;
        let env = signer.envelope("acme/world", "1.0.0", good_digest);
        refused(&app, &t, "acme/hello", "1.0.0", &env, &good, ("/problems/invalid-signature", "bad-signature")).await;
        let env = signer.envelope("acme/hello", "1.0.0", good_digest);
        let mut tampered = good.clone();
        let at = tampered.windows(7).position(|w| w == b"payload").unwrap();
        tampered[at] = b'P';
        refused(&app, &t, "acme/hello", "1.0.0", &env, &tampered, ("/problems/invalid-signature", "bad-signature")).await;

        // Packages the builder would never make.
        let manifest_entry = raw_entry("plugin.toml", b'0', "", manifest("acme/hello", "1.0.0").as_bytes());
        let wasm = raw_entry("plugin.wasm", b'0', "", b"x");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (raw_package(&[manifest_entry.clone(), wasm.clone(), raw_entry("../evil", b'0', "", b"x")]), "parent-dir-component"),
            (raw_package(&[manifest_entry.clone(), wasm.clone(), raw_entry("zlink", b'2', "/etc/passwd", b"")]), "symlink"),
            (raw_package(&[raw_entry("README", b'0', "", b"a"), manifest_entry.clone(), raw_entry("Readme", b'0', "", b"b"), wasm.clone()]), "case-collision"),
        ];
        for (pkg, code) in cases {
            let env = signer.envelope("acme/hello", "1.0.0", PackageDigest::of(&pkg));
            let response = upload(&app, &t, "acme/hello", "1.0.0", upload_body(&env, &pkg)).await;
            assert_eq!(response.problem_type(), "/problems/invalid-package", "{code}: {}", String::from_utf8_lossy(&response.body));
            // The reader names the first rule the package breaks; canonical order comes first
            // for some layouts, so accept the expected rule or the canonical-order one.
            let got = response.json()["code"].as_str().unwrap().to_owned();
            assert!(got == code || got == "not-canonical", "{code}: got {got}");
            assert_nothing_stored(&app, &pkg).await;
        }

        // A package cut short (the body is complete, the tar is not).
        let env = signer.envelope("acme/hello", "1.0.0", good_digest);
        let cut = &good[..good.len() - 700];
        refused(&app, &t, "acme/hello", "1.0.0", &env, cut, ("/problems/invalid-package", "truncated")).await;
        // A connection that drops midway.
        let body = upload_body(&env, &good);
        let half = bytes::Bytes::copy_from_slice(&body[..body.len() / 2]);
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![Ok(half), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away"))];
        let dropped = app
            .send(
                Request::put("/api/v1/plugins/acme/hello/versions/1.0.0")
                    .header("authorization", format!("Bearer {t}"))
                    .header("content-type", "application/vnd.plugstore.upload.v1")
                    .body(Body::from_stream(futures_util::stream::iter(chunks)))
                    .unwrap(),
            )
            .await;
        assert_eq!(dropped.problem_type(), "/problems/upload-truncated", "{}", String::from_utf8_lossy(&dropped.body));
        assert_nothing_stored(&app, &good).await;

        // A certificate bound to another publisher, then a revoked one.
        app.publisher(&owner, "other").await;
        let foreign = StoreSigner::new(&app, &owner, "other").await;
        let env = foreign.envelope("acme/hello", "1.0.0", good_digest);
        refused(&app, &t, "acme/hello", "1.0.0", &env, &good, ("/problems/untrusted-certificate", "not-bound-to-publisher")).await;
        let revoke = app.post(&format!("/api/v1/publishers/acme/certificates/{}/revoke", signer.fingerprint), Some(&t), json!({"reason": "key leaked"})).await;
        assert_eq!(revoke.status, StatusCode::OK);
        let env = signer.envelope("acme/hello", "1.0.0", good_digest);
        refused(&app, &t, "acme/hello", "1.0.0", &env, &good, ("/problems/untrusted-certificate", "revoked")).await;
    }
}

#[tokio::test]
async fn oversized_uploads_are_refused_without_storing() {
    let app = TestApp::start_with(Stack::Embedded, |s| s.publish.max_package_bytes = 64 * 1024)
        .await
        .unwrap();
    let (owner, signer) = publisher_with_signer(&app).await;
    let big = package("acme/hello", "1.0.0", &vec![7u8; 200 * 1024]);
    let env = signer.envelope("acme/hello", "1.0.0", PackageDigest::of(&big));
    let response = upload(
        &app,
        &owner.access,
        "acme/hello",
        "1.0.0",
        upload_body(&env, &big),
    )
    .await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.problem_type(), "/problems/payload-too-large");
    assert_nothing_stored(&app, &big).await;
}

#[tokio::test]
async fn upload_rights_follow_membership_and_token_limits() {
    let app = TestApp::start(Stack::Embedded).await.unwrap();
    let (owner, signer) = publisher_with_signer(&app).await;
    let stranger = app.signup("stranger").await;
    let pkg = package("acme/hello", "1.0.0", b"x");
    let env = signer.envelope("acme/hello", "1.0.0", PackageDigest::of(&pkg));
    assert_eq!(
        upload(
            &app,
            &stranger.access,
            "acme/hello",
            "1.0.0",
            upload_body(&env, &pkg)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let token = |scopes: serde_json::Value, plugin: Option<&str>| {
        let app = &app;
        let access = owner.access.clone();
        let plugin = plugin.map(str::to_owned);
        async move {
            let mut body = json!({"name": "ci", "scopes": scopes, "publisher": "acme"});
            if let Some(p) = plugin {
                body["plugin"] = json!(p);
            }
            app.post("/api/v1/tokens", Some(&access), body).await.json()["secret"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let yank_only = token(json!(["yank"]), None).await;
    assert_eq!(
        upload(
            &app,
            &yank_only,
            "acme/hello",
            "1.0.0",
            upload_body(&env, &pkg)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let other_plugin = token(json!(["publish"]), Some("world")).await;
    assert_eq!(
        upload(
            &app,
            &other_plugin,
            "acme/hello",
            "1.0.0",
            upload_body(&env, &pkg)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let ci = token(json!(["publish"]), Some("hello")).await;
    assert_eq!(
        upload(&app, &ci, "acme/hello", "1.0.0", upload_body(&env, &pkg))
            .await
            .status,
        StatusCode::CREATED
    );
    // The wrong media type gets a message saying what to send.
    let plain = app
        .send(
            Request::put("/api/v1/plugins/acme/hello/versions/1.0.1")
                .header("authorization", format!("Bearer {}", owner.access))
                .body(Body::from(pkg.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(plain.problem_type(), "/problems/invalid-input");
    let _ = Method::PUT;
}

/// A company PKI made entirely with the openssl CLI, trusted through `signing.trust_anchors`
/// and bound to `acme` by a subject mapping (O=Acme under that root).
mod third_party_ca {
    use super::openssl_pki::{INTERMEDIATE_EXT, KeySpec, Openssl, ROOT_EXT, Validity, leaf_ext};
    use super::*;

    const CODE_SIGNING_LEAF: &str = "basicConstraints = critical,CA:false\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = codeSigning\n";

    async fn store_trusting(
        root_pem: &[u8],
        root_fingerprint: String,
    ) -> (TestApp, TestUser, tempfile::TempDir) {
        let files = tempfile::tempdir().unwrap();
        let anchor = files.path().join("company-ca.pem");
        std::fs::write(&anchor, root_pem).unwrap();
        let app = TestApp::start_with(Stack::Embedded, |s| {
            s.signing.trust_anchors = vec![anchor.display().to_string()];
            s.signing.subject_mappings = vec![plugstore_server::config::SubjectMappingSetting {
                publisher: "acme".into(),
                organization: Some("Acme".into()),
                common_name: None,
                anchor_sha256: Some(root_fingerprint),
            }];
        })
        .await
        .unwrap();
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        (app, owner, files)
    }

    fn openssl_envelope(
        openssl: &Openssl,
        leaf: &openssl_pki::Credential,
        chain: Vec<Vec<u8>>,
        pkg: &[u8],
    ) -> Vec<u8> {
        let payload = SigningPayload::new("acme/hello", "1.0.0", PackageDigest::of(pkg)).unwrap();
        // `openssl dgst -sha256 -sign`, as a company's release pipeline would run it.
        let signature = openssl.sign(
            leaf,
            SignatureAlgorithm::EcdsaP256Sha256,
            &payload.to_bytes(),
        );
        SignatureEnvelope::new(SignatureAlgorithm::EcdsaP256Sha256, signature, chain)
            .to_json()
            .unwrap()
            .into_bytes()
    }

    #[tokio::test]
    async fn openssl_made_chain_is_accepted_and_bad_chains_are_refused() {
        let openssl = Openssl::new();
        let root = openssl.self_signed("/CN=Acme Root/O=Acme", KeySpec::EcP256, ROOT_EXT);
        let intermediate = openssl.issue(
            "/CN=Acme Signing/O=Acme",
            KeySpec::EcP256,
            &root,
            INTERMEDIATE_EXT,
            Validity::Days(365),
        );
        let fp = plugstore_format::certs::fingerprint(&root.cert_der).to_string();
        let (app, owner, _files) =
            store_trusting(&root.cert_pem, fp.trim_start_matches("sha256:").to_owned()).await;
        let pkg = package("acme/hello", "1.0.0", b"company build");
        let chain_with = |leaf: &openssl_pki::Credential| {
            vec![leaf.cert_der.clone(), intermediate.cert_der.clone()]
        };

        let leaf_of = |subject: &str, key: KeySpec, ext: &str, validity: Validity| {
            openssl.issue(subject, key, &intermediate, ext, validity)
        };
        let bad: Vec<(&str, openssl_pki::Credential, Vec<Vec<u8>>)> = {
            let expired = leaf_of(
                "/CN=Old/O=Acme",
                KeySpec::EcP256,
                CODE_SIGNING_LEAF,
                Validity::Window("20200101000000Z", "20210101000000Z"),
            );
            let future = leaf_of(
                "/CN=Future/O=Acme",
                KeySpec::EcP256,
                CODE_SIGNING_LEAF,
                Validity::Window("20900101000000Z", "20910101000000Z"),
            );
            let server_auth = leaf_of(
                "/CN=Web/O=Acme",
                KeySpec::EcP256,
                "basicConstraints = critical,CA:false\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n",
                Validity::Days(30),
            );
            let not_ca = openssl.issue(
                "/CN=Not A CA/O=Acme",
                KeySpec::EcP256,
                &root,
                CODE_SIGNING_LEAF,
                Validity::Days(30),
            );
            let under_not_ca = openssl.issue(
                "/CN=Under/O=Acme",
                KeySpec::EcP256,
                &not_ca,
                CODE_SIGNING_LEAF,
                Validity::Days(30),
            );
            let stranger_root =
                openssl.self_signed("/CN=Elsewhere/O=Acme", KeySpec::EcP256, ROOT_EXT);
            let unknown = openssl.issue(
                "/CN=Unknown/O=Acme",
                KeySpec::EcP256,
                &stranger_root,
                CODE_SIGNING_LEAF,
                Validity::Days(30),
            );
            let weak = leaf_of(
                "/CN=Weak/O=Acme",
                KeySpec::Rsa(1024),
                CODE_SIGNING_LEAF,
                Validity::Days(30),
            );
            vec![
                ("expired", expired.clone(), chain_with(&expired)),
                ("not-yet-valid", future.clone(), chain_with(&future)),
                (
                    "missing-code-signing",
                    server_auth.clone(),
                    chain_with(&server_auth),
                ),
                (
                    "issuer-not-ca",
                    under_not_ca.clone(),
                    vec![under_not_ca.cert_der.clone(), not_ca.cert_der.clone()],
                ),
                (
                    "unknown-issuer",
                    unknown.clone(),
                    vec![unknown.cert_der.clone()],
                ),
                ("weak-key", weak.clone(), chain_with(&weak)),
            ]
        };
        for (code, leaf, chain) in bad {
            // RSA-1024 cannot sign with ECDSA; any signature will do, the chain is refused first.
            let envelope = if leaf.key == KeySpec::Rsa(1024) {
                SignatureEnvelope::new(SignatureAlgorithm::RsaPkcs1Sha256, vec![1; 128], chain)
                    .to_json()
                    .unwrap()
                    .into_bytes()
            } else {
                openssl_envelope(&openssl, &leaf, chain, &pkg)
            };
            refused(
                &app,
                &owner.access,
                "acme/hello",
                "1.0.0",
                &envelope,
                &pkg,
                ("/problems/untrusted-certificate", code),
            )
            .await;
        }

        // A leaf with the store's SAN URI but from the company CA does not bind by URI: only the
        // store's CA may, so the O=Acme mapping is what admits the good leaf below.
        let good = leaf_of(
            "/CN=Release/O=Acme",
            KeySpec::EcP256,
            &leaf_ext("other"),
            Validity::Days(30),
        );
        let envelope = openssl_envelope(&openssl, &good, chain_with(&good), &pkg);
        let accepted = upload(
            &app,
            &owner.access,
            "acme/hello",
            "1.0.0",
            upload_body(&envelope, &pkg),
        )
        .await;
        assert_eq!(
            accepted.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&accepted.body)
        );
        let listed = app
            .get("/api/v1/publishers/acme/certificates", None)
            .await
            .json();
        assert_eq!(listed["items"][0]["origin"], "external");
    }
}

#[tokio::test]
async fn publishing_is_rate_limited_per_user_and_per_publisher() {
    let app = TestApp::start_with(Stack::Embedded, |s| {
        s.rate_limits.publish_per_hour_per_user = 2;
        s.rate_limits.publish_per_hour_per_publisher = 3;
    })
    .await
    .unwrap();
    let (owner, signer) = publisher_with_signer(&app).await;
    let helper = app.signup("helper").await;
    app.call(
        Method::PUT,
        "/api/v1/publishers/acme/members/helper",
        Some(&owner.access),
        Some(json!({"role": "maintainer"})),
    )
    .await;
    let publish = |token: String, version: &'static str| {
        let app = &app;
        let pkg = package("acme/hello", version, version.as_bytes());
        let env = signer.envelope("acme/hello", version, PackageDigest::of(&pkg));
        async move { upload(app, &token, "acme/hello", version, upload_body(&env, &pkg)).await }
    };
    assert_eq!(
        publish(owner.access.clone(), "1.0.0").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        publish(owner.access.clone(), "1.0.1").await.status,
        StatusCode::CREATED
    );
    let by_user = publish(owner.access.clone(), "1.0.2").await;
    assert_eq!(by_user.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(by_user.header("retry-after").is_some());
    // Another member still has their own allowance, until the publisher's runs out.
    assert_eq!(
        publish(helper.access.clone(), "1.0.2").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        publish(helper.access.clone(), "1.0.3").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
