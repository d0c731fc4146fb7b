//! `plugstore-scanner worker`: claims scan jobs from the store's internal API, downloads and
//! verifies each package, analyses it in a confined child process, and posts the report.
//!
//! A worker holds a job only through its lease. It heartbeats every third of the lease while
//! the child runs; a 409 (the lease is lost, another worker may hold the job) kills the child
//! and drops the job without posting. If the worker dies, the lease expires and the job is
//! claimed again. Failures of the environment (download, digest mismatch, an analysis that
//! cannot run) are posted as `fail` and retried by the store; a crash or timeout of the
//! analysis is a high-severity finding (see [`crate::isolation`]).
//!
//! On SIGTERM or Ctrl-C the worker stops claiming, finishes the job in hand (bounded by the
//! analysis timeout) and exits.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::isolation::{AnalysisLimits, AnalysisOutcome, ChildRun, classify, run_confined};
use crate::rules::{self, Rule};
use crate::{Finding, Metrics, SCANNER_VERSION, ScanReport, Severity};
use anyhow::{Context as _, anyhow, bail};
use plugstore_format::digest::{DigestingWriter, PackageDigest};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Longest wait between claims after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Timeout of one call to the internal API.
const API_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at posting a job's result.
const POST_TRIES: u64 = 3;
/// Shortest heartbeat interval, whatever the lease.
const MIN_HEARTBEAT: Duration = Duration::from_secs(1);

/// What a worker needs to run.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Base URL of the store (`https://store.example.org`).
    pub server: String,
    /// The worker token.
    pub token: String,
    /// The worker's name in leases and reports.
    pub name: String,
    /// Jobs analysed at once.
    pub concurrency: usize,
    /// Wait between claims when the queue is empty (jittered).
    pub poll_interval: Duration,
    /// Handle at most one job per slot, then exit.
    pub once: bool,
    /// The program started as the analysis child (this executable).
    pub analyzer: PathBuf,
    /// Arguments before `analyze` that reach the scanner's command line in [`Self::analyzer`].
    pub analyzer_args: Vec<OsString>,
    /// The operator's analysis-limits file, passed to each analysis child (`--limits`).
    pub limits_file: Option<PathBuf>,
    /// Limits of each analysis child.
    pub limits: AnalysisLimits,
    /// A test hook passed to each analysis child (`--test-hook`).
    pub test_hook: Option<String>,
    /// The operator's YARA rule directory, passed to each analysis child (`--rules-dir`).
    pub rules_dir: Option<PathBuf>,
}

/// A job as the store hands it out.
#[derive(Debug, Deserialize)]
struct ClaimedJob {
    job_id: i64,
    plugin: String,
    version: String,
    package_digest: String,
    package_size: u64,
    package_url: String,
    attempt: i64,
    lease_expires_at: i64,
}

