//! Serving a service's gRPC routes the same way everywhere.
//!
//! Every server gets, besides the service's own routes:
//! - `grpc.health.v1.Health`, SERVING for each service and for `""` while up,
//!   NOT_SERVING as soon as shutdown starts (so Kubernetes and load balancers
//!   stop sending before the listener closes);
//! - server reflection v1 and v1alpha, so both `grpcurl` and `buf curl` work
//!   without proto files, listing exactly the services this server serves;
//! - a tracing span per call, joined to the caller's W3C trace context;
//! - the request metrics of [`crate::grpc_metrics`];
//! - TLS, the connection limits of [`crate::listener`], HTTP/2 stream,
//!   header and keep-alive limits, and the credential check of
//!   [`crate::auth::guard`] in front of every route ([`ServerSecurity`]);
//! - its place in the process's readiness (`/readyz` on the metrics port,
//!   what Kubernetes probes, since probes do not speak TLS).
//!
//! It binds its listener when built ([`GrpcServer::bind`]; tests bind port 0
//! and read the real port) and runs until a [`Shutdown`] token is cancelled.
//! On shutdown it reports NOT_SERVING, ends long-lived streams (their
//! handlers watch [`GrpcServer::streams_stop`]), stops accepting, lets
//! in-flight calls finish within the grace period, then returns.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;

use crate::auth::{Guard, GuardLayer};
use crate::grpc_metrics::GrpcMetricsLayer;
use crate::listener::AcceptLimits;
use crate::security::{SecurityArgs, SecurityError};
use crate::shutdown::Shutdown;

/// Services every server carries besides its own (their calls are labelled
/// by name in the request metrics).
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// A service's listen address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({flag}): {source}")]
pub struct BindError {
    /// The configured address.
    pub addr: SocketAddr,
    /// The flag that configures it, so the operator knows what to change.
    pub flag: &'static str,
    /// What the OS said.
    #[source]
    pub source: std::io::Error,
}

/// Serving failed after the listener was bound.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not read the embedded descriptor sets.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The HTTP/2 server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Reflection for a server serving `services`: it lists exactly those, health
/// and reflection itself, so a port never advertises a service another port
/// serves (and answers UNIMPLEMENTED for). Every descriptor set is still
/// registered, so each message those services use can be described, whichever
/// file or package declares it.
fn reflection<'a>(services: &[&'static str]) -> tonic_reflection::server::Builder<'a> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(edge_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // Both versions listed are described by both (each builder adds only
        // its own version's file otherwise).
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    services
        .iter()
        .copied()
        .chain([HEALTH_SERVICE, REFLECTION_V1, REFLECTION_V1ALPHA])
        .fold(builder, |builder, name| builder.with_service_name(name))
}

/// How a server admits connections and calls.
pub struct ServerSecurity {
    /// A label for this server in metrics (`ingest-svc`, …).
    pub name: &'static str,
    tls: Option<Arc<rustls::ServerConfig>>,
    accept: AcceptLimits,
    max_streams: u32,
    max_header_bytes: u32,
    keepalive: (Duration, Duration),
    guard: Guard,
}

impl ServerSecurity {
    /// The security of server `name` under `args`, checking calls with
    /// `guard`.
    pub fn new(
        name: &'static str,
        args: &SecurityArgs,
        guard: Guard,
    ) -> Result<Self, SecurityError> {
        Ok(Self {
            name,
            tls: args.server_tls()?,
            accept: args.accept_limits(),
            max_streams: args.max_streams_per_connection.max(1),
            max_header_bytes: args.max_header_bytes.max(1024),
            keepalive: (args.keepalive_interval, args.keepalive_timeout),
            guard,
        })
    }
}

/// A gRPC server under construction: a bound listener and the services to run.
pub struct GrpcServer {
    listener: TcpListener,
    addr: SocketAddr,
    routes: RoutesBuilder,
    /// Names reported by the health service; the service's own names, so a
    /// probe can ask about one service or about the whole server (`""`).
    service_names: Vec<&'static str>,
    grace: Duration,
    trace_roots: bool,
    streams_stop: Shutdown,
    security: ServerSecurity,
}

impl GrpcServer {
    /// Binds `addr` (the value of `flag`, named in the error) for a server
    /// that drains in-flight calls for at most `grace` and admits
    /// connections and calls as `security` says.
    pub async fn bind(
        addr: SocketAddr,
        flag: &'static str,
        grace: Duration,
        security: ServerSecurity,
    ) -> Result<Self, BindError> {
        let error = |source| BindError { addr, flag, source };
        let listener = TcpListener::bind(addr).await.map_err(error)?;
        let bound = listener.local_addr().map_err(error)?;
        Ok(Self {
            listener,
            addr: bound,
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            grace,
            trace_roots: false,
            streams_stop: Shutdown::new(),
            security,
        })
    }

