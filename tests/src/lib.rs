//! End-to-end harness: the real `plugstore-server` and `plugstore` binaries as separate
//! processes, each test with its own store (fresh data directory, free loopback port) and its
//! own CLI homes, so nothing touches the user's configuration and tests run in parallel.
//!
//! The binaries are found next to the test executable: `cargo test --workspace` builds every
//! workspace binary before it runs tests. `cargo test -p plugstore-e2e` alone does not rebuild
//! them; run `cargo build --workspace` first, or it tests stale binaries.

use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Longest wait for a started store to answer `/readyz`.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a single CLI command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Paths of the workspace binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `plugstore-server`.
    pub server: PathBuf,
    /// `plugstore`.
    pub cli: PathBuf,
    /// `plugstore-scanner`.
    pub scanner: PathBuf,
}

/// Finds the binaries in the target directory of the running test executable.
///
/// # Panics
/// When either is missing, with the command that builds them.
pub fn binaries() -> Binaries {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/
    let deps = exe.parent().expect("the test executable's directory");
    let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("the target profile directory")
    } else {
        deps
    };
    let find = |name: &str| {
        let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        assert!(
            path.is_file(),
            "{} is missing: run `cargo build --workspace` first (or `cargo test --workspace`, which builds every binary)",
            path.display()
        );
        path
    };
    Binaries {
        server: find("plugstore-server"),
        cli: find("plugstore"),
        scanner: find("plugstore-scanner"),
    }
}

/// Removes every `PLUGSTORE_*` variable, so the test runner's environment cannot configure
/// the processes under test.
pub fn without_plugstore_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PLUGSTORE_") {
            command.env_remove(name);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `/readyz` until the store answers, the child exits, or the timeout passes.
