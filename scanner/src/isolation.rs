//! Running one analysis in a child process with resource limits, and turning how the child
//! ended into an [`AnalysisOutcome`].
//!
//! The worker never parses an untrusted package in its own process: it starts itself again
//! as `plugstore-scanner analyze PKG` (the *analysis child*) and reads the [`ScanReport`] the
//! child prints. The child runs with an empty environment, no standard input, and kernel
//! limits applied between `fork` and `exec` (see [`AnalysisLimits`]); the parent adds a
//! wall-clock deadline and kills the child when it passes. A crash, hang or memory blow-up
//! therefore ends the child, never the worker.
//!
//! The platform-specific part is two functions, `confine` and `wait`:
//! - **Unix**: `setrlimit` for CPU time (`RLIMIT_CPU`), address space (`RLIMIT_AS`), file
//!   size (`RLIMIT_FSIZE`, 0: the child writes no files), open files (`RLIMIT_NOFILE`) and
//!   core dumps (`RLIMIT_CORE`, 0); a session of its own (`setsid`: no controlling
//!   terminal); on Linux the child also gets `SIGKILL` when the worker dies
//!   (`PR_SET_PDEATHSIG`), so a killed worker leaves no analysis running. The child itself
//!   then confines itself further ([`crate::confinement`]: Landlock and seccomp). The child is
//!   reaped with `wait4`, which reports its peak resident size and CPU time.
//! - **Windows**: for now only the wall-clock deadline; no memory or CPU limit and no usage
//!   figures. Job Objects will provide the limits later.
//!
//! How an end maps to an outcome (the worker's policy, documented in the operator guide):
//! a report on standard output with exit status 0 is [`AnalysisOutcome::Report`]; exit
//! status [`EXIT_ANALYSIS_ERROR`] (the child could not do its job: unreadable file, bad
//! arguments) is [`AnalysisOutcome::Failed`], a failed attempt to be retried; the CPU limit
//! or the deadline is [`AnalysisOutcome::TimedOut`]; any other signal, a panic or garbage
//! on standard output is [`AnalysisOutcome::Crashed`]. The worker reports the last two as
//! high-severity findings ([`rules::SCANNER_ANALYSIS_TIMEOUT`],
//! [`rules::SCANNER_ANALYSIS_CRASHED`]) rather than retrying: a package that makes the
//! analyzer hang or blow up does so on every attempt, and a reviewer should look at it.

use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use crate::findings::ScanReport;
#[cfg(doc)]
use crate::rules;

/// Exit status of an analysis child that could not analyse (as opposed to crashing): the
/// attempt failed for a reason outside the package, and is retried.
pub const EXIT_ANALYSIS_ERROR: i32 = 3;

/// Environment variable that enables the analysis child's test hooks (`1`). Never set it in
/// production: the hooks make the child burn CPU, allocate or sleep on purpose.
pub const TEST_HOOKS_ENV: &str = "PLUGSTORE_SCANNER_TEST_HOOKS";

/// Default CPU-time limit of an analysis child (4 minutes). Compiling the module dominates:
/// Cranelift, single-threaded and without optimisations, needs about 70 s of one core of a
/// small cloud VM for esbuild's 12 MB Go-compiled module (its functions are huge), and the
/// limit leaves room for modules a few times that hard.
pub const DEFAULT_CPU_LIMIT: Duration = Duration::from_secs(240);
/// Default address-space limit of an analysis child (8 GiB). It is a backstop against a
/// runaway analyser, not the plugin's memory limit (the dynamic run's store limits are): the
/// address space counts reservations as well as use, and Cranelift compiling esbuild's 12 MB
/// module peaks at 3.2 GiB resident and 5.2 GiB of address space.
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 8 << 30;
/// Default wall-clock timeout of an analysis child: the CPU limit plus room for a loaded host.
pub const DEFAULT_WALL_TIMEOUT: Duration = Duration::from_secs(360);
/// Most open files of an analysis child (its standard streams, the package, the runtime's).
pub const MAX_OPEN_FILES: u64 = 32;
/// Most bytes of standard output kept from an analysis child (reports are bounded well
/// below this).
pub const MAX_REPORT_BYTES: usize = 16 << 20;
/// Most bytes of standard error kept from an analysis child, for error messages.
pub const MAX_STDERR_BYTES: usize = 16 << 10;

