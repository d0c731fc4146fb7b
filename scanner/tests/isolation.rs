//! The analysis child under its resource limits: the real `plugstore-scanner analyze`
//! started through `isolation::run_confined`, misbehaving through its test hooks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

mod common;

use common::manifest_text;
use plugstore_format::package::PackageBuilder;
use plugstore_scanner::isolation::{
    AnalysisLimits, AnalysisOutcome, ChildExit, TEST_HOOKS_ENV, classify, run_confined,
};

/// The first ```wat block of the plugin ABI page: a plugin that scans clean.
fn clean_wasm() -> Vec<u8> {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/plugin-abi.md");
    let text = std::fs::read_to_string(page).unwrap();
    let start = text.find("```wat\n").unwrap() + "```wat\n".len();
    let end = start + text[start..].find("```").unwrap();
    wat::parse_str(&text[start..end]).unwrap()
}

/// Writes a clean package into `dir`; returns its path.
fn clean_package(dir: &Path) -> PathBuf {
    let manifest = manifest_text("wasm", "plugin.wasm", &["any"], &["log"]);
    let bytes = PackageBuilder::from_files_with_modes([
        ("plugin.toml".to_owned(), manifest.into_bytes(), false),
        ("plugin.wasm".to_owned(), clean_wasm(), false),
    ])
    .unwrap()
    .to_vec()
    .unwrap();
    let path = dir.join("package.tar");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn analyze(package: &Path, hook: Option<&str>, hooks_enabled: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"));
    command.arg("analyze").arg(package);
    if let Some(hook) = hook {
        command.arg("--test-hook").arg(hook);
    }
    if hooks_enabled {
        // `confine` clears the environment and forwards only this variable, from the parent.
        // SAFETY: tests of this file that read the environment all set the same value.
        unsafe { std::env::set_var(TEST_HOOKS_ENV, "1") };
    }
    command
}

/// Generous enough that a debug build on a loaded two-core CI machine finishes a clean
/// analysis (compiling the module with Cranelift) well inside them; the CPU test tightens
/// `cpu` itself.
const LIMITS: AnalysisLimits = AnalysisLimits {
    cpu: Duration::from_secs(30),
    memory_bytes: 512 << 20,
    wall_timeout: Duration::from_secs(20),
};

fn run(
    command: Command,
    limits: &AnalysisLimits,
) -> (AnalysisOutcome, plugstore_scanner::isolation::ChildRun) {
    let run = run_confined(command, limits, &AtomicBool::new(false)).unwrap();
    (classify(&run, limits), run)
}

#[test]
fn a_clean_package_gives_a_report_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let package = clean_package(dir.path());
    let (outcome, run) = run(analyze(&package, None, false), &LIMITS);
    let AnalysisOutcome::Report(report) = outcome else {
        panic!("{outcome:?}: {}", String::from_utf8_lossy(&run.stderr));
    };
    assert!(
        report.max_severity() <= Some(plugstore_scanner::Severity::Info),
        "{report:#?}"
    );
    assert_eq!(run.exit, ChildExit::Exited(0));
    #[cfg(unix)]
    {
        let usage = run.usage.expect("wait4 reports usage");
        assert!(usage.max_rss_kib > 0);
    }
}

#[cfg(unix)]
#[test]
fn a_child_that_burns_cpu_is_killed_at_its_cpu_limit() {
    let dir = tempfile::tempdir().unwrap();
    let package = clean_package(dir.path());
    let limits = AnalysisLimits {
        cpu: Duration::from_secs(1),
        ..LIMITS
    };
    let (outcome, run) = run(analyze(&package, Some("burn-cpu"), true), &limits);
    assert!(
        matches!(outcome, AnalysisOutcome::TimedOut(ref m) if m.contains("CPU-time limit")),
        "{outcome:?}"
    );
    assert!(matches!(run.exit, ChildExit::Signaled(_)), "{:?}", run.exit);
    // Killed by the kernel at about a second of CPU, long before the wall-clock timeout.
    assert!(run.wall < Duration::from_secs(10), "{:?}", run.wall);
}

