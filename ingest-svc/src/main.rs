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
    edge_runtime::telemetry::init_logging(&cli.runtime);
    let shutdown = edge_runtime::shutdown::on_signal();
    let metrics =
        edge_runtime::metrics_http::spawn(cli.runtime.metrics_addr, shutdown.clone()).await?;
    let app = IngestApp::build(&cli.ingest, &cli.runtime).await?;
    app.run(shutdown).await?;
    metrics.await??;
    Ok(())
}
