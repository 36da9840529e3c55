//! The Prometheus scrape endpoint: `GET /metrics` on its own port (default
//! 9464), serving the process-wide registry of [`crate::telemetry`].

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

async fn render() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics().render(),
    )
}

/// Serves `/metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(render));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Binds `addr` and serves `/metrics` in the background until `shutdown`;
/// returns the bound address.
pub async fn spawn(
    addr: std::net::SocketAddr,
    shutdown: Shutdown,
) -> std::io::Result<(
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = TcpListener::bind(addr).await.map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot listen on {addr} (--metrics-addr): {err}"),
        )
    })?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "metrics endpoint listening on /metrics");
    Ok((bound, tokio::spawn(serve(listener, shutdown))))
}