fn wait_ready(child: &mut Child, url: &str) -> bool {
    let Ok(client) = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    let started = Instant::now();
    while started.elapsed() < SERVER_START_TIMEOUT {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(response) = client.get(format!("{url}/readyz")).send()
            && response.status().is_success()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A running store in a temporary directory; killed when dropped.
pub struct Store {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    dir: TempDir,
}

impl Store {
    /// Starts `plugstore-server` with no configuration in a fresh directory and waits until
    /// it is ready.
    ///
    /// # Panics
    /// When it does not become ready within [`SERVER_START_TIMEOUT`]; the server's log is
    /// part of the message.
    pub fn start(binaries: &Binaries) -> Self {
        Self::start_with_config(binaries, None)
    }

    /// Like [`Store::start`], with `config` (TOML) as the server's `--config` file.
    ///
    /// # Panics
    /// As [`Store::start`].
    pub fn start_with_config(binaries: &Binaries, config: Option<&str>) -> Self {
        Self::start_with(binaries, config, &[])
    }

    /// Like [`Store::start`], with `env` (`PLUGSTORE_*` settings) in the server's environment.
    ///
    /// # Panics
    /// As [`Store::start`].
    pub fn start_with_env(binaries: &Binaries, env: &[(&str, &str)]) -> Self {
        Self::start_with(binaries, None, env)
    }

    fn start_with(binaries: &Binaries, config: Option<&str>, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config_path = dir.path().join("plugstore.toml");
        if let Some(config) = config {
            std::fs::write(&config_path, config).expect("the server configuration");
        }
        let mut last_log = String::new();
        // A port found free can be taken by someone else before the server binds it.
        for _ in 0..3 {
            let port = free_port();
            let url = format!("http://127.0.0.1:{port}");
            let log_path = dir.path().join(format!("server-{port}.log"));
            let log = File::create(&log_path).expect("the server log file");
            let mut command = Command::new(&binaries.server);
            without_plugstore_env(&mut command);
            // The store scans every version by default; tests of signing and publishing set
            // it to publish at once, tests of the scan pipeline choose their own policy.
            if !config.is_some_and(|config| config.contains("[scan]")) {
                command.env("PLUGSTORE_SCAN_POLICY", "publish");
            }
            if config.is_some() {
                command.arg("--config").arg(&config_path);
            }
            command.envs(env.iter().copied());
            let mut child = command
                .current_dir(dir.path())
                .args(["--bind", &format!("127.0.0.1:{port}")])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("the server log file"))
                .stderr(log)
                .spawn()
                .expect("starting plugstore-server");
            if wait_ready(&mut child, &url) {
                return Self { child, url, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!(
            "plugstore-server did not become ready within {SERVER_START_TIMEOUT:?}; its log:\n{last_log}"
        );
    }

    /// A client for reading the API directly.
    pub fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client")
    }

    /// `GET <url><path>` as JSON, asserting success.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self
            .http()
            .get(format!("{}{path}", self.url))
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let body = response.text().unwrap_or_default();
        assert!(status.is_success(), "GET {path}: {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// `GET <url>` as bytes, asserting success.
    pub fn get_bytes(&self, url: &str) -> Vec<u8> {
        let response = self
            .http()
            .get(url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        response.bytes().expect("the body").to_vec()
    }

    /// The store's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One user's machine: a `plugstore` with its own HOME and config directory.
pub struct Cli {
    bin: PathBuf,
    registry: String,
    home: TempDir,
}

/// The outcome of one CLI run.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub args: Vec<String>,
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts success; returns standard output.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts failure; returns standard error.
    #[track_caller]
    pub fn failed(&self) -> &str {
        assert!(
            !self.status.success(),
            "`{}` succeeded but should have failed:\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.stdout,
            self.stderr
        );
        &self.stderr
    }

    /// Standard output as JSON (for `--json`), asserting success.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        let stdout = self.ok();
        serde_json::from_str(stdout).unwrap_or_else(|e| {
            panic!("`{}` printed no JSON ({e}):\n{stdout}", self.args.join(" "))
        })
    }
}

impl Cli {
    /// A CLI for `store` with a fresh home.
    pub fn new(binaries: &Binaries, store: &Store) -> Self {
        Self {
            bin: binaries.cli.clone(),
            registry: store.url.clone(),
            home: tempfile::tempdir().expect("a temporary home"),
        }
    }

    /// `$HOME` of this user.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `<config dir>/plugstore` of this user.
    pub fn config_dir(&self) -> PathBuf {
        self.home.path().join(".config").join("plugstore")
    }

    /// A directory in this user's home for files the test makes.
    pub fn work_dir(&self) -> PathBuf {
        let dir = self.home.path().join("work");
        std::fs::create_dir_all(&dir).expect("the work directory");
        dir
    }

    /// Runs `plugstore --registry <store> ARGS` with empty standard input.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    /// Runs `plugstore --registry <store> ARGS` with `stdin` as standard input.
    ///
    /// # Panics
    /// When the command runs longer than [`COMMAND_TIMEOUT`] (it is killed first).
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut full: Vec<String> = vec!["--registry".into(), self.registry.clone()];
        full.extend(args.iter().map(|a| (*a).to_owned()));
        self.run_raw(&full, stdin)
    }

    /// Runs `plugstore ARGS` exactly as given (no `--registry`).
    pub fn run_raw(&self, args: &[String], stdin: &str) -> Run {
        let mut command = Command::new(&self.bin);
        without_plugstore_env(&mut command);
        command
            .args(args)
            .current_dir(self.work_dir())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"));
        let label = std::iter::once("plugstore".to_owned())
            .chain(args.iter().cloned())
            .collect();
        self.run_bounded(command, stdin, label)
    }

    /// Runs `command` with `stdin`, killing it after [`COMMAND_TIMEOUT`].
    fn run_bounded(&self, mut command: Command, stdin: &str, label: Vec<String>) -> Run {
        let out_path = self.home.path().join(".stdout");
        let err_path = self.home.path().join(".stderr");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(File::create(&out_path).expect("stdout file"))
            .stderr(File::create(&err_path).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", label.join(" ")));
        if let Some(mut input) = child.stdin.take() {
            // A command that does not read its input may exit first; that is not an error.
            let _ = input.write_all(stdin.as_bytes());
        }
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for the command") {
                break status;
            }
            if started.elapsed() > COMMAND_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{}` ran longer than {COMMAND_TIMEOUT:?}", label.join(" "));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            args: label,
            status,
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        }
    }

    /// Runs a `sh` script in the work directory as this user, with `plugstore` on `PATH` and
    /// `PLUGSTORE_REGISTRY` set, as a publisher following the guide would.
    pub fn run_script(&self, script: &str) -> Run {
        let bin_dir = self.bin.parent().expect("the binaries' directory");
        let path = std::env::join_paths(std::iter::once(bin_dir.to_owned()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("a PATH");
        let mut command = Command::new("sh");
        without_plugstore_env(&mut command);
        command
            .args(["-euc", script])
            .current_dir(self.work_dir())
            .env("PATH", path)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("PLUGSTORE_REGISTRY", &self.registry);
        self.run_bounded(command, "", vec!["sh -euc".into(), script.to_owned()])
    }

    /// Registers `username` with `password`, then logs in (a session).
    pub fn register_and_login(&self, username: &str, password: &str) {
        self.run_with_stdin(
            &[
                "register",
                "--username",
                username,
                "--email",
                &format!("{username}@example.org"),
            ],
            &format!("{password}\n"),
        )
        .ok();
        self.run_with_stdin(&["login", "--username", username], &format!("{password}\n"))
            .ok();
    }
}

/// The manifest of a tiny WASM plugin.
pub fn manifest(id: &str, version: &str) -> String {
    format!(
        "format = 1\n\n[plugin]\nid = \"{id}\"\nversion = \"{version}\"\nkind = \"wasm\"\nentry = \"plugin.wasm\"\n\
         targets = [\"any\"]\ndescription = \"Says hello\"\ncapabilities = [\"log\"]\n\n[host]\ncompatibility = \">=1.0.0\"\n"
    )
}

/// Writes a plugin directory (`plugin.toml` and an 8-byte WASM module) under `parent`.
pub fn plugin_dir(parent: &Path, dir_name: &str, id: &str, version: &str) -> PathBuf {
    let dir = parent.join(dir_name);
    std::fs::create_dir_all(&dir).expect("the plugin directory");
    std::fs::write(dir.join("plugin.toml"), manifest(id, version)).expect("plugin.toml");
    std::fs::write(dir.join("plugin.wasm"), b"\0asm\x01\0\0\0").expect("plugin.wasm");
    dir
}

/// The permission bits of a file (Unix).
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Creates a reviewer with the operator command, in the running store's data directory, and
/// signs them in; returns their access token.
pub fn reviewer_token(bins: &Binaries, store: &Store, password: &str) -> String {
    let mut command = Command::new(&bins.server);
    without_plugstore_env(&mut command);
    let mut child = command
        .current_dir(store.dir())
        .args([
            "admin",
            "create-user",
            "--username",
            "rita",
            "--email",
            "rita@example.org",
            "--role",
            "reviewer",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{password}\n").as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login: serde_json::Value = store
        .http()
        .post(format!("{}/api/v1/auth/login", store.url))
        .json(&serde_json::json!({"username": "rita", "password": password}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    login["access_token"].as_str().unwrap().to_owned()
}
