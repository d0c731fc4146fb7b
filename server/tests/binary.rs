//! The real `plugstore-server` binary: the one-command store, operator subcommands, TLS, and
//! graceful shutdown.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_plugstore-server");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command running in `dir` with no PLUGSTORE_* settings inherited from the test runner.
fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("PLUGSTORE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Sends SIGTERM and checks that the server exits successfully well within its 30 s drain
/// grace period, so that exiting only because the grace ran out fails.
fn stop_cleanly(server: &mut Server) {
    sigterm(&server.child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// Starts the store in `dir` on `port`, serving plain HTTP on `threads` threads, with the
/// `PLUGSTORE_*` settings in `env` added.
fn start_on_threads(dir: &Path, port: u16, threads: usize, env: &[(&str, &str)]) -> Server {
    let child = command(dir)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("PLUGSTORE_HTTP_THREADS", threads.to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server { child }
}

/// `count` clients, each keeping one connection of its own open between requests.
fn clients_with_own_connections(count: usize) -> Vec<reqwest::Client> {
    (0..count)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap()
        })
        .collect()
}

async fn wait_ready(client: &reqwest::Client, url: &str) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{url}/readyz")).send().await
            && response.status() == 200
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "store not ready after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn one_command_store_starts_with_defaults_and_shuts_down_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let child = command(dir.path())
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        // A few lines of start-up log; the pipe holds far more.
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server { child };
    let client = reqwest::Client::new();
    let ready_after = wait_ready(&client, &url).await;
    eprintln!(
        "store ready {:?} after spawn ({ready_after:?} polling)",
        started.elapsed()
    );

    // Everything lives under ./plugstore-data, keys private.
    let data = dir.path().join("plugstore-data");
    assert!(data.join("plugstore.db").exists());
    assert!(data.join("blobs").is_dir());
    let keys: Vec<_> = std::fs::read_dir(data.join("keys/jwt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&keys[0]).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let journal: String = {
        let db = plugstore_server::db::Database::connect(
            &format!("sqlite://{}", data.join("plugstore.db").display()),
            1,
        )
        .await
        .unwrap();
        sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    assert_eq!(journal, "wal");

    // Create the first admin with the subcommand, then sign in through the running server.
    let mut create = command(dir.path())
        .args([
            "admin",
            "create-user",
            "--username",
            "root-admin",
            "--email",
            "root@example.org",
            "--role",
            "admin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    create
        .stdin
        .take()
        .unwrap()
        .write_all(b"a very long admin password\n")
        .unwrap();
    let created = create.wait_with_output().unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    let login = client
        .post(format!("{url}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "root-admin", "password": "a very long admin password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let users = client
        .get(format!("{url}/api/v1/admin/users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200);

    // A rotation by the operator command is picked up by the running server (within 30 s).
    let rotated = command(dir.path())
        .args(["admin", "rotate-jwt-key"])
        .output()
        .unwrap();
    assert!(rotated.status.success());
    assert_eq!(
        client
            .get(format!("{url}/api/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // SIGTERM: the server drains and exits successfully.
    stop_cleanly(&mut server);
    let mut stdout = String::new();
    std::io::Read::read_to_string(server.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(
        stdout.contains(&format!("plugstore is running at {url}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("admin create-user"),
        "the first start explains how to create an admin: {stdout}"
    );
    // Logs to a pipe (Docker, systemd) are plain text, without a terminal's colour codes.
    let mut stderr = String::new();
    std::io::Read::read_to_string(server.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("INFO") && stderr.contains("serving HTTP"),
        "{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "{stderr}");
}

/// Asks `check` every 20 ms until it answers, for at most `limit`; `None` if it never did.
async fn poll_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(answer) = check() {
            return Some(answer);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fields of `/proc/{pid}/stat` after the command name (which may hold spaces), starting
/// with the state; `None` once the process is gone.
#[cfg(target_os = "linux")]
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(") ")?.1;
    Some(after_name.split(' ').map(str::to_owned).collect())
}

/// The processes whose parent is `parent`.
#[cfg(target_os = "linux")]
fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let ppid = stat_fields(pid).and_then(|fields| fields.get(1)?.parse::<u32>().ok());
            ppid == Some(parent)
        })
        .collect()
}

/// Whether `pid` is still running (a zombie waiting to be reaped has ended).
#[cfg(target_os = "linux")]
fn running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

/// A store killed outright cannot stop its embedded scan worker; the worker notices and ends
/// on its own instead of polling a store that is gone, forever.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_embedded_worker_stays_up_and_ends_when_the_store_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start_on_threads(dir.path(), port, 1, &[]);
    wait_ready(&reqwest::Client::new(), &url).await;
    let store = server.child.id();
    let worker = poll_until(Duration::from_secs(30), || {
        children_of(store).first().copied()
    })
    .await
    .expect("the store started no worker");
    // A worker that took its store for gone would exit and be restarted within 3 s (the
    // store waits 1 s, then 2 s), under another pid.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        running(worker),
        "the worker {worker} exited while its store ran"
    );
    assert_eq!(children_of(store), vec![worker], "the worker was restarted");

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let ended = poll_until(Duration::from_secs(30), || (!running(worker)).then_some(())).await;
    assert!(
        ended.is_some(),
        "the worker {worker} outlived its store by 30 s"
    );
}

#[tokio::test]
async fn http_threads_share_the_connections_and_stop_together() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start_on_threads(dir.path(), port, 3, &[]);
    wait_ready(&reqwest::Client::new(), &url).await;

    // A thread names itself once it runs, and the store answers as soon as one thread
    // serves, so the names are awaited (briefly) rather than read once.
    #[cfg(target_os = "linux")]
    {
        let http_thread_names = || {
            let mut names: Vec<String> =
                std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
                    .unwrap()
                    .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                    .map(|name| name.trim().to_owned())
                    .filter(|name| name.starts_with("http-"))
                    .collect();
            names.sort();
            names
        };
        let all = ["http-0", "http-1", "http-2"];
        let names = poll_until(Duration::from_secs(10), || {
            Some(http_thread_names()).filter(|names| names == &all)
        })
        .await
        .unwrap_or_else(http_thread_names);
        assert_eq!(names, all);
    }

    // Many keep-alive connections at once, each asking several times: every request is
    // answered whichever thread accepted its connection.
    let clients = clients_with_own_connections(12);
    let answered = futures_util::future::join_all(clients.iter().map(|client| async {
        let mut ok = 0;
        for _ in 0..5 {
            let response = client.get(format!("{url}/healthz")).send().await.unwrap();
            ok += usize::from(response.status() == 200);
        }
        ok
    }))
    .await;
    assert_eq!(answered, vec![5; 12]);

    // The connections are still open and idle: shutting down closes them rather than waiting
    // out the grace period, on every thread.
    stop_cleanly(&mut server);
    drop(clients);
}

/// With PostgreSQL, a pooled connection opened by one HTTP thread's runtime is used by the
/// others and by the background jobs on the main runtime: many checks for plugins the
/// catalogue has not cached (one query each), on both threads at once, must all be answered,
/// and the store must still stop cleanly.
#[tokio::test]
async fn http_threads_share_the_postgres_pool() {
    let Some(admin_url) = std::env::var("PLUGSTORE_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        assert_ne!(
            std::env::var("PLUGSTORE_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "PLUGSTORE_REQUIRE_SERVICES=1 but PLUGSTORE_TEST_POSTGRES_URL is not set; run the tests through scripts/test"
        );
        eprintln!(
            "skipping: PLUGSTORE_TEST_POSTGRES_URL is not set (scripts/test provisions PostgreSQL)"
        );
        return;
    };
    let name = format!("plugstore_bin_{}", uuid::Uuid::new_v4().simple());
    let admin = plugstore_server::db::Database::connect(&admin_url, 1)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin.pool)
        .await
        .unwrap();
    let base = admin_url.split('?').next().unwrap();
    let database_url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start_on_threads(
        dir.path(),
        port,
        2,
        &[("PLUGSTORE_DATABASE_URL", &database_url)],
    );
    wait_ready(&reqwest::Client::new(), &url).await;

    let clients = clients_with_own_connections(8);
    let checks = clients.iter().enumerate().map(|(client_no, client)| {
        let url = &url;
        async move {
            let mut answered = 0;
            for round in 0..10 {
                // Names nobody asked for before: every one is a database query.
                let installed: Vec<serde_json::Value> = (0..5)
                    .map(|i| {
                        serde_json::json!({"id": format!("acme/p{client_no}-{round}-{i}"),
                            "version": "1.0.0", "sha256": "a".repeat(64)})
                    })
                    .collect();
                let body = serde_json::json!({
                    "host": {"app_id": "org.example.host", "version": "1.0.0", "platform": "linux-x86_64"},
                    "install_id": "install-0001",
                    "installed": installed,
                });
                let response = client
                    .post(format!("{url}/api/v1/updates/check"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let answer: serde_json::Value = response.json().await.unwrap();
                assert_eq!(answer["updates"], serde_json::json!([]));
                answered += 1;
                let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
                assert_eq!(ready.status(), 200);
            }
            answered
        }
    });
    assert_eq!(futures_util::future::join_all(checks).await, vec![10; 8]);

    stop_cleanly(&mut server);
    drop(clients);
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin.pool)
        .await
        .unwrap();
}

#[test]
fn config_show_prints_sources_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("store.toml"),
        "[http]\nrequest_timeout_secs = 12\n",
    )
    .unwrap();
    let output = command(dir.path())
        .args([
            "--config",
            "store.toml",
            "--bind",
            "127.0.0.1:9999",
            "config",
            "show",
        ])
        .env("PLUGSTORE_BLOBS_S3_SECRET_ACCESS_KEY", "do-not-print-me")
        .env(
            "PLUGSTORE_DATABASE_URL",
            "postgres://app:hunter2@db.internal/plugstore",
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(
        shown.contains("http.request_timeout_secs = 12  # file store.toml"),
        "{shown}"
    );
    assert!(
        shown.contains("http.bind = \"127.0.0.1:9999\"  # flag --bind"),
        "{shown}"
    );
    assert!(
        shown.contains("# env PLUGSTORE_BLOBS_S3_SECRET_ACCESS_KEY"),
        "{shown}"
    );
    assert!(
        !shown.contains("do-not-print-me") && !shown.contains("hunter2"),
        "{shown}"
    );

    // A misspelt variable is pointed out but does not stop the store.
    let typo = command(dir.path())
        .args(["config", "show"])
        .env("PLUGSTORE_HTTP_BIN", "x")
        .output()
        .unwrap();
    assert!(typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("ignoring PLUGSTORE_HTTP_BIN"));
    // A bad value names the key and where it came from.
    let bad = command(dir.path())
        .args(["config", "show"])
        .env("PLUGSTORE_HTTP_BIND", "nowhere")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("http.bind") && stderr.contains("env PLUGSTORE_HTTP_BIND"),
        "{stderr}"
    );
}

#[test]
fn migrate_subcommand_prepares_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .args(["--data-dir", "state", "migrate"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("up to date (sqlite)"));
    assert!(dir.path().join("state/plugstore.db").exists());
}

#[test]
fn collect_blobs_deletes_only_old_unnamed_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let migrated = command(dir.path())
        .args(["--data-dir", "state", "migrate"])
        .output()
        .unwrap();
    assert!(migrated.status.success());
    // Blobs as the disk store lays them out, named by no row: one written two days ago, one
    // just now.
    let mut paths = Vec::new();
    for (text, age_hours) in [("left two days ago", 48), ("being recorded", 0)] {
        let digest = plugstore_server::blobs::BlobDigest::of(text.as_bytes()).to_hex();
        let shard = dir.path().join("state/blobs/sha256").join(&digest[..2]);
        std::fs::create_dir_all(&shard).unwrap();
        let path = shard.join(&digest);
        std::fs::write(&path, text).unwrap();
        let written = std::time::SystemTime::now() - Duration::from_secs(age_hours * 3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(written)
            .unwrap();
        paths.push(path);
    }
    let collect = |extra: &[&str]| {
        let output = command(dir.path())
            .args(["--data-dir", "state", "admin", "collect-blobs"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let dry = collect(&["--dry-run"]);
    assert!(
        dry.contains("2 blobs: 0 referenced, 1 younger than 24 h; would delete 1 (17 bytes)"),
        "{dry}"
    );
    assert!(paths[0].exists());
    let done = collect(&[]);
    assert!(done.contains("deleted 1 (17 bytes)"), "{done}");
    assert!(!paths[0].exists());
    assert!(paths[1].exists());
}

/// A client that asks for a blob and then reads nothing gives its download slot back after
/// `http.send_timeout_secs`: until then the only slot is taken, afterwards others download.
#[tokio::test]
async fn a_client_that_stops_reading_gives_its_download_slot_back() {
    use std::io::Write as _;

    let dir = tempfile::tempdir().unwrap();
    // More than loopback's socket buffers hold, so the answer waits for the reader.
    let blob = vec![7u8; 48 * 1024 * 1024];
    let digest = plugstore_server::blobs::BlobDigest::of(&blob).to_hex();
    let shard = dir
        .path()
        .join("plugstore-data/blobs/sha256")
        .join(&digest[..2]);
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(shard.join(&digest), &blob).unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = start_on_threads(
        dir.path(),
        port,
        1,
        &[
            ("PLUGSTORE_HTTP_MAX_CONCURRENT_DOWNLOADS", "1"),
            ("PLUGSTORE_HTTP_SEND_TIMEOUT_SECS", "1"),
        ],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &url).await;
    let path = format!("/blobs/sha256/{digest}");
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stalled, "GET {path} HTTP/1.1\r\nHost: store\r\n\r\n").unwrap();
    let download = || async {
        client
            .get(format!("{url}{path}"))
            .send()
            .await
            .unwrap()
            .status()
    };
    // Time for the store to start the answer and fill the socket's buffers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The slot is held while the client stalls ...
    let mut statuses = vec![download().await];
    let started = Instant::now();
    // ... and given back once a write has waited a second; 503s until then.
    while *statuses.last().unwrap() != 200 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        statuses.push(download().await);
    }
    assert_eq!(
        statuses.first().map(|s| s.as_u16()),
        Some(503),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().map(|s| s.as_u16()),
        Some(200),
        "{statuses:?}"
    );
    drop(stalled);
}

/// An upload the store refuses before reading its body (here: it has no token) is answered
/// with the problem, not a reset, although the client is still sending far more than the
/// socket buffers hold when the answer is written (see `plugstore_server::lingering_close`).
async fn assert_an_early_refusal_reaches_the_client(client: &reqwest::Client, url: &str) {
    let upload = vec![0u8; 64 * 1024 * 1024];
    let response = client
        .put(format!("{url}/api/v1/plugins/acme/widget/versions/1.0.0"))
        .header("content-type", "application/octet-stream")
        .body(upload)
        .send()
        .await
        .expect("the refusal, not a broken connection");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|kind| kind.ends_with("/unauthorized")),
        "{problem}"
    );
}

#[tokio::test]
async fn an_upload_refused_before_its_body_is_read_gets_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start_on_threads(dir.path(), port, 2, &[]);
    let client = reqwest::Client::new();
    wait_ready(&client, &url).await;
    for _ in 0..3 {
        assert_an_early_refusal_reaches_the_client(&client, &url).await;
    }
    // Connections that linger do not hold up the store's exit.
    stop_cleanly(&mut server);
}

#[tokio::test]
async fn tls_termination_serves_https_to_a_rustls_client() {
    let dir = tempfile::tempdir().unwrap();
    // A throwaway CA and a server certificate for 127.0.0.1.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "plugstore test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    std::fs::write(dir.path().join("cert.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), server_key.serialize_pem()).unwrap();

    let port = free_port();
    let child = command(dir.path())
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("PLUGSTORE_TLS_CERT", "cert.pem")
        .env("PLUGSTORE_TLS_KEY", "key.pem")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server { child };
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}");
    wait_ready(&client, &url).await;
    let response = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_some()
    );
    assert_an_early_refusal_reaches_the_client(&client, &url).await;
    // A client that does not trust the CA is refused by its own verification.
    let untrusting = reqwest::Client::builder().use_rustls_tls().build().unwrap();
    assert!(
        untrusting
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_err()
    );
    // Plain HTTP to the TLS port gets nothing useful.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
    );
}

/// The embedded worker's rule directory and limits file are checked before the store serves,
/// so a broken one stops it with the file's name instead of failing in a restarting child.
#[test]
fn a_broken_scan_rules_dir_or_limits_file_stops_the_store_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("broken.yar"), "rule unfinished { condition: \n").unwrap();
    let output = command(dir.path())
        .args(["--bind", &format!("127.0.0.1:{}", free_port())])
        .env("PLUGSTORE_SCAN_RULES_DIR", &rules)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("scan.rules_dir") && stderr.contains("broken.yar"),
        "{stderr}"
    );

    let limits = dir.path().join("limits.toml");
    std::fs::write(&limits, "[static]\nmax_wasm_sise = 10\n").unwrap();
    let output = command(dir.path())
        .args(["--bind", &format!("127.0.0.1:{}", free_port())])
        .env("PLUGSTORE_SCAN_LIMITS_FILE", &limits)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("scan.limits_file") && stderr.contains("max_wasm_sise"),
        "{stderr}"
    );
}

/// `plugstore-server scanner` is the scanner's own command line.
#[test]
fn the_built_in_scanner_has_the_scanners_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .args(["scanner", "worker", "--help"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("plugstore-server scanner worker"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--rules-dir") && stdout.contains("--limits"),
        "{stdout}"
    );
}
