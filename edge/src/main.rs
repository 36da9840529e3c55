//! `edge`: the whole mesh in one process (`edge up`) and the operator commands.

mod bench;
mod cli;
mod load;
mod ops;
mod up;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: cli::Cli = edge_runtime::parse_config();
    match cli.command {
        cli::Command::Up(args) => up::run(*args).await,
        cli::Command::Query(args) => ops::query(args).await,
        cli::Command::Stats(args) => ops::stats(args).await,
        cli::Command::Simulate(args) => load::simulate(args).await,
        cli::Command::Bench(args) => bench::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::cli::Cli::command().debug_assert();
    }
}
