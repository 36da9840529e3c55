//! sync-svc: forwards the site's outbox to the cloud, exactly once in effect
//! (docs/architecture.md: P2, P3, Services, The cloud contract).
//!
//! A tour:
//! - [`config`]: flags (cloud URL and token, probe, batch size, concurrency,
//!   backoff, the live share);
//! - [`drain`]: lease → push → record, splitting refused batches, backing
//!   off on failures; the workers;
//! - [`batch_size`]: how many versions a lease asks for, adapted to what
//!   the link carries;
//! - [`convert`]: the store's protobuf shapes to the contract's records and
//!   back;
//! - [`compat`]: the same for a cloud that only has the one-reading API;
//! - [`report`]: dead letters reported to the cloud's coverage;
//! - [`pull`]: the cloud's change feed, applied by store-svc under the
//!   conflict rule the cloud announces;
//! - [`backoff`]: jittered exponential delays;
//! - [`status`] and [`grpc`]: what `SyncNow`, `GetStatus` and `WatchStatus`
//!   serve;
//! - [`metrics`]: the instruments sync-svc owns (docs/architecture.md,
//!   Metrics);
//! - [`app`]: building and running the service;
//! - [`cli`]: the binary's command line.
//!
//! The probe and the HTTP client live in `edge-cloud-link`, shared with
//! health-svc.

pub mod app;
pub mod backoff;
pub mod batch_size;
pub mod cli;
pub mod compat;
pub mod config;
pub mod convert;
pub mod drain;
pub mod grpc;
pub mod metrics;
pub mod outcome;
pub mod pull;
pub mod report;
pub mod status;

pub use app::SyncApp;
pub use cli::Cli;
pub use config::SyncConfig;
