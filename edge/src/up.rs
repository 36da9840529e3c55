//! `edge up`: store-svc, ingest-svc, sync-svc and health-svc in one process,
//! each on its own port, sharing one metrics endpoint. The services are the
//! same libraries the per-service binaries run; only the wiring is here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use edge_runtime::security::SecurityArgs;
use edge_runtime::tls::site_ca;
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

/// Fills in what a site needs to be secure with no setting at all: a mesh
/// token of this process's own (the services share it in memory), and,
/// unless a certificate is configured or `--insecure-plaintext` is given,
/// the site CA and a server certificate in `<data-dir>/tls/`, the CA's
/// fingerprint printed so an operator can check it on a gateway. Returns
/// the CA file clients should trust, if the site made one.
fn secure(
    security: &mut SecurityArgs,
    data_dir: &Path,
    extra_names: &[String],
) -> anyhow::Result<Option<PathBuf>> {
    if security.mesh_token_file.is_none() && security.mesh_token.is_none() {
        security.mesh_token = Some(edge_credentials::generate("edgemesh_"));
    }
    if security.insecure_plaintext || security.tls_cert.is_some() {
        return Ok(None);
    }
    let pki = site_ca::ensure(&data_dir.join("tls"), &site_ca::server_names(extra_names))
        .context("cannot prepare the site's TLS certificates")?;
    if pki.created_ca {
        println!("created the site CA {}", pki.ca.display());
    }
    println!("site CA fingerprint (SHA-256): {}", pki.ca_fingerprint);
    tracing::info!(ca = %pki.ca.display(), fingerprint = %pki.ca_fingerprint, "serving TLS with the site's own CA");
    security.tls_cert = Some(pki.cert);
    security.tls_key = Some(pki.key);
    security.mesh_ca = Some(pki.ca.clone());
    Ok(Some(pki.ca))
}

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
    let mut runtime = args.runtime.clone();
    // The certificate names the addresses the ports are bound to, so a
    // gateway dialling that address (and the services dialling each other)
    // can check it.
    let mut names = args.tls_san.clone();
    for addr in [
        args.ingest.ingest_addr,
        args.health.health_addr,
        args.store.store_addr,
        args.sync.sync_addr,
    ] {
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
    }
    let site_ca = secure(&mut runtime.security, &args.store.data_dir, &names)?;
    let runtime = runtime;

    let store = StoreApp::build(&args.store, &runtime, Arc::new(SystemClock))
        .await
        .context("store-svc could not start")?;
    let store_addr = store.local_addr();
    let site_id = store.site_id().to_owned();
    let operator_token = store.operator_token_path().to_owned();
    let store_url = format!("http://{}", dialable(store_addr));
    services.spawn("store-svc", STORE_STAGE, OnEarlyExit::StopProcess, store);

    let mut ingest_config = args.ingest.clone();
    ingest_config.store_url = store_url.clone();
    let ingest = IngestApp::build(&ingest_config, &runtime)
        .await
        .context("ingest-svc could not start")?;
    let ingest_addr = ingest.local_addr();
    services.spawn(
        "ingest-svc",
        CALLERS_STAGE,
        OnEarlyExit::StopProcess,
        ingest,
    );

    let (sync_config, sync_runtime, client) =
        (args.sync.clone(), runtime.clone(), args.ingest.client);
    let sync_addr = services
        .spawn_on_thread(
            "sync-svc",
            CALLERS_STAGE,
            OnEarlyExit::KeepRunning,
            SYNC_NICE,
            {
                let store_url = store_url.clone();
                move || async move {
                    SyncApp::build(&sync_config, &store_url, &sync_runtime, &client).await
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
    let health = HealthApp::build(&args.health, &args.sync.link, &targets, &runtime)
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
            "ca": site_ca.as_ref().map(|p| p.display().to_string()),
            "operator_token_file": operator_token.display().to_string(),
            "tls": !runtime.security.insecure_plaintext,
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
