//! The site's link to the cloud, shared by sync-svc and health-svc (no
//! service crate depends on another):
//!
//! - [`contract`]: the JSON bodies of the cloud contract
//!   (`docs/cloud-api.yaml`; docs/architecture.md, The cloud contract), also
//!   used by the reference cloud server;
//! - [`client`]: the HTTP client (gzip, bearer token, bounded responses,
//!   failures sorted by what to do about them);
//! - [`probe`]: the reachability probe and its state machine (online,
//!   degraded, offline) with hysteresis;
//! - [`config`]: the flags both services take for the cloud and the probe;
//! - [`trust`]: the CA certificates an `https://` cloud is checked
//!   against (`--cloud-ca`, or the system's roots);
//! - [`gauges`]: the `cloud_reachable` / `cloud_unreachable_seconds` gauges
//!   every probe exports under its own `probe` label.

pub mod client;
pub mod config;
pub mod contract;
pub mod gauges;
pub mod probe;
pub mod trust;

pub use client::{ClientConfig, CloudClient, CloudError, PushOutcome};
pub use config::{ClientUse, CloudLinkArgs, LinkConfigError};
pub use probe::{Hysteresis, LinkState, LinkStatus, ProbeConfig, Prober};
pub use trust::{CloudTrust, TrustError};
