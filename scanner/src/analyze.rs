//! `plugstore-scanner analyze PKG`: the analysis child. Reads one package, runs the static
//! analysis, prints the [`ScanReport`] as JSON on standard output.
//!
//! Exit statuses: 0 with a report; [`EXIT_ANALYSIS_ERROR`] when the package cannot be read
//! or analysed for a reason outside its contents (the worker retries); anything else (a
//! panic, a signal from a resource limit) is a crash, which the worker reports as a finding.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use plugstore_format::limits::PackageLimits;
use plugstore_format::package::read_package;
use plugstore_scanner::isolation::{EXIT_ANALYSIS_ERROR, TEST_HOOKS_ENV};
use plugstore_scanner::{ScanReport, StaticLimits, scan_package_static};

/// Misbehaviour on purpose, to test the isolation. Only with `PLUGSTORE_SCANNER_TEST_HOOKS=1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestHook {
    /// Spin on the CPU forever.
    BurnCpu,
    /// Allocate and touch this many GiB.
    AllocateGib(u64),
    /// Sleep this many milliseconds, then analyse normally.
    SleepMs(u64),
    /// Panic.
    Panic,
}

impl std::str::FromStr for TestHook {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, value) = text.split_once('=').unwrap_or((text, ""));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("test hook {name} needs a number: {name}=N"))
        };
        match name {
            "burn-cpu" => Ok(Self::BurnCpu),
            "allocate-gib" => number().map(Self::AllocateGib),
            "sleep-ms" => number().map(Self::SleepMs),
            "panic" => Ok(Self::Panic),
            _ => Err(format!(
                "unknown test hook {name:?} (burn-cpu, allocate-gib=N, sleep-ms=N, panic)"
            )),
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
        }
    }
}

/// Whether the test hooks are enabled in this process's environment.
pub fn test_hooks_enabled() -> bool {
    std::env::var(TEST_HOOKS_ENV).is_ok_and(|v| v == "1")
}

/// Runs the analysis child; returns the process exit status.
pub fn run(package: &Path, hook: Option<TestHook>) -> i32 {
    if let Some(hook) = hook {
        if !test_hooks_enabled() {
            eprintln!("error: test hooks are disabled (they need {TEST_HOOKS_ENV}=1)");
            return EXIT_ANALYSIS_ERROR;
        }
        run_hook(hook);
    }
    match analyze(package) {
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
    }
}

fn analyze(package: &Path) -> anyhow::Result<ScanReport> {
    use anyhow::Context as _;
    let mut bytes = Vec::new();
    File::open(package)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", package.display()))?;
    let contents = read_package(&bytes[..], &PackageLimits::default())
        .context("the package does not pass the package format checks")?;
    let report = scan_package_static(
        &contents,
        |path| entry_bytes(&bytes, path),
        &StaticLimits::default(),
    )?;
    Ok(report)
}

/// The contents of the file at `path` of a package `read_package` accepted.
fn entry_bytes(package: &[u8], path: &str) -> io::Result<Vec<u8>> {
    let mut archive = tar::Archive::new(package);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path_bytes().as_ref() == path.as_bytes() {
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents)?;
            return Ok(contents);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{path} is not in the package"),
    ))
}
