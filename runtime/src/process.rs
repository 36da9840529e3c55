//! The body every service binary shares, so each `main.rs` is only its
//! flags and its app: logs and traces, SIGTERM, the `/metrics` endpoint, the
//! service until shutdown, and the last spans flushed on every exit path
//! (an error included: the spans around a failure are the ones wanted).

use std::future::Future;
use std::net::SocketAddr;

use crate::config::RuntimeArgs;
use crate::shutdown::Shutdown;
use crate::{metrics_http, shutdown, telemetry};

/// What the body of a process is handed once logging, the signal handlers
/// and the metrics endpoint are up.
#[derive(Debug, Clone)]
pub struct Started {
    /// Cancelled on SIGTERM or SIGINT.
    pub shutdown: Shutdown,
    /// Where `/metrics` listens (the real port when bound to 0).
    pub metrics_addr: SocketAddr,
}

/// Runs one service process: `serve` gets the shutdown token and runs the
/// service until it is cancelled.
pub async fn run_service<F, Fut, E>(runtime: &RuntimeArgs, serve: F) -> Result<(), E>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: From<std::io::Error> + From<tokio::task::JoinError>,
{
    run_process(runtime, |started| serve(started.shutdown)).await
}

/// Runs a process of one or several services: `body` runs them until
/// [`Started::shutdown`] is cancelled.
pub async fn run_process<F, Fut, E>(runtime: &RuntimeArgs, body: F) -> Result<(), E>
where
    F: FnOnce(Started) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: From<std::io::Error> + From<tokio::task::JoinError>,
{
    if runtime.only_check_config(&program_name()) {
        return Ok(());
    }
    telemetry::init_logging(runtime);
    let result = async {
        let shutdown = shutdown::on_signal();
        let (metrics_addr, metrics) =
            metrics_http::spawn(runtime.metrics_addr, shutdown.clone()).await?;
        body(Started {
            shutdown: shutdown.clone(),
            metrics_addr,
        })
        .await?;
        // The body may end on its own (a service failed): the endpoint
        // stops with it.
        shutdown.cancel();
        metrics.await??;
        Ok(())
    }
    .await;
    telemetry::shutdown();
    result
}

/// The running binary's file name, for messages.
fn program_name() -> String {
    std::env::args()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .map_or_else(|| "edge".to_owned(), |n| n.to_string_lossy().into_owned())
}
