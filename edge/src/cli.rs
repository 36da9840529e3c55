//! The `edge` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use edge_runtime::RuntimeArgs;
use health_svc::HealthConfig;
use ingest_svc::IngestConfig;
use store_svc::StoreConfig;
use sync_svc::SyncConfig;

/// The edge mesh: an offline-first data platform for edge sites.
#[derive(Parser)]
#[command(name = "edge", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Subcommand)]
pub enum Command {
    /// Run the mesh (store-svc, ingest-svc, sync-svc and health-svc) in this
    /// process, on SQLite in the data directory unless --database-url says
    /// otherwise.
    Up(Box<UpArgs>),
    /// One screen for an operator: the cloud link (and how long it has been
    /// offline), each service's health, the backlog, the last sync, dead
    /// letters. A service that does not answer is reported on its line.
    Status(StatusArgs),
    /// Page through stored readings.
    Query(QueryArgs),
    /// Print the site's books: readings, backlog, dead letters, database size.
    Stats(StatsArgs),
    /// Sync to the cloud: status, sync now, follow the status.
    Sync(SyncArgs),
    /// Versions the cloud rejected as permanently invalid: list, re-drive.
    DeadLetters(DeadLettersArgs),
    /// Correct a stored reading (values, quality flag, note): a new version,
    /// current at once and sent to the cloud like a reading.
    Amend(AmendArgs),
    /// The audit log of conflicts this site resolved when it pulled the
    /// cloud's changes: both versions, the winner, the rule.
    Conflicts(ConflictsArgs),
    /// Run the reference cloud server (the cloud contract, for tests, demos
    /// and a central hub); `edge cloud sites` manages the sites' tokens.
    Cloud(Box<CloudCommandArgs>),
    /// The site's identities: add a token (printed once), list, revoke.
    Tokens(TokensArgs),
    /// Simulate sensor gateways pushing readings (a load generator).
    Simulate(SimulateArgs),
    /// Run the ingest benchmark matrix and print a table.
    #[cfg(feature = "bench")]
    Bench(BenchArgs),
}

/// `edge up`.
#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub store: StoreConfig,
    #[command(flatten)]
    pub ingest: IngestConfig,
    #[command(flatten)]
    pub sync: SyncConfig,
    /// health-svc's own flags. It watches the services of this process and
    /// probes the cloud of --cloud-url with the same --probe-* settings as
    /// sync-svc (each runs its own probe).
    #[command(flatten)]
    pub health: HealthConfig,
    /// Once every service listens, write their addresses here as JSON
    /// (`{"ingest": "…", "store": "…", "sync": "…", "health": "…",
    /// "metrics": "…", "site_id": "…"}`). For scripts and tests that bind
    /// port 0.
    #[arg(long, env = "EDGE_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Names (DNS or IP) the site's own server certificate carries besides
    /// `localhost`, `127.0.0.1`, `::1` and the host's name, e.g. the address
    /// gateways dial. Only used when no --tls-cert is configured.
    #[arg(long, env = "EDGE_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,
}

/// Where store-svc is.
#[derive(Args, Clone)]
pub struct StoreTarget {
    /// store-svc's gRPC address.
    #[arg(long, env = "EDGE_STORE_URL", default_value_t = edge_runtime::ports::local_url(edge_runtime::ports::STORE), global = true)]
    pub store_url: String,
}

