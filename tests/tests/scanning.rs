//! The scan pipeline with the real binaries: `plugstore-server` with the `scan` policy,
//! plugins published with the `plugstore` CLI, and `plugstore-scanner worker` processes
//! that claim, analyse (in their confined child) and report, including a worker killed
//! mid-scan whose job another worker finishes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plugstore_e2e::{Binaries, Cli, Store, binaries, reviewer_token, without_plugstore_env};

const PASSWORD: &str = "correct horse battery staple";
const WORKER_TOKEN: &str = "e2e-worker-token-6c1f0e2b9a7d4c3e";
/// Longest wait for a verdict.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(90);

/// The ABI exports every plugin needs, after `imports`; logs once from init.
fn plugin_wat(imports: &str) -> String {
    format!(
        r#"(module
  (import "plugstore:log" "log" (func $log (param i32 i32 i32)))
  {imports}
  (memory (export "memory") 1 16)
  (data (i32.const 16) "ready")
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
    (call $log (i32.const 2) (i32.const 16) (i32.const 5))
    i32.const 0)
  (func (export "plugstore_handle") (param i32 i32) (result i64) i64.const 0)
)"#
    )
}

/// Writes a plugin directory with the `log` capability and the module made from `wat`.
fn write_plugin(parent: &Path, id: &str, wat: &str) -> PathBuf {
    let dir = parent.join(id.replace('/', "-"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("plugin.toml"),
        plugstore_e2e::manifest(id, "1.0.0"),
    )
    .unwrap();
    std::fs::write(dir.join("plugin.wasm"), wat::parse_str(wat).unwrap()).unwrap();
    dir
}

/// A store that queues every upload for scanning, with the shortest lease.
fn scanning_store(bins: &Binaries) -> Store {
    Store::start_with_env(
        bins,
        &[
            ("PLUGSTORE_SCAN_POLICY", "scan"),
            ("PLUGSTORE_SCAN_FIRST_VERSION_REVIEW", "false"),
            ("PLUGSTORE_SCAN_WORKER_TOKEN", WORKER_TOKEN),
            ("PLUGSTORE_SCAN_LEASE_SECS", "10"),
            // These tests run their own workers; the embedded one has its own test below.
            ("PLUGSTORE_SCAN_EMBEDDED_WORKER", "false"),
        ],
    )
}

/// A user who owns publisher `acme` and can sign for it, with an API token to read the
/// versions of `acme` in every state.
struct Owner {
    cli: Cli,
    token: String,
    url: String,
}

fn acme_owner(bins: &Binaries, store: &Store) -> Owner {
    let alice = Cli::new(bins, store);
    alice.register_and_login("alice", PASSWORD);
    alice
        .run(&["publisher", "create", "acme", "--display-name", "Acme Inc"])
        .ok();
    alice.run(&["keygen"]).ok();
    alice.run(&["cert", "request", "--publisher", "acme"]).ok();
    let token = alice
        .run(&[
            "--json",
            "token",
            "create",
            "reader",
            "--scope",
            "publish",
            "--publisher",
            "acme",
        ])
        .json();
    Owner {
        token: token["secret"].as_str().unwrap().to_owned(),
        cli: alice,
        url: store.url.clone(),
    }
}

fn publish(alice: &Owner, id: &str, wat: &str) {
    let dir = write_plugin(&alice.cli.work_dir(), id, wat);
    let out = alice
        .cli
        .run(&["publish", dir.to_str().unwrap()])
        .ok()
        .to_owned();
    assert!(out.contains("(state: scanning)"), "{out}");
}

/// The version 1.0.0 of `id` as its owner sees it.
fn version(alice: &Owner, id: &str) -> serde_json::Value {
    let url = format!("{}/api/v1/plugins/{id}/versions/1.0.0", alice.url);
    let response = reqwest::blocking::Client::new()
        .get(&url)
        .bearer_auth(&alice.token)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response.text().unwrap_or_default();
    assert!(status.is_success(), "GET {url}: {status}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until version 1.0.0 of `id` leaves `scanning`.
fn wait_verdict(alice: &Owner, id: &str, workers: &mut [&mut Worker]) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let version = version(alice, id);
        if version["state"] != "scanning" {
            return version;
        }
        let logs: Vec<String> = workers.iter_mut().map(|w| w.log()).collect();
        assert!(
            started.elapsed() < VERDICT_TIMEOUT,
            "{id} still scanning after {VERDICT_TIMEOUT:?}; worker logs:\n{}",
            logs.join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A `plugstore-scanner worker` process; killed when dropped.
struct Worker {
    child: Child,
    log_path: PathBuf,
}

impl Worker {
    fn command(
        bins: &Binaries,
        store: &Store,
        dir: &Path,
        name: &str,
        extra: &[&str],
    ) -> (Command, PathBuf) {
        let token_file = dir.join("worker-token");
        std::fs::write(&token_file, format!("{WORKER_TOKEN}\n")).unwrap();
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new(&bins.scanner);
        without_plugstore_env(&mut command);
        command
            .args([
                "worker",
                "--server",
                &store.url,
                "--name",
                name,
                "--poll-interval-ms",
                "200",
            ])
            .arg("--token-file")
            .arg(&token_file)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        (command, log_path)
    }

    fn start(bins: &Binaries, store: &Store, name: &str, extra: &[&str], hooks: bool) -> Self {
        let (mut command, log_path) = Self::command(bins, store, store.dir(), name, extra);
        if hooks {
            command.env("PLUGSTORE_SCANNER_TEST_HOOKS", "1");
        }
        Self {
            child: command.spawn().expect("starting plugstore-scanner"),
            log_path,
        }
    }

    fn log(&mut self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn wait_for_log(&mut self, needle: &str) {
        let started = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                started.elapsed() < VERDICT_TIMEOUT,
                "the worker never logged {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `worker --once` to its end; returns its log.
fn worker_once(bins: &Binaries, store: &Store, name: &str) -> String {
    let mut worker = Worker::start(bins, store, name, &["--once"], false);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = worker.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < VERDICT_TIMEOUT,
            "worker --once still running:\n{}",
            worker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = worker.log();
    assert!(status.success(), "worker --once failed ({status}):\n{log}");
    log
}

#[test]
fn clean_plugins_publish_and_undeclared_network_imports_wait_for_review() {
    let bins = binaries();
    let store = scanning_store(&bins);
    let alice = acme_owner(&bins, &store);

    publish(&alice, "acme/hello", &plugin_wat(""));
    assert_eq!(version(&alice, "acme/hello")["state"], "scanning");
    let log = worker_once(&bins, &store, "once-1");
    assert!(log.contains("report posted"), "{log}");
    let hello = version(&alice, "acme/hello");
    assert_eq!(hello["state"], "published", "{hello}\n{log}");

    let fetch = r#"(import "plugstore:http" "fetch" (func (param i32 i32 i32 i32) (result i64)))"#;
    publish(&alice, "acme/fetcher", &plugin_wat(fetch));
    let log = worker_once(&bins, &store, "once-2");
    let fetcher = version(&alice, "acme/fetcher");
    assert_eq!(fetcher["state"], "pending_review", "{fetcher}\n{log}");
    assert!(
        fetcher["state_reason"]
            .as_str()
            .is_some_and(|r| r.contains("high")),
        "{fetcher}"
    );
    assert!(log.contains("wasm.undeclared-capability"), "{log}");

    // Nothing left: --once exits at once.
    let log = worker_once(&bins, &store, "once-3");
    assert!(log.contains("no job waiting"), "{log}");
}

#[cfg(unix)]
#[test]
fn an_analysis_that_burns_cpu_is_a_finding_and_the_worker_lives_on() {
    let bins = binaries();
    let store = scanning_store(&bins);
    let alice = acme_owner(&bins, &store);
    let mut worker = Worker::start(
        &bins,
        &store,
        "burner",
        &["--test-hook", "burn-cpu", "--cpu-limit-secs", "1"],
        true,
    );

    publish(&alice, "acme/spinner", &plugin_wat(""));
    let spinner = wait_verdict(&alice, "acme/spinner", &mut [&mut worker]);
    assert_eq!(spinner["state"], "pending_review", "{spinner}");
    worker.wait_for_log("report posted");
    assert!(
        worker.log().contains("scanner.analysis-timeout"),
        "{}",
        worker.log()
    );
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker died:\n{}",
        worker.log()
    );

    // SIGTERM: it stops claiming and exits cleanly.
    let pid = worker.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = worker.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}:\n{}", worker.log());
}

#[cfg(unix)]
#[test]
fn a_job_of_a_worker_killed_mid_scan_is_claimed_again_and_finishes() {
    let bins = binaries();
    let store = scanning_store(&bins);
    let alice = acme_owner(&bins, &store);
    // This worker's analysis sleeps a minute first: it is killed while it holds the lease.
    let mut doomed = Worker::start(
        &bins,
        &store,
        "doomed",
        &["--test-hook", "sleep-ms=60000"],
        true,
    );

    publish(&alice, "acme/slow", &plugin_wat(""));
    doomed.wait_for_log("claimed");
    doomed.child.kill().unwrap(); // SIGKILL
    doomed.child.wait().unwrap();
    assert_eq!(version(&alice, "acme/slow")["state"], "scanning");

    // Another worker gets the job once the 10 s lease has expired.
    let mut rescuer = Worker::start(&bins, &store, "rescuer", &[], false);
    let slow = wait_verdict(&alice, "acme/slow", &mut [&mut rescuer, &mut doomed]);
    assert_eq!(slow["state"], "published", "{slow}\n{}", rescuer.log());
    let log = rescuer.log();
    assert!(log.contains("attempt=2"), "{log}");
    assert!(log.contains("report posted"), "{log}");
}

/// The one-command store scans by itself: with the default `scan.policy` (`scan`) the server
/// starts its built-in worker (`plugstore-server scanner worker`) as a child, which reaches a
/// verdict without any worker started by hand.
#[test]
fn the_server_runs_its_own_worker() {
    let bins = binaries();
    // Only the first-version hold is turned off; the policy is the default.
    let store = Store::start_with_config(&bins, Some("[scan]\nfirst_version_review = false\n"));
    let alice = acme_owner(&bins, &store);
    publish(&alice, "acme/embedded", &plugin_wat(""));
    let verdict = wait_verdict(&alice, "acme/embedded", &mut []);
    assert_eq!(verdict["state"], "published", "{verdict}");
}

/// The issue's three paths with the real binaries: clean → published by itself; risky →
/// waits for review → a reviewer approves; the EICAR test string in a shipped file → rejected.
#[test]
fn clean_publishes_risky_is_approved_and_eicar_is_rejected() {
    let bins = binaries();
    let store = scanning_store(&bins);
    let alice = acme_owner(&bins, &store);

    publish(&alice, "acme/clean", &plugin_wat(""));
    let fetch = r#"(import "plugstore:http" "fetch" (func (param i32 i32 i32 i32) (result i64)))"#;
    publish(&alice, "acme/risky", &plugin_wat(fetch));
    // The EICAR string, assembled here so this file itself is not a test file.
    let eicar = [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    ]
    .concat();
    let dir = write_plugin(&alice.cli.work_dir(), "acme/infected", &plugin_wat(""));
    std::fs::write(dir.join("readme.txt"), eicar).unwrap();
    let out = alice
        .cli
        .run(&["publish", dir.to_str().unwrap()])
        .ok()
        .to_owned();
    assert!(out.contains("(state: scanning)"), "{out}");

    for n in 0..3 {
        worker_once(&bins, &store, &format!("once-{n}"));
    }
    assert_eq!(version(&alice, "acme/clean")["state"], "published");
    let infected = version(&alice, "acme/infected");
    assert_eq!(infected["state"], "rejected", "{infected}");
    let report = store
        .http()
        .get(format!(
            "{}/api/v1/plugins/acme/infected/versions/1.0.0/scan-report",
            alice.url
        ))
        .bearer_auth(&alice.token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(report.contains("yara.eicar_test_file"), "{report}");

    assert_eq!(version(&alice, "acme/risky")["state"], "pending_review");
    let rita = reviewer_token(&bins, &store, PASSWORD);
    let approved = store
        .http()
        .post(format!(
            "{}/api/v1/review/versions/acme/risky/1.0.0/approve",
            store.url
        ))
        .bearer_auth(&rita)
        .json(&serde_json::json!({"reason": "fetch is used for the documented update check"}))
        .send()
        .unwrap();
    assert!(
        approved.status().is_success(),
        "{}",
        approved.text().unwrap_or_default()
    );
    assert_eq!(version(&alice, "acme/risky")["state"], "published");
    let public = store.get_json("/api/v1/plugins/acme/risky/versions/1.0.0");
    assert_eq!(public["state"], "published");
}
