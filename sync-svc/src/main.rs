//! The sync-svc binary: one service per process, as Kubernetes runs it.

use edge_runtime::Service as _;
use sync_svc::{Cli, SyncApp};

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
