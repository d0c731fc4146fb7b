//! A store on loopback for the client's tests: TUF metadata signed with
//! `plugstore_tuf::repository` and test keys, content-addressed blobs, and update-check
//! answers the test writes, served by a small HTTP server that can also lie (replace a blob,
//! cut a transfer, send too much, trickle). Developer certificates and signatures are made
//! with the `openssl` command-line tool.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plugstore_client::download::DownloadPolicy;
use plugstore_client::{Client, ClientBuilder};
use plugstore_format::certs::fingerprint;
use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{PluginId, PluginKind, Target};
use plugstore_format::package::PackageBuilder;
use plugstore_format::signing::{SignatureAlgorithm, SigningPayload};
use plugstore_tuf::custom::{
    ChainReference, DeveloperSignature, PackageTarget, PatchTarget, PluginTarget, TargetDetail,
    VersionState,
};
use plugstore_tuf::digest::Sha256;
use plugstore_tuf::keys::{RoleKeys, SigningKey, TopLevelKeys};
use plugstore_tuf::layout::{BinName, TargetPath};
use plugstore_tuf::repository::{MetadataFile, OnlineKeys, RepositoryState, TargetEntry};
use plugstore_tuf::root::{RootDraft, sign_root};
use plugstore_tuf::time::UnixTime;
use semver::Version;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// How a blob is served instead of honestly.
#[derive(Clone, Debug)]
pub enum Trick {
    /// These bytes instead.
    Replace(Vec<u8>),
    /// The first request gets this many bytes and a closed connection; later ones are honest.
    CutOnce(usize),
    /// The bytes and then this many more.
    Overlong(usize),
    /// One byte, then nothing for a long time.
    Trickle,
    /// A 307 redirect to `/cdn/{hex}`, which serves the blob (as a CDN in front of the store).
    Redirect,
    /// A 307 redirect to `{base}/cdn/{hex}` on another server (another scheme, say).
    RedirectTo(String),
}

/// What the server serves, and what it saw.
#[derive(Default)]
pub struct Served {
    /// TUF files by name.
    pub metadata: HashMap<String, Vec<u8>>,
    /// Blobs by SHA-256 hex.
    pub blobs: HashMap<String, Vec<u8>>,
    /// Blobs served dishonestly, by SHA-256 hex.
    pub tricks: HashMap<String, Trick>,
    /// The update-check answer: status and JSON body.
    pub answer: Option<(u16, Value)>,
    /// Update-check request bodies.
    pub checks: Vec<Value>,
    /// Metadata files served one byte, then nothing for a long time.
    pub trickled_metadata: Vec<String>,
    /// `METHOD path [range]` of every request.
    pub log: Vec<String>,
}

struct Request {
    method: String,
    path: String,
    range_start: Option<u64>,
    body: Vec<u8>,
}

async fn read_request(socket: &mut (impl AsyncRead + Unpin)) -> Option<Request> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let mut length = 0usize;
    let mut range_start = None;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
        if let Some(value) = lower.strip_prefix("range: bytes=") {
            range_start = value.trim().trim_end_matches('-').parse().ok();
        }
    }
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some(Request {
        method,
        path,
        range_start,
        body,
    })
}

async fn respond(socket: &mut (impl AsyncWrite + Unpin), status: u16, kind: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    drop(socket.write_all(head.as_bytes()).await);
    drop(socket.write_all(body).await);
    let _ = socket.shutdown().await;
}

