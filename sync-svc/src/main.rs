//! The sync-svc binary: one service per process, as Kubernetes runs it.

use clap::Parser;
use edge_runtime::RuntimeArgs;
use edge_runtime::client::ClientArgs;
use sync_svc::{SyncApp, SyncConfig};

/// sync-svc: forwards the site's outbox to the cloud (edge.v1.SyncService).
#[derive(Parser)]
#[command(name = "sync-svc", version, about)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    sync: SyncConfig,
    #[command(flatten)]
    client: ClientArgs,
    /// store-svc's gRPC address.
    #[arg(long, env = "EDGE_STORE_URL", default_value = "http://127.0.0.1:50052")]
    store_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = edge_runtime::parse_config();
    edge_runtime::run_service(&cli.runtime, |shutdown| async {
        let app = SyncApp::build(&cli.sync, &cli.store_url, &cli.runtime, &cli.client).await?;
        app.run(shutdown).await?;
        Ok(())
    })
    .await
}
