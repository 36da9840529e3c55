//! `edge`: the whole mesh in one process (`edge up`) and the operator commands.

mod bench;
mod bench_sync;
mod cli;
mod load;
mod ops;
#[cfg(test)]
mod reference;
mod revision_ops;
mod status_ops;
mod sync_ops;
mod up;

use std::process::ExitCode;

use anyhow::Context as _;

#[tokio::main]
async fn main() -> ExitCode {
    let cli: cli::Cli = edge_runtime::parse_config();
    let result = match cli.command {
        cli::Command::Up(args) => up::run(*args).await,
        cli::Command::Status(args) => status_ops::status(args).await,
        cli::Command::Query(args) => ops::query(args).await,
        cli::Command::Stats(args) => ops::stats(args).await,
        cli::Command::Sync(args) => sync_ops::sync(args).await,
        cli::Command::DeadLetters(args) => sync_ops::dead_letters(args).await,
        cli::Command::Amend(args) => revision_ops::amend(args).await,
        cli::Command::Conflicts(args) => revision_ops::conflicts(args).await,
        cli::Command::Cloud(args) => edge_cloud_run(*args).await,
        cli::Command::Simulate(args) => load::simulate(args).await,
        cli::Command::Bench(args) => bench::run(args).await,
    };
    // The last spans, when traces are exported.
    edge_runtime::telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // As `main` returning the error would print it; the exit code
            // tells a refusal to migrate a database (restarting will not
            // help) from a crash.
            eprintln!("Error: {err:?}");
            ExitCode::from(edge_sql::exit_code(err.as_ref()).unwrap_or(1))
        }
    }
}

/// `edge cloud`: the reference cloud until SIGTERM or Ctrl-C.
async fn edge_cloud_run(args: cli::CloudCommandArgs) -> anyhow::Result<()> {
    edge_runtime::telemetry::init_logging(&edge_runtime::RuntimeArgs {
        log: args.log.clone(),
        log_format: args.log_format,
        ..edge_runtime::RuntimeArgs::default()
    });
    let shutdown = edge_runtime::shutdown::on_signal();
    let app = edge_cloud::CloudApp::build(&args.cloud)
        .await
        .context("the reference cloud could not start")?;
    if let Some(path) = &args.ready_file {
        let ready = serde_json::json!({
            "listen": app.local_addr().to_string(),
            "admin": app.admin_addr().to_string(),
        });
        up::write_ready_file(path, &ready)?;
    }
    app.run(shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::cli::Cli::command().debug_assert();
    }
}
