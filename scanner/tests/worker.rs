//! The real `plugstore-scanner worker --once` against a minimal fake store: what it posts
//! for a clean package, a package whose bytes do not match the job, and an analysis that
//! blows its memory limit.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::manifest_text;
use plugstore_format::digest::PackageDigest;
use plugstore_format::package::PackageBuilder;
use serde_json::{Value, json};

const TOKEN: &str = "fake-worker-token";

fn clean_package() -> Vec<u8> {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/plugin-abi.md");
    let text = std::fs::read_to_string(page).unwrap();
    let start = text.find("```wat\n").unwrap() + "```wat\n".len();
    let end = start + text[start..].find("```").unwrap();
    let wasm = wat::parse_str(&text[start..end]).unwrap();
    let manifest = manifest_text("wasm", "plugin.wasm", &["any"], &["log"]);
    PackageBuilder::from_files_with_modes([
        ("plugin.toml".to_owned(), manifest.into_bytes(), false),
        ("plugin.wasm".to_owned(), wasm, false),
    ])
    .unwrap()
    .to_vec()
    .unwrap()
}

/// One request the fake store received: path, authorization, JSON body.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: String,
    body: Value,
}

/// A store with one job: `package` served at `/package`, announced with `digest`.
struct FakeStore {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeStore {
    fn start(package: Vec<u8>, digest: PackageDigest) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let job = json!({
            "job_id": 7,
            "plugin": "acme/echo",
            "version": "1.0.0",
            "package_digest": digest.to_string(),
            "package_size": package.len(),
            "package_url": format!("{url}/package"),
            "manifest": "",
            "attempt": 1,
            "lease_expires_at": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() + 30,
        });
        let record = seen.clone();
        std::thread::spawn(move || {
            let mut claimed = false;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = serve(stream, &package, &job, &mut claimed, &record);
            }
        });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    package: &[u8],
    job: &Value,
    claimed: &mut bool,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let (mut length, mut authorization) = (0usize, String::new());
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "authorization" => value.trim().clone_into(&mut authorization),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        authorization,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let (status, content): (&str, Vec<u8>) = match path.as_str() {
        "/package" => ("200 OK", package.to_vec()),
        "/internal/v1/scan-jobs/claim" if !*claimed => {
            *claimed = true;
            ("200 OK", job.to_string().into_bytes())
        }
        "/internal/v1/scan-jobs/claim" => ("204 No Content", Vec::new()),
        p if p.ends_with("/report") => (
            "200 OK",
            br#"{"state":"published","max_severity":"info"}"#.to_vec(),
        ),
        _ => ("204 No Content", Vec::new()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        content.len()
    )?;
    stream.write_all(&content)?;
    stream.flush()
}

/// Runs `worker --once` against `store`; returns its log.
fn worker_once(store: &FakeStore, extra: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"));
    command
        .args(["worker", "--once", "--server", &store.url, "--token", TOKEN])
        .args(extra)
        .env("PLUGSTORE_SCANNER_TEST_HOOKS", "1")
        .env("RUST_LOG", "info");
    let started = Instant::now();
    let output = command.output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{}: {log}", output.status);
    log
}

fn posted(store: &FakeStore, suffix: &str) -> Option<Seen> {
    store.seen().into_iter().find(|s| s.path.ends_with(suffix))
}

#[test]
fn a_clean_package_is_reported_with_the_childs_metrics() {
    let package = clean_package();
    let store = FakeStore::start(package.clone(), PackageDigest::of(&package));
    let log = worker_once(&store, &[]);
    let report = posted(&store, "/7/report").unwrap_or_else(|| panic!("no report: {log}"));
    assert_eq!(report.authorization, format!("Bearer {TOKEN}"));
    assert!(
        report.body["worker"]
            .as_str()
            .unwrap()
            .starts_with("scanner@")
    );
    let metrics = &report.body["metrics"];
    assert!(metrics["analysis.cpu_ms"].is_u64(), "{metrics}");
    assert!(
        metrics["analysis.max_rss_kib"].as_u64().unwrap() > 0,
        "{metrics}"
    );
    assert_eq!(
        metrics["package.sha256"],
        PackageDigest::of(&package).to_hex()
    );
    assert!(posted(&store, "/fail").is_none());
}

#[test]
fn a_package_that_does_not_match_its_digest_is_a_failed_attempt() {
    let package = clean_package();
    let store = FakeStore::start(package, PackageDigest::of(b"something else"));
    worker_once(&store, &[]);
    let fail = posted(&store, "/7/fail").expect("a fail");
    assert!(
        fail.body["error"].as_str().unwrap().contains("digest"),
        "{:?}",
        fail.body
    );
    assert!(posted(&store, "/report").is_none());
}

#[cfg(unix)]
#[test]
fn a_memory_blow_up_is_a_high_finding_and_the_worker_carries_on() {
    let package = clean_package();
    let store = FakeStore::start(package.clone(), PackageDigest::of(&package));
    let log = worker_once(
        &store,
        &["--test-hook", "allocate-gib=4", "--memory-limit-mib", "256"],
    );
    let report = posted(&store, "/7/report").unwrap_or_else(|| panic!("no report: {log}"));
    let findings = report.body["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["rule"], "scanner.analysis-crashed");
    assert_eq!(findings[0]["severity"], "high");
    assert!(log.contains("analysis crashed"), "{log}");
}

#[test]
fn test_hooks_are_refused_without_the_environment_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"))
        .args([
            "worker",
            "--once",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            TOKEN,
            "--test-hook",
            "burn-cpu",
        ])
        .env_remove("PLUGSTORE_SCANNER_TEST_HOOKS")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("test hooks are disabled"));
}
