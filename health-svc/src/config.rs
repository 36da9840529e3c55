//! health-svc's flags. Every flag has an environment fallback and a default
//! that works beside `edge up`'s default ports (docs/architecture.md,
//! Services). The cloud and probe flags are
//! [`edge_cloud_link::CloudLinkArgs`], the same ones sync-svc takes.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// health-svc's own settings (flattened into `edge up` too).
#[derive(Debug, Clone, Args)]
pub struct HealthConfig {
    /// Address health-svc's gRPC server listens on (dashboards and gateways
    /// ask it whether the site is online).
    #[arg(long, env = "EDGE_HEALTH_ADDR", default_value_t = edge_runtime::ports::listen(edge_runtime::ports::HEALTH))]
    pub health_addr: SocketAddr,

    /// Time between two health checks of each mesh service
    /// (`grpc.health.v1.Health/Check`).
    #[arg(long, env = "EDGE_MESH_CHECK_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub mesh_check_interval: Duration,

    /// Deadline for one health check, connecting included; no answer in time
    /// makes the service UNREACHABLE.
    #[arg(long, env = "EDGE_MESH_CHECK_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub mesh_check_timeout: Duration,
}

impl HealthConfig {
    /// Defaults, as `edge up` with no flags would use them.
    pub fn new() -> Self {
        HealthConfig {
            health_addr: edge_runtime::ports::listen(edge_runtime::ports::HEALTH),
            mesh_check_interval: Duration::from_secs(5),
            mesh_check_timeout: Duration::from_secs(2),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the mesh services are. The `health-svc` binary takes them as
/// flags; `edge up` fills them with its services' real addresses.
#[derive(Debug, Clone, Args)]
pub struct MeshTargets {
    /// ingest-svc's gRPC address.
    #[arg(
        long,
        env = "EDGE_INGEST_URL",
        default_value_t = edge_runtime::ports::local_url(edge_runtime::ports::INGEST)
    )]
    pub ingest_url: String,

    /// store-svc's gRPC address.
    #[arg(long, env = "EDGE_STORE_URL", default_value_t = edge_runtime::ports::local_url(edge_runtime::ports::STORE))]
    pub store_url: String,

    /// sync-svc's gRPC address.
    #[arg(long, env = "EDGE_SYNC_URL", default_value_t = edge_runtime::ports::local_url(edge_runtime::ports::SYNC))]
    pub sync_url: String,
}

impl Default for MeshTargets {
    fn default() -> Self {
        MeshTargets {
            ingest_url: edge_runtime::ports::local_url(edge_runtime::ports::INGEST),
            store_url: edge_runtime::ports::local_url(edge_runtime::ports::STORE),
            sync_url: edge_runtime::ports::local_url(edge_runtime::ports::SYNC),
        }
    }
}