/// How often the parent checks a running child.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Resource limits of one analysis child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnalysisLimits {
    /// CPU time, rounded up to whole seconds (`RLIMIT_CPU`).
    pub cpu: Duration,
    /// Address space in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Wall-clock time after which the parent kills the child.
    pub wall_timeout: Duration,
}

impl Default for AnalysisLimits {
    fn default() -> Self {
        Self {
            cpu: DEFAULT_CPU_LIMIT,
            memory_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            wall_timeout: DEFAULT_WALL_TIMEOUT,
        }
    }
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildExit {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it (Unix).
    Signaled(i32),
    /// The parent killed it at the wall-clock deadline.
    WallTimeout,
    /// The parent killed it because the caller cancelled (a lost lease, shutdown).
    Cancelled,
}

/// What the child used, when the platform reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceUsage {
    /// Peak resident set size, in KiB.
    pub max_rss_kib: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// Everything known about a finished child.
#[derive(Debug)]
pub struct ChildRun {
    /// How it ended.
    pub exit: ChildExit,
    /// Standard output, at most [`MAX_REPORT_BYTES`].
    pub stdout: Vec<u8>,
    /// Whether standard output was longer than [`MAX_REPORT_BYTES`].
    pub stdout_truncated: bool,
    /// Standard error, at most [`MAX_STDERR_BYTES`].
    pub stderr: Vec<u8>,
    /// Resource usage (Unix).
    pub usage: Option<ResourceUsage>,
    /// Wall time from start to end.
    pub wall: Duration,
}

/// What an analysis attempt amounts to.
#[derive(Debug)]
pub enum AnalysisOutcome {
    /// The child analysed the package.
    Report(Box<ScanReport>),
    /// The child used up its CPU time or ran past the deadline.
    TimedOut(String),
    /// The child was killed by a signal or its memory limit, panicked, or printed no report.
    Crashed(String),
    /// The child could not analyse for a reason outside the package; retry.
    Failed(String),
    /// The caller cancelled the run.
    Cancelled,
}

/// Applies `limits` to `command` and makes it safe for untrusted input: empty environment
/// (except [`TEST_HOOKS_ENV`] when the parent has it), no standard input, piped output.
pub fn confine(command: &mut Command, limits: &AnalysisLimits) {
    command.env_clear();
    if let Some(hooks) = std::env::var_os(TEST_HOOKS_ENV) {
        command.env(TEST_HOOKS_ENV, hooks);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    platform::confine(command, limits);
}

/// Starts `command` confined by `limits` (see [`confine`]) and waits for it to end, killing
/// it at the wall-clock deadline or when `cancel` becomes true. Blocking.
///
/// # Errors
/// When the child cannot be started or waited for.
pub fn run_confined(
    mut command: Command,
    limits: &AnalysisLimits,
    cancel: &AtomicBool,
) -> io::Result<ChildRun> {
    confine(&mut command, limits);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let stdout = child
        .stdout
        .take()
        .map(|s| read_bounded(s, MAX_REPORT_BYTES));
    let stderr = child
        .stderr
        .take()
        .map(|s| read_bounded(s, MAX_STDERR_BYTES));
    let waited = platform::wait(&mut child, started + limits.wall_timeout, cancel);
    let (exit, usage) = match waited {
        Ok(ended) => ended,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };
    let wall = started.elapsed();
    let join = |reader: Option<thread::JoinHandle<(Vec<u8>, bool)>>| {
        reader
            .and_then(|r| r.join().ok())
            .unwrap_or((Vec::new(), false))
    };
    let (stdout, stdout_truncated) = join(stdout);
    let (stderr, _) = join(stderr);
    Ok(ChildRun {
        exit,
        stdout,
        stdout_truncated,
        stderr,
        usage,
        wall,
    })
}

/// Reads a stream to its end on a thread, keeping at most `max` bytes (the rest is drained,
/// so the child never blocks on a full pipe).
fn read_bounded(
    mut stream: impl Read + Send + 'static,
    max: usize,
) -> thread::JoinHandle<(Vec<u8>, bool)> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut truncated = false;
        let mut buffer = [0u8; 8192];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    let room = max.saturating_sub(kept.len());
                    if n > room {
                        truncated = true;
                    }
                    kept.extend_from_slice(&buffer[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        (kept, truncated)
    })
}

/// The last lines of a child's standard error, for a message.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    crate::findings::bounded_text(&tail.join(" | "), 512)
}

