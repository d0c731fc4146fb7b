//! End-to-end time from upload to verdict for a 1 MB plugin, with the real release binaries:
//! `plugstore publish` uploads to a `plugstore-server` with the default `scan` policy, whose
//! embedded worker claims the job, downloads the package, analyses it in its confined child
//! and posts the report. The baseline, measured in the same run on the same package, is the
//! analysis alone (`plugstore-scanner analyze`); the difference is what the pipeline adds
//! (upload and signature checks, queueing, the worker's poll interval, download, report).
//!
//! Run through `scripts/bench-scan` (it builds the release binaries first).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use plugstore_e2e::{Cli, Store, binaries, manifest, without_plugstore_env};

const PASSWORD: &str = "correct horse battery staple";
const VERSIONS: usize = 5;
const VERDICT_TIMEOUT: Duration = Duration::from_secs(300);
/// Size of the data segment that makes the module about 1 MB.
const DATA_BYTES: usize = 1 << 20;

/// A valid ABI v1 plugin of about 1 MB: the ABI exports and a 1 MiB data segment of text (low
/// entropy, no strings the scanner reports), as real plugins carry tables and messages.
fn plugin_module() -> Vec<u8> {
    let sentence = "the quick brown fox jumps over the lazy dog; ";
    let data: String = sentence.chars().cycle().take(DATA_BYTES).collect();
    let wat = format!(
        r#"(module
  (import "plugstore:log" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 20 32)
  (data (i32.const 65536) "{data}")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "plugstore_abi_version") (result i32) i32.const 1)
  (func (export "plugstore_alloc") (param $len i32) (result i32)
    (local $ptr i32)
    global.get $heap
    local.set $ptr
    global.get $heap
    local.get $len
    i32.add
    global.set $heap
    local.get $ptr)
  (func (export "plugstore_init") (result i32)
    (call $log (i32.const 2) (i32.const 65536) (i32.const 9))
    i32.const 0)
  (func (export "plugstore_handle") (param i32 i32) (result i64) i64.const 0)
)"#
    );
    wat::parse_str(wat).expect("the benchmark plugin")
}

fn write_plugin(dir: &Path, version: &str, module: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("plugin.toml"), manifest("acme/big", version)).unwrap();
    std::fs::write(dir.join("plugin.wasm"), module).unwrap();
}

fn state(store: &Store, token: &str, version: &str) -> String {
    let url = format!("{}/api/v1/plugins/acme/big/versions/{version}", store.url);
    let body: serde_json::Value = store
        .http()
        .get(&url)
        .bearer_auth(token)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    body["state"].as_str().unwrap_or_default().to_owned()
}

fn main() {
    let bins = binaries();
    // The defaults, except the first-version hold, so that a clean scan publishes.
    let store = Store::start_with_config(&bins, Some("[scan]\nfirst_version_review = false\n"));
    let alice = Cli::new(&bins, &store);
    alice.register_and_login("alice", PASSWORD);
    alice.run(&["publisher", "create", "acme"]).ok();
    alice.run(&["keygen"]).ok();
    alice.run(&["cert", "request", "--publisher", "acme"]).ok();
    let token = alice
        .run(&["--json", "token", "create", "bench", "--scope", "publish"])
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let module = plugin_module();
    let work = alice.work_dir();

    // Baseline: the analysis child alone, on the package the CLI builds.
    let first = work.join("big-1.0.0");
    write_plugin(&first, "1.0.0", &module);
    let package = work.join("big.tar");
    alice
        .run(&[
            "pack",
            first.to_str().unwrap(),
            "--out",
            package.to_str().unwrap(),
        ])
        .ok();
    let package_size = std::fs::metadata(&package).unwrap().len();
    let mut analysis = Vec::new();
    for _ in 0..VERSIONS {
        let mut command = Command::new(&bins.scanner);
        without_plugstore_env(&mut command);
        let started = Instant::now();
        let output = command.arg("analyze").arg(&package).output().unwrap();
        analysis.push(started.elapsed());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let mut pipeline = Vec::new();
    for n in 0..VERSIONS {
        let version = format!("1.0.{n}");
        let dir = work.join(format!("big-{version}"));
        write_plugin(&dir, &version, &module);
        let started = Instant::now();
        let out = alice
            .run(&["publish", dir.to_str().unwrap()])
            .ok()
            .to_owned();
        assert!(out.contains("(state: scanning)"), "{out}");
        let verdict = loop {
            let state = state(&store, &token, &version);
            if state != "scanning" {
                break state;
            }
            assert!(
                started.elapsed() < VERDICT_TIMEOUT,
                "{version} still scanning"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        pipeline.push(started.elapsed());
        assert_eq!(verdict, "published", "{version}");
    }

    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (analysis_median, pipeline_median) = (median(&mut analysis), median(&mut pipeline));
    println!("upload to verdict, {package_size}-byte package, {VERSIONS} versions");
    println!(
        "  analysis alone (plugstore-scanner analyze)  median {:>7.0} ms  min {:>7.0} ms  (baseline)",
        ms(&analysis_median),
        ms(&analysis[0])
    );
    println!(
        "  publish -> published (CLI, server, worker)  median {:>7.0} ms  min {:>7.0} ms  ratio {:.2}x the baseline",
        ms(&pipeline_median),
        ms(&pipeline[0]),
        pipeline_median.as_secs_f64() / analysis_median.as_secs_f64()
    );
}
