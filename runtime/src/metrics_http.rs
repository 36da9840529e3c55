//! The plaintext operations port (default 9464): `GET /metrics` (the
//! process-wide registry of [`crate::telemetry`]), `GET /healthz` (the
//! process answers) and `GET /readyz` (every gRPC server of the process is
//! serving). The gRPC ports speak TLS, which kubelet's gRPC probes and a
//! plain Prometheus scrape do not, so this port carries probes and scrapes;
//! it serves nothing else and no data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::http::{StatusCode, header};
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

/// The serving state of each gRPC server of the process.
#[derive(Default)]
pub struct Readiness {
    servers: Mutex<Vec<(&'static str, Arc<AtomicBool>)>>,
}

/// One server's place in [`Readiness`].
#[derive(Clone)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    /// Marks the server serving or not.
    pub fn set(&self, serving: bool) {
        self.0.store(serving, Ordering::Relaxed);
    }
}

impl Readiness {
    /// Adds a server, serving from now on.
    pub fn register(&self, name: &'static str) -> Ready {
        let flag = Arc::new(AtomicBool::new(true));
        let mut servers = match self.servers.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        servers.push((name, flag.clone()));
        Ready(flag)
    }

    /// The servers not serving, or `None` when there is no server at all.
    fn not_serving(&self) -> Option<Vec<&'static str>> {
        let servers = match self.servers.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        (!servers.is_empty()).then(|| {
            servers
                .iter()
                .filter(|(_, f)| !f.load(Ordering::Relaxed))
                .map(|(n, _)| *n)
                .collect()
        })
    }
}

/// The process's readiness.
pub fn readiness() -> &'static Readiness {
    static READINESS: OnceLock<Readiness> = OnceLock::new();
    READINESS.get_or_init(Readiness::default)
}

async fn ready() -> impl IntoResponse {
    match readiness().not_serving() {
        Some(down) if down.is_empty() => (StatusCode::OK, "ready\n".to_owned()),
        Some(down) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not serving: {}\n", down.join(", ")),
        ),
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned()),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until
/// `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Binds `addr` and serves in the background until `shutdown`; returns the
/// bound address.
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
    tracing::info!(addr = %bound, "operations port listening: /metrics, /healthz, /readyz");
    Ok((bound, tokio::spawn(serve(listener, shutdown))))
}
