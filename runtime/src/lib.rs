//! The runtime every edge service shares, so no service repeats it:
//!
//! - [`config`]: the flags every service takes (logging, metrics, limits,
//!   shutdown grace), parsed with clap from flags or environment, exiting with
//!   code 64 on bad configuration;
//! - [`telemetry`]: structured logs and the OpenTelemetry meter provider that
//!   feeds the Prometheus registry;
//! - [`metrics_http`]: the `/metrics` endpoint serving that registry;
//! - [`serve`]: running a tonic router with `grpc.health.v1`, server reflection
//!   (v1 and v1alpha) and graceful, bounded draining;
//! - [`shutdown`]: SIGTERM/SIGINT turned into a cancellation token;
//! - [`client`]: gRPC client channels with connect and request timeouts;
//! - [`status`]: the one way to build an `INVALID_ARGUMENT` with field violations.

pub mod client;
pub mod config;
pub mod metrics_http;
pub mod serve;
pub mod shutdown;
pub mod status;
pub mod telemetry;

pub use config::{RuntimeArgs, parse_config};
pub use serve::{GrpcServer, ServeError};
pub use shutdown::Shutdown;
