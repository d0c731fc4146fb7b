//! Running the service: listener (plain or TLS), background tasks, graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::AppState;
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
    let addr = listener.local_addr()?;
    let settings = app.settings.clone();
    let service = router::build(app).into_make_service_with_connect_info::<SocketAddr>();
    // One signal, observed both by the server (stop accepting, drain) and by the deadline that
    // ends the drain after SHUTDOWN_GRACE.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
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
                .serve(service)
                .await?;
        } else {
            tracing::info!(%addr, "serving HTTP");
            axum::serve(listener, service)
                .with_graceful_shutdown(stopped(stop_rx.clone()))
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
