//! The store-svc binary: one service per process, as Kubernetes runs it.

use edge_runtime::Service as _;
use std::process::ExitCode;
use std::sync::Arc;

use store_svc::{Cli, StoreApp, hlc::SystemClock};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = edge_runtime::parse_config();
    let result: anyhow::Result<()> = edge_runtime::run_service(&cli.runtime, |shutdown| async {
        let app = StoreApp::build(&cli.store, &cli.runtime, Arc::new(SystemClock)).await?;
        app.run(shutdown).await?;
        Ok(())
    })
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // As `main` returning the error would print it; the exit code
            // tells a refusal to migrate (restarting will not help) from a
            // crash.
            eprintln!("Error: {err:?}");
            ExitCode::from(edge_sql::exit_code(err.as_ref()).unwrap_or(1))
        }
    }
}