async fn serve_blob(
    socket: &mut (impl AsyncWrite + Unpin),
    body: Vec<u8>,
    trick: Option<Trick>,
    start: Option<u64>,
) {
    let from = usize::try_from(start.unwrap_or(0))
        .unwrap_or(0)
        .min(body.len());
    let rest = &body[from..];
    let announced = match &trick {
        Some(Trick::Overlong(extra)) => rest.len() + extra,
        _ => rest.len(),
    };
    let head = match start {
        Some(s) if s > 0 => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {announced}\r\nContent-Range: bytes {s}-{}/{}\r\nConnection: close\r\n\r\n",
            body.len().saturating_sub(1),
            body.len()
        ),
        _ => format!("HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"),
    };
    drop(socket.write_all(head.as_bytes()).await);
    match trick {
        None | Some(Trick::Replace(_)) => drop(socket.write_all(rest).await),
        Some(Trick::CutOnce(n)) => drop(socket.write_all(&rest[..n.min(rest.len())]).await),
        Some(Trick::Overlong(extra)) => {
            drop(socket.write_all(rest).await);
            drop(socket.write_all(&vec![0x41; extra]).await);
        }
        Some(Trick::Trickle) => {
            drop(socket.write_all(&rest[..1.min(rest.len())]).await);
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Some(Trick::Redirect | Trick::RedirectTo(_)) => unreachable!("answered before"),
    }
    let _ = socket.shutdown().await;
}

async fn handle(mut socket: impl AsyncRead + AsyncWrite + Unpin, served: Arc<Mutex<Served>>) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    served.lock().unwrap().log.push(format!(
        "{} {}{}",
        request.method,
        request.path,
        request
            .range_start
            .map(|s| format!(" from {s}"))
            .unwrap_or_default()
    ));
    if request.method == "POST" && request.path == "/api/v1/updates/check" {
        let answer = {
            let mut served = served.lock().unwrap();
            served
                .checks
                .push(serde_json::from_slice(&request.body).unwrap_or(Value::Null));
            served
                .answer
                .clone()
                .unwrap_or((200, json!({"updates": [], "revocations": []})))
        };
        let kind = if answer.0 == 200 {
            "application/json"
        } else {
            "application/problem+json"
        };
        respond(&mut socket, answer.0, kind, answer.1.to_string().as_bytes()).await;
        return;
    }
    if let Some(name) = request.path.strip_prefix("/tuf/") {
        let (file, trickle) = {
            let served = served.lock().unwrap();
            let trickle = served.trickled_metadata.iter().any(|t| t == name);
            (served.metadata.get(name).cloned(), trickle)
        };
        if let (Some(bytes), true) = (&file, trickle) {
            serve_blob(&mut socket, bytes.clone(), Some(Trick::Trickle), None).await;
            return;
        }
        match file {
            Some(bytes) => respond(&mut socket, 200, "application/json", &bytes).await,
            None => respond(&mut socket, 404, "text/plain", b"not found").await,
        }
        return;
    }
    if let Some(hex) = request.path.strip_prefix("/cdn/") {
        let blob = served.lock().unwrap().blobs.get(hex).cloned();
        match blob {
            Some(bytes) => serve_blob(&mut socket, bytes, None, request.range_start).await,
            None => respond(&mut socket, 404, "text/plain", b"not found").await,
        }
        return;
    }
    if let Some(hex) = request.path.strip_prefix("/blobs/sha256/") {
        let redirect = match served.lock().unwrap().tricks.get(hex) {
            Some(Trick::Redirect) => Some(String::new()),
            Some(Trick::RedirectTo(base)) => Some(base.clone()),
            _ => None,
        };
        if let Some(base) = redirect {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}/cdn/{hex}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            drop(socket.write_all(head.as_bytes()).await);
            let _ = socket.shutdown().await;
            return;
        }
        let (blob, trick) = {
            let mut served = served.lock().unwrap();
            let trick = served.tricks.get(hex).cloned();
            if matches!(trick, Some(Trick::CutOnce(_))) {
                served.tricks.remove(hex);
            }
            let blob = match &trick {
                Some(Trick::Replace(bytes)) => Some(bytes.clone()),
                _ => served.blobs.get(hex).cloned(),
            };
            (blob, trick)
        };
        match blob {
            Some(bytes) => serve_blob(&mut socket, bytes, trick, request.range_start).await,
            None => respond(&mut socket, 404, "text/plain", b"not found").await,
        }
        return;
    }
    respond(&mut socket, 404, "text/plain", b"not found").await;
}