    /// Cancelled as soon as shutdown starts, right after health turns
    /// NOT_SERVING: a handler of a long-lived stream (a watch, an ingest
    /// stream) ends it on this, so the drain waits for in-flight calls, not
    /// for streams that would otherwise run until the grace period is over.
    pub fn streams_stop(&self) -> Shutdown {
        self.streams_stop.clone()
    }

    /// The address the server listens on (the real port when bound to 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls that carry no trace context start a trace of their own when
    /// traces are exported (the gateway-facing ingest-svc; elsewhere only
    /// calls that continue a trace are exported).
    pub fn trace_roots(mut self) -> Self {
        self.trace_roots = true;
        self
    }

    /// Adds a generated tonic service; it is reported by the health service
    /// under its fully qualified name.
    pub fn add_service<S>(mut self, svc: S) -> Self
    where
        S: tower::Service<axum::http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(svc);
        self
    }

    /// Serves until `shutdown` is cancelled, then drains for at most the grace
    /// period.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ServeError> {
        let addr = self.addr;
        let (reporter, health) = tonic_health::server::health_reporter();
        let names = self.service_names.clone();
        for name in &names {
            reporter
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        reporter
            .set_service_status("", ServingStatus::Serving)
            .await;

        let reflection_v1 = reflection(&names).build_v1()?;
        let reflection_v1alpha = reflection(&names).build_v1alpha()?;

        let mut routes = self.routes;
        routes
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let security = self.security;
        let tls = security.tls.is_some();
        let incoming =
            crate::listener::incoming(self.listener, security.tls, security.accept, security.name);
        let ready = crate::metrics_http::readiness().register(security.name);

        let stop = shutdown.clone();
        let streams_stop = self.streams_stop.clone();
        let stopping = async move {
            stop.cancelled().await;
            // Tell probes first, then stop accepting.
            ready.set(false);
            for name in &names {
                reporter
                    .set_service_status(*name, ServingStatus::NotServing)
                    .await;
            }
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            streams_stop.cancel();
            tracing::info!(%addr, "draining gRPC server");
        };

        tracing::info!(%addr, tls, services = ?self.service_names, "gRPC server listening");
        let known_services = self.service_names.iter().copied().chain([
            HEALTH_SERVICE,
            REFLECTION_V1,
            REFLECTION_V1ALPHA,
        ]);
        let descriptors: [&[u8]; 4] = [
            edge_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        // One span per call, named after the gRPC method and joined to the
        // caller's trace, and the per-call metrics; both optional so their
        // cost can be measured (`--rpc-telemetry false`).
        let routes = routes.routes();
        let roots = self.trace_roots;
        let (keepalive_interval, keepalive_timeout) = security.keepalive;
        let builder = || {
            tonic::transport::Server::builder()
                .max_concurrent_streams(security.max_streams)
                .http2_max_header_list_size(security.max_header_bytes)
                .http2_keepalive_interval(Some(keepalive_interval))
                .http2_keepalive_timeout(Some(keepalive_timeout))
        };
        let guard = GuardLayer::new(security.guard);
        let mut server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
            if crate::telemetry::rpc_telemetry_enabled() {
                Box::pin(
                    builder()
                        .layer(
                            tower_http::trace::TraceLayer::new_for_grpc()
                                .make_span_with(
                                    move |request: &http::Request<tonic::body::Body>| {
                                        crate::trace_context::server_span(request, roots)
                                    },
                                )
                                // A status other than OK is mostly the
                                // client's (bad input, a closed stream):
                                // the handlers log what is the server's.
                                .on_failure(
                                    tower_http::trace::DefaultOnFailure::new()
                                        .level(tracing::Level::DEBUG),
                                ),
                        )
                        .layer(GrpcMetricsLayer::new(known_services, &descriptors))
                        .layer(guard)
                        .add_routes(routes)
                        .serve_with_incoming_shutdown(incoming, stopping),
                )
            } else {
                Box::pin(
                    builder()
                        .layer(guard)
                        .add_routes(routes)
                        .serve_with_incoming_shutdown(incoming, stopping),
                )
            };

        let grace = self.grace;
        let grace_expired = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = &mut server => result?,
            () = grace_expired => {
                tracing::warn!(%addr, ?grace, "grace period over; dropping calls still in flight");
            }
        }
        tracing::info!(%addr, "gRPC server stopped");
        Ok(())
    }
}