/// Classifies a finished analysis child (see the module documentation for the policy).
pub fn classify(run: &ChildRun, limits: &AnalysisLimits) -> AnalysisOutcome {
    let cpu_limit = Duration::from_secs(limits.cpu.as_secs().max(1));
    let used_cpu = run
        .usage
        .is_some_and(|u| u.cpu + POLL_INTERVAL >= cpu_limit);
    let stderr = stderr_tail(&run.stderr);
    let with_stderr = |what: String| {
        if stderr.is_empty() {
            what
        } else {
            format!("{what}; its last output: {stderr}")
        }
    };
    match run.exit {
        ChildExit::Cancelled => AnalysisOutcome::Cancelled,
        ChildExit::WallTimeout => AnalysisOutcome::TimedOut(format!(
            "the analysis ran longer than its wall-clock timeout of {} s and was killed",
            limits.wall_timeout.as_secs_f64()
        )),
        ChildExit::Signaled(signal) if platform::is_cpu_limit_signal(signal) || used_cpu => {
            AnalysisOutcome::TimedOut(format!(
                "the analysis used up its CPU-time limit of {} s and was killed (signal {signal})",
                cpu_limit.as_secs()
            ))
        }
        ChildExit::Signaled(signal) => AnalysisOutcome::Crashed(with_stderr(format!(
            "the analysis was killed by signal {signal} (memory limit {} MiB)",
            limits.memory_bytes >> 20
        ))),
        ChildExit::Exited(EXIT_ANALYSIS_ERROR) => {
            AnalysisOutcome::Failed(with_stderr("the analysis could not run".to_owned()))
        }
        ChildExit::Exited(0) if !run.stdout_truncated => {
            match serde_json::from_slice::<ScanReport>(&run.stdout) {
                Ok(report) => AnalysisOutcome::Report(Box::new(report)),
                Err(error) => AnalysisOutcome::Crashed(with_stderr(format!(
                    "the analysis printed no valid report: {error}"
                ))),
            }
        }
        ChildExit::Exited(0) => AnalysisOutcome::Crashed(format!(
            "the analysis printed more than {MAX_REPORT_BYTES} bytes"
        )),
        ChildExit::Exited(status) => AnalysisOutcome::Crashed(with_stderr(format!(
            "the analysis exited with status {status}"
        ))),
    }
}

#[cfg(unix)]
mod platform {
    use std::io;
    use std::os::unix::process::CommandExt as _;
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use super::{AnalysisLimits, ChildExit, MAX_OPEN_FILES, POLL_INTERVAL, ResourceUsage};

