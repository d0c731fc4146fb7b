//! The scanner's command line: the scan worker (`worker`) and the analysis child it starts
//! for each package (`analyze`). See the operator guide, "Scan workers".
//!
//! It lives in the library so that two binaries can be this program: `plugstore-scanner`,
//! for workers on their own hosts, and `plugstore-server scanner`, which the one-command
//! store starts as its embedded worker without a second binary to build or ship.

mod analyze;
mod worker;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tokio::sync::watch;

use self::analyze::TestHook;
use crate::RuleSet;
use crate::isolation::{
    AnalysisLimits, ChildExit, DEFAULT_CPU_LIMIT, DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_WALL_TIMEOUT,
    TEST_HOOKS_ENV, run_confined,
};
use crate::limits::ScanLimits;

#[derive(Parser, Debug)]
#[command(name = "plugstore-scanner", version, about = "plugstore scan worker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Claim scan jobs from a store, analyse each package in a confined child process, post
    /// the reports.
    Worker(WorkerArgs),
    /// Analyse one package and print the report as JSON (the child the worker starts).
    Analyze {
        /// The package file.
        package: PathBuf,
        /// Misbehave on purpose to test the isolation; needs PLUGSTORE_SCANNER_TEST_HOOKS=1.
        #[arg(long, hide = true)]
        test_hook: Option<TestHook>,
        /// Directory of extra YARA rules (`*.yar`, `*.yara`), applied with the default set.
        #[arg(long)]
        rules_dir: Option<PathBuf>,
        /// TOML file of analysis thresholds (`[static]`, `[dynamic]`); see the findings
        /// catalogue.
        #[arg(long)]
        limits: Option<PathBuf>,
    },
    /// Confine this process as an analysis child does, then exit: 0 when that works (with
    /// warnings on standard error for what this kernel lacks), 3 when it refuses. The worker
    /// runs it at start.
    #[command(hide = true)]
    CheckConfinement,
}

#[derive(clap::Args, Debug)]
struct WorkerArgs {
    /// Base URL of the store.
    #[arg(long, env = "PLUGSTORE_SCANNER_SERVER")]
    server: String,
    /// File holding the worker token (`<data_dir>/keys/worker-token` on the store's host).
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// The worker token (prefer --token-file: arguments are visible to other users).
    #[arg(long, env = "PLUGSTORE_WORKER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Name of this worker in leases and reports [default: scanner@<hostname>-<pid>].
    #[arg(long)]
    name: Option<String>,
    /// Jobs analysed at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Wait between claims when no job is waiting, in milliseconds (jittered ±25 %).
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
    /// Handle at most one job (per concurrency slot), then exit.
    #[arg(long)]
    once: bool,
    /// CPU-time limit of each analysis, in seconds.
    #[arg(long, default_value_t = DEFAULT_CPU_LIMIT.as_secs())]
    cpu_limit_secs: u64,
    /// Address-space limit of each analysis, in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_LIMIT_BYTES >> 20)]
    memory_limit_mib: u64,
    /// Wall-clock timeout of each analysis, in seconds.
    #[arg(long, default_value_t = DEFAULT_WALL_TIMEOUT.as_secs())]
    timeout_secs: u64,
    /// Directory of extra YARA rules (`*.yar`, `*.yara`) applied with the default set; every
    /// public rule needs `meta: severity = "critical|high|medium|low"`. Checked at start.
    #[arg(long, env = "PLUGSTORE_SCANNER_RULES_DIR")]
    rules_dir: Option<PathBuf>,
    /// TOML file of analysis thresholds (`[static]`: sizes, memory and table limits, string
    /// and entropy thresholds; `[dynamic]`: fuel, deadline, memory, stack, output). Checked
    /// at start; unknown keys are refused.
    #[arg(long, env = "PLUGSTORE_SCANNER_LIMITS")]
    limits: Option<PathBuf>,
    /// Pass a test hook to every analysis child; needs PLUGSTORE_SCANNER_TEST_HOOKS=1.
    #[arg(long, hide = true)]
    test_hook: Option<TestHook>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Stop (finishing the job in hand) when standard input closes. The store starts its
    /// embedded worker with a pipe it never writes to, so the worker ends with the store
    /// even when the store is killed and cannot stop it.
    #[arg(long, hide = true)]
    exit_with_stdin: bool,
}

