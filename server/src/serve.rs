//! Running the service: listener (plain or TLS), background tasks, graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::config::{ScanPolicy, Settings};
use crate::lingering_close::{LingeringAcceptor, LingeringClose};
use crate::router;
use crate::send_timeout::SendTimeout;

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
                .map(|tls| {
                    tls.acceptor(LingeringAcceptor {
                        send_timeout: settings.send_timeout(),
                    })
                })
                .handle(handle)
                .serve(router.into_make_service_with_connect_info::<SocketAddr>())
                .await?;
        } else {
            let threads = settings.http_threads();
            tracing::info!(%addr, threads, "serving HTTP");
            serve_on_threads(
                listener,
                router,
                threads,
                settings.send_timeout(),
                stop_rx.clone(),
            )
            .await?;
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

/// Serves plain HTTP on `threads` threads, each with its own single-threaded runtime, the
/// way nginx runs one event loop per worker process.
///
/// A connection stays on the thread it was dealt, so a request never wakes another thread:
/// on the work-stealing runtime, moving tasks between workers (futex wake-ups and context
/// switches) was a quarter of the update check's profile. Connections are accepted on the
/// main runtime and dealt in turn (see [`deal_connections`]). Background jobs stay on the
/// main runtime. Work that blocks goes to `spawn_blocking` as anywhere else; a handler that
/// computed for long would delay only its own thread's connections.
async fn serve_on_threads(
    listener: TcpListener,
    router: axum::Router,
    threads: usize,
    send_timeout: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let local_addr = listener.local_addr()?;
    let mut serving = Vec::with_capacity(threads);
    let mut dealt_to = Vec::with_capacity(threads);
    for index in 0..threads {
        let (deal, dealt) = tokio::sync::mpsc::channel(DEALT_BACKLOG);
        dealt_to.push(deal);
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
                            tokio::spawn(keep_a_timer_armed());
                            let connections = DealtConnections {
                                dealt,
                                local_addr,
                                send_timeout,
                            }
                            // Answers are written whole, and a response's last bytes
                            // should not wait for the client's ACK of its first.
                            .tap_io(|connection| {
                                let _ = connection.get_ref().get_ref().set_nodelay(true);
                            });
                            let service =
                                router.into_make_service_with_connect_info::<SocketAddr>();
                            axum::serve(connections, service)
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
    let dealer = tokio::spawn(deal_connections(listener, dealt_to, stop));
    let served = async {
        for done in serving {
            // A thread that ended without a word panicked; the panic has been printed.
            done.await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("an HTTP thread panicked")))?;
        }
        anyhow::Ok(())
    }
    .await;
    dealer.abort();
    served
}

