//! ingest-svc: the only door for sensor gateways (`edge.v1.IngestService`).
//!
//! A tour:
//! - [`validate`]: every reading judged on its own, with field-level reasons;
//! - [`service`]: the unary and streaming handlers, forwarding valid readings
//!   to store-svc and replying only once they are durable;
//! - [`coalesce`]: concurrent calls share Append requests to store-svc;
//! - [`error`]: the one mapping from failures to gRPC statuses;
//! - [`config`] and [`app`]: flags, and building and running the service;
//! - [`cli`]: the binary's command line.
//!
//! ingest-svc keeps no state of its own: it can be scaled out, and a reading
//! is acknowledged only after store-svc committed it (P1). It never talks to
//! the cloud, so the link's state cannot slow it (P3).

pub mod app;
pub mod cli;
pub mod coalesce;
pub mod config;
pub mod error;
pub mod service;
pub mod validate;

pub use app::IngestApp;
pub use cli::Cli;
pub use config::IngestConfig;
