//! Benchmark: publishing a 100 MiB package through the real server, against `sha256sum` + `cp`
//! of the same file measured in the same run (target ≤ 1.5×), and the server's peak RSS
//! increase during the upload (target ≤ 32 MiB: the upload streams).
//!
//! `cargo bench -p plugstore-server --bench publish` (BENCH_MIB=100, BENCH_ROUNDS=3).

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use plugstore_format::package::write_dir_package;
use plugstore_format::signing::{
    SignatureAlgorithm, SignatureEnvelope, SigningPayload, sign_payload,
};

mod support;

use support::{env_or, start_store};

const SERVER: &str = env!("CARGO_BIN_EXE_plugstore-server");

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let mib = env_or("BENCH_MIB", 100);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir()?;

    // The plugin: a manifest and one large pseudo-random payload file.
    let plugin_dir = dir.path().join("plugin");
    std::fs::create_dir_all(&plugin_dir)?;
    let mut payload =
        std::io::BufWriter::new(std::fs::File::create(plugin_dir.join("plugin.wasm"))?);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        payload.write_all(&block)?;
    }
    payload.flush()?;
    drop(payload);

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("store");
    let max_package_bytes = (2 * mib * 1024 * 1024 + 65536).to_string();
    let server = start_store(
        SERVER,
        dir.path(),
        &data,
        port,
        &[
            ("PLUGSTORE_PUBLISH_MAX_PACKAGE_BYTES", &max_package_bytes),
            ("PLUGSTORE_RATE_LIMITS_PUBLISH_PER_HOUR_PER_USER", "1000"),
        ],
    );
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let password = "benchmark password";
    http.post(format!("{url}/api/v1/auth/register"))
        .json(&serde_json::json!({"username": "bench", "email": "bench@example.org", "password": password}))
        .send()
        .await?
        .error_for_status()?;
    let login: serde_json::Value = http
        .post(format!("{url}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "bench", "password": password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    http.post(format!("{url}/api/v1/publishers"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await?
        .error_for_status()?;
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let issued: serde_json::Value = http
        .post(format!("{url}/api/v1/publishers/bench/certificates"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"csr": csr}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let ca_pem = http
        .get(format!("{url}/ca.pem"))
        .send()
        .await?
        .text()
        .await?;
    let der = |pem: &str| {
        plugstore_server::ca::pem_to_der_labelled(pem, "CERTIFICATE").unwrap_or_default()
    };
    let chain = vec![
        der(issued["certificate_pem"].as_str().unwrap_or_default()),
        der(&ca_pem),
    ];

    let mut store_best = f64::MAX;
    let mut baseline_best = f64::MAX;
    let mut peak_increase_kib = 0u64;
    for round in 0..rounds {
        let version = format!("1.0.{round}");
        std::fs::write(
            plugin_dir.join("plugin.toml"),
            format!(
                "format = 1\n[plugin]\nid = \"bench/big\"\nversion = \"{version}\"\nkind = \"wasm\"\nentry = \"plugin.wasm\"\n\
                 targets = [\"any\"]\ndescription = \"Benchmark\"\n[host]\ncompatibility = \">=1.0.0\"\n"
            ),
        )?;
        let package_path = dir.path().join("big.pkg");
        let (digest, length) = write_dir_package(
            &plugin_dir,
            std::io::BufWriter::new(std::fs::File::create(&package_path)?),
        )?;
        let payload = SigningPayload::new("bench/big", &version, digest)?;
        let signature = sign_payload(
            SignatureAlgorithm::EcdsaP256Sha256,
            &key.serialize_der(),
            &payload,
        )?;
        let envelope = SignatureEnvelope::new(
            SignatureAlgorithm::EcdsaP256Sha256,
            signature,
            chain.clone(),
        )
        .to_json()?;

        // Baseline: hash and copy the same file.
        let copy = dir.path().join("copy.pkg");
        let t = Instant::now();
        let sum = Command::new("sha256sum").arg(&package_path).output()?;
        anyhow::ensure!(sum.status.success(), "sha256sum failed");
        anyhow::ensure!(
            String::from_utf8_lossy(&sum.stdout).starts_with(&digest.to_hex()),
            "sha256sum disagrees with the package digest"
        );
        anyhow::ensure!(
            Command::new("cp")
                .arg(&package_path)
                .arg(&copy)
                .status()?
                .success(),
            "cp failed"
        );
        baseline_best = baseline_best.min(t.elapsed().as_secs_f64());
        std::fs::remove_file(&copy)?;

        // The upload, streamed from the file; RSS sampled while it runs.
        let idle = rss_kib(server.0.id());
        let peak = Arc::new(AtomicU64::new(idle));
        let running = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, running, pid) = (Arc::clone(&peak), Arc::clone(&running), server.0.id());
            std::thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let mut prefix = (envelope.len() as u32).to_be_bytes().to_vec();
        prefix.extend_from_slice(envelope.as_bytes());
        let total = prefix.len() as u64 + length;
        let file = tokio::fs::File::open(&package_path).await?;
        let body = futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(bytes::Bytes::from(prefix))
        })
        .chain(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        ));
        let t = Instant::now();
        let response = http
            .put(format!("{url}/api/v1/plugins/bench/big/versions/{version}"))
            .bearer_auth(&token)
            .header("content-type", "application/vnd.plugstore.upload.v1")
            .header("content-length", total)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await?;
        let elapsed = t.elapsed().as_secs_f64();
        running.store(false, Ordering::Relaxed);
        let _ = sampler.join();
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status == 201, "publish failed: {status} {text}");
        store_best = store_best.min(elapsed);
        peak_increase_kib =
            peak_increase_kib.max(peak.load(Ordering::Relaxed).saturating_sub(idle));
        println!(
            "round {}: publish {:.3} s, sha256sum+cp {:.3} s, RSS +{:.1} MiB",
            round + 1,
            elapsed,
            baseline_best,
            peak.load(Ordering::Relaxed).saturating_sub(idle) as f64 / 1024.0
        );
    }
    println!("publish of a {mib} MiB package, best of {rounds}");
    println!("  sha256sum + cp: {baseline_best:.3} s");
    println!("  plugstore publish: {store_best:.3} s");
    println!("  ratio: {:.2} (target <= 1.5)", store_best / baseline_best);
    println!(
        "  server peak RSS increase during upload: {:.1} MiB (target <= 32)",
        peak_increase_kib as f64 / 1024.0
    );
    Ok(())
}