#[test]
fn a_child_that_sleeps_is_killed_at_the_wall_clock_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let package = clean_package(dir.path());
    let limits = AnalysisLimits {
        wall_timeout: Duration::from_millis(500),
        ..LIMITS
    };
    let (outcome, run) = run(analyze(&package, Some("sleep-ms=60000"), true), &limits);
    assert_eq!(run.exit, ChildExit::WallTimeout);
    assert!(
        matches!(outcome, AnalysisOutcome::TimedOut(_)),
        "{outcome:?}"
    );
    assert!(run.wall < Duration::from_secs(10), "{:?}", run.wall);
}

#[cfg(unix)]
#[test]
fn a_child_that_allocates_too_much_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let package = clean_package(dir.path());
    let (outcome, run) = run(analyze(&package, Some("allocate-gib=4"), true), &LIMITS);
    assert!(
        matches!(outcome, AnalysisOutcome::Crashed(ref m) if m.contains("memory limit")),
        "{outcome:?}"
    );
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("memory allocation"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The address-space limit stopped it far below 4 GiB.
    let usage = run.usage.unwrap();
    assert!(usage.max_rss_kib < 600 * 1024, "{usage:?}");
}

#[test]
fn a_panicking_child_is_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let package = clean_package(dir.path());
    let (outcome, _) = run(analyze(&package, Some("panic"), true), &LIMITS);
    assert!(
        matches!(outcome, AnalysisOutcome::Crashed(ref m) if m.contains("status 101")),
        "{outcome:?}"
    );
}

#[test]
fn an_unreadable_package_is_a_failed_attempt_not_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.tar");
    let (outcome, _) = run(analyze(&missing, None, false), &LIMITS);
    assert!(
        matches!(outcome, AnalysisOutcome::Failed(ref m) if m.contains("missing.tar")),
        "{outcome:?}"
    );
}

#[test]
fn test_hooks_need_the_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let package = clean_package(dir.path());
    // Without the variable in the child's environment, the hook is refused.
    let output = Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"))
        .args(["analyze", "--test-hook", "burn-cpu"])
        .arg(&package)
        .env_remove(TEST_HOOKS_ENV)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("test hooks are disabled"));
}

#[test]
fn cancelling_kills_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let package = clean_package(dir.path());
    let cancel = AtomicBool::new(true);
    let run = run_confined(
        analyze(&package, Some("sleep-ms=60000"), true),
        &LIMITS,
        &cancel,
    )
    .unwrap();
    assert_eq!(run.exit, ChildExit::Cancelled);
    assert!(matches!(
        classify(&run, &LIMITS),
        AnalysisOutcome::Cancelled
    ));
}

/// Runs the clean package with an `escape-*` hook under the worker's limits; the attempt must
/// not stop the analysis, and the child must say the system-call filter refused it (`EPERM`).
#[cfg(target_os = "linux")]
fn analyze_with_escape(hook: &str, attempts: &[&str]) -> String {
    analyze_with_escape_refused_as(hook, attempts, "Operation not permitted")
}

/// As [`analyze_with_escape`], refused with `error` (the text of an `io::Error`).
#[cfg(target_os = "linux")]
fn analyze_with_escape_refused_as(hook: &str, attempts: &[&str], error: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let package = clean_package(dir.path());
    let (outcome, run) = run(analyze(&package, Some(hook), true), &LIMITS);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(
        matches!(outcome, AnalysisOutcome::Report(_)),
        "{outcome:?}: {stderr}"
    );
    for attempt in attempts {
        assert!(
            stderr.contains(&format!("escape {attempt}: refused: {error}")),
            "{attempt}: {stderr}"
        );
    }
    stderr
}

