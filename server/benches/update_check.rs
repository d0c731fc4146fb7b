//! Benchmark: `POST /api/v1/updates/check` with 50 installed plugins, against a catalogue of
//! 10k plugins × 10 versions and then 100k × 10, compared in the same run with nginx serving a
//! static file of the same size as the answer, under the same load generator (wrk).
//!
//! Run with `scripts/bench-updates` (installs nginx, wrk and GNU time when missing), or
//! `cargo bench -p plugstore-server --bench update_check`. Settings: BENCH_SECONDS (10),
//! BENCH_CONNECTIONS (16), BENCH_ROUNDS (2; each round measures every size and server in
//! turn, so that sizes and builds see the same stretch of the machine's noise, and the best
//! round of each is kept), BENCH_SIZES (`10000,100000`), BENCH_BEHIND (50: how many of the
//! installed plugins have an update), BENCH_LOG_LEVEL (the store's log level; its default,
//! `info`, when unset),
//! BENCH_BASELINE_SERVER (the path of another `plugstore-server` build, say one from the
//! commit before a change: it serves the same data beside this build and is measured in the
//! same rounds, so a change is judged against a baseline from the same run). Build the
//! baseline in its own target directory: cargo names a workspace crate's artifacts without
//! its path, so a baseline checkout built into this one can leave its older crates behind
//! for this build.
//!
//! Each request lists a different random set of 50 plugins (64 bodies in rotation), each at a
//! random older version, so every answer has updates and patches to compute. The store's
//! background jobs are off, so only the update check is measured.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use plugstore_server::db::Database;

mod support;

use support::{Process, cpu_seconds, env_or, free_port, start_nginx, start_store, wait_for};

const SERVER: &str = env!("CARGO_BIN_EXE_plugstore-server");
const VERSIONS_PER_PLUGIN: u64 = 10;
const INSTALLED: usize = 50;
const BODIES: usize = 64;
/// GNU time, to measure wrk's own CPU time (`scripts/bench-updates` installs it).
const GNU_TIME: &str = "/usr/bin/time";

/// A deterministic generator, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn digest(plugin: u64, version: u64, salt: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        format!("{salt}:{plugin}:{version}").as_bytes(),
    ))
}

fn plugin_name(plugin: u64) -> (String, String) {
    (format!("pub{}", plugin % 100), format!("plugin{plugin}"))
}

fn manifest(plugin: u64, version: u64) -> String {
    let (publisher, name) = plugin_name(plugin);
    format!(
        "format = 1\n[plugin]\nid = \"{publisher}/{name}\"\nversion = \"1.{version}.0\"\nkind = \"wasm\"\n\
         entry = \"plugin.wasm\"\ntargets = [\"any\"]\ndescription = \"Benchmark plugin\"\n\
         capabilities = [\"log\"]\n[host]\ncompatibility = \">=1.0.0\"\n"
    )
}

