//! `edge up`: store-svc, ingest-svc, sync-svc and health-svc in one process,
//! each on its own port, sharing one metrics endpoint. The services are the
//! same libraries the per-service binaries run; only the wiring is here.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use edge_runtime::{OnEarlyExit, Service, Services, Started};
use health_svc::{HealthApp, MeshTargets};
use ingest_svc::IngestApp;
use store_svc::StoreApp;
use store_svc::hlc::SystemClock;
use sync_svc::SyncApp;

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

/// The order the services stop in (see [`Services`]): health-svc first, so
/// it does not report the mesh going down as a fault and its watchers'
/// streams end cleanly; then ingest-svc and sync-svc (ingest drains its
/// in-flight calls, sync abandons its push: the lease lapses and the batch
/// goes again later), while their calls can still reach store-svc; then
/// store-svc drains and closes the database.
const HEALTH_STAGE: usize = 0;
const CALLERS_STAGE: usize = 1;
const STORE_STAGE: usize = 2;

/// Runs the mesh until SIGTERM or Ctrl-C.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    // Named as the operator typed it (the process is `edge`).
    if args.runtime.only_check_config("edge up") {
        return Ok(());
    }
    edge_runtime::run_process(&args.runtime, |started| serve(&args, started)).await
}

/// Builds the four services, each on its own port, and runs them until the
/// process stops. If store-svc or ingest-svc stops on its own (a serving
/// error), the whole process shuts down rather than leave the rest answering
/// UNAVAILABLE forever; if health-svc or sync-svc fails, the mesh keeps
/// ingesting (nothing at the site depends on them) and the error is
/// reported at exit.
async fn serve(args: &UpArgs, started: Started) -> anyhow::Result<()> {
    let mut services = Services::new(started.shutdown.clone());

    let store = StoreApp::build(&args.store, &args.runtime, Arc::new(SystemClock))
        .await
        .context("store-svc could not start")?;
    let store_addr = store.local_addr();
    let site_id = store.site_id().to_owned();
    let store_url = format!("http://{}", dialable(store_addr));
    services.spawn("store-svc", STORE_STAGE, OnEarlyExit::StopProcess, store);

    let mut ingest_config = args.ingest.clone();
    ingest_config.store_url = store_url.clone();
    let ingest = IngestApp::build(&ingest_config, &args.runtime)
        .await
        .context("ingest-svc could not start")?;
    let ingest_addr = ingest.local_addr();
    services.spawn(
        "ingest-svc",
        CALLERS_STAGE,
        OnEarlyExit::StopProcess,
        ingest,
    );

    let (sync_config, runtime, client) =
        (args.sync.clone(), args.runtime.clone(), args.ingest.client);
    let sync_addr =
        services
            .spawn_on_thread(
                "sync-svc",
                CALLERS_STAGE,
                OnEarlyExit::KeepRunning,
                SYNC_NICE,
                {
                    let store_url = store_url.clone();
                    move || async move {
                        SyncApp::build(&sync_config, &store_url, &runtime, &client).await
                    }
                },
            )
            .await?;

    // health-svc watches the services of this process at their real
    // addresses and probes the same cloud as sync-svc, with its own probe.
    let targets = MeshTargets {
        ingest_url: format!("http://{}", dialable(ingest_addr)),
        store_url,
        sync_url: format!("http://{}", dialable(sync_addr)),
    };
    let health = HealthApp::build(&args.health, &args.sync.link, &targets, &args.runtime)
        .await
        .context("health-svc could not start")?;
    let health_addr = health.local_addr();
    services.spawn("health-svc", HEALTH_STAGE, OnEarlyExit::KeepRunning, health);

    if let Some(path) = &args.ready_file {
        let ready = serde_json::json!({
            "ingest": dialable(ingest_addr).to_string(),
            "store": dialable(store_addr).to_string(),
            "sync": dialable(sync_addr).to_string(),
            "health": dialable(health_addr).to_string(),
            "metrics": dialable(started.metrics_addr).to_string(),
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
        metrics = %started.metrics_addr,
        "edge mesh up"
    );
    services.run().await?;
    Ok(())
}
