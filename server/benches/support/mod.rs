//! What the server's benchmarks share: child processes that are stopped on drop, free ports,
//! settings from the environment, waiting for a URL, and an nginx of our own as a baseline.

#![allow(dead_code, reason = "each benchmark uses a different part")]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// A child process, stopped and reaped when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    /// SIGTERM first, so a process with workers (nginx) stops them too; a SIGKILL of the
    /// master would leave its workers running. SIGKILL after 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A numeric setting from the environment, or its default.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `url` with curl until it answers 2xx, for at most 60 s.
pub fn wait_for(url: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} did not come up");
}

/// Starts `plugstore-server` (`binary`) on `port` with its data in `data`, with `env`
/// (`PLUGSTORE_*` settings) added. It logs at the store's default level (`info`, what
/// operators run: every request then gets a span), or at BENCH_LOG_LEVEL when set; the log
/// itself is discarded.
pub fn start_store(
    binary: &str,
    dir: &Path,
    data: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> Process {
    let child = Command::new(binary)
        .current_dir(dir)
        .args([
            "--data-dir",
            &data.display().to_string(),
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .envs(std::env::var("BENCH_LOG_LEVEL").map(|level| ("PLUGSTORE_LOG_LEVEL", level)))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("plugstore-server");
    Process(child)
}

/// Starts nginx on `port`, serving `root/www`, with its own configuration, pid and temp files
/// under `root` (the system nginx is left alone).
pub fn start_nginx(root: &Path, port: u16) -> Process {
    let conf = root.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;\n\
               client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp; uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;\n\
               server {{ listen 127.0.0.1:{port}; root {dir}/www; }} }}\n",
            dir = root.display()
        ),
    )
    .expect("nginx.conf");
    std::fs::create_dir_all(root.join("tmp")).expect("tmp");
    let child = Command::new("nginx")
        .args([
            "-p",
            &root.display().to_string(),
            "-c",
            &conf.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (apt-get install nginx-light)");
    Process(child)
}

/// CPU time (user + system, all threads) the processes `pids` and their children have used
/// so far, in seconds: how much work a server did, whatever else the machine was doing.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    // Asked once: `cpu_seconds` runs around every wrk run.
    static TICKS_PER_SECOND: LazyLock<f64> = LazyLock::new(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let mut ticks = 0u64;
    let mut pending: Vec<u32> = pids.to_vec();
    while let Some(pid) = pending.pop() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) start at the state, field 3;
        // utime and stime are fields 14 and 15.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        ticks += fields
            .get(11..13)
            .unwrap_or_default()
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .sum::<u64>();
        // nginx serves from worker processes, children of the one started.
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let children = std::fs::read_to_string(task.path().join("children"));
                pending.extend(
                    children
                        .unwrap_or_default()
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    ticks as f64 / *TICKS_PER_SECOND
}
