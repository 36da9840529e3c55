//! The health-svc binary: one service per process, as Kubernetes runs it.

use clap::Parser;
use edge_cloud_link::CloudLinkArgs;
use edge_runtime::RuntimeArgs;
use health_svc::{HealthApp, HealthConfig, MeshTargets};

/// health-svc: the site's view of its cloud link and of its own services
/// (edge.v1.CloudHealthService).
#[derive(Parser)]
#[command(name = "health-svc", version, about)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    health: HealthConfig,
    #[command(flatten)]
    link: CloudLinkArgs,
    #[command(flatten)]
    mesh: MeshTargets,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = edge_runtime::parse_config();
    edge_runtime::run_service(&cli.runtime, |shutdown| async {
        let app = HealthApp::build(&cli.health, &cli.link, &cli.mesh, &cli.runtime).await?;
        app.run(shutdown).await?;
        Ok(())
    })
    .await
}
