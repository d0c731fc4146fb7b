//! Running the service: listener (plain or TLS), background tasks, graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::config::{ScanPolicy, Settings};
use crate::router;

/// How long in-flight requests get to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Several dependencies enable
/// rustls with different providers; without an explicit choice rustls refuses to guess.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Serves until SIGTERM or SIGINT, then drains in-flight requests.
pub async fn run(app: AppState, listener: TcpListener) -> anyhow::Result<()> {
    install_crypto_provider();
    app.spawn_key_reloader();
    spawn_rate_limit_gc(&app);
    crate::deltas::spawn(&app);
    crate::release_metadata::spawn(&app);
    crate::catalogue::spawn(
        app.catalogue.clone(),
        app.db.clone(),
        app.settings.database.url.clone(),
    );
    let addr = listener.local_addr()?;
    let settings = app.settings.clone();
    let router = router::build(app);
    // One signal, observed both by the server (stop accepting, drain) and by the deadline that
    // ends the drain after SHUTDOWN_GRACE.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    if settings.scan.policy == ScanPolicy::Scan && settings.scan.embedded_worker {
        // The worker reaches this replica on loopback; with TLS it must use the public URL,
        // whose certificate it can verify.
        let url = if settings.tls_enabled() {
            settings.http.public_url.clone()
        } else {
            format!("http://{addr}")
        };
        spawn_embedded_worker(&settings, url, stop_rx.clone());
    }
    let deadline = {
        let rx = stop_rx.clone();
        async move {
            stopped(rx).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    let serving = async {
        if settings.tls_enabled() {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(
                &settings.tls.cert,
                &settings.tls.key,
            )
            .await
            .with_context(|| {
                format!(
                    "loading TLS certificate {} and key {}",
                    settings.tls.cert, settings.tls.key
                )
            })?;
            let handle = axum_server::Handle::new();
            let on_stop = handle.clone();
            let rx = stop_rx.clone();
            tokio::spawn(async move {
                stopped(rx).await;
                on_stop.graceful_shutdown(None);
            });
            tracing::info!(%addr, "serving HTTPS");
            axum_server::from_tcp_rustls(listener.into_std()?, tls)
                .handle(handle)
                .serve(router.into_make_service_with_connect_info::<SocketAddr>())
                .await?;
        } else {
            let threads = settings.http_threads();
            tracing::info!(%addr, threads, "serving HTTP");
            serve_on_threads(listener, router, threads, stop_rx.clone()).await?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        result = serving => result?,
        () = deadline => tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still running after the grace period; exiting"),
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Serves plain HTTP on `threads` threads, each with its own single-threaded runtime polling
/// the shared listening socket, the way nginx runs one event loop per worker process.
///
/// A connection stays on the thread that accepted it, so a request never wakes another
/// thread: on the work-stealing runtime, moving tasks between workers (futex wake-ups and
/// context switches) was a quarter of the update check's profile. Background jobs stay on
/// the main runtime. Work that blocks goes to `spawn_blocking` as anywhere else; a handler
/// that computed for long would delay only its own thread's connections.
async fn serve_on_threads(
    listener: TcpListener,
    router: axum::Router,
    threads: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = listener.into_std()?;
    let mut serving = Vec::with_capacity(threads);
    for index in 0..threads {
        let listener = listener
            .try_clone()
            .context("sharing the listening socket")?;
        let router = router.clone();
        let stop = stop.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("http-{index}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting an HTTP thread's runtime")
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            let service =
                                router.into_make_service_with_connect_info::<SocketAddr>();
                            axum::serve(listener, service)
                                .with_graceful_shutdown(stopped(stop))
                                .await?;
                            anyhow::Ok(())
                        })
                    });
                let _ = done_tx.send(served);
            })
            .context("starting an HTTP thread")?;
        serving.push(done_rx);
    }
    for done in serving {
        // A thread that ended without a word panicked; the panic has been printed.
        done.await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("an HTTP thread panicked")))?;
    }
    Ok(())
}

/// Resolves once the stop signal is raised (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn spawn_rate_limit_gc(app: &AppState) {
    let app = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            app.limits.shrink();
        }
    });
}

/// Resolves on SIGTERM (how orchestrators stop containers) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}

/// Checks the embedded worker's rule directory and limits file before serving, so that a
/// broken one stops the server with its name instead of failing in a child that restarts.
pub fn check_embedded_worker(settings: &Settings) -> anyhow::Result<()> {
    if settings.scan.policy != ScanPolicy::Scan || !settings.scan.embedded_worker {
        return Ok(());
    }
    if !settings.scan.rules_dir.is_empty() {
        plugstore_scanner::RuleSet::with_directory(std::path::Path::new(&settings.scan.rules_dir))
            .with_context(|| format!("scan.rules_dir = {:?}", settings.scan.rules_dir))?;
    }
    if !settings.scan.limits_file.is_empty() {
        plugstore_scanner::limits::ScanLimits::from_file(std::path::Path::new(
            &settings.scan.limits_file,
        ))
        .with_context(|| format!("scan.limits_file = {:?}", settings.scan.limits_file))?;
    }
    Ok(())
}

/// Runs one scan worker as a child so the one-command store scans too: this binary's
/// `scanner worker`, the same program as `plugstore-scanner worker`, so there is no second
/// binary to build or ship. A worker that exits is restarted with backoff (its job, if any,
/// is claimed again once the lease runs out). Stops with the server.
fn spawn_embedded_worker(
    settings: &Settings,
    server_url: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let binary = match std::env::current_exe() {
        Ok(binary) => binary,
        Err(e) => {
            tracing::error!(error = %e, "cannot find this executable to start the embedded scan worker; versions wait in `scanning`");
            return;
        }
    };
    let rules_dir = settings.scan.rules_dir.clone();
    let limits_file = settings.scan.limits_file.clone();
    let token_file = settings.data_dir.join("keys/worker-token");
    let token = settings.scan.worker_token.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let mut command = tokio::process::Command::new(&binary);
            command.args([
                "scanner",
                "worker",
                "--server",
                &server_url,
                "--name",
                &format!("embedded-{}", std::process::id()),
            ]);
            if !rules_dir.is_empty() {
                command.arg("--rules-dir").arg(&rules_dir);
            }
            if !limits_file.is_empty() {
                command.arg("--limits").arg(&limits_file);
            }
            if token.is_empty() {
                command.arg("--token-file").arg(&token_file);
            } else {
                command.env("PLUGSTORE_WORKER_TOKEN", &token);
            }
            command.kill_on_drop(true);
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(e) => {
                    tracing::error!(error = %e, binary = %binary.display(), "cannot start the embedded scan worker");
                    return;
                }
            };
            tracing::info!(pid = child.id(), "started the embedded scan worker");
            let started = std::time::Instant::now();
            tokio::select! {
                status = child.wait() => {
                    tracing::warn!(?status, "the embedded scan worker exited; restarting it");
                }
                _ = async { stop.wait_for(|stopped| *stopped).await.is_ok() } => {
                    // A killed worker loses nothing: its lease expires and the job is claimed again.
                    let _ = child.kill().await;
                    return;
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    });
}