/// Writes `plugins` plugins × 10 published versions, with patches to each newest version from
/// the three before it, through the store's own schema.
async fn seed(url: &str, plugins: u64) {
    let db = Database::connect(url, 1).await.expect("database");
    db.migrate().await.expect("migrations");
    let mut tx = db.pool.begin().await.expect("tx");
    for publisher in 0..100 {
        sqlx::query("INSERT INTO publishers (name, display_name, created_at) VALUES ($1, $1, 0)")
            .bind(format!("pub{publisher}"))
            .execute(&mut *tx)
            .await
            .expect("publisher");
    }
    for first in (0..plugins).step_by(500) {
        let last = (first + 500).min(plugins);
        let mut sql = String::from(
            "INSERT INTO plugins (id, publisher_id, name, created_at, updated_at, signed_snapshot) VALUES ",
        );
        for plugin in first..last {
            let sep = if plugin == first { "" } else { "," };
            let _ = write!(
                sql,
                "{sep}({}, {}, 'plugin{plugin}', 0, 0, 1)",
                plugin + 1,
                plugin % 100 + 1
            );
        }
        sqlx::query(&sql).execute(&mut *tx).await.expect("plugins");
        let mut sql = String::from(
            "INSERT INTO plugin_versions (id, plugin_id, version, state, package_digest, package_size, created_at, manifest, signature, state_changed_at, deltas_done) VALUES ",
        );
        let mut deltas = String::from(
            "INSERT INTO deltas (plugin_id, base_version_id, target_version_id, base_digest, target_digest, state, patch_digest, patch_size, created_at) VALUES ",
        );
        for plugin in first..last {
            for version in 0..VERSIONS_PER_PLUGIN {
                let sep = if plugin == first && version == 0 {
                    ""
                } else {
                    ","
                };
                let id = plugin * VERSIONS_PER_PLUGIN + version + 1;
                let _ = write!(
                    sql,
                    "{sep}({id}, {}, '1.{version}.0', 'published', '{}', 100000, 0, '{}', '', 0, 1)",
                    plugin + 1,
                    digest(plugin, version, "package"),
                    manifest(plugin, version),
                );
            }
            let newest = VERSIONS_PER_PLUGIN - 1;
            for base in newest - 3..newest {
                let sep = if plugin == first && base == newest - 3 {
                    ""
                } else {
                    ","
                };
                let _ = write!(
                    deltas,
                    "{sep}({}, {}, {}, '{}', '{}', 'ready', '{}', 5000, 0)",
                    plugin + 1,
                    plugin * VERSIONS_PER_PLUGIN + base + 1,
                    plugin * VERSIONS_PER_PLUGIN + newest + 1,
                    digest(plugin, base, "package"),
                    digest(plugin, newest, "package"),
                    digest(plugin, base, "patch"),
                );
            }
        }
        sqlx::query(&sql).execute(&mut *tx).await.expect("versions");
        sqlx::query(&deltas)
            .execute(&mut *tx)
            .await
            .expect("deltas");
    }
    // A store in its steady state: the change feed was read long ago.
    sqlx::query("DELETE FROM catalogue_changes")
        .execute(&mut *tx)
        .await
        .expect("feed");
    sqlx::query("DELETE FROM tuf_pending")
        .execute(&mut *tx)
        .await
        .expect("pending");
    tx.commit().await.expect("commit");
    db.pool.close().await;
}

/// 64 request bodies of 50 random installed plugins each: `behind` of them at a random older
/// version, the others at the newest.
fn bodies(plugins: u64, behind: usize) -> Vec<String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ plugins);
    (0..BODIES)
        .map(|i| {
            let mut chosen = std::collections::BTreeSet::new();
            while chosen.len() < INSTALLED {
                chosen.insert(rng.below(plugins));
            }
            let installed: Vec<String> = chosen
                .into_iter()
                .enumerate()
                .map(|(k, plugin)| {
                    let version = if k < behind {
                        6 + rng.below(3)
                    } else {
                        VERSIONS_PER_PLUGIN - 1
                    };
                    let (publisher, name) = plugin_name(plugin);
                    format!(
                        r#"{{"id":"{publisher}/{name}","version":"1.{version}.0","sha256":"{}"}}"#,
                        digest(plugin, version, "package")
                    )
                })
                .collect();
            format!(
                r#"{{"host":{{"app_id":"org.example.bench","version":"2.0.0","platform":"linux-x86_64"}},"channel":"stable","install_id":"bench-install-{i:04}","installed":[{}]}}"#,
                installed.join(",")
            )
        })
        .collect()
}

