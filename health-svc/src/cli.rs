//! The `health-svc` binary's command line. It lives in the library, not in
//! `main.rs`, so that the configuration reference (`docs/configuration.md`)
//! is rendered from the very definition the binary parses.

use clap::Parser;
use edge_cloud_link::CloudLinkArgs;
use edge_runtime::RuntimeArgs;

use crate::{HealthConfig, MeshTargets};

/// health-svc: the site's view of its cloud link and of its own services
/// (edge.v1.CloudHealthService).
#[derive(Parser)]
#[command(name = "health-svc", version, about)]
pub struct Cli {
    /// Flags every service takes.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// health-svc's own flags.
    #[command(flatten)]
    pub health: HealthConfig,
    /// Where the cloud is and how to probe it (the flags sync-svc takes too).
    #[command(flatten)]
    pub link: CloudLinkArgs,
    /// The mesh services to check.
    #[command(flatten)]
    pub mesh: MeshTargets,
}