/// `edge cloud`: the server's flags, or a subcommand (which takes its own
/// flags: server flags before it would be silently ignored, so clap refuses
/// them).
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CloudCommandArgs {
    /// `edge cloud sites …` instead of the server.
    #[command(subcommand)]
    pub command: Option<CloudCommand>,
    /// Log filter in `tracing` EnvFilter syntax.
    #[arg(long, env = "EDGE_LOG", default_value = "info")]
    pub log: String,
    /// Log line format.
    #[arg(long, env = "EDGE_LOG_FORMAT", value_enum, default_value_t = edge_runtime::config::LogFormat::Text)]
    pub log_format: edge_runtime::config::LogFormat,
    #[command(flatten)]
    pub cloud: edge_cloud::CloudArgs,
    /// Once both ports listen, write their addresses and the admin token's
    /// file here as JSON (`{"listen": "…", "admin": "…", "admin_token_file":
    /// "…"}`; never the token itself). For scripts and tests that bind port 0.
    #[arg(long, env = "EDGE_CLOUD_READY_FILE")]
    pub ready_file: Option<PathBuf>,
}

/// `edge cloud`'s subcommands.
#[derive(Subcommand)]
pub enum CloudCommand {
    /// The sites' tokens to the cloud: issue (printed once), list, revoke.
    /// Works on the cloud's database directly, with or without the server
    /// running; a running server sees a new token at once and a revoked one
    /// within its --site-token-refresh.
    Sites(edge_cloud::SitesArgs),
}

/// Where sync-svc is.
#[derive(Args, Clone)]
pub struct SyncTarget {
    /// sync-svc's gRPC address.
    #[arg(long, env = "EDGE_SYNC_URL", default_value_t = edge_runtime::ports::local_url(edge_runtime::ports::SYNC))]
    pub sync_url: String,
}

/// Where health-svc is.
#[derive(Args, Clone)]
pub struct HealthTarget {
    /// health-svc's gRPC address.
    #[arg(
        long,
        env = "EDGE_HEALTH_URL",
        default_value_t = edge_runtime::ports::local_url(edge_runtime::ports::HEALTH)
    )]
    pub health_url: String,
}

/// Where ingest-svc is.
#[derive(Args, Clone)]
pub struct IngestTarget {
    /// ingest-svc's gRPC address.
    #[arg(
        long,
        env = "EDGE_INGEST_URL",
        default_value_t = edge_runtime::ports::local_url(edge_runtime::ports::INGEST)
    )]
    pub ingest_url: String,
}

