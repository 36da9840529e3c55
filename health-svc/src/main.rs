//! The health-svc binary: one service per process, as Kubernetes runs it.

use edge_runtime::Service as _;
use health_svc::{Cli, HealthApp};

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
