//! The ingest-svc binary: one service per process, as Kubernetes runs it.

use clap::Parser;
use edge_runtime::RuntimeArgs;
use ingest_svc::{IngestApp, IngestConfig};

/// ingest-svc: the door for sensor gateways (edge.v1.IngestService).
#[derive(Parser)]
#[command(name = "ingest-svc", version, about)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    ingest: IngestConfig,
}

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
