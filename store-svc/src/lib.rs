//! store-svc: the site's database behind `edge.v1.ReadingsService`,
//! `edge.v1.OperationsService` and the mesh's internal
//! `edge.internal.v1.StoreIngestService` and `StoreSyncService`.
//!
//! A tour:
//! - [`model`]: validated domain types built from proto messages;
//! - [`hlc`]: the hybrid logical clock stamping every version;
//! - [`db`]: the schema's SQL, once for SQLite and PostgreSQL;
//! - [`writer`]: group commit, so concurrent appends share one durable
//!   transaction;
//! - [`outbox`] and [`lease`]: what sync-svc leases, and what the cloud's
//!   answer changes;
//! - [`storage`]: retention, the storage budget and its policy;
//! - [`gauges`]: the books as Prometheus gauges, and [`eta`] their
//!   forecasts (backlog drained, storage full);
//! - [`grpc`]: the four services' handlers, one module each, and the one
//!   mapping from errors to gRPC statuses;
//! - [`config`] and [`app`]: flags, and building and running the service;
//! - [`cli`]: the binary's command line.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod eta;
pub mod gauges;
pub mod grpc;
pub mod identities;
pub use edge_versioning::hlc;
pub mod lease;
pub mod model;
pub mod outbox;
pub mod revision;
pub mod storage;
pub mod writer;

pub use app::StoreApp;
pub use cli::Cli;
pub use config::StoreConfig;