/// Serves `served` on loopback, over TLS with `tls`; returns the URL.
async fn start_server(
    served: Arc<Mutex<Served>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (tls, served) = (tls.clone(), served.clone());
            tokio::spawn(async move {
                match tls {
                    None => handle(socket, served).await,
                    Some(acceptor) => {
                        if let Ok(socket) = acceptor.accept(socket).await {
                            handle(socket, served).await;
                        }
                    }
                }
            });
        }
    });
    url
}

/// TLS with `server`: a certificate for 127.0.0.1 and its key.
fn tls_acceptor(server: &Credential) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certificates = CertificateDer::pem_slice_iter(&server.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&server.key_pem).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

// ---------------------------------------------------------------------------------------------
// Certificates with openssl
// ---------------------------------------------------------------------------------------------

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A certificate and its key.
#[derive(Clone, Debug)]
pub struct Credential {
    pub cert_pem: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// A scratch directory in which openssl runs.
pub struct Openssl {
    dir: TempDir,
}

const ROOT_EXT: &str = "basicConstraints = critical,CA:true\n\
                        keyUsage = critical,keyCertSign,cRLSign\n\
                        subjectKeyIdentifier = hash\n";

fn leaf_ext(publisher: &str) -> String {
    format!(
        "basicConstraints = critical,CA:false\n\
         keyUsage = critical,digitalSignature\n\
         extendedKeyUsage = codeSigning\n\
         subjectAltName = URI:urn:plugstore:publisher:{publisher}\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid\n"
    )
}

impl Openssl {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("these tests need the openssl command-line tool");
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn new_key(&self, stem: &str) -> String {
        let key = self.path(&format!("{stem}.key"));
        self.run(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ]);
        key
    }

    fn finish(&self, stem: &str, key: &str) -> Credential {
        let pem = self.path(&format!("{stem}.pem"));
        let der = self.path(&format!("{stem}.der"));
        self.run(&["x509", "-in", &pem, "-outform", "DER", "-out", &der]);
        Credential {
            cert_pem: std::fs::read(&pem).unwrap(),
            cert_der: std::fs::read(&der).unwrap(),
            key_pem: std::fs::read(key).unwrap(),
        }
    }

    /// A self-signed root CA.
    pub fn root_ca(&self, subject: &str) -> Credential {
        let stem = format!("ca-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let key = self.new_key(&stem);
        let config = self.path(&format!("{stem}.cnf"));
        std::fs::write(
            &config,
            format!("[req]\ndistinguished_name = dn\n[dn]\n[ext]\n{ROOT_EXT}"),
        )
        .unwrap();
        let out = self.path(&format!("{stem}.pem"));
        self.run(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
            "-config",
            &config,
            "-extensions",
            "ext",
            "-subj",
            subject,
            "-days",
            "30",
            "-sha256",
            "-out",
            &out,
        ]);
        self.finish(&stem, &key)
    }

    /// A code-signing leaf for `publisher`, issued by `issuer`.
    pub fn leaf(&self, subject: &str, publisher: &str, issuer: &Credential) -> Credential {
        self.leaf_with_extensions(subject, &leaf_ext(publisher), issuer)
    }

    /// A TLS server certificate for 127.0.0.1.
    pub fn tls_server(&self, issuer: &Credential) -> Credential {
        self.leaf_with_extensions(
            "/CN=127.0.0.1",
            "basicConstraints = critical,CA:false\n\
             keyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = IP:127.0.0.1\n",
            issuer,
        )
    }

