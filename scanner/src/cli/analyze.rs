//! `plugstore-scanner analyze PKG`: the analysis child. Reads one package, runs the static
//! analysis and, for a valid wasm module, the dynamic one ([`analyze_wasm_dynamic`]), prints
//! the [`ScanReport`] as JSON on standard output.
//!
//! Exit statuses: 0 with a report; [`EXIT_ANALYSIS_ERROR`] when the package cannot be read
//! or analysed for a reason outside its contents (the worker retries); anything else (a
//! panic, a signal from a resource limit) is a crash, which the worker reports as a finding.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::confinement;
use crate::dynamic_wasm::analyze_wasm_dynamic;
use crate::isolation::{EXIT_ANALYSIS_ERROR, TEST_HOOKS_ENV};
use crate::limits::ScanLimits;
use crate::rules;
use crate::{FindingCollector, RuleSet, ScanReport, scan_package_static_with_rules};
use plugstore_format::limits::PackageLimits;
use plugstore_format::manifest::PluginKind;
use plugstore_format::package::read_package;

/// Misbehaviour on purpose, to test the isolation. Only with `PLUGSTORE_SCANNER_TEST_HOOKS=1`.
///
/// The `escape-*` hooks act as code a package got running inside the analyser would: each
/// tries one thing the [confinement](crate::confinement) forbids, says on standard
/// error what happened, and then lets the analysis go on. Tests check the effect (a file
/// intact, no connection, a process alive), not what the child says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestHook {
    /// Spin on the CPU forever.
    BurnCpu,
    /// Allocate and touch this many GiB.
    AllocateGib(u64),
    /// Sleep this many milliseconds, then analyse normally.
    SleepMs(u64),
    /// Panic.
    Panic,
    /// Connect to this TCP port on 127.0.0.1.
    EscapeConnect(u16),
    /// Start `/bin/sh -c 'echo escaped > PATH'`.
    EscapeSpawn(PathBuf),
    /// Change the existing file at PATH: truncate it, write to it, rename it, delete it, and
    /// create a file beside it.
    EscapeWrite(PathBuf),
    /// Send `SIGKILL` to this process id.
    EscapeKill(u32),
    /// Have the kernel signal this process id when a pipe becomes readable
    /// (`fcntl(F_SETOWN)`, `O_ASYNC`), then write to the pipe.
    EscapeSigio(u32),
    /// Lower this process id's CPU-time limit to one second (`prlimit64`).
    EscapePrlimit(u32),
    /// Read the file at PATH and print its start on standard error, where a report could
    /// carry it.
    EscapeRead(PathBuf),
}

const HOOK_NAMES: &str = "burn-cpu, allocate-gib=N, sleep-ms=N, panic, escape-connect=PORT, \
                          escape-spawn=PATH, escape-write=PATH, escape-kill=PID, escape-sigio=PID, \
                          escape-prlimit=PID, escape-read=PATH";

impl std::str::FromStr for TestHook {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, value) = text.split_once('=').unwrap_or((text, ""));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("test hook {name} needs a number: {name}=N"))
        };
        let small_number = || {
            number().and_then(|n| {
                u32::try_from(n).map_err(|_| format!("test hook {name}: {n} is too large"))
            })
        };
        let path = || {
            (!value.is_empty())
                .then(|| PathBuf::from(value))
                .ok_or_else(|| format!("test hook {name} needs a path: {name}=PATH"))
        };
        match name {
            "burn-cpu" => Ok(Self::BurnCpu),
            "allocate-gib" => number().map(Self::AllocateGib),
            "sleep-ms" => number().map(Self::SleepMs),
            "panic" => Ok(Self::Panic),
            "escape-connect" => small_number().and_then(|n| {
                u16::try_from(n)
                    .map(Self::EscapeConnect)
                    .map_err(|_| format!("test hook {name}: {n} is not a port"))
            }),
            "escape-spawn" => path().map(Self::EscapeSpawn),
            "escape-write" => path().map(Self::EscapeWrite),
            "escape-kill" => small_number().map(Self::EscapeKill),
            "escape-sigio" => small_number().map(Self::EscapeSigio),
            "escape-prlimit" => small_number().map(Self::EscapePrlimit),
            "escape-read" => path().map(Self::EscapeRead),
            _ => Err(format!("unknown test hook {name:?} ({HOOK_NAMES})")),
        }
    }
}

