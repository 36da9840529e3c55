//! The ingest-svc binary: one service per process, as Kubernetes runs it.

use edge_runtime::Service as _;
use ingest_svc::{Cli, IngestApp};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = edge_runtime::parse_config();
    edge_runtime::run_service(&cli.runtime, |shutdown| async {
        let app = IngestApp::build(&cli.ingest, &cli.runtime).await?;
        app.run(shutdown).await?;
        Ok(())
    })
    .await
}