    fn leaf_with_extensions(
        &self,
        subject: &str,
        extensions: &str,
        issuer: &Credential,
    ) -> Credential {
        let stem = format!("leaf-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let key = self.new_key(&stem);
        let config = self.path(&format!("{stem}.cnf"));
        std::fs::write(
            &config,
            format!("[req]\ndistinguished_name = dn\n[dn]\n[ext]\n{extensions}"),
        )
        .unwrap();
        let csr = self.path(&format!("{stem}.csr"));
        self.run(&[
            "req", "-new", "-key", &key, "-config", &config, "-subj", subject, "-out", &csr,
        ]);
        let issuer_cert = self.path(&format!("{stem}.issuer.pem"));
        let issuer_key = self.path(&format!("{stem}.issuer.key"));
        std::fs::write(&issuer_cert, &issuer.cert_pem).unwrap();
        std::fs::write(&issuer_key, &issuer.key_pem).unwrap();
        let out = self.path(&format!("{stem}.pem"));
        self.run(&[
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
            "7",
            "-extfile",
            &config,
            "-extensions",
            "ext",
            "-sha256",
            "-out",
            &out,
        ]);
        self.finish(&stem, &key)
    }

    /// An ECDSA P-256 / SHA-256 signature (DER) of `message` by `signer`.
    pub fn sign(&self, signer: &Credential, message: &[u8]) -> Vec<u8> {
        let stem = format!("sig-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let key = self.path(&format!("{stem}.key"));
        let input = self.path(&format!("{stem}.in"));
        let sig = self.path(&format!("{stem}.sig"));
        std::fs::write(&key, &signer.key_pem).unwrap();
        std::fs::write(&input, message).unwrap();
        self.run(&["dgst", "-sha256", "-sign", &key, "-out", &sig, &input]);
        std::fs::read(&sig).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// One published version.
#[derive(Clone, Debug)]
pub struct Published {
    pub id: PluginId,
    pub version: Version,
    pub bytes: Vec<u8>,
    pub sha256: Sha256,
    pub entry: TargetEntry,
}

/// A store: the producer's state and keys, the catalogue, the PKI, and the HTTP server.
pub struct Store {
    pub url: String,
    /// The same store over plain HTTP (the same as `url` unless made by [`Store::new_tls`]).
    pub plain_url: String,
    /// The root of the TLS store's certificate, which [`Store::client_builder`] trusts.
    pub tls_root_pem: Option<Vec<u8>>,
    pub served: Arc<Mutex<Served>>,
    pub root_keys: Vec<SigningKey>,
    pub keys: OnlineKeys,
    pub state: RepositoryState,
    pub catalogue: BTreeMap<BinName, Vec<TargetEntry>>,
    pub pinned_root: Vec<u8>,
    pub openssl: Openssl,
    pub ca: Credential,
    /// The developer leaf of publisher `acme`, issued by the store CA.
    pub acme: Credential,
    pub now: UnixTime,
}

pub fn online_keys() -> OnlineKeys {
    OnlineKeys {
        targets: SigningKey::generate().unwrap(),
        bins: SigningKey::generate().unwrap(),
        snapshot: SigningKey::generate().unwrap(),
        timestamp: SigningKey::generate().unwrap(),
    }
}

pub fn top_level_keys(root: RoleKeys, keys: &OnlineKeys) -> TopLevelKeys {
    TopLevelKeys {
        root,
        targets: RoleKeys::single(keys.targets.public_key()),
        snapshot: RoleKeys::single(keys.snapshot.public_key()),
        timestamp: RoleKeys::single(keys.timestamp.public_key()),
    }
}

/// 100 KB of payload that differs a little between versions, so patches are worth it.
fn payload(version: &str) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let marker = format!("version {version}");
    bytes[50_000..50_000 + marker.len()].copy_from_slice(marker.as_bytes());
    bytes
}

pub fn manifest(id: &str, version: &str) -> String {
    format!(
        "format = 1\n\n[plugin]\nid = \"{id}\"\nversion = \"{version}\"\nkind = \"wasm\"\nentry = \"plugin.wasm\"\n\
         targets = [\"any\"]\ndescription = \"Says hello\"\n\n[host]\ncompatibility = \">=1.0.0\"\n"
    )
}

/// A package of `id` at `version` (whose manifest says `manifest_id`).
pub fn package_bytes(manifest_id: &str, version: &str) -> Vec<u8> {
    PackageBuilder::from_files(vec![
        ("plugin.toml", manifest(manifest_id, version).into_bytes()),
        ("plugin.wasm", b"\0asm\x01\0\0\0".to_vec()),
        ("data.bin", payload(version)),
    ])
    .unwrap()
    .to_vec()
    .unwrap()
}

impl Store {
    /// A store whose metadata was created at `now` minus `age`.
    pub async fn new() -> Self {
        Self::with_root_keys(1, Duration::from_secs(60)).await
    }

    /// A store whose root role has `count` keys and threshold `count`, created `age` ago.
    pub async fn with_root_keys(count: usize, age: Duration) -> Self {
        let now = UnixTime::now().minus(age);
        let root_keys: Vec<SigningKey> = (0..count)
            .map(|_| SigningKey::generate().unwrap())
            .collect();
        let keys = online_keys();
        let role = RoleKeys::new(
            root_keys.iter().map(|k| k.public_key().clone()).collect(),
            count as u64,
        )
        .unwrap();
        let top = top_level_keys(role, &keys);
        let mut draft = RootDraft::first(&top, now).unwrap();
        for key in &root_keys {
            sign_root(&mut draft, key).unwrap();
        }
        let root = draft.finish(None).unwrap();
        let pinned_root = root.bytes().to_vec();
        let served = Arc::new(Mutex::new(Served::default()));
        served
            .lock()
            .unwrap()
            .metadata
            .insert(root.file_name(), pinned_root.clone());
        let (state, files) = RepositoryState::create(root, &keys, now).unwrap();
        let url = start_server(served.clone(), None).await;
        let openssl = Openssl::new();
        let ca = openssl.root_ca("/CN=plugstore test store CA");
        let acme = openssl.leaf("/CN=acme developer", "acme", &ca);
        let store = Self {
            tls_root_pem: None,
            plain_url: url.clone(),
            url,
            served,
            root_keys,
            keys,
            state,
            catalogue: BTreeMap::new(),
            pinned_root,
            openssl,
            ca,
            acme,
            now,
        };
        store.serve_files(files);
        store
    }

    /// A store served over TLS with a certificate from a private CA, whose certificate
    /// becomes `tls_root_pem`. `plain_url` still serves the same store over plain HTTP, as a
    /// mirror or CDN might.
    pub async fn new_tls() -> Self {
        let mut store = Self::new().await;
        let tls_ca = store.openssl.root_ca("/CN=plugstore test TLS CA");
        let server = store.openssl.tls_server(&tls_ca);
        store.plain_url = store.url.clone();
        store.url = start_server(store.served.clone(), Some(tls_acceptor(&server))).await;
        store.tls_root_pem = Some(tls_ca.cert_pem);
        store
    }

    pub fn serve_files(&self, files: Vec<MetadataFile>) {
        let mut served = self.served.lock().unwrap();
        for file in files {
            served.metadata.insert(file.name, file.bytes);
        }
    }

    pub fn put_blob(&self, bytes: &[u8]) -> Sha256 {
        let sha = Sha256::of(bytes);
        self.served
            .lock()
            .unwrap()
            .blobs
            .insert(sha.to_hex(), bytes.to_vec());
        sha
    }

    pub fn trick(&self, sha256: Sha256, trick: Trick) {
        self.served
            .lock()
            .unwrap()
            .tricks
            .insert(sha256.to_hex(), trick);
    }

    /// Adds or replaces targets, re-signs their bins, and serves the files.
    pub fn sign(&mut self, entries: &[TargetEntry]) {
        let mut changed = BTreeMap::new();
        for entry in entries {
            let bin = entry.path.bin();
            let listed = self.catalogue.entry(bin).or_default();
            listed.retain(|existing| existing.path != entry.path);
            listed.push(entry.clone());
            changed.insert(bin, listed.clone());
        }
        let now = UnixTime::now();
        let files = self.state.update_bins(&self.keys, &changed, now).unwrap();
        self.serve_files(files);
    }

    /// The package target of `bytes` as `id` `version`, signed by `signer` (chain: its
    /// certificate alone).
    pub fn package_entry(
        &self,
        id: &str,
        version: &str,
        bytes: &[u8],
        state: VersionState,
        signer: &Credential,
    ) -> TargetEntry {
        let plugin: PluginId = id.parse().unwrap();
        let parsed: Version = version.parse().unwrap();
        let digest = PackageDigest::of(bytes);
        let payload = SigningPayload::new(id, version, digest).unwrap();
        let signature = self.openssl.sign(signer, &payload.to_bytes());
        let chain = self.put_blob(&signer.cert_pem);
        TargetEntry {
            path: TargetPath::package(plugin.clone(), parsed.clone()),
            length: bytes.len() as u64,
            sha256: Sha256::of(bytes),
            custom: PluginTarget {
                plugin,
                version: parsed,
                detail: TargetDetail::Package(PackageTarget {
                    state,
                    plugin_kind: PluginKind::Wasm,
                    platforms: vec![Target::Any],
                    host: ">=1.0.0".parse().unwrap(),
                    capabilities: vec![],
                    developer: DeveloperSignature {
                        algorithm: SignatureAlgorithm::EcdsaP256Sha256,
                        signature,
                        leaf_sha256: fingerprint(&signer.cert_der),
                        chain: ChainReference {
                            sha256: chain,
                            length: signer.cert_pem.len() as u64,
                        },
                    },
                    published_at: UnixTime::now(),
                }),
            },
        }
    }

    /// Publishes `id` `version`, signed by acme's developer certificate.
    pub fn publish(&mut self, id: &str, version: &str) -> Published {
        self.publish_as(id, version, VersionState::Published)
    }

    pub fn publish_as(&mut self, id: &str, version: &str, state: VersionState) -> Published {
        let bytes = package_bytes(id, version);
        let signer = self.acme.clone();
        let entry = self.package_entry(id, version, &bytes, state, &signer);
        self.publish_entry(entry, bytes)
    }

    /// Serves `bytes` as a blob and signs `entry`.
    pub fn publish_entry(&mut self, entry: TargetEntry, bytes: Vec<u8>) -> Published {
        let sha256 = self.put_blob(&bytes);
        self.sign(std::slice::from_ref(&entry));
        Published {
            id: entry.custom.plugin.clone(),
            version: entry.custom.version.clone(),
            bytes,
            sha256,
            entry,
        }
    }

    /// Re-signs a published version in another state.
    pub fn set_state(&mut self, published: &Published, state: VersionState) {
        let mut entry = published.entry.clone();
        if let TargetDetail::Package(package) = &mut entry.custom.detail {
            package.state = state;
        }
        self.sign(&[entry]);
    }

    /// Signs and serves a delta patch from `from` to `to`; returns the patch.
    pub fn publish_patch(&mut self, from: &Published, to: &Published) -> Vec<u8> {
        let patch = plugstore_format::delta::make_patch(&from.bytes, &to.bytes).unwrap();
        let base = PackageDigest::of(&from.bytes);
        let entry = TargetEntry {
            path: TargetPath::patch(to.id.clone(), to.version.clone(), base),
            length: patch.len() as u64,
            sha256: Sha256::of(&patch),
            custom: PluginTarget {
                plugin: to.id.clone(),
                version: to.version.clone(),
                detail: TargetDetail::Patch(PatchTarget {
                    from: base,
                    to: PackageDigest::of(&to.bytes),
                    format: "bsdiff4z".to_owned(),
                }),
            },
        };
        self.put_blob(&patch);
        self.sign(&[entry]);
        patch
    }

    /// Re-signs the timestamp (one version up).
    pub fn refresh_timestamp(&mut self) {
        let file = self
            .state
            .refresh_timestamp(&self.keys, UnixTime::now())
            .unwrap();
        self.serve_files(vec![file]);
    }

    /// Publishes the next root, signed by every root key and listing the online keys of
    /// `self.keys` (a test that rotates an online key replaces it there first, then re-signs
    /// that role). Returns the root file.
    pub fn publish_next_root(&mut self) -> Vec<u8> {
        let role = RoleKeys::new(
            self.root_keys
                .iter()
                .map(|key| key.public_key().clone())
                .collect(),
            self.root_keys.len() as u64,
        )
        .unwrap();
        let top = top_level_keys(role, &self.keys);
        let mut draft = RootDraft::successor(&self.state.root, &top, UnixTime::now()).unwrap();
        for key in &self.root_keys {
            sign_root(&mut draft, key).unwrap();
        }
        let file = self.state.install_root(&draft.to_json().unwrap()).unwrap();
        let bytes = file.bytes.clone();
        self.serve_files(vec![file]);
        bytes
    }

    /// The honest API offer of `to` for a host that has `from`.
    pub fn offer(&self, from: &Published, to: &Published, patch: Option<&[u8]>) -> Value {
        let blob = |sha: Sha256| format!("{}/blobs/sha256/{}", self.url, sha.to_hex());
        let patch = patch.map(|patch| {
            let sha = Sha256::of(patch);
            json!({
                "target": TargetPath::patch(to.id.clone(), to.version.clone(), from.sha256.into()).to_string(),
                "url": blob(sha), "sha256": sha.to_hex(), "length": patch.len(),
                "from_sha256": from.sha256.to_hex(),
            })
        });
        json!({
            "id": to.id.to_string(),
            "installed_version": from.version.to_string(),
            "version": to.version.to_string(),
            "signed_in_snapshot": self.state.snapshot.record.version.get(),
            "package": {
                "target": to.entry.path.to_string(),
                "url": blob(to.sha256),
                "sha256": to.sha256.to_hex(),
                "length": to.bytes.len(),
            },
            "patch": patch,
        })
    }

    /// Sets the update-check answer.
    pub fn answer(&self, updates: Vec<Value>, revocations: Vec<Value>) {
        self.served.lock().unwrap().answer = Some((
            200,
            json!({"updates": updates, "revocations": revocations,
                   "metadata_url": format!("{}/tuf/", self.url)}),
        ));
    }

    pub fn metadata(&self, name: &str) -> Vec<u8> {
        self.served.lock().unwrap().metadata[name].clone()
    }

    pub fn put_metadata(&self, name: &str, bytes: Vec<u8>) {
        self.served
            .lock()
            .unwrap()
            .metadata
            .insert(name.to_owned(), bytes);
    }

    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.served.lock().unwrap().log)
    }

    /// A client of this store installing into `dir`.
    pub fn client(&self, dir: &Path) -> Client {
        self.client_builder(dir).build().unwrap()
    }

    pub fn client_builder(&self, dir: &Path) -> ClientBuilder {
        let builder = ClientBuilder::new(&self.url);
        let builder = match &self.tls_root_pem {
            Some(pem) => builder.tls_root_pem(pem.clone()),
            None => builder,
        };
        builder
            .trusted_root(self.pinned_root.clone())
            .install_dir(dir)
            .store_ca_pem(self.ca.cert_pem.clone())
            .host(
                "org.example.editor",
                Version::new(2, 3, 0),
                Target::LinuxX86_64,
            )
            .download_policy(fast_policy())
            .request_timeout(Duration::from_secs(10))
    }
}

/// Download limits that make slow-retrieval tests quick.
pub fn fast_policy() -> DownloadPolicy {
    DownloadPolicy {
        connect_timeout: Duration::from_secs(5),
        rate_window: Duration::from_secs(1),
        min_bytes_per_sec: 1024,
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
    }
}

pub fn id(text: &str) -> PluginId {
    text.parse().unwrap()
}
