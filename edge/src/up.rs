//! `edge up`: store-svc, ingest-svc, sync-svc and health-svc in one process,
//! each on its own port, sharing one metrics endpoint. The services are the
//! same libraries the per-service binaries run; only the wiring is here.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use edge_runtime::{Shutdown, metrics_http, shutdown, telemetry};
use health_svc::{HealthApp, MeshTargets};
use ingest_svc::IngestApp;
use store_svc::StoreApp;
use store_svc::hlc::SystemClock;
use sync_svc::SyncApp;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::cli::UpArgs;

/// The address to dial for a server bound to `addr` (a wildcard bind is
/// reached through loopback).
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

/// Writes `ready` to `path` whole then renames it, so a reader never sees
/// half a file.
pub fn write_ready_file(path: &std::path::Path, ready: &serde_json::Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, ready.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write the ready file {}", path.display()))
}

/// Nice value of sync-svc's thread: the drain's own CPU work (encoding,
/// compressing, HTTP) runs only on what ingest and the store leave. In
/// Kubernetes, where sync-svc is its own pod, its CPU request does this.
const SYNC_NICE: i32 = 10;

/// Builds and runs sync-svc on a thread of its own at a lower CPU priority,
/// with its own single-threaded runtime; returns its address and a receiver
/// for its result.
async fn spawn_sync(
    args: &UpArgs,
    store_url: String,
    shutdown: Shutdown,
) -> anyhow::Result<(
    SocketAddr,
    oneshot::Receiver<Result<(), edge_runtime::ServeError>>,
)> {
    let (addr_tx, addr_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let (config, runtime, client) = (args.sync.clone(), args.runtime.clone(), args.ingest.client);
    std::thread::Builder::new()
        .name("sync-svc".into())
        .spawn(move || {
            // Linux: the nice value belongs to the calling thread only.
            if let Err(err) = rustix::process::setpriority_process(None, SYNC_NICE) {
                tracing::warn!(%err, "cannot lower sync-svc's CPU priority; it runs at normal priority");
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    let _ = addr_tx.send(Err(anyhow::anyhow!("cannot start sync-svc's runtime: {err}")));
                    return;
                }
            };
            rt.block_on(async move {
                match SyncApp::build(&config, &store_url, &runtime, &client).await {
                    Ok(app) => {
                        let _ = addr_tx.send(Ok(app.local_addr()));
                        let _ = done_tx.send(app.run(shutdown).await);
                    }
                    Err(err) => {
                        let _ = addr_tx.send(Err(anyhow::Error::new(err)));
                    }
                }
            });
        })
        .context("cannot start sync-svc's thread")?;
    let addr = addr_rx
        .await
        .context("sync-svc's thread ended before it started")?
        .context("sync-svc could not start")?;
    Ok((addr, done_rx))
}

/// Runs the mesh until SIGTERM or Ctrl-C.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.runtime.only_check_config("edge up") {
        return Ok(());
    }
    telemetry::init_logging(&args.runtime);
    let shutdown = shutdown::on_signal();

    let metrics_listener = TcpListener::bind(args.runtime.metrics_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--metrics-addr)",
                args.runtime.metrics_addr
            )
        })?;
    let metrics_addr = metrics_listener.local_addr()?;
    let metrics = tokio::spawn(metrics_http::serve(metrics_listener, shutdown.clone()));

    let store = StoreApp::build(&args.store, &args.runtime, Arc::new(SystemClock))
        .await
        .context("store-svc could not start")?;
    let store_addr = store.local_addr();
    let site_id = store.site_id().to_owned();

    let mut ingest_config = args.ingest.clone();
    ingest_config.store_url = format!("http://{}", dialable(store_addr));
    let ingest = IngestApp::build(&ingest_config, &args.runtime)
        .await
        .context("ingest-svc could not start")?;
    let ingest_addr = ingest.local_addr();

    // ingest-svc and sync-svc stop on `mesh_stop`, once health-svc has
    // stopped (see the shutdown order below).
    let mesh_stop = Shutdown::new();
    let store_url = format!("http://{}", dialable(store_addr));
    let (sync_addr, sync_task) = spawn_sync(&args, store_url, mesh_stop.clone()).await?;

    // health-svc watches the services of this process at their real
    // addresses and probes the same cloud as sync-svc, with its own probe.
    let targets = MeshTargets {
        ingest_url: format!("http://{}", dialable(ingest_addr)),
        store_url: format!("http://{}", dialable(store_addr)),
        sync_url: format!("http://{}", dialable(sync_addr)),
    };
    let health = HealthApp::build(&args.health, &args.sync.link, &targets, &args.runtime)
        .await
        .context("health-svc could not start")?;
    let health_addr = health.local_addr();

    if let Some(path) = &args.ready_file {
        let ready = serde_json::json!({
            "ingest": dialable(ingest_addr).to_string(),
            "store": dialable(store_addr).to_string(),
            "sync": dialable(sync_addr).to_string(),
            "health": dialable(health_addr).to_string(),
            "metrics": dialable(metrics_addr).to_string(),
            "site_id": site_id,
        });
        write_ready_file(path, &ready)?;
    }
    tracing::info!(
        %site_id,
        ingest = %ingest_addr,
        store = %store_addr,
        sync = %sync_addr,
        health = %health_addr,
        metrics = %metrics_addr,
        "edge mesh up"
    );

    // Shutdown order: health-svc stops first (so it does not report the
    // mesh going down as a fault, and its watchers' streams end cleanly);
    // then ingest-svc and sync-svc (ingest drains its in-flight calls, sync
    // abandons its push: the lease lapses and the batch goes again later),
    // so their calls can still reach store-svc; then store-svc drains and
    // closes the database. If store-svc stops on its own (a serving error),
    // the whole process shuts down rather than leave ingest-svc answering
    // UNAVAILABLE forever. If health-svc fails, the mesh keeps running
    // (nothing at the site depends on it) and the error is reported at exit.
    let health_stopped = Shutdown::new();
    let health_task = tokio::spawn({
        let shutdown = shutdown.clone();
        let stopped = health_stopped.clone();
        async move {
            let result = health.run(shutdown).await;
            if let Err(err) = &result {
                tracing::error!(%err, "health-svc failed; the mesh keeps running");
            }
            stopped.cancel();
            result
        }
    });
    tokio::spawn({
        let (shutdown, mesh_stop) = (shutdown.clone(), mesh_stop.clone());
        async move {
            shutdown.cancelled().await;
            health_stopped.cancelled().await;
            mesh_stop.cancel();
        }
    });
    let store_stop = Shutdown::new();
    let store_task = tokio::spawn({
        let store_stop = store_stop.clone();
        let shutdown = shutdown.clone();
        async move {
            let result = store.run(store_stop).await;
            shutdown.cancel();
            result
        }
    });
    let ingest_result = ingest.run(mesh_stop.clone()).await;
    shutdown.cancel();
    let health_result = health_task.await.context("health-svc task failed")?;
    mesh_stop.cancel();
    let sync_result = sync_task.await.context("sync-svc thread failed")?;
    store_stop.cancel();
    let store_result = store_task.await.context("store-svc task failed")?;
    metrics.await.context("metrics task failed")??;
    ingest_result.context("ingest-svc failed")?;
    sync_result.context("sync-svc failed")?;
    store_result.context("store-svc failed")?;
    health_result.context("health-svc failed")?;
    Ok(())
}
