//! health-svc: the site's view of its link and of itself
//! (`edge.v1.CloudHealthService`; docs/architecture.md, Services).
//!
//! Two questions, kept apart on purpose:
//!
//! - **Is the cloud reachable?** health-svc runs its own probe of the cloud
//!   (the same [`edge_cloud_link::Prober`] sync-svc runs: one
//!   implementation, two independent probes, so sync-svc never depends on
//!   health-svc). ONLINE / DEGRADED / OFFLINE with hysteresis, UNKNOWN before
//!   the first probe, NOT_CONFIGURED when there is no cloud. Offline is a
//!   normal state for an edge site: nothing at the site waits on the cloud.
//! - **Is the mesh serving?** Each mesh service (ingest, store, sync) is asked
//!   `grpc.health.v1.Health/Check` on an interval with a timeout: SERVING,
//!   NOT_SERVING or UNREACHABLE. A service down is a fault at the site,
//!   whatever the link does; `mesh_healthy` says so in one bit.
//!
//! A tour:
//! - [`config`]: flags (listen address, check interval and timeout, where
//!   the services are);
//! - [`board`]: the health behind a watch channel, notifying only on state
//!   changes so watchers are not spammed by latency drift;
//! - [`mesh`]: the per-service health checks;
//! - [`grpc`]: `GetCloudHealth` and `WatchCloudHealth`;
//! - [`gauges`]: health-svc's Prometheus gauges;
//! - [`app`]: building and running the service (`edge up` uses it exactly
//!   as the `health-svc` binary does);
//! - [`cli`]: the binary's command line.

pub mod app;
pub mod board;
pub mod cli;
pub mod config;
pub mod gauges;
pub mod grpc;
pub mod mesh;

pub use app::HealthApp;
pub use cli::Cli;
pub use config::{HealthConfig, MeshTargets};