/// Keeps a timer pending on an HTTP thread's runtime, always due sooner than any request's
/// timeout.
///
/// Every request arms a timeout (`http::with_timeout`). When the runtime's timer wheel was
/// empty as it went to sleep, tokio cannot tell that the new timer is armed from the runtime's
/// own thread, so it wakes the runtime through its eventfd: one more system call per request,
/// and one more pass through `epoll_wait` (strace counted one eventfd write per request).
/// A timer due within [`ARMED_TIMER_PERIOD`] is always earlier than a request's timeout (at
/// least a second), so tokio never needs to.
async fn keep_a_timer_armed() {
    let mut tick = tokio::time::interval(ARMED_TIMER_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// See [`keep_a_timer_armed`]: shorter than the shortest request timeout (1 s).
const ARMED_TIMER_PERIOD: Duration = Duration::from_millis(500);

/// How many accepted connections may wait for their HTTP thread; beyond that, accepting
/// waits, and new connections wait in the kernel's backlog.
const DEALT_BACKLOG: usize = 256;

/// An accepted connection on its way to the HTTP thread that serves it.
type DealtConnection = (std::net::TcpStream, SocketAddr);

/// Accepts connections until the stop signal and deals them to the HTTP threads in turn, so
/// that each serves its share.
///
/// Threads that all poll one listening socket do not share: whichever wakes first takes the
/// connection, and under load one thread was seen holding all 16 of a benchmark's keep-alive
/// connections while the other idled, halving throughput. Dealing costs one wake-up of the
/// receiving thread per connection, not per request.
async fn deal_connections(
    mut listener: TcpListener,
    threads: Vec<tokio::sync::mpsc::Sender<DealtConnection>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let stop = stopped(stop);
    tokio::pin!(stop);
    let mut next = 0;
    loop {
        // axum's accept logs and rides out errors (a full file table waits a second).
        let (stream, addr) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut stop => return,
        };
        // Each runtime registers its connections with its own reactor.
        let mut connection = match stream.into_std() {
            Ok(stream) => (stream, addr),
            Err(e) => {
                tracing::warn!(error = %e, "could not hand over an accepted connection");
                continue;
            }
        };
        // A thread that has ended (it failed; the store is stopping) is passed over.
        for _ in 0..threads.len() {
            let thread = &threads[next];
            next = (next + 1) % threads.len();
            match thread.send(connection).await {
                Ok(()) => break,
                Err(tokio::sync::mpsc::error::SendError(returned)) => connection = returned,
            }
        }
    }
}

/// The connections dealt to one HTTP thread, as axum's listener.
struct DealtConnections {
    dealt: tokio::sync::mpsc::Receiver<DealtConnection>,
    local_addr: SocketAddr,
    send_timeout: Duration,
}

impl axum::serve::Listener for DealtConnections {
    type Io = LingeringClose<SendTimeout<tokio::net::TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some((stream, addr)) = self.dealt.recv().await else {
                // The dealer stopped: so did the store, and the graceful shutdown ends this.
                return std::future::pending().await;
            };
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => {
                    let stream = SendTimeout::new(stream, self.send_timeout);
                    return (LingeringClose::new(stream), addr);
                }
                Err(e) => tracing::warn!(error = %e, "could not register a dealt connection"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
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
            // The worker stops when this pipe closes, which it does however the store ends.
            command
                .arg("--exit-with-stdin")
                .stdin(std::process::Stdio::piped())
                .kill_on_drop(true);
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(e) => {
                    tracing::error!(error = %e, binary = %binary.display(), "cannot start the embedded scan worker");
                    return;
                }
            };
            // Held until the worker ends: tokio's `Child::wait` closes a stdin it still holds,
            // which the worker would take for the end of its store.
            let _lifeline = child.stdin.take();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// How many connections each receiver holds once `expected` have arrived in all.
    async fn dealt_counts(
        receivers: &mut [tokio::sync::mpsc::Receiver<DealtConnection>],
        expected: usize,
    ) -> Vec<usize> {
        let mut counts = vec![0; receivers.len()];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while counts.iter().sum::<usize>() < expected && tokio::time::Instant::now() < deadline {
            for (count, receiver) in counts.iter_mut().zip(receivers.iter_mut()) {
                while receiver.try_recv().is_ok() {
                    *count += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        counts
    }

    #[tokio::test]
    async fn connections_are_dealt_evenly_and_ended_threads_passed_over() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (senders, mut receivers): (Vec<_>, Vec<_>) =
            (0..3).map(|_| tokio::sync::mpsc::channel(8)).unzip();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let dealer = tokio::spawn(deal_connections(listener, senders, stop_rx));

        let mut clients = Vec::new();
        for _ in 0..12 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        assert_eq!(dealt_counts(&mut receivers, 12).await, [4, 4, 4]);

        // The second thread ends: its turns go to the others.
        let mut ended = receivers.remove(1);
        ended.close();
        for _ in 0..6 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        assert_eq!(dealt_counts(&mut receivers, 6).await, [3, 3]);

        // The stop signal ends dealing, and the listening socket closes with it.
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), dealer)
            .await
            .expect("the dealer stops")
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