fn lua_script(dir: &Path, bodies: &[String]) -> std::path::PathBuf {
    let mut lua = String::from(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nlocal bodies = {\n",
    );
    for body in bodies {
        let _ = writeln!(lua, "  [==[{body}]==],");
    }
    // Requests are formatted once, in init, as wrk's documentation advises for fast servers:
    // wrk shares the machine's two cores with the server, and formatting a 6 KB request
    // each time would be load generator work counted against the store (nginx's plain GETs
    // need no script at all).
    lua.push_str(
        "}\nlocal requests = {}\nlocal n = 0\ninit = function(args)\n  for i, body in ipairs(bodies) do\n    requests[i] = wrk.format(nil, nil, nil, body)\n  end\nend\nrequest = function()\n  n = n + 1\n  return requests[(n % #requests) + 1]\nend\n",
    );
    let path = dir.join("check.lua");
    std::fs::write(&path, lua).expect("lua");
    path
}

/// One wrk run against `server`'s process.
#[derive(Clone, Copy)]
struct Run {
    requests_per_second: f64,
    p99_ms: f64,
    /// The server's CPU time per request, in microseconds: its own cost, which the machine's
    /// other tenants disturb far less than its throughput.
    cpu_us: f64,
    /// wrk's CPU time per request, in microseconds (NaN without GNU time). wrk shares the two
    /// cores with the server, so what it spends per request bounds the throughput too, and it
    /// spends more against a server that keeps it waiting (ADR 0005).
    client_cpu_us: f64,
}

impl Run {
    const NONE: Self = Self {
        requests_per_second: 0.0,
        p99_ms: f64::NAN,
        cpu_us: f64::NAN,
        client_cpu_us: f64::NAN,
    };
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:8.0} req/s p99 {:6.2} ms, {:5.1} µs CPU/request (wrk {:4.1})",
            self.requests_per_second, self.p99_ms, self.cpu_us, self.client_cpu_us
        )
    }
}

fn wrk(url: &str, script: Option<&Path>, seconds: u64, connections: u64, server: &Process) -> Run {
    let mut args = vec![
        "-t2".to_owned(),
        format!("-c{connections}"),
        format!("-d{seconds}s"),
        "--latency".to_owned(),
    ];
    if let Some(script) = script {
        args.push("-s".to_owned());
        args.push(script.display().to_string());
    }
    args.push(url.to_owned());
    let pids = [server.0.id()];
    let cpu_before = cpu_seconds(&pids);
    // GNU time reports wrk's own CPU time on its last line of stderr.
    let timed = Path::new(GNU_TIME).exists();
    let output = if timed {
        Command::new(GNU_TIME)
            .args(["-f", "wrk-cpu %U %S", "wrk"])
            .args(&args)
            .output()
    } else {
        Command::new("wrk").args(&args).output()
    }
    .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    let client_cpu_seconds = String::from_utf8_lossy(&output.stderr)
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("wrk-cpu "))
        .map_or(f64::NAN, |times| {
            times
                .split_whitespace()
                .map(|t| t.parse::<f64>().unwrap_or(f64::NAN))
                .sum()
        });
    if text.contains("Non-2xx") {
        panic!("wrk saw errors: {text}");
    }
    let requests: f64 = text
        .lines()
        .find(|l| l.trim_start().starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("wrk output: {text}"));
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(parse_wrk_duration)
        .unwrap_or_else(|| panic!("wrk output: {text}"));
    let served: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("wrk output: {text}"));
    Run {
        requests_per_second: requests,
        p99_ms: p99,
        cpu_us: (cpu_seconds(&pids) - cpu_before) / served * 1e6,
        client_cpu_us: client_cpu_seconds / served * 1e6,
    }
}

/// wrk prints `850.00us`, `1.23ms`, `2.00s`.
fn parse_wrk_duration(text: &str) -> f64 {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * factor
}

/// One catalogue size, set up and kept running while the rounds alternate between sizes.
struct Setup {
    plugins: u64,
    /// Holds the database, nginx's files and wrk's script until the end.
    _dir: tempfile::TempDir,
    script: std::path::PathBuf,
    store: (Process, String),
    baseline: Option<(Process, String)>,
    nginx: (Process, String),
    response_bytes: usize,
}

/// The best round of each server at one size.
struct Measured {
    plugins: u64,
    store: Run,
    baseline: Option<Run>,
    nginx: Run,
    response_bytes: usize,
}

/// Sends every body once, filling the server's catalogue; prints how long that took, which is
/// the cost of checks that find nothing cached (each spawns a curl as well).
fn warm_up(server: &str, url: &str, bodies: &[String]) {
    let warming = Instant::now();
    for body in bodies {
        let warmed = Command::new("curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                "-H",
                "content-type: application/json",
                "--data-binary",
                body,
                url,
            ])
            .status()
            .expect("curl");
        assert!(warmed.success(), "warm-up check failed");
    }
    println!(
        "  warm-up of {server}: {BODIES} checks of uncached plugins ({} in all) in {:.2} s",
        BODIES * INSTALLED,
        warming.elapsed().as_secs_f64()
    );
}