#[cfg(target_os = "linux")]
#[test]
fn the_analysis_child_cannot_reach_the_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    analyze_with_escape(&format!("escape-connect={port}"), &["connect"]);
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the child connected: {accepted:?}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn the_analysis_child_cannot_start_a_program() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("escaped");
    analyze_with_escape(&format!("escape-spawn={}", marker.display()), &["spawn"]);
    assert!(
        !marker.exists(),
        "a program started by the child wrote its marker"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn the_analysis_child_cannot_change_the_accounts_files() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "the store's data").unwrap();
    analyze_with_escape(
        &format!("escape-write={}", precious.display()),
        &["truncate", "append", "rename", "delete", "create"],
    );
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "the store's data"
    );
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["precious.txt"], "nothing created or renamed");
}

#[cfg(target_os = "linux")]
#[test]
fn the_analysis_child_cannot_signal_other_processes() {
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();
    analyze_with_escape(&format!("escape-kill={}", bystander.id()), &["kill"]);
    let still_running = bystander.try_wait().unwrap().is_none();
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    assert!(still_running, "the child killed another process");
}

#[cfg(target_os = "linux")]
#[test]
fn the_analysis_child_cannot_have_the_kernel_signal_other_processes() {
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();
    analyze_with_escape(&format!("escape-sigio={}", bystander.id()), &["sigio"]);
    // SIGIO would have ended it; give the kernel's delivery a moment.
    std::thread::sleep(Duration::from_millis(200));
    let still_running = bystander.try_wait().unwrap().is_none();
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    assert!(
        still_running,
        "the child had the kernel signal another process"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn the_analysis_child_cannot_change_another_processs_limits() {
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();
    let cpu_limit = || {
        std::fs::read_to_string(format!("/proc/{}/limits", bystander.id()))
            .unwrap()
            .lines()
            .find(|line| line.starts_with("Max cpu time"))
            .unwrap()
            .to_owned()
    };
    let before = cpu_limit();
    analyze_with_escape(&format!("escape-prlimit={}", bystander.id()), &["prlimit"]);
    let after = cpu_limit();
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    assert_eq!(
        after, before,
        "the child changed another process's CPU limit"
    );
}

/// The child reads nothing after it confines itself: not the account's files, not another
/// process's environment (where a worker's token or a store's database password may be).
/// The kernel's Landlock ABI version; 0 when it has no Landlock (too old, or not enabled).
#[cfg(target_os = "linux")]
fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with this flag the call takes no ruleset and returns the ABI version.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi.max(0)
}

#[cfg(target_os = "linux")]
#[test]
fn the_analysis_child_cannot_read_the_accounts_files() {
    const SECRET: &str = "hunter2-the-store-signing-key";
    if landlock_abi() == 0 {
        // The child then warns and carries on (see `confinement`); nothing to test here.
        eprintln!("skipped: this kernel has no Landlock");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret.key");
    std::fs::write(&secret_file, SECRET).unwrap();
    let stderr = analyze_with_escape_refused_as(
        &format!("escape-read={}", secret_file.display()),
        &["read"],
        "Permission denied",
    );
    assert!(!stderr.contains(SECRET), "{stderr}");

    let mut bystander = Command::new("sleep")
        .arg("60")
        .env("PLUGSTORE_WORKER_TOKEN", SECRET)
        .spawn()
        .unwrap();
    let environ = format!("/proc/{}/environ", bystander.id());
    let stderr = analyze_with_escape_refused_as(
        &format!("escape-read={environ}"),
        &["read"],
        "Permission denied",
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    assert!(!stderr.contains(SECRET), "{stderr}");
}

/// What the worker runs at start: an analysis child that only confines itself.
#[test]
fn the_confinement_check_passes_where_the_analysis_child_confines_itself() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"));
    command.arg("check-confinement");
    let run = run_confined(command, &LIMITS, &AtomicBool::new(false)).unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.exit, ChildExit::Exited(0), "{stderr}");
    // Both layers are in force here: nothing to warn about.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if landlock_abi() > 0 {
        assert!(stderr.is_empty(), "{stderr}");
    }
}
