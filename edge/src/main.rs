//! `edge`: the whole mesh in one process (`edge up`) and the operator commands.

mod access;
#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "bench")]
mod bench_sync;
mod cli;
mod commands;
mod load;
mod ops;
#[cfg(test)]
mod reference;
mod revision_ops;
mod status_ops;
mod sync_ops;
mod tokens_ops;
mod up;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli: cli::Cli = edge_runtime::parse_config();
    let result = commands::run(cli.command).await;
    // The last spans, when traces are exported.
    edge_runtime::telemetry::shutdown();
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    // As `main` returning the error would print it; the exit code tells a
    // refusal to migrate a database (restarting will not help) from a crash.
    eprintln!("Error: {err:?}");
    ExitCode::from(edge_sql::exit_code(err.as_ref()).unwrap_or(1))
}
