//! Benchmark: `GET /blobs/sha256/{hex}` throughput for a 10 MiB blob, against nginx serving the
//! same file, measured in one run with the same load generator (wrk), plus the server's RSS at
//! idle and its peak under that load.
//!
//! Run with `scripts/bench-blobs` (installs nginx and wrk when missing), or
//! `cargo bench -p plugstore-server --bench blob_download`. Settings: BENCH_SECONDS (10),
//! BENCH_CONNECTIONS (16), BENCH_ROUNDS (2; alternating, best of each kept).

use std::process::Command;
use std::time::Duration;

mod support;

use support::{env_or, free_port, start_nginx, start_store, wait_for};

const BLOB_SIZE: usize = 10 * 1024 * 1024;
const SERVER: &str = env!("CARGO_BIN_EXE_plugstore-server");

/// Resident set size of a process in KiB: (current, peak).
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs wrk and returns (requests/s, bytes/s).
fn wrk(url: &str, seconds: u64, connections: u64) -> (f64, f64) {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            url,
        ])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    let value = |label: &str| -> Option<String> {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    let requests: f64 = value("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("wrk output: {text}"));
    if text.contains("Non-2xx") {
        panic!("wrk saw errors: {text}");
    }
    (requests, requests * BLOB_SIZE as f64)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds = env_or("BENCH_SECONDS", 10);
    let connections = env_or("BENCH_CONNECTIONS", 16);
    let rounds = env_or("BENCH_ROUNDS", 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("store");

    // The blob: deterministic pseudo-random bytes, stored through the store's own code.
    let mut bytes = vec![0u8; BLOB_SIZE];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let digest = runtime.block_on(async {
        let store = plugstore_server::blobs::open_disk(&data.join("blobs"))
            .await
            .expect("disk store");
        store
            .put(&mut &bytes[..], None, None)
            .await
            .expect("put")
            .digest
    });
    let www = dir.path().join("nginx/www/blobs/sha256");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join(digest.to_hex()), &bytes).expect("nginx copy");

    let store_port = free_port();
    let server = start_store(SERVER, dir.path(), &data, store_port, &[]);
    let nginx_port = free_port();
    let _nginx = start_nginx(&dir.path().join("nginx"), nginx_port);
    let path = format!("/blobs/sha256/{}", digest.to_hex());
    let store_url = format!("http://127.0.0.1:{store_port}{path}");
    let nginx_url = format!("http://127.0.0.1:{nginx_port}{path}");
    wait_for(&store_url);
    wait_for(&nginx_url);
    std::thread::sleep(Duration::from_millis(500));
    let (idle_rss, _) = rss_kib(server.0.id());

    // Alternate the two servers so drift in machine load affects both alike; keep each best.
    let mut store_best = (0.0, 0.0);
    let mut nginx_best = (0.0, 0.0);
    for round in 1..=rounds {
        let nginx = wrk(&nginx_url, seconds, connections);
        let store = wrk(&store_url, seconds, connections);
        println!(
            "round {round}: nginx {:.0} req/s, plugstore {:.0} req/s",
            nginx.0, store.0
        );
        if nginx.0 > nginx_best.0 {
            nginx_best = nginx;
        }
        if store.0 > store_best.0 {
            store_best = store;
        }
    }
    let (_, peak_rss) = rss_kib(server.0.id());
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!("GET /blobs, 10 MiB blob, wrk -t2 -c{connections} -d{seconds}s, best of {rounds}");
    println!(
        "  nginx:     {:8.1} req/s  {:8.1} MiB/s",
        nginx_best.0,
        mib(nginx_best.1)
    );
    println!(
        "  plugstore: {:8.1} req/s  {:8.1} MiB/s",
        store_best.0,
        mib(store_best.1)
    );
    println!(
        "  ratio plugstore/nginx: {:.2} (target >= 0.70)",
        store_best.0 / nginx_best.0
    );
    println!(
        "  server RSS: idle {:.1} MiB (target < 50), peak under load {:.1} MiB",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
}