impl std::fmt::Display for TestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BurnCpu => f.write_str("burn-cpu"),
            Self::AllocateGib(gib) => write!(f, "allocate-gib={gib}"),
            Self::SleepMs(ms) => write!(f, "sleep-ms={ms}"),
            Self::Panic => f.write_str("panic"),
            Self::EscapeConnect(port) => write!(f, "escape-connect={port}"),
            Self::EscapeSpawn(path) => write!(f, "escape-spawn={}", path.display()),
            Self::EscapeWrite(path) => write!(f, "escape-write={}", path.display()),
            Self::EscapeKill(pid) => write!(f, "escape-kill={pid}"),
            Self::EscapeSigio(pid) => write!(f, "escape-sigio={pid}"),
            Self::EscapePrlimit(pid) => write!(f, "escape-prlimit={pid}"),
            Self::EscapeRead(path) => write!(f, "escape-read={}", path.display()),
        }
    }
}

/// Whether the test hooks are enabled in this process's environment.
pub fn test_hooks_enabled() -> bool {
    std::env::var(TEST_HOOKS_ENV).is_ok_and(|v| v == "1")
}

/// Runs the analysis child; returns the process exit status.
/// `rules_dir` is the operator's YARA rule directory, applied with the default rules.
///
/// Everything the child reads from disk (the rules, the package) is read first; then the
/// [confinement](crate::confinement) goes on, before any untrusted byte is parsed.
pub fn run(
    package: &Path,
    hook: Option<TestHook>,
    rules_dir: Option<&Path>,
    limits: &ScanLimits,
) -> i32 {
    if hook.is_some() && !test_hooks_enabled() {
        eprintln!("error: test hooks are disabled (they need {TEST_HOOKS_ENV}=1)");
        return EXIT_ANALYSIS_ERROR;
    }
    let inputs = match Inputs::read(package, rules_dir) {
        Ok(inputs) => inputs,
        Err(error) => {
            eprintln!("error: {error:#}");
            return EXIT_ANALYSIS_ERROR;
        }
    };
    // Analysing unconfined is not an option: the worker retries, and its log says why.
    let confined = check_confinement();
    if confined != 0 {
        return confined;
    }
    if let Some(hook) = hook {
        run_hook(hook);
    }
    match analyze(&inputs, limits) {
        Ok(report) => {
            let mut stdout = io::stdout().lock();
            let written = serde_json::to_writer(&mut stdout, &report)
                .map_err(io::Error::from)
                .and_then(|()| stdout.flush());
            match written {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("error: writing the report: {error}");
                    EXIT_ANALYSIS_ERROR
                }
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            EXIT_ANALYSIS_ERROR
        }
    }
}

/// `check-confinement`: confines this process as [`run`] does, and says how that went.
pub fn check_confinement() -> i32 {
    match confinement::forbid_escapes() {
        Ok(confinement) => {
            for warning in confinement.warnings() {
                eprintln!("warning: {warning}");
            }
            0
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_ANALYSIS_ERROR
        }
    }
}

