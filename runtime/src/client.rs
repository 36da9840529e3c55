//! gRPC client channels between mesh services.
//!
//! Channels connect lazily and reconnect on their own, so a service starts even
//! when its peer is down and recovers without a restart when the peer returns;
//! calls made while the peer is unreachable fail fast with `UNAVAILABLE`
//! after the connect timeout instead of hanging.

use std::time::Duration;

use clap::Args;
use tonic::transport::{Channel, Endpoint};

/// Timeouts for calls to another mesh service.
#[derive(Debug, Clone, Copy, Args)]
pub struct ClientArgs {
    /// How long to wait for a TCP + HTTP/2 connection to a peer service.
    #[arg(long, env = "EDGE_CONNECT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Deadline for one call to a peer service.
    #[arg(long, env = "EDGE_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
}

impl Default for ClientArgs {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The peer address could not be turned into an endpoint.
#[derive(Debug, thiserror::Error)]
#[error("invalid service address {uri:?}: {source}")]
pub struct InvalidEndpoint {
    uri: String,
    #[source]
    source: tonic::transport::Error,
}

/// Builds a lazily connecting channel to `uri` (e.g. `http://store-svc:50052`).
pub fn channel(uri: &str, args: &ClientArgs) -> Result<Channel, InvalidEndpoint> {
    let endpoint = Endpoint::from_shared(uri.to_owned()).map_err(|source| InvalidEndpoint {
        uri: uri.to_owned(),
        source,
    })?;
    Ok(endpoint
        .connect_timeout(args.connect_timeout)
        .timeout(args.request_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}