    /// Sets soft and hard limit of a resource; the resource constants' type differs between
    /// C libraries, hence a macro.
    macro_rules! set_limit {
        ($resource:expr, $soft:expr, $hard:expr) => {{
            let limit = libc::rlimit {
                rlim_cur: $soft as libc::rlim_t,
                rlim_max: $hard as libc::rlim_t,
            };
            // SAFETY: setrlimit reads the struct and is async-signal-safe.
            if unsafe { libc::setrlimit($resource, &limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }};
    }

    pub(super) fn confine(command: &mut Command, limits: &AnalysisLimits) {
        let cpu = limits.cpu.as_secs().max(1);
        let memory = limits.memory_bytes;
        let setup = move || {
            // Soft limit: SIGXCPU; one second later the hard limit: SIGKILL.
            set_limit!(libc::RLIMIT_CPU, cpu, cpu + 1);
            set_limit!(libc::RLIMIT_AS, memory, memory);
            set_limit!(libc::RLIMIT_FSIZE, 0, 0);
            set_limit!(libc::RLIMIT_NOFILE, MAX_OPEN_FILES, MAX_OPEN_FILES);
            set_limit!(libc::RLIMIT_CORE, 0, 0);
            // A session of its own: no controlling terminal to type into, and a Ctrl-C at the
            // worker's terminal reaches the worker, which finishes or cancels the job itself.
            // SAFETY: setsid takes nothing; async-signal-safe.
            if unsafe { libc::setsid() } == -1 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number; async-signal-safe.
            #[cfg(target_os = "linux")]
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: `setup` runs between fork and exec and only calls async-signal-safe
        // functions (setrlimit, setsid, prctl); it allocates nothing.
        unsafe {
            command.pre_exec(setup);
        }
    }

    pub(super) fn is_cpu_limit_signal(signal: i32) -> bool {
        signal == libc::SIGXCPU
    }

    fn usage_of(rusage: &libc::rusage) -> ResourceUsage {
        let time = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        let max_rss = u64::try_from(rusage.ru_maxrss).unwrap_or(0);
        // Linux and the BSDs report KiB, macOS bytes.
        let max_rss_kib = if cfg!(target_os = "macos") {
            max_rss / 1024
        } else {
            max_rss
        };
        ResourceUsage {
            max_rss_kib,
            cpu: time(rusage.ru_utime) + time(rusage.ru_stime),
        }
    }

    /// `wait4` on the child; `blocking` waits, otherwise returns `None` while it runs.
    fn wait4(pid: libc::pid_t, blocking: bool) -> io::Result<Option<(i32, libc::rusage)>> {
        loop {
            let mut status = 0;
            // SAFETY: an all-zero rusage is valid; wait4 fills it.
            let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
            let options = if blocking { 0 } else { libc::WNOHANG };
            // SAFETY: pointers to live locals.
            let waited = unsafe { libc::wait4(pid, &mut status, options, &mut rusage) };
            if waited == pid {
                return Ok(Some((status, rusage)));
            }
            if waited == 0 {
                return Ok(None);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    fn exit_of(status: i32) -> ChildExit {
        if libc::WIFSIGNALED(status) {
            ChildExit::Signaled(libc::WTERMSIG(status))
        } else {
            ChildExit::Exited(libc::WEXITSTATUS(status))
        }
    }

    pub(super) fn wait(
        child: &mut Child,
        deadline: Instant,
        cancel: &AtomicBool,
    ) -> io::Result<(ChildExit, Option<ResourceUsage>)> {
        let pid = libc::pid_t::try_from(child.id())
            .map_err(|_| io::Error::other("child pid out of range"))?;
        loop {
            if let Some((status, rusage)) = wait4(pid, false)? {
                return Ok((exit_of(status), Some(usage_of(&rusage))));
            }
            let killed_for = if cancel.load(Ordering::Relaxed) {
                Some(ChildExit::Cancelled)
            } else if Instant::now() >= deadline {
                Some(ChildExit::WallTimeout)
            } else {
                None
            };
            if let Some(exit) = killed_for {
                // Not yet reaped, so the pid is still the child's.
                child.kill()?;
                let usage = wait4(pid, true)?.map(|(_, rusage)| usage_of(&rusage));
                return Ok((exit, usage));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Windows: no limits yet (Job Objects will add them); only the deadline and cancellation.
#[cfg(windows)]
mod platform {
    use std::io;
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use super::{AnalysisLimits, ChildExit, POLL_INTERVAL, ResourceUsage};

    pub(super) fn confine(_command: &mut Command, _limits: &AnalysisLimits) {}

    pub(super) fn is_cpu_limit_signal(_signal: i32) -> bool {
        false
    }

    pub(super) fn wait(
        child: &mut Child,
        deadline: Instant,
        cancel: &AtomicBool,
    ) -> io::Result<(ChildExit, Option<ResourceUsage>)> {
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((ChildExit::Exited(status.code().unwrap_or(-1)), None));
            }
            let killed_for = if cancel.load(Ordering::Relaxed) {
                Some(ChildExit::Cancelled)
            } else if Instant::now() >= deadline {
                Some(ChildExit::WallTimeout)
            } else {
                None
            };
            if let Some(exit) = killed_for {
                child.kill()?;
                child.wait()?;
                return Ok((exit, None));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}
