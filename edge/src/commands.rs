//! Which subcommand runs what: the body of `edge`'s `main`.

use anyhow::Context as _;

use crate::cli::{CloudCommand, CloudCommandArgs, Command};
use crate::{load, ops, revision_ops, status_ops, sync_ops, tokens_ops, up};

/// Runs `command` to its end.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(*args).await,
        Command::Status(args) => status_ops::status(args).await,
        Command::Query(args) => ops::query(args).await,
        Command::Stats(args) => ops::stats(args).await,
        Command::Sync(args) => sync_ops::sync(args).await,
        Command::DeadLetters(args) => sync_ops::dead_letters(args).await,
        Command::Amend(args) => revision_ops::amend(args).await,
        Command::Conflicts(args) => revision_ops::conflicts(args).await,
        Command::Cloud(args) => cloud(*args).await,
        Command::Tokens(args) => tokens_ops::tokens(args).await,
        Command::Simulate(args) => load::simulate(args).await,
        #[cfg(feature = "bench")]
        Command::Bench(args) => crate::bench::run(args).await,
    }
}

/// `edge cloud`: the reference cloud until SIGTERM or Ctrl-C, or `edge
/// cloud sites …`.
async fn cloud(args: CloudCommandArgs) -> anyhow::Result<()> {
    if let Some(CloudCommand::Sites(sites)) = &args.command {
        let mut out = Vec::new();
        let result = edge_cloud::sites_command::run(sites, &mut out).await;
        std::io::Write::write_all(&mut std::io::stdout(), &out)?;
        return result.context("edge cloud sites");
    }
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
            "tls": app.tls(),
            "url": app.url(),
            "admin_url": app.admin_url(),
            "admin_token_file": app.admin_token_file().display().to_string(),
        });
        up::write_ready_file(path, &ready)?;
    }
    app.run(shutdown).await?;
    Ok(())
}
