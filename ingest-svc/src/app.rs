//! Building and running ingest-svc: connect (lazily) to store-svc, bind the
//! gRPC listener. Tests and `edge up` use this exactly as the binary does.

use std::net::SocketAddr;

use edge_proto::v1::ingest_service_server::IngestServiceServer;
use edge_runtime::{BindError, GrpcServer, RuntimeArgs, ServeError, Service, Shutdown};

use edge_proto::rules::MAX_APPEND_READINGS;

use crate::config::IngestConfig;
use crate::service::{IngestGrpc, Ingestor};

/// ingest-svc could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A limit is out of its allowed range.
    #[error(
        "--max-batch-readings must be between 1 and {max} (store-svc's limit per Append), got {got}"
    )]
    BatchLimit {
        /// store-svc's limit.
        max: usize,
        /// The configured value.
        got: usize,
    },
    /// The store-svc address is malformed.
    #[error(transparent)]
    StoreUrl(#[from] edge_runtime::client::InvalidEndpoint),
    /// The gRPC address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// TLS or credentials are misconfigured.
    #[error(transparent)]
    Security(#[from] edge_runtime::security::SecurityError),
}

/// A built ingest-svc, listening and ready to run.
pub struct IngestApp {
    server: GrpcServer,
}

impl IngestApp {
    /// Binds `config.ingest_addr`. store-svc need not be up: the channel
    /// connects on first use and reconnects by itself.
    pub async fn build(
        config: &IngestConfig,
        runtime: &RuntimeArgs,
    ) -> Result<IngestApp, StartError> {
        let got = config.limits.max_batch_readings;
        if got == 0 || got > MAX_APPEND_READINGS {
            return Err(StartError::BatchLimit {
                max: MAX_APPEND_READINGS,
                got,
            });
        }
        let credentials = runtime.security.mesh_client()?;
        let channel =
            edge_runtime::client::channel(&config.store_url, &config.client, &credentials)?;
        let security = runtime
            .security
            .server_via_store(
                "ingest-svc",
                &config.store_url,
                &config.client,
                Shutdown::new(),
            )
            .await?;
        let server = GrpcServer::bind(
            config.ingest_addr,
            "--ingest-addr",
            runtime.shutdown_grace,
            security,
        )
        .await?;
        let ingestor = Ingestor::new(
            channel,
            config.limits,
            runtime.max_message_bytes,
            config.store_in_flight as usize,
        );
        let service = IngestServiceServer::new(IngestGrpc::new(
            ingestor,
            config.stream_in_flight,
            server.streams_stop(),
        ))
        .max_decoding_message_size(runtime.max_message_bytes)
        .max_encoding_message_size(runtime.max_message_bytes);
        // Gateways' calls start traces when theirs carry none.
        let server = server.trace_roots().add_service(service);
        Ok(IngestApp { server })
    }
}

impl Service for IngestApp {
    fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown`; open streams finish their in-flight batches
    /// and end with UNAVAILABLE.
    async fn run(self, shutdown: Shutdown) -> Result<(), ServeError> {
        let served = self.server.run(shutdown).await;
        tracing::info!("ingest-svc stopped");
        served
    }
}
