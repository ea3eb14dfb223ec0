//! pagewright: a render platform over a shared headless Chromium.
//!
//! A request's path: [`api`] parses and checks it and builds a [`render::RenderJob`]; [`render`] leases a
//! page from [`pool`], which opens pages in the Chromium that [`browser`] keeps alive; the job drives the
//! page through [`page`]'s operations and the output goes back. See `docs/architecture.md`.

pub mod api;
pub mod browser;
pub mod config;
pub mod metrics;
pub mod page;
pub mod pool;
pub mod render;

use std::future::Future;

use anyhow::Context;
use tokio::net::TcpListener;

use api::AppState;
use browser::BrowserSupervisor;
use config::Settings;
use metrics::Metrics;
use pool::PagePool;
use render::Renderer;

/// Starts the browser supervisor and the pool; the browser launches in the background.
pub fn start_services(settings: Settings) -> AppState {
    let metrics = Metrics::new();
    let browser = BrowserSupervisor::start(settings.browser.clone(), metrics.clone());
    let pool = PagePool::new(browser.clone(), settings.pool.clone(), metrics.clone());
    let renderer = Renderer::new(pool.clone(), metrics.clone());
    AppState {
        settings,
        browser,
        pool,
        renderer,
        metrics,
    }
}

/// Serves the API on `listener` until `shutdown` resolves; then stops accepting, gives in-flight
/// requests the grace period to finish, and closes the pool and the browser.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = state.settings.shutdown_grace;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, api::app(state.clone()))
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
        .into_future();
    tokio::pin!(server);
    let served = tokio::select! {
        served = &mut server => Some(served),
        () = shutdown => None,
    };
    let served = match served {
        Some(served) => served,
        None => {
            tracing::info!(?grace, "shutting down: finishing in-flight requests");
            stop_tx.send_replace(true);
            match tokio::time::timeout(grace, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::warn!("grace period over; abandoning the requests still running");
                    Ok(())
                }
            }
        }
    };
    state.pool.close().await;
    state.browser.shutdown().await;
    served.context("serving HTTP failed")
}

/// `pagewright serve`: bind, start, serve until SIGINT or SIGTERM.
pub async fn run_server(settings: Settings) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {} failed", settings.listen))?;
    tracing::info!(address = %listener.local_addr()?, "pagewright is listening");
    let state = start_services(settings);
    serve(state, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
}
