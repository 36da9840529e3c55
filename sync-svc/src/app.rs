//! Building and running sync-svc: bind the gRPC listener, then (in the
//! background, since store-svc may not be up yet) learn the site id from
//! store-svc, start the probe, the drain workers, the dead-letter reporter
//! and the backlog refresher. `edge up` uses this exactly as the `sync-svc`
//! binary does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_cloud_link::gauges::register_link_gauges;
use edge_cloud_link::{CloudClient, LinkConfigError, Prober};
use edge_proto::v1 as pb;
use edge_proto::v1::sync_service_server::SyncServiceServer;
use edge_runtime::client::{ClientArgs, InvalidEndpoint};
use edge_runtime::{BindError, GrpcServer, RuntimeArgs, ServeError, Service, Shutdown};
use tokio::sync::OnceCell;

use crate::config::{CloudApi, SyncConfig};
use crate::drain::{Drain, StoreClients};
use crate::grpc::SyncGrpc;
use crate::metrics::SyncMetrics;
use crate::status::StatusBoard;

/// sync-svc could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The gRPC address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The store URL is not a valid endpoint.
    #[error(transparent)]
    Store(#[from] InvalidEndpoint),
    /// The cloud URL or the HTTP client is unusable.
    #[error(transparent)]
    Cloud(#[from] LinkConfigError),
    /// A setting is out of its bounds.
    #[error("{0}")]
    Config(String),
    /// TLS or credentials are misconfigured.
    #[error(transparent)]
    Security(#[from] edge_runtime::security::SecurityError),
}

/// A built sync-svc, listening and ready to run.
pub struct SyncApp {
    server: GrpcServer,
    store: StoreClients,
    cloud: Option<CloudClient>,
    config: SyncConfig,
    status: StatusBoard,
    drain: Arc<OnceCell<Arc<Drain>>>,
}

impl SyncApp {
    /// Binds `config.sync_addr` and prepares clients for store-svc at
    /// `store_url` and for the cloud.
    pub async fn build(
        config: &SyncConfig,
        store_url: &str,
        runtime: &RuntimeArgs,
        client: &ClientArgs,
    ) -> Result<SyncApp, StartError> {
        config.validate().map_err(StartError::Config)?;
        let cloud = config.link.client(config.client_use())?;
        let credentials = runtime.security.mesh_client()?;
        let store = StoreClients::new(
            edge_runtime::client::channel(store_url, client, &credentials)?,
            runtime.max_message_bytes,
        );
        let security = runtime
            .security
            .server_via_store("sync-svc", store_url, client, Shutdown::new())
            .await?;
        let server = GrpcServer::bind(
            config.sync_addr,
            "--sync-addr",
            runtime.shutdown_grace,
            security,
        )
        .await?;
        let (state, url) = match &cloud {
            Some(c) => (pb::SyncLinkState::Offline, c.base_url().to_owned()),
            None => (pb::SyncLinkState::Disabled, String::new()),
        };
        let status = StatusBoard::new(state, url, config.cloud_api == CloudApi::Simple);
        let drain = Arc::new(OnceCell::new());
        let service = SyncServiceServer::new(SyncGrpc::new(
            status.clone(),
            drain.clone(),
            cloud.is_some(),
            server.streams_stop(),
        ));
        let server = server.add_service(service);
        Ok(SyncApp {
            server,
            store,
            cloud,
            config: config.clone(),
            status,
            drain,
        })
    }
}

impl Service for SyncApp {
    fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves and drains until `shutdown`. A push in flight at shutdown is
    /// abandoned; its lease lapses and the batch is pushed again later (the
    /// cloud answers duplicate for anything it already stored).
    async fn run(self, shutdown: Shutdown) -> Result<(), ServeError> {
        let background = match self.cloud {
            None => {
                tracing::info!(
                    "no cloud URL configured (--cloud-url / EDGE_CLOUD_URL): the site runs offline; readings stay in the outbox"
                );
                None
            }
            Some(cloud) => Some(tokio::spawn(start_drain(
                self.store,
                cloud,
                self.config,
                self.status,
                self.drain,
                shutdown.clone(),
            ))),
        };
        let served = self.server.run(shutdown.clone()).await;
        shutdown.cancel();
        if let Some(task) = background
            && let Err(err) = task.await
        {
            tracing::error!(%err, "sync background task failed");
        }
        tracing::info!("sync-svc stopped");
        served
    }
}

/// Learns the site id, then runs the probe, workers, reporter, the pull of
/// the cloud's change feed and the backlog refresher until `stop`. A cloud
/// that only offers the simple API has no feed: nothing is pulled.
async fn start_drain(
    store: StoreClients,
    cloud: CloudClient,
    config: SyncConfig,
    status: StatusBoard,
    cell: Arc<OnceCell<Arc<Drain>>>,
    stop: Shutdown,
) {
    let Some(site_id) = site_id(&store, &status, &stop).await else {
        return;
    };
    tracing::info!(%site_id, cloud = cloud.base_url(), api = ?config.cloud_api, "sync-svc draining the outbox to the cloud");
    let prober = Prober::spawn(cloud.clone(), config.link.probe, stop.clone());
    register_link_gauges(
        &edge_runtime::telemetry::meter("sync-svc"),
        "sync",
        &prober.watch(),
    );
    let drain = Drain::new(
        store,
        cloud,
        prober.clone(),
        site_id,
        config.clone(),
        status.clone(),
        SyncMetrics::new(),
    );
    let _ = cell.set(drain.clone());

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..config.sync_concurrency.max(1) {
        tasks.spawn(drain.clone().worker(stop.clone()));
    }
    if config.cloud_api == CloudApi::Batch {
        tasks.spawn(crate::report::run(drain.clone(), stop.clone()));
        tasks.spawn(crate::pull::run(drain.clone(), stop.clone()));
    }
    tasks.spawn(refresh_backlog(drain.clone(), stop.clone()));
    tasks.spawn(follow_link(prober, status, stop.clone()));
    while let Some(done) = tasks.join_next().await {
        if let Err(err) = done {
            tracing::error!(%err, "a sync task failed");
        }
    }
}

/// The site id from store-svc, asking until it answers or `stop`.
async fn site_id(store: &StoreClients, status: &StatusBoard, stop: &Shutdown) -> Option<String> {
    let mut warned = false;
    loop {
        match store
            .readings
            .clone()
            .get_stats(pb::GetStatsRequest {})
            .await
        {
            Ok(stats) => return Some(stats.into_inner().site_id),
            Err(err) => {
                if !warned {
                    tracing::warn!(error = %err.message(), "waiting for store-svc to learn the site id");
                    warned = true;
                }
                status.error(&format!("store-svc: {}", err.message()));
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Keeps the backlog figures in the status fresh.
async fn refresh_backlog(drain: Arc<Drain>, stop: Shutdown) {
    loop {
        if let Ok(stats) = drain
            .store
            .readings
            .clone()
            .get_stats(pb::GetStatsRequest {})
            .await
        {
            let stats = stats.into_inner();
            drain.status.backlog(
                stats.unsynced_versions,
                stats.dead_letters,
                stats.stuck_versions,
            );
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(drain.config.stats_interval) => {}
        }
    }
}

/// Mirrors the probe's link changes into the status.
async fn follow_link(prober: Prober, status: StatusBoard, stop: Shutdown) {
    let mut link = prober.watch();
    loop {
        let since = link.borrow_and_update().reachability_since;
        status.set_link_since(since);
        tokio::select! {
            () = stop.cancelled() => return,
            changed = link.changed() => if changed.is_err() { return },
        }
    }
}