/// Gives the baseline build a copy of the seeded database. A build older than this one's
/// migrations refuses a database that records migrations it does not have; their records are
/// removed from the copy, newest first, until it accepts it. What they added stays, unread by
/// the older code.
fn baseline_database(binary: &str, seeded: &Path, baseline: &Path) {
    std::fs::create_dir_all(baseline).expect("baseline data dir");
    std::fs::copy(seeded.join("plugstore.db"), baseline.join("plugstore.db"))
        .expect("copy of the seeded database");
    let copy = format!("sqlite://{}/plugstore.db", baseline.display());
    for _ in 0..100 {
        let migrated = Command::new(binary)
            .args(["--data-dir", &baseline.display().to_string(), "migrate"])
            .output()
            .expect("baseline build");
        if migrated.status.success() {
            return;
        }
        let error = String::from_utf8_lossy(&migrated.stderr);
        assert!(
            error.contains("previously applied but is missing"),
            "the baseline build cannot migrate a copy of the database: {error}"
        );
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                let db = Database::connect(&copy, 1).await.expect("database copy");
                sqlx::query(
                    "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
                )
                .execute(&db.pool)
                .await
                .expect("forget the newest migration");
                db.pool.close().await;
            });
    }
    panic!("the baseline build accepts no copy of the database");
}

/// Keeps the run with the most requests per second.
fn keep_best(best: &mut Run, run: Run) {
    if run.requests_per_second > best.requests_per_second {
        *best = run;
    }
}

