//! The site's link to the cloud, shared by sync-svc and health-svc (no
//! service crate depends on another):
//!
//! - [`contract`]: the JSON bodies of the cloud contract (DESIGN §4,
//!   `docs/cloud-api.yaml`), also used by the reference cloud server;
//! - [`client`]: the HTTP client (gzip, bearer token, bounded responses,
//!   failures sorted by what to do about them);
//! - [`probe`]: the reachability probe with hysteresis.

pub mod client;
pub mod contract;
pub mod probe;

pub use client::{ClientConfig, CloudClient, CloudError, PushOutcome};
pub use probe::{LinkStatus, ProbeConfig, Prober};
