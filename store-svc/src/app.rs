//! Building and running store-svc: open the database (migrations run here),
//! start the group-commit writer, bind the gRPC listener. Tests and `edge up`
//! use this exactly as the `store-svc` binary does.

use std::net::SocketAddr;
use std::sync::Arc;

use edge_proto::internal::v1::identity_service_server::IdentityServiceServer;
use edge_proto::internal::v1::store_ingest_service_server::StoreIngestServiceServer;
use edge_proto::internal::v1::store_sync_service_server::StoreSyncServiceServer;
use edge_proto::v1::operations_service_server::OperationsServiceServer;
use edge_proto::v1::readings_service_server::ReadingsServiceServer;
use edge_proto::v1::tokens_service_server::TokensServiceServer;
use edge_runtime::security::SecurityError;
use edge_runtime::{BindError, GrpcServer, RuntimeArgs, ServeError, Service, Shutdown};
use tokio::task::JoinHandle;

use crate::config::StoreConfig;
use crate::db::{Database, DbError};
use crate::grpc::StoreGrpc;
use crate::hlc::WallClock;
use crate::lease::Leases;
use crate::storage::{Budget, DiskProbe, FileSystem};
use crate::writer::Writer;

/// store-svc could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The gRPC address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// TLS or credentials are misconfigured.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The operator's token file holds a token that was revoked.
    #[error(
        "the operator token in {} was revoked; put a new one there (or delete the file to have \
         one made) and start again (--operator-token-file)",
        .0.display()
    )]
    OperatorTokenRevoked(std::path::PathBuf),
    /// The operator's token file cannot be read or made.
    #[error("--operator-token-file: {0}")]
    OperatorToken(#[from] edge_credentials::SecretFileError),
}

/// A built store-svc, listening and ready to run.
pub struct StoreApp {
    server: GrpcServer,
    db: Arc<Database>,
    budget: Arc<Budget>,
    writer_task: JoinHandle<()>,
    grace: std::time::Duration,
    clock: Arc<dyn WallClock>,
    gauge_interval: std::time::Duration,
    identities_stop: Shutdown,
    operator_token_path: std::path::PathBuf,
}

impl StoreApp {
    /// Opens the database, starts the writer and binds `config.store_addr`.
    pub async fn build(
        config: &StoreConfig,
        runtime: &RuntimeArgs,
        clock: Arc<dyn WallClock>,
    ) -> Result<StoreApp, StartError> {
        let db = Arc::new(Database::open(&config.db_config(), clock.clone()).await?);
        tracing::info!(
            backend = db.backend(),
            site_id = db.site_id(),
            "site database ready"
        );
        let operator_token_path = config.operator_token_path();
        let (operator_token, created) = edge_credentials::load_or_create(
            &operator_token_path,
            crate::grpc::tokens::TOKEN_PREFIX,
        )?;
        if created {
            tracing::info!(path = %operator_token_path.display(), "operator token written (mode 0600)");
        }
        if !crate::identities::ensure_operator(&db, &operator_token, clock.now_us()).await? {
            return Err(StartError::OperatorTokenRevoked(operator_token_path));
        }
        let identities_stop = Shutdown::new();
        let security = runtime
            .security
            .server(
                "store-svc",
                Arc::new(crate::identities::StoredIdentities::new(db.clone())),
                identities_stop.clone(),
            )
            .await?;
        let server = GrpcServer::bind(
            config.store_addr,
            "--store-addr",
            runtime.shutdown_grace,
            security,
        )
        .await?;
        let leases = Arc::new(Leases::default());
        let disk: Option<Arc<dyn DiskProbe>> = match (&config.disk_probe, db.sqlite_path()) {
            (Some(probe), _) => Some(probe.clone()),
            (None, Some(file)) => Some(Arc::new(FileSystem::of(
                file.parent().unwrap_or(&config.data_dir),
            ))),
            (None, None) => None,
        };
        let budget = Arc::new(Budget::new(
            db.clone(),
            leases.clone(),
            clock.clone(),
            config.storage.clone(),
            disk,
        ));
        let (writer, writer_task) =
            Writer::spawn(db.clone(), budget.clone(), config.group_commit_max_rows);
        let grpc = StoreGrpc::new(writer, db.clone(), leases, budget.clone(), clock.clone());
        // Every service on this port takes and sends messages up to the same
        // --max-message-bytes.
        let max = runtime.max_message_bytes;
        macro_rules! sized {
            ($server:expr) => {
                $server
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max)
            };
        }
        let server = server
            .add_service(sized!(ReadingsServiceServer::new(grpc.readings())))
            .add_service(sized!(OperationsServiceServer::new(grpc.operations())))
            .add_service(sized!(StoreIngestServiceServer::new(grpc.ingest())))
            .add_service(sized!(StoreSyncServiceServer::new(grpc.sync())))
            .add_service(sized!(TokensServiceServer::new(grpc.tokens())))
            .add_service(sized!(IdentityServiceServer::new(grpc.tokens())));
        Ok(StoreApp {
            server,
            db,
            budget,
            writer_task,
            grace: runtime.shutdown_grace,
            clock,
            gauge_interval: config.gauge_interval,
            identities_stop,
            operator_token_path,
        })
    }

    /// Where the operator's token is (made on first start).
    pub fn operator_token_path(&self) -> &std::path::Path {
        &self.operator_token_path
    }

    /// This site's id, as the database holds it.
    pub fn site_id(&self) -> &str {
        self.db.site_id()
    }
}

impl Service for StoreApp {
    fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown`, then drains calls, lets the writer finish what
    /// it accepted and closes the database.
    async fn run(self, shutdown: Shutdown) -> Result<(), ServeError> {
        let background_stop = Shutdown::new();
        let gauges = crate::gauges::spawn(
            self.db.clone(),
            self.budget.clone(),
            self.clock.clone(),
            self.gauge_interval,
            background_stop.clone(),
        );
        let budget = tokio::spawn(self.budget.clone().run(background_stop.clone()));
        let served = self.server.run(shutdown).await;
        background_stop.cancel();
        self.identities_stop.cancel();
        let _ = gauges.await;
        let _ = budget.await;
        // The server is gone: once the last Writer handle drops (connection
        // tasks may still hold one briefly), the writer finishes the queued
        // groups and stops. Bounded, so a hung database cannot stall exit.
        match tokio::time::timeout(self.grace, self.writer_task).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(%err, "store writer task failed"),
            Err(_) => {
                tracing::warn!(grace = ?self.grace, "store writer still busy at the end of the grace period")
            }
        }
        self.db.close().await;
        tracing::info!("store-svc stopped");
        served
    }
}