struct Api {
    http: reqwest::Client,
    server: String,
    token: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/internal/v1/scan-jobs{path}", self.server)
    }

    async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<reqwest::Response> {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .timeout(API_TIMEOUT)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {}", self.url(path)))
    }

    async fn claim(&self, worker: &str) -> anyhow::Result<Option<ClaimedJob>> {
        let response = self.post("/claim", &json!({ "worker": worker })).await?;
        match response.status() {
            StatusCode::NO_CONTENT => Ok(None),
            status if status.is_success() => Ok(Some(response.json().await?)),
            status => bail!(
                "claim: {status}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    /// `Ok(false)` when the lease is lost.
    async fn heartbeat(&self, job: i64, worker: &str) -> anyhow::Result<bool> {
        let response = self
            .post(&format!("/{job}/heartbeat"), &json!({ "worker": worker }))
            .await?;
        match response.status() {
            StatusCode::CONFLICT => Ok(false),
            status if status.is_success() => Ok(true),
            status => bail!("heartbeat: {status}"),
        }
    }

    async fn report(&self, job: i64, worker: &str, report: &ScanReport) -> anyhow::Result<()> {
        let body = json!({
            "worker": worker,
            "findings": report.findings,
            "metrics": report.metrics,
            "scanner_version": report.scanner_version,
            "duration_ms": report.duration_ms,
        });
        let response = self.post(&format!("/{job}/report"), &body).await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("report: {status}: {text}");
        }
        info!(job, outcome = %text, "report posted");
        Ok(())
    }

    async fn fail(&self, job: i64, worker: &str, error: &str) -> anyhow::Result<()> {
        let response = self
            .post(
                &format!("/{job}/fail"),
                &json!({ "worker": worker, "error": error }),
            )
            .await?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "fail: {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// Runs the worker until shutdown is signalled (or, with `once`, after one job per slot).
///
/// # Errors
/// When the HTTP client cannot be built.
pub async fn run(config: WorkerConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .user_agent(SCANNER_VERSION)
        .build()?;
    let api = Arc::new(Api {
        http,
        server: config.server.trim_end_matches('/').to_owned(),
        token: config.token.clone(),
    });
    let config = Arc::new(config);
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..config.concurrency.max(1) {
        let name = if config.concurrency > 1 {
            format!("{}-{slot}", config.name)
        } else {
            config.name.clone()
        };
        slots.spawn(slot_loop(
            api.clone(),
            config.clone(),
            name,
            shutdown.clone(),
        ));
    }
    while let Some(ended) = slots.join_next().await {
        if let Err(error) = ended {
            error!(%error, "a worker slot ended abnormally");
        }
    }
    Ok(())
}

/// The poll interval with ±25 % jitter, so workers started together spread out.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(0.75..1.25))
}

/// Sleeps, waking early on shutdown; `false` when shutting down.
async fn pause(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => !*shutdown.borrow(),
        _ = shutdown.changed() => false,
    }
}

async fn slot_loop(
    api: Arc<Api>,
    config: Arc<WorkerConfig>,
    name: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = config.poll_interval;
    loop {
        if *shutdown.borrow() {
            info!(worker = %name, "shutting down");
            return;
        }
        match api.claim(&name).await {
            Ok(Some(job)) => {
                backoff = config.poll_interval;
                process_job(&api, &config, &name, job).await;
                if config.once {
                    return;
                }
            }
            Ok(None) => {
                backoff = config.poll_interval;
                if config.once {
                    info!(worker = %name, "no job waiting");
                    return;
                }
                if !pause(jittered(config.poll_interval), &mut shutdown).await {
                    return;
                }
            }
            Err(error) => {
                warn!(worker = %name, error = %format!("{error:#}"), retry_in = ?backoff, "claiming failed");
                if !pause(jittered(backoff), &mut shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Handles one claimed job to its end; never returns an error, so a bad job cannot stop
/// the worker.
async fn process_job(api: &Api, config: &WorkerConfig, worker: &str, job: ClaimedJob) {
    let started = Instant::now();
    let id = job.job_id;
    info!(job = id, plugin = %job.plugin, version = %job.version, attempt = job.attempt, worker, "claimed");
    let lease = Duration::from_secs(u64::try_from(job.lease_expires_at - unix_now()).unwrap_or(0));
    let heartbeat_every = (lease / 3).max(MIN_HEARTBEAT);

    // The heartbeat covers the download as well as the analysis. A lost lease drops the scan
    // (and with it the download) and kills the analysis child through `cancel`.
    let cancel = Arc::new(AtomicBool::new(false));
    let scan = scan_job(api, config, worker, &job, cancel.clone(), started);
    tokio::pin!(scan);
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    let result = loop {
        tokio::select! {
            result = &mut scan => break result,
            _ = ticker.tick() => match api.heartbeat(id, worker).await {
                Ok(true) => {}
                Ok(false) => {
                    cancel.store(true, Ordering::Relaxed);
                    break Ok(JobResult::LeaseLost);
                }
                // A transient error: the next beat may get through before the lease ends.
                Err(error) => warn!(job = id, error = %format!("{error:#}"), "heartbeat failed"),
            },
        }
    };
    // Posting is retried briefly; if it still fails, the lease expires and the job is
    // claimed again, so nothing is lost either way.
    let mut tries = 0;
    loop {
        tries += 1;
        let posted = match &result {
            Ok(JobResult::Report(report)) => api.report(id, worker, report).await,
            Ok(JobResult::LeaseLost) => {
                warn!(job = id, "lease lost; the job is left to its new holder");
                Ok(())
            }
            Err(error) => {
                let message = format!("{error:#}");
                warn!(job = id, error = %message, "scan attempt failed");
                api.fail(id, worker, &message).await
            }
        };
        match posted {
            Ok(()) => return,
            Err(error) if tries < POST_TRIES => {
                warn!(job = id, error = %format!("{error:#}"), "posting the result failed; retrying");
                tokio::time::sleep(Duration::from_secs(tries)).await;
            }
            Err(error) => {
                error!(job = id, error = %format!("{error:#}"), "could not post the result");
                return;
            }
        }
    }
}

enum JobResult {
    Report(Box<ScanReport>),
    LeaseLost,
}

async fn scan_job(
    api: &Api,
    config: &WorkerConfig,
    worker: &str,
    job: &ClaimedJob,
    cancel: Arc<AtomicBool>,
    started: Instant,
) -> anyhow::Result<JobResult> {
    let expected: PackageDigest = job
        .package_digest
        .parse()
        .map_err(|e| anyhow!("the store sent a bad digest {:?}: {e}", job.package_digest))?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let package = dir.path().join("package.tar");
    let download_started = Instant::now();
    download(&api.http, job, &package, &expected).await?;
    let download_ms = download_started.elapsed().as_millis();

    let mut command = std::process::Command::new(&config.analyzer);
    command
        .args(&config.analyzer_args)
        .arg("analyze")
        .arg(&package);
    if let Some(limits_file) = &config.limits_file {
        command.arg("--limits").arg(limits_file);
    }
    if let Some(hook) = &config.test_hook {
        command.arg("--test-hook").arg(hook);
    }
    if let Some(rules_dir) = &config.rules_dir {
        command.arg("--rules-dir").arg(rules_dir);
    }
    let limits = config.limits;
    let run = tokio::task::spawn_blocking(move || run_confined(command, &limits, &cancel))
        .await
        .context("the analysis thread")?
        .context("starting the analysis child")?;
    let outcome = classify(&run, &limits);
    let mut metrics = Metrics::new();
    add_child_metrics(&mut metrics, &run, &limits);
    metrics.insert("worker.name".into(), json!(worker));
    metrics.insert("worker.attempt".into(), json!(job.attempt));
    metrics.insert("worker.download_ms".into(), json!(download_ms));
    let crashed = |rule: &Rule, message: String| ScanReport {
        findings: vec![Finding::new(rule, message)],
        metrics: Metrics::new(),
        scanner_version: SCANNER_VERSION.to_owned(),
        duration_ms: 0,
    };
    let mut report = match outcome {
        AnalysisOutcome::Report(report) => *report,
        AnalysisOutcome::TimedOut(message) => {
            warn!(job = job.job_id, %message, "analysis timed out");
            crashed(&rules::SCANNER_ANALYSIS_TIMEOUT, message)
        }
        AnalysisOutcome::Crashed(message) => {
            warn!(job = job.job_id, %message, "analysis crashed");
            crashed(&rules::SCANNER_ANALYSIS_CRASHED, message)
        }
        AnalysisOutcome::Failed(message) => bail!(message),
        AnalysisOutcome::Cancelled => return Ok(JobResult::LeaseLost),
    };
    for finding in &report.findings {
        if finding.severity >= Severity::Medium {
            info!(job = job.job_id, rule = %finding.rule, severity = finding.severity.as_str(), "finding");
        }
    }
    report.metrics.extend(metrics);
    // The last gate before the server, which refuses a report beyond its limits whole: the
    // child's output is bounded, but it is read back from another process.
    report.keep_within_server_limits();
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(JobResult::Report(Box::new(report)))
}

fn add_child_metrics(metrics: &mut Metrics, run: &ChildRun, limits: &AnalysisLimits) {
    metrics.insert("analysis.wall_ms".into(), json!(run.wall.as_millis()));
    if let Some(usage) = run.usage {
        metrics.insert("analysis.cpu_ms".into(), json!(usage.cpu.as_millis()));
        metrics.insert("analysis.max_rss_kib".into(), json!(usage.max_rss_kib));
    }
    metrics.insert("analysis.limit.cpu_s".into(), json!(limits.cpu.as_secs()));
    metrics.insert(
        "analysis.limit.memory_mib".into(),
        json!(limits.memory_bytes >> 20),
    );
    metrics.insert(
        "analysis.limit.wall_s".into(),
        json!(limits.wall_timeout.as_secs()),
    );
}

/// Streams the package to `path`, refusing more than `package_size` bytes, and checks its
/// length and SHA-256 against what the store claims.
async fn download(
    http: &reqwest::Client,
    job: &ClaimedJob,
    path: &std::path::Path,
    expected: &PackageDigest,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut response = http
        .get(&job.package_url)
        .send()
        .await
        .with_context(|| format!("downloading {}", job.package_url))?;
    let status = response.status();
    if !status.is_success() {
        bail!("downloading {}: {status}", job.package_url);
    }
    if response
        .content_length()
        .is_some_and(|l| l > job.package_size)
    {
        bail!(
            "the package is announced with {} bytes, more than the expected {}",
            response.content_length().unwrap_or(0),
            job.package_size
        );
    }
    let file = std::fs::File::create(path).context("creating the package file")?;
    let mut writer = DigestingWriter::new(std::io::BufWriter::new(file));
    while let Some(chunk) = response.chunk().await.context("downloading the package")? {
        if writer.length() + chunk.len() as u64 > job.package_size {
            bail!(
                "the package is longer than the expected {} bytes",
                job.package_size
            );
        }
        writer
            .write_all(&chunk)
            .context("writing the package file")?;
    }
    writer.flush().context("writing the package file")?;
    let (digest, length) = writer.finish();
    if length != job.package_size {
        bail!(
            "the package has {length} bytes, expected {}",
            job.package_size
        );
    }
    if &digest != expected {
        bail!(
            "the package's digest is {digest}, expected {}",
            job.package_digest
        );
    }
    Ok(())
}
