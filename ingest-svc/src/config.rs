//! ingest-svc's flags, each with an environment fallback and a default that
//! works with `edge up`.

use std::net::SocketAddr;

use clap::Args;
use edge_runtime::client::ClientArgs;

use crate::validate::Limits;

/// ingest-svc configuration.
#[derive(Debug, Clone, Args)]
pub struct IngestConfig {
    /// Address ingest-svc's gRPC server listens on (gateways connect here).
    #[arg(long, env = "EDGE_INGEST_ADDR", default_value_t = edge_runtime::ports::listen(edge_runtime::ports::INGEST))]
    pub ingest_addr: SocketAddr,

    /// Where store-svc listens.
    #[arg(long, env = "EDGE_STORE_URL", default_value_t = edge_runtime::ports::local_url(edge_runtime::ports::STORE))]
    pub store_url: String,

    /// Batches one IngestStream works on at once (acks stay in order).
    #[arg(long, env = "EDGE_STREAM_IN_FLIGHT", default_value_t = 8)]
    pub stream_in_flight: usize,

    /// Append requests to store-svc outstanding at once (1 to 64); calls
    /// arriving while all are busy are merged into the next one (up to 10000
    /// readings and `--max-message-bytes`).
    #[arg(long, env = "EDGE_STORE_IN_FLIGHT", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub store_in_flight: u32,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub limits: Limits,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
}

impl IngestConfig {
    /// Defaults, talking to store-svc at `store_url`.
    pub fn new(store_url: String) -> Self {
        Self {
            ingest_addr: edge_runtime::ports::listen(edge_runtime::ports::INGEST),
            store_url,
            stream_in_flight: 8,
            store_in_flight: 4,
            limits: Limits::default(),
            client: ClientArgs::default(),
        }
    }
}
