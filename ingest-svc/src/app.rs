//! Building and running ingest-svc: connect (lazily) to store-svc, bind the
//! gRPC listener. Tests and `edge up` use this exactly as the binary does.

use std::net::SocketAddr;

use edge_proto::v1::ingest_service_server::IngestServiceServer;
use edge_runtime::{GrpcServer, RuntimeArgs, ServeError, Shutdown};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// A built ingest-svc, listening and ready to run.
pub struct IngestApp {
    server: GrpcServer,
    addr: SocketAddr,
    stopping: CancellationToken,
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
        let channel = edge_runtime::client::channel(&config.store_url, &config.client)?;
        let bind_error = |source| StartError::Bind {
            addr: config.ingest_addr,
            source,
        };
        let listener = TcpListener::bind(config.ingest_addr)
            .await
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let stopping = CancellationToken::new();
        let ingestor = Ingestor::new(
            channel,
            config.limits,
            runtime.max_message_bytes,
            config.store_in_flight as usize,
        );
        let service = IngestServiceServer::new(IngestGrpc::new(
            ingestor,
            config.stream_in_flight,
            stopping.clone(),
        ))
        .max_decoding_message_size(runtime.max_message_bytes)
        .max_encoding_message_size(runtime.max_message_bytes);
        // Gateways' calls start traces when theirs carry none.
        let server = GrpcServer::new(listener, runtime.shutdown_grace)
            .trace_roots()
            .add_service(service);
        Ok(IngestApp {
            server,
            addr,
            stopping,
        })
    }

    /// The address the gRPC server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown`; open streams finish their in-flight batches
    /// and end with UNAVAILABLE.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ServeError> {
        let stopping = self.stopping.clone();
        let watch = shutdown.clone();
        tokio::spawn(async move {
            watch.cancelled().await;
            stopping.cancel();
        });
        let served = self.server.run(shutdown).await;
        tracing::info!("ingest-svc stopped");
        served
    }
}