fn run_hook(hook: TestHook) {
    match hook {
        TestHook::BurnCpu => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        TestHook::AllocateGib(gib) => {
            let mut blocks = Vec::new();
            for _ in 0..gib.saturating_mul(16) {
                // 64 MiB at a time, each page touched so it is really resident.
                let mut block = vec![0u8; 64 << 20];
                for page in block.iter_mut().step_by(4096) {
                    *page = 1;
                }
                blocks.push(std::hint::black_box(block));
            }
        }
        TestHook::SleepMs(ms) => std::thread::sleep(Duration::from_millis(ms)),
        TestHook::Panic => panic!("test hook: panic"),
        TestHook::EscapeConnect(port) => {
            say(
                "connect",
                std::net::TcpStream::connect(("127.0.0.1", port)).map(drop),
            );
        }
        TestHook::EscapeSpawn(path) => {
            let spawned = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg("echo escaped > \"$0\"")
                .arg(&path)
                .status()
                .map(drop);
            say("spawn", spawned);
        }
        TestHook::EscapeWrite(path) => {
            let open = |options: &mut std::fs::OpenOptions| options.open(&path).map(drop);
            say("truncate", open(File::options().write(true).truncate(true)));
            say("append", open(File::options().append(true)));
            say(
                "rename",
                std::fs::rename(&path, path.with_extension("moved")),
            );
            say("delete", std::fs::remove_file(&path));
            say(
                "create",
                File::create_new(path.with_extension("new")).map(drop),
            );
        }
        TestHook::EscapeKill(pid) => say("kill", libc_pid(pid).and_then(escapes::kill)),
        TestHook::EscapeSigio(pid) => say("sigio", libc_pid(pid).and_then(escapes::sigio)),
        TestHook::EscapePrlimit(pid) => {
            say("prlimit", libc_pid(pid).and_then(escapes::prlimit));
        }
        TestHook::EscapeRead(path) => match std::fs::read(&path) {
            Ok(bytes) => eprintln!(
                "escape read: succeeded: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(4096)])
            ),
            Err(error) => eprintln!("escape read: refused: {error}"),
        },
    }
}

/// What an escape hook's attempt came to, on standard error.
fn say(attempt: &str, outcome: io::Result<()>) {
    match outcome {
        Ok(()) => eprintln!("escape {attempt}: succeeded"),
        Err(error) => eprintln!("escape {attempt}: refused: {error}"),
    }
}

fn libc_pid(pid: u32) -> io::Result<i32> {
    i32::try_from(pid).map_err(|_| io::Error::other(format!("{pid} is not a process id")))
}

/// The escape hooks' system calls, as code running inside the analyser would make them.
#[cfg(unix)]
mod escapes {
    use std::io;

