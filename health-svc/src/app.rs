//! Building and running health-svc: bind the gRPC listener, prepare the
//! cloud client and a checker per mesh service; then run the probe, the
//! checks and the server until shutdown. Nothing here waits on the cloud or
//! on another service: health-svc starts and answers whatever is down.

use std::net::SocketAddr;
use std::time::SystemTime;

use edge_cloud_link::gauges::register_link_gauges;
use edge_cloud_link::{ClientUse, CloudClient, CloudLinkArgs, LinkConfigError, LinkStatus, Prober};
use edge_proto::v1::cloud_health_service_server::CloudHealthServiceServer;
use edge_runtime::client::InvalidEndpoint;
use edge_runtime::{BindError, GrpcServer, RuntimeArgs, ServeError, Service, Shutdown};
use tokio::task::JoinSet;

use crate::board::{HealthBoard, Link, ServiceHealth, Serving};
use crate::config::{HealthConfig, MeshTargets};
use crate::grpc::HealthGrpc;
use crate::mesh::{self, Checker};

/// Largest `/health` answer read: it carries no data.
const PROBE_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// health-svc could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The gRPC address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A mesh service's address is malformed.
    #[error("{flag}: {source}")]
    MeshUrl {
        /// The flag that set it.
        flag: &'static str,
        /// What is wrong with it.
        #[source]
        source: InvalidEndpoint,
    },
    /// The cloud URL or the HTTP client is unusable.
    #[error(transparent)]
    Cloud(#[from] LinkConfigError),
    /// A timing flag makes no sense.
    #[error("{0} must be more than zero")]
    ZeroDuration(&'static str),
    /// TLS or credentials are misconfigured.
    #[error(transparent)]
    Security(#[from] edge_runtime::security::SecurityError),
}

/// A built health-svc, listening and ready to run.
pub struct HealthApp {
    server: GrpcServer,
    board: HealthBoard,
    cloud: Option<CloudClient>,
    link: CloudLinkArgs,
    checkers: Vec<Checker>,
    config: HealthConfig,
}

impl HealthApp {
    /// Binds `config.health_addr`, prepares the cloud client from `link`
    /// (none when no cloud is configured) and a checker for each service of
    /// `mesh`.
    pub async fn build(
        config: &HealthConfig,
        link: &CloudLinkArgs,
        mesh: &MeshTargets,
        runtime: &RuntimeArgs,
    ) -> Result<HealthApp, StartError> {
        if config.mesh_check_interval.is_zero() {
            return Err(StartError::ZeroDuration("--mesh-check-interval"));
        }
        if config.mesh_check_timeout.is_zero() {
            return Err(StartError::ZeroDuration("--mesh-check-timeout"));
        }
        let cloud = link.client(ClientUse {
            request_timeout: link.probe.timeout,
            gzip: false,
            max_response_bytes: PROBE_MAX_RESPONSE_BYTES,
        })?;
        let started = SystemTime::now();
        let mut checkers = Vec::new();
        let mut services = Vec::new();
        let credentials = runtime.security.mesh_client()?;
        for target in mesh.targets() {
            let checker = Checker::new(
                &target.url,
                target.grpc_service,
                config.mesh_check_timeout,
                &credentials,
            )
            .map_err(|source| StartError::MeshUrl {
                flag: target.flag,
                source,
            })?;
            checkers.push(checker);
            services.push(ServiceHealth {
                name: target.name,
                grpc_service: target.grpc_service,
                address: target.url,
                state: Serving::Unknown,
                since: started,
                last_check_at: None,
                error: None,
            });
        }
        let board_link = match &cloud {
            None => Link::NotConfigured,
            Some(client) => Link::Probed {
                url: client.base_url().to_owned(),
                status: LinkStatus::starting(),
            },
        };
        let board = HealthBoard::new(board_link, services);

        let client = edge_runtime::client::ClientArgs {
            connect_timeout: config.mesh_check_timeout,
            request_timeout: config.mesh_check_timeout,
        };
        let security = runtime
            .security
            .server_via_store(
                "health-svc",
                &mesh.store_url,
                &client,
                edge_runtime::Shutdown::new(),
            )
            .await?;
        let server = GrpcServer::bind(
            config.health_addr,
            "--health-addr",
            runtime.shutdown_grace,
            security,
        )
        .await?;
        let service =
            CloudHealthServiceServer::new(HealthGrpc::new(board.clone(), server.streams_stop()));
        let server = server.add_service(service);
        Ok(HealthApp {
            server,
            board,
            cloud,
            link: link.clone(),
            checkers,
            config: config.clone(),
        })
    }
}

impl Service for HealthApp {
    fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Probes, checks and serves until `shutdown`. Open WatchCloudHealth
    /// streams end at once; the probe and the checks stop with the server.
    async fn run(self, shutdown: Shutdown) -> Result<(), ServeError> {
        let mut tasks = JoinSet::new();
        let meter = edge_runtime::telemetry::meter("health-svc");
        match self.cloud {
            None => tracing::info!(
                "no cloud URL configured (--cloud-url / EDGE_CLOUD_URL): the link is reported NOT_CONFIGURED; the site runs offline by design"
            ),
            Some(cloud) => {
                tracing::info!(cloud = cloud.base_url(), "health-svc probing the cloud");
                let prober = Prober::spawn(cloud, self.link.probe, shutdown.clone());
                register_link_gauges(&meter, crate::gauges::PROBE_LABEL, &prober.watch());
                tasks.spawn(follow_link(prober, self.board.clone(), shutdown.clone()));
            }
        }
        crate::gauges::register(&meter, &self.board.subscribe());
        for (index, checker) in self.checkers.into_iter().enumerate() {
            tasks.spawn(mesh::watch(
                self.board.clone(),
                index,
                checker,
                self.config.mesh_check_interval,
                shutdown.clone(),
            ));
        }

        let served = self.server.run(shutdown.clone()).await;
        shutdown.cancel();
        while let Some(done) = tasks.join_next().await {
            if let Err(err) = done {
                tracing::error!(%err, "a health-svc task failed");
            }
        }
        tracing::info!("health-svc stopped");
        served
    }
}

/// Copies every probe result onto the board (which wakes watchers only when
/// the state changed), until `stop`.
async fn follow_link(prober: Prober, board: HealthBoard, stop: Shutdown) {
    let mut link = prober.watch();
    loop {
        let status = link.borrow_and_update().clone();
        board.set_link(&status);
        tokio::select! {
            () = stop.cancelled() => return,
            changed = link.changed() => if changed.is_err() { return },
        }
    }
}