/// Seeds a catalogue of `plugins`, starts the store (and the baseline build) on it and nginx
/// beside it with a copy of a real answer, and warms the store's cache.
fn prepare(plugins: u64, behind: usize) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("store");
    std::fs::create_dir_all(&data).expect("data dir");
    let url = format!("sqlite://{}/plugstore.db", data.display());
    let seeded = Instant::now();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(seed(&url, plugins));
    println!(
        "seeded {plugins} plugins × {VERSIONS_PER_PLUGIN} versions in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    let bodies = bodies(plugins, behind);
    let script = lua_script(dir.path(), &bodies);

    let store_port = free_port();
    let store_settings = [
        ("PLUGSTORE_SCAN_POLICY", "publish"),
        ("PLUGSTORE_TUF_ENABLED", "false"),
        ("PLUGSTORE_DELTAS_ENABLED", "false"),
    ];
    let server = start_store(SERVER, dir.path(), &data, store_port, &store_settings);
    let store_url = format!("http://127.0.0.1:{store_port}/api/v1/updates/check");
    wait_for(&format!("http://127.0.0.1:{store_port}/healthz"));
    let baseline = std::env::var("BENCH_BASELINE_SERVER").ok().map(|binary| {
        let baseline_data = dir.path().join("baseline");
        baseline_database(&binary, &data, &baseline_data);
        let port = free_port();
        let process = start_store(&binary, dir.path(), &baseline_data, port, &store_settings);
        wait_for(&format!("http://127.0.0.1:{port}/healthz"));
        let url = format!("http://127.0.0.1:{port}/api/v1/updates/check");
        warm_up("the baseline", &url, &bodies);
        (process, url)
    });

    // The answer to the first body, to size nginx's file and to check the answers are real.
    let answer = Command::new("curl")
        .args([
            "-sf",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &bodies[0],
            &store_url,
        ])
        .output()
        .expect("curl");
    assert!(answer.status.success(), "update check failed");
    let answer_json: serde_json::Value =
        serde_json::from_slice(&answer.stdout).expect("answer is JSON");
    let updates = answer_json["updates"].as_array().map_or(0, Vec::len);
    assert_eq!(updates, behind, "the plugins behind get an update each");
    let response_bytes = answer.stdout.len();
    let www = dir.path().join("nginx/www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("check.json"), &answer.stdout).expect("static copy");
    let nginx_port = free_port();
    let nginx = start_nginx(&dir.path().join("nginx"), nginx_port);
    let nginx_url = format!("http://127.0.0.1:{nginx_port}/check.json");
    wait_for(&nginx_url);

    warm_up("this build", &store_url, &bodies);

    Setup {
        plugins,
        _dir: dir,
        script,
        store: (server, store_url),
        baseline,
        nginx: (nginx, nginx_url),
        response_bytes,
    }
}

/// Measures every size in each round, in turn, so that sizes are compared across the same
/// stretch of the machine's noise rather than one size's rounds before the other's.
fn measure(setups: &[Setup], seconds: u64, connections: u64, rounds: u64) -> Vec<Measured> {
    let mut best: Vec<Measured> = setups
        .iter()
        .map(|setup| Measured {
            plugins: setup.plugins,
            store: Run::NONE,
            baseline: setup.baseline.as_ref().map(|_| Run::NONE),
            nginx: Run::NONE,
            response_bytes: setup.response_bytes,
        })
        .collect();
    for round in 1..=rounds {
        for (setup, best) in setups.iter().zip(&mut best) {
            let (nginx, nginx_url) = &setup.nginx;
            let (server, store_url) = &setup.store;
            let nginx_run = wrk(nginx_url, None, seconds, connections, nginx);
            let store = wrk(store_url, Some(&setup.script), seconds, connections, server);
            println!(
                "  round {round}, {} plugins: nginx     {nginx_run}\n{:>24}plugstore {store}",
                setup.plugins, ""
            );
            if let (Some((process, url)), Some(baseline_best)) =
                (&setup.baseline, &mut best.baseline)
            {
                let run = wrk(url, Some(&setup.script), seconds, connections, process);
                println!("{:>24}baseline  {run}", "");
                keep_best(baseline_best, run);
            }
            keep_best(&mut best.nginx, nginx_run);
            keep_best(&mut best.store, store);
        }
    }
    best
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds = env_or("BENCH_SECONDS", 10);
    let connections = env_or("BENCH_CONNECTIONS", 16);
    let rounds = env_or("BENCH_ROUNDS", 2);
    // How many of the 50 installed plugins have an update: all of them by default (the
    // largest answer); a host that is mostly current gets a much smaller one.
    let behind = usize::try_from(env_or("BENCH_BEHIND", INSTALLED as u64))
        .unwrap_or(INSTALLED)
        .min(INSTALLED);
    let sizes: Vec<u64> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let setups: Vec<Setup> = sizes
        .iter()
        .map(|&plugins| prepare(plugins, behind))
        .collect();
    let results = measure(&setups, seconds, connections, rounds);
    drop(setups);
    println!(
        "POST /api/v1/updates/check, {INSTALLED} installed plugins ({behind} with an update), wrk -t2 -c{connections} -d{seconds}s, best of {rounds}"
    );
    for result in &results {
        println!(
            "  {:>6} plugins: plugstore {} | nginx (static {} B) {} | ratio {:.2} (target >= 0.50)",
            result.plugins,
            result.store,
            result.response_bytes,
            result.nginx,
            result.store.requests_per_second / result.nginx.requests_per_second,
        );
        if let Some(baseline) = result.baseline {
            println!(
                "  {:>6} plugins: baseline  {} | ratio to nginx {:.2} | this build / baseline {:.2} (CPU/request {:.2})",
                result.plugins,
                baseline,
                baseline.requests_per_second / result.nginx.requests_per_second,
                result.store.requests_per_second / baseline.requests_per_second,
                result.store.cpu_us / baseline.cpu_us,
            );
        }
    }
    if let [small, .., large] = results.as_slice() {
        let drop = 1.0 - large.store.requests_per_second / small.store.requests_per_second;
        println!(
            "  throughput drop {} → {} plugins: {:.1}% (target <= 10%); CPU per check {:+.1}%",
            small.plugins,
            large.plugins,
            drop * 100.0,
            (large.store.cpu_us / small.store.cpu_us - 1.0) * 100.0
        );
    }
}