/// `edge status`.
#[derive(Args)]
pub struct StatusArgs {
    /// Credentials and trust.
    #[command(flatten)]
    pub access: crate::access::Access,
    #[command(flatten)]
    pub health: HealthTarget,
    #[command(flatten)]
    pub store: StoreTarget,
    #[command(flatten)]
    pub sync: SyncTarget,
    /// Asked directly (`grpc.health.v1`) only when health-svc does not answer.
    #[command(flatten)]
    pub ingest: IngestTarget,
    /// Deadline for each question, connecting included.
    #[arg(long, env = "EDGE_STATUS_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `edge sync`.
#[derive(Args)]
pub struct SyncArgs {
    /// Credentials and trust.
    #[command(flatten)]
    pub access: crate::access::Access,
    #[command(flatten)]
    pub target: SyncTarget,
    #[command(subcommand)]
    pub command: SyncCommand,
}

/// What to ask sync-svc.
#[derive(Subcommand)]
pub enum SyncCommand {
    /// Link state, backlog, last success and error, next attempt.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Probe the cloud and push now, skipping any global backoff.
    Now,
    /// Print the status on every change until interrupted.
    Watch {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// `edge dead-letters`.
#[derive(Args)]
pub struct DeadLettersArgs {
    /// Credentials and trust.
    #[command(flatten)]
    pub access: crate::access::Access,
    #[command(flatten)]
    pub target: StoreTarget,
    #[command(subcommand)]
    pub command: DeadLettersCommand,
}

/// What to do with dead letters.
#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters, oldest first.
    List {
        /// Stop after this many.
        #[arg(long)]
        limit: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Put dead letters back in the outbox to be pushed again.
    Redrive {
        /// Every dead letter.
        #[arg(long, conflicts_with = "version_ids")]
        all: bool,
        /// Version ids (as `list` prints them).
        #[arg(required_unless_present = "all")]
        version_ids: Vec<u64>,
    },
}

/// A sync state to filter on.
#[derive(Clone, Copy, ValueEnum)]
pub enum SyncStateArg {
    /// Waiting for the cloud.
    Pending,
    /// Acknowledged by the cloud.
    Synced,
    /// Rejected by the cloud.
    DeadLettered,
}

/// `edge amend`.
#[derive(Args)]
pub struct AmendArgs {
    /// Credentials and trust.
    #[command(flatten)]
    pub access: crate::access::Access,
    #[command(flatten)]
    pub target: StoreTarget,
    /// The reading's id (lower-case hyphenated UUID).
    pub reading_id: String,
    /// Corrected temperature, °C.
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Corrected relative humidity, %.
    #[arg(long)]
    pub humidity: Option<f64>,
    /// New quality flag.
    #[arg(long, value_enum)]
    pub quality: Option<QualityArg>,
    /// A note (at most 1024 characters; "" clears it).
    #[arg(long)]
    pub note: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// A reading's quality flag.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QualityArg {
    /// Nothing known against it.
    Good,
    /// Doubtful.
    Suspect,
    /// Known wrong (a faulty sensor).
    Bad,
}

/// `edge conflicts`.
#[derive(Args)]
pub struct ConflictsArgs {
    /// Credentials and trust.
    #[command(flatten)]
    pub access: crate::access::Access,
    #[command(flatten)]
    pub target: StoreTarget,
    /// Stop after this many entries.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Output format.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON object per line.
    Json,
}

/// `edge query`.
#[derive(Args)]
pub struct QueryArgs {
    /// Credentials and trust.
    #[command(flatten)]
    pub access: crate::access::Access,
    #[command(flatten)]
    pub target: StoreTarget,
    /// Only this sensor.
    #[arg(long)]
    pub sensor: Option<String>,
    /// Only readings measured at or after this time (RFC 3339, e.g. 2026-11-23T10:00:00Z).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub from: Option<std::time::SystemTime>,
    /// Only readings measured before this time (RFC 3339).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub to: Option<std::time::SystemTime>,
    /// Only readings in this sync state.
    #[arg(long, value_enum)]
    pub state: Option<SyncStateArg>,
    /// Stop after this many readings. Unset: page through all of them.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Readings fetched per page (1 to 1000).
    #[arg(long, default_value_t = 500)]
    pub page_size: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `edge stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Credentials and trust.
    #[command(flatten)]
    pub access: crate::access::Access,
    #[command(flatten)]
    pub target: StoreTarget,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Unary calls or bidirectional streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One Ingest call per batch.
    Unary,
    /// IngestStream with several batches in flight per stream.
    Stream,
}

/// How simulated gateways make reading ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IdKind {
    /// Time-ordered UUIDv7 (recommended).
    V7,
    /// Random UUIDv4.
    V4,
}

/// Shape of a load.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// Unary calls or streams.
    #[arg(long, value_enum, default_value_t = Mode::Stream)]
    pub mode: Mode,
    /// Readings per call or per stream batch.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub batch: usize,
    /// Concurrent callers (unary) or streams (stream).
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub concurrency: usize,
    /// HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Batches in flight per stream.
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Id scheme.
    #[arg(long, value_enum, default_value_t = IdKind::V7)]
    pub ids: IdKind,
    /// Distinct sensors.
    #[arg(long, default_value_t = 100)]
    pub sensors: usize,
    /// How long to push.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Target readings per second over all callers; 0 pushes as fast as the site acknowledges.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub rate: f64,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate == 0.0 || (0.001..=1e9).contains(&rate) => Ok(rate),
        Ok(_) => Err("must be 0 or between 0.001 and 1e9 readings/s".into()),
        Err(err) => Err(err.to_string()),
    }
}

/// `edge tokens`.
#[derive(Args)]
pub struct TokensArgs {
    /// Credentials and trust (an operator's token).
    #[command(flatten)]
    pub access: crate::access::Access,
    #[command(flatten)]
    pub target: StoreTarget,
    #[command(subcommand)]
    pub command: TokensCommand,
}

/// An `edge tokens` action.
#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create an identity and print its token once (on stdout, alone).
    Add {
        /// The identity's name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// What it may call: `ingest` (a gateway), `read` (a dashboard),
        /// `operate` (an operator). Repeat or comma-separate.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<edge_runtime::auth::Scope>,
        /// Its own calls-per-second limit (0: unlimited; unset: the site's).
        #[arg(long)]
        calls_per_second: Option<u32>,
        /// Its own readings-per-second limit (0: unlimited; unset: the site's).
        #[arg(long)]
        readings_per_second: Option<u32>,
    },
    /// List identities (never their tokens).
    List {
        /// Include revoked identities.
        #[arg(long)]
        include_revoked: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke an identity's token (refused everywhere within 5 s).
    Revoke {
        /// The identity's name.
        name: String,
    },
}

/// `edge simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// Credentials and trust.
    #[command(flatten)]
    pub access: crate::access::Access,
    #[command(flatten)]
    pub target: IngestTarget,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `edge bench`.
#[cfg(feature = "bench")]
#[derive(Args)]
pub struct BenchArgs {
    /// PostgreSQL server to benchmark against (each run gets a fresh database
    /// on it): the ingest matrix, and the sync suite's backlog and drain.
    /// Unset: PostgreSQL runs are skipped.
    #[arg(long, env = "EDGE_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Length of each measured run.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Only scenarios whose name contains this text.
    #[arg(long)]
    pub only: Option<String>,
    /// Which benchmark: the ingest matrix, or store and forward to the
    /// reference cloud.
    #[arg(long, value_enum, default_value_t = BenchSuite::Ingest)]
    pub suite: BenchSuite,
    /// `--suite sync`: unsynced versions to build up before draining.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u64,
    /// `--suite sync`: nice value for the reference cloud's threads, to let
    /// it stand in for a remote machine; 0 (default) runs it at normal
    /// priority, sharing the CPU with the site as loopback does.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub cloud_nice: i32,
    /// `--suite sync`: a shell command run just before each backend's
    /// drain-alone phase, to measure the drain right after a fault, for example
    /// `pg_ctlcluster 15 main restart -m immediate` (PostgreSQL then starts
    /// without planner statistics). The phase waits out the site's errors
    /// meanwhile.
    #[arg(long)]
    pub before_drain: Option<String>,
}

/// A benchmark suite.
#[cfg(feature = "bench")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchSuite {
    /// Ingest throughput and latency over backends, id schemes and call shapes.
    Ingest,
    /// Backlog drain to the reference cloud, ingest beside it, and ingest
    /// latency with a black-holed cloud.
    Sync,
    /// Ingest with the site's defaults (TLS and tokens) beside
    /// `--insecure-plaintext`: what TLS and authentication cost.
    Security,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    use super::{Cli, Command};
    use clap::Parser as _;

    /// `edge up` with no setting faces the network with ingest, health and
    /// the operations port only; store-svc and sync-svc stay on loopback.
    #[test]
    fn edge_up_exposes_only_ingest_health_and_metrics() {
        let cli = Cli::try_parse_from(["edge", "up"]).expect("parse");
        let Command::Up(up) = cli.command else {
            panic!("not up");
        };
        assert!(
            up.store.store_addr.ip().is_loopback(),
            "{}",
            up.store.store_addr
        );
        assert!(
            up.sync.sync_addr.ip().is_loopback(),
            "{}",
            up.sync.sync_addr
        );
        assert!(up.ingest.ingest_addr.ip().is_unspecified());
        assert!(up.health.health_addr.ip().is_unspecified());
        assert!(!up.runtime.security.insecure_plaintext, "TLS by default");
    }
}