    fn checked(result: libc::c_int) -> io::Result<libc::c_int> {
        if result == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(result)
        }
    }

    pub fn kill(pid: i32) -> io::Result<()> {
        // SAFETY: kill takes two integers.
        checked(unsafe { libc::kill(pid, libc::SIGKILL) }).map(drop)
    }

    /// A pipe owned by `pid` in asynchronous mode: the kernel sends `pid` SIGIO, which ends
    /// a process that does not handle it, when the pipe becomes readable.
    #[cfg(target_os = "linux")]
    pub fn sigio(pid: i32) -> io::Result<()> {
        let mut ends = [0; 2];
        // SAFETY: pipe writes two descriptors into the array; fcntl and write take
        // descriptors this function owns, and a pointer to one live byte.
        unsafe {
            checked(libc::pipe(ends.as_mut_ptr()))?;
            checked(libc::fcntl(ends[0], libc::F_SETOWN, pid))?;
            checked(libc::fcntl(ends[0], libc::F_SETFL, libc::O_ASYNC))?;
            checked(libc::write(ends[1], b"!".as_ptr().cast(), 1) as libc::c_int)?;
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub fn sigio(_pid: i32) -> io::Result<()> {
        Err(io::Error::other("this hook is for Linux"))
    }

    #[cfg(target_os = "linux")]
    pub fn prlimit(pid: i32) -> io::Result<()> {
        let one_second = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: a pointer to a live rlimit, and a null old-limit pointer.
        checked(unsafe { libc::prlimit(pid, libc::RLIMIT_CPU, &one_second, std::ptr::null_mut()) })
            .map(drop)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn prlimit(_pid: i32) -> io::Result<()> {
        Err(io::Error::other("this hook is for Linux"))
    }
}

#[cfg(not(unix))]
mod escapes {
    use std::io;

    fn unsupported() -> io::Result<()> {
        Err(io::Error::other("the escape hooks are for Unix"))
    }

    pub fn kill(_pid: i32) -> io::Result<()> {
        unsupported()
    }

    pub fn sigio(_pid: i32) -> io::Result<()> {
        unsupported()
    }

    pub fn prlimit(_pid: i32) -> io::Result<()> {
        unsupported()
    }
}

/// What the child reads from disk, read before the filter goes on.
struct Inputs {
    /// The operator's rules compiled with the defaults; `None` for the defaults alone.
    operator_rules: Option<RuleSet>,
    /// The package file, unparsed.
    package: Vec<u8>,
}

impl Inputs {
    fn read(package: &Path, rules_dir: Option<&Path>) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let operator_rules = rules_dir.map(RuleSet::with_directory).transpose()?;
        let mut bytes = Vec::new();
        File::open(package)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", package.display()))?;
        Ok(Self {
            operator_rules,
            package: bytes,
        })
    }
}

fn analyze(inputs: &Inputs, limits: &ScanLimits) -> anyhow::Result<ScanReport> {
    use anyhow::Context as _;
    let yara = inputs
        .operator_rules
        .as_ref()
        .unwrap_or_else(|| RuleSet::shared_default());
    let bytes = &inputs.package;
    let contents = read_package(&bytes[..], &PackageLimits::default())
        .context("the package does not pass the package format checks")?;
    let files = file_index(bytes)?;
    let mut report = scan_package_static_with_rules(
        &contents,
        |path| indexed_file(bytes, &files, path),
        &limits.static_limits,
        yara,
    )?;
    let manifest = &contents.manifest;
    if manifest.kind() == PluginKind::Wasm && should_run_dynamic(&report) {
        let entry = manifest.entry();
        let module = indexed_file(bytes, &files, entry)?;
        let dynamic =
            analyze_wasm_dynamic(&module, manifest.capabilities(), &limits.dynamic_limits);
        let mut findings = FindingCollector::new();
        findings.extend(std::mem::take(&mut report.findings));
        findings.extend(dynamic.findings.into_iter().map(|f| f.in_file(entry)));
        report.findings = findings.into_findings();
        report.metrics.extend(dynamic.metrics);
        report.keep_within_server_limits();
    }
    Ok(report)
}

/// Whether the static pass left a module the dynamic analysis can run: one that was read
/// (within the size limit, present) and validates.
fn should_run_dynamic(report: &ScanReport) -> bool {
    [
        &rules::WASM_INVALID,
        &rules::WASM_MODULE_TOO_LARGE,
        &rules::PACKAGE_ENTRY_MISSING,
    ]
    .into_iter()
    .all(|rule| report.findings_of(rule).next().is_none())
}

/// Where each file's contents are in a package `read_package` accepted (a plain tar), so
/// that reading every file for the rule scan is not quadratic in the number of files.
fn file_index(package: &[u8]) -> io::Result<HashMap<Vec<u8>, Range<usize>>> {
    let mut index = HashMap::new();
    let mut archive = tar::Archive::new(package);
    for entry in archive.entries()? {
        let entry = entry?;
        let start = usize::try_from(entry.raw_file_position()).map_err(io::Error::other)?;
        let size = usize::try_from(entry.size()).map_err(io::Error::other)?;
        index.insert(
            entry.path_bytes().into_owned(),
            start..start.saturating_add(size),
        );
    }
    Ok(index)
}

/// The contents of the file at `path`, by the index of [`file_index`].
fn indexed_file(
    package: &[u8],
    index: &HashMap<Vec<u8>, Range<usize>>,
    path: &str,
) -> io::Result<Vec<u8>> {
    index
        .get(path.as_bytes())
        .and_then(|range| package.get(range.clone()))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{path} is not in the package"),
            )
        })
}
