//! The runtime every edge service shares, so no service repeats it:
//!
//! - [`config`]: the flags every service takes (logging, metrics, limits,
//!   shutdown grace), parsed with clap from flags or environment, exiting with
//!   code 64 on bad configuration;
//! - [`telemetry`]: structured logs, OTLP trace export when configured, and
//!   the OpenTelemetry meter provider that feeds the Prometheus registry;
//! - [`grpc_metrics`]: per-call request counts and durations on every server;
//! - [`trace_context`]: W3C trace context in and out of gRPC and HTTP calls;
//! - [`metrics_http`]: the `/metrics` endpoint serving that registry;
//! - [`serve`]: running a tonic router with `grpc.health.v1`, server reflection
//!   (v1 and v1alpha) and graceful, bounded draining;
//! - [`shutdown`]: SIGTERM/SIGINT turned into a cancellation token;
//! - [`process`]: the body of every service binary's `main`;
//! - [`services`]: several services in one process, stopped in stages;
//! - [`ports`]: the mesh's default ports;
//! - [`client`]: gRPC client channels with connect and request timeouts;
//! - [`status`]: the one way to build an `INVALID_ARGUMENT` with field violations;
//! - [`tls`]: the process's TLS provider for every HTTP client;
//! - the process's memory allocator (below).

/// Every binary that runs a service allocates through jemalloc. Under
/// streaming ingest glibc's allocator took about a quarter of `edge up`'s
/// CPU (sqlx copies every value it binds, tonic every message it decodes);
/// with jemalloc SQLite ingest runs about 13 % faster for 8 MiB more peak
/// memory (BENCHMARKS.md, "Which allocator"). Declared here, once, because
/// every service binary links this crate.
///
/// jemalloc also stands in for the C library's `malloc` (the crate's
/// `unprefixed_malloc_on_supported_platforms`), so SQLite allocates through
/// it too: glibc's allocator, shared by a connection's worker thread copying
/// a result's values and the task dropping them, cost a lease of 2,000
/// versions about a quarter of its time. Its settings (two arenas, freed
/// memory returned within a second) are compiled in from
/// `.cargo/config.toml`; `MALLOC_CONF` overrides them at run time.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod auth;
pub mod client;
pub mod config;
pub mod grpc_metrics;
pub mod listener;
pub mod metrics_http;
pub mod ports;
pub mod process;
pub mod security;
mod security_metrics;
pub mod serve;
pub mod services;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod trace_context;

pub use config::{RuntimeArgs, parse_config};
pub use process::{Started, run_process, run_service};
pub use serve::{BindError, GrpcServer, ServeError, ServerSecurity};
pub use services::{OnEarlyExit, Service, Services, ServicesError};
pub use shutdown::Shutdown;
