//! gRPC client channels between mesh services, and for the `edge` CLI.
//!
//! Channels connect lazily and reconnect on their own, so a service starts even
//! when its peer is down and recovers without a restart when the peer returns;
//! calls made while the peer is unreachable fail fast with `UNAVAILABLE`
//! after the connect timeout instead of hanging.
//!
//! Every call carries its caller's [`Credentials`] (TLS trust and a bearer
//! token) and the current trace context.

use std::time::Duration;

use clap::Args;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

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

/// What a client presents: the TLS it trusts (`None`: plaintext) and its
/// bearer token.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// TLS settings (the CA to trust); `None` speaks plaintext.
    pub tls: Option<ClientTlsConfig>,
    /// The bearer token sent with every call.
    pub token: Option<String>,
}

/// The peer address could not be turned into an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum InvalidEndpoint {
    /// The address is not a URI tonic accepts.
    #[error("invalid service address {uri:?}: {source}")]
    Uri {
        /// The address.
        uri: String,
        /// What tonic said.
        #[source]
        source: tonic::transport::Error,
    },
    /// The token cannot be sent as metadata.
    #[error("the bearer token holds characters metadata cannot carry")]
    Token,
}

/// Adds the bearer token and the trace context to every call.
#[derive(Debug, Clone, Default)]
pub struct CallCredentials {
    authorization: Option<AsciiMetadataValue>,
}

impl CallCredentials {
    /// Sends `token` as `authorization: Bearer <token>`.
    pub fn bearer(token: Option<&str>) -> Result<Self, InvalidEndpoint> {
        let authorization = token
            .map(|t| MetadataValue::try_from(format!("Bearer {}", t.trim())))
            .transpose()
            .map_err(|_| InvalidEndpoint::Token)?;
        Ok(Self { authorization })
    }
}

impl Interceptor for CallCredentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        crate::trace_context::inject_metadata(request.metadata_mut());
        Ok(request)
    }
}

/// A channel whose calls carry credentials and trace context.
pub type AuthedChannel = InterceptedService<Channel, CallCredentials>;

/// `uri` with the scheme the credentials speak: `https` with TLS, `http`
/// without, whatever the address was written with.
pub fn with_scheme(uri: &str, tls: bool) -> String {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .unwrap_or(uri);
    format!("{}://{rest}", if tls { "https" } else { "http" })
}

/// A lazily connecting endpoint to `uri` (`host:port`, `http://…` or
/// `https://…`) with `credentials`' TLS.
pub fn endpoint(
    uri: &str,
    args: &ClientArgs,
    credentials: &Credentials,
) -> Result<Endpoint, InvalidEndpoint> {
    let uri = with_scheme(uri, credentials.tls.is_some());
    let invalid = |source| InvalidEndpoint::Uri {
        uri: uri.clone(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(uri.clone()).map_err(invalid)?;
    if let Some(tls) = &credentials.tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(invalid)?;
    }
    Ok(endpoint
        .connect_timeout(args.connect_timeout)
        .timeout(args.request_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// `channel` (made from [`endpoint`] with `credentials`' TLS) presenting
/// `credentials`' token on every call.
pub fn authed(
    channel: Channel,
    credentials: &Credentials,
) -> Result<AuthedChannel, InvalidEndpoint> {
    Ok(InterceptedService::new(
        channel,
        CallCredentials::bearer(credentials.token.as_deref())?,
    ))
}

/// Builds a lazily connecting channel to `uri` whose calls present
/// `credentials`.
pub fn channel(
    uri: &str,
    args: &ClientArgs,
    credentials: &Credentials,
) -> Result<AuthedChannel, InvalidEndpoint> {
    authed(
        endpoint(uri, args, credentials)?.connect_lazy(),
        credentials,
    )
}