/// Runs the scanner's command line. `args` starts with the program name, as
/// `std::env::args_os()` does; `self_invocation` is what follows this executable's path to
/// reach this command line again (empty for `plugstore-scanner`, `["scanner"]` for
/// `plugstore-server scanner`): the worker starts its analysis children that way.
pub fn main(args: impl IntoIterator<Item = OsString>, self_invocation: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match cli.command {
        Command::Analyze {
            package,
            test_hook,
            rules_dir,
            limits,
        } => {
            let status = match limits.as_deref().map(ScanLimits::from_file).transpose() {
                Ok(limits) => analyze::run(
                    &package,
                    test_hook,
                    rules_dir.as_deref(),
                    &limits.unwrap_or_default(),
                ),
                Err(error) => {
                    eprintln!("error: {error:#}");
                    crate::isolation::EXIT_ANALYSIS_ERROR
                }
            };
            ExitCode::from(u8::try_from(status).unwrap_or(1))
        }
        Command::CheckConfinement => {
            ExitCode::from(u8::try_from(analyze::check_confinement()).unwrap_or(1))
        }
        Command::Worker(args) => match run_worker(args, self_invocation) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn token(args: &WorkerArgs) -> anyhow::Result<String> {
    let token = match (&args.token_file, &args.token) {
        (Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("reading the worker token from {}", file.display()))?,
        (None, Some(token)) => token.clone(),
        (None, None) => {
            bail!("no worker token: pass --token-file FILE, or set PLUGSTORE_WORKER_TOKEN")
        }
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the worker token is empty");
    }
    Ok(token)
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("scanner@{host}-{}", std::process::id())
}

fn run_worker(args: WorkerArgs, self_invocation: Vec<OsString>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    if args.test_hook.is_some() && !analyze::test_hooks_enabled() {
        bail!("test hooks are disabled (they need {TEST_HOOKS_ENV}=1)");
    }
    let rules_dir = match &args.rules_dir {
        Some(dir) => {
            // Fail at start, not in every analysis, and give the children an absolute path.
            let rules = RuleSet::with_directory(dir)?;
            tracing::info!(rules = rules.len(), files = ?rules.sources(), "YARA rules loaded");
            Some(
                std::fs::canonicalize(dir)
                    .with_context(|| format!("resolving {}", dir.display()))?,
            )
        }
        None => None,
    };
    let limits_file = match &args.limits {
        Some(file) => {
            ScanLimits::from_file(file)?;
            Some(
                std::fs::canonicalize(file)
                    .with_context(|| format!("resolving {}", file.display()))?,
            )
        }
        None => None,
    };
    let config = worker::WorkerConfig {
        server: args.server.clone(),
        token: token(&args)?,
        name: args.name.clone().unwrap_or_else(default_name),
        concurrency: usize::from(args.concurrency),
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(10)),
        once: args.once,
        analyzer: std::env::current_exe().context("finding this executable")?,
        analyzer_args: self_invocation,
        limits_file,
        limits: AnalysisLimits {
            cpu: Duration::from_secs(args.cpu_limit_secs.max(1)),
            memory_bytes: args.memory_limit_mib.max(64) << 20,
            wall_timeout: Duration::from_secs(args.timeout_secs.max(1)),
        },
        test_hook: args.test_hook.map(|hook| hook.to_string()),
        rules_dir,
    };
    check_analysis_confinement(&config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let (stop, stopped) = watch::channel(false);
        let exit_with_stdin = args.exit_with_stdin;
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown_signal() => {
                    tracing::info!("shutdown requested: finishing the job in hand");
                }
                () = stdin_closed(), if exit_with_stdin => {
                    tracing::info!("the store that started this worker is gone: finishing the job in hand");
                }
            }
            let _ = stop.send(true);
        });
        tracing::info!(server = %config.server, worker = %config.name, concurrency = config.concurrency, "scan worker started");
        worker::run(config, stopped).await
    })
}

/// Starts an analysis child that only confines itself, under the worker's limits, so that a
/// kernel or container policy that refuses the confinement stops the worker at start with
/// the reason, instead of failing every job's attempts.
fn check_analysis_confinement(config: &worker::WorkerConfig) -> anyhow::Result<()> {
    let mut command = std::process::Command::new(&config.analyzer);
    command.args(&config.analyzer_args).arg("check-confinement");
    let run = run_confined(command, &config.limits, &AtomicBool::new(false))
        .context("starting an analysis child")?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    if run.exit != ChildExit::Exited(0) {
        bail!(
            "the analysis child cannot confine itself, so no package can be analysed: {}",
            stderr.trim()
        );
    }
    for warning in stderr
        .lines()
        .filter_map(|line| line.strip_prefix("warning: "))
    {
        tracing::warn!("analysis child: {warning}");
    }
    Ok(())
}

/// Resolves once standard input reaches its end or fails.
async fn stdin_closed() {
    // Reading stdin blocks, so a thread of its own waits for it: a detached one, since the
    // runtime waits for its blocking tasks when it shuts down, and this one may never end.
    let (closed, on_close) = tokio::sync::oneshot::channel::<()>();
    let watching = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut buffer = [0u8; 64];
            let mut stdin = std::io::stdin().lock();
            while matches!(std::io::Read::read(&mut stdin, &mut buffer), Ok(n) if n > 0) {}
            drop(closed);
        });
    match watching {
        // Resolves when the thread drops its end, having read to the end.
        Ok(_) => {
            let _ = on_close.await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch standard input; the worker stops only on a signal");
            std::future::pending::<()>().await;
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
