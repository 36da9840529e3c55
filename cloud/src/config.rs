//! `edge cloud`'s flags. Every flag has an environment fallback. There is no
//! default bearer token: a cloud that accepts any client is a configuration
//! mistake, so a missing token fails start-up with a message naming the flag.
//! The conflict rule is one setting for the whole deployment: the cloud
//! announces it on its change feed and every site applies what it announces.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use edge_versioning::Policy;

/// Default public port of the reference cloud (docs/architecture.md,
/// Configuration).
pub const DEFAULT_CLOUD_PORT: u16 = 8080;

/// Default admin port; loopback only unless configured otherwise.
pub const DEFAULT_ADMIN_PORT: u16 = 8081;

/// The public API's default address: every interface.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    DEFAULT_CLOUD_PORT,
);

/// The admin API's default address: loopback only.
const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    DEFAULT_ADMIN_PORT,
);

/// The reference cloud's configuration; flattened into `edge cloud`.
#[derive(Clone, Args)]
pub struct CloudArgs {
    /// Address of the public API (the cloud contract).
    #[arg(
        long = "listen",
        env = "EDGE_CLOUD_LISTEN",
        default_value_t = DEFAULT_LISTEN
    )]
    pub listen: SocketAddr,

    /// Address of the admin API (fault injection, stats, stored data). It has
    /// no authentication and is for tests and demos: keep it on loopback. It
    /// is a separate port so it keeps answering while the public one is dark.
    #[arg(
        long = "admin-listen",
        env = "EDGE_CLOUD_ADMIN_LISTEN",
        default_value_t = DEFAULT_ADMIN_LISTEN
    )]
    pub admin_listen: SocketAddr,

    /// Directory of the embedded SQLite database (`cloud.db`).
    #[arg(
        long = "cloud-data-dir",
        env = "EDGE_CLOUD_DATA_DIR",
        default_value = "./cloud-data"
    )]
    pub data_dir: PathBuf,

    /// `postgres://user:password@host/db` (or `postgresql://`) to use
    /// PostgreSQL instead of SQLite, or `sqlite:path`; any other scheme is
    /// refused at start-up. Never logged.
    #[arg(
        long = "cloud-database-url",
        env = "EDGE_CLOUD_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// The bearer token clients must send (`Authorization: Bearer <token>`).
    /// Required: there is no default secret. Never logged.
    #[arg(long = "cloud-token", env = "EDGE_CLOUD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Database connections for reads (coverage, admin listings); writes use
    /// one more, so they are serialised.
    #[arg(
        long = "cloud-db-read-connections",
        env = "EDGE_CLOUD_DB_READ_CONNECTIONS",
        default_value_t = 4
    )]
    pub read_connections: u32,

    /// How long in-flight requests may take to finish after shutdown begins.
    #[arg(
        long = "cloud-shutdown-grace",
        env = "EDGE_CLOUD_SHUTDOWN_GRACE",
        default_value = "10s",
        value_parser = humantime::parse_duration
    )]
    pub shutdown_grace: Duration,

    /// The deployment's conflict rule between concurrent versions of a
    /// reading: `lww` (last writer wins on (HLC, site id)), `cloud-wins` or
    /// `edge-wins`. Announced to every site with the change feed.
    #[arg(
        long = "conflict-policy",
        env = "EDGE_CONFLICT_POLICY",
        default_value = "lww"
    )]
    pub conflict_policy: Policy,

    /// The deployment's clock-skew bound: how far ahead of a node's wall
    /// clock a received stamp may move its clock. A pushed version stamped
    /// further ahead of the cloud's wall clock is still accepted, but flagged
    /// (`clock_ahead_ms`), counted in the admin stats and logged, and the
    /// cloud's clock stops at the bound. Announced to every site with the
    /// change feed, which applies it to what it pulls.
    #[arg(
        long = "max-clock-skew",
        env = "EDGE_CLOUD_MAX_CLOCK_SKEW",
        default_value = "1h",
        value_parser = humantime::parse_duration
    )]
    pub max_clock_skew: Duration,

    /// Before migrations change a SQLite cloud database that already holds
    /// data, copy it to `backups/` beside the database file. `required`: if
    /// the copy cannot be made, refuse to migrate and say why; `off`:
    /// migrate without a copy. PostgreSQL is never copied: take a pg_dump.
    #[arg(
        long = "cloud-migration-backup",
        env = "EDGE_CLOUD_MIGRATION_BACKUP",
        value_enum,
        default_value_t = edge_sql::BackupPolicy::Required
    )]
    pub migration_backup: edge_sql::BackupPolicy,

    /// Start on a PostgreSQL server whose settings do not make a commit
    /// durable (`fsync`, `synchronous_commit` or `full_page_writes` off). By
    /// default the cloud refuses to start there, naming the setting: a
    /// version it acknowledged to a site could be lost in a crash, and the
    /// site would never send it again.
    #[arg(
        long = "cloud-accept-postgres-durability-risk",
        env = "EDGE_CLOUD_ACCEPT_POSTGRES_DURABILITY_RISK"
    )]
    pub accept_postgres_durability_risk: bool,

    /// Faults injected into the cloud's writes; set only by tests.
    #[arg(skip)]
    pub write_faults: Option<std::sync::Arc<edge_sql::WriteFaults>>,
}

/// Default `--max-clock-skew`: the one every replica defaults to.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = edge_versioning::DEFAULT_MAX_CLOCK_SKEW;

impl CloudArgs {
    /// Defaults as `edge cloud` would use them, with the given token.
    pub fn new(data_dir: PathBuf, token: impl Into<String>) -> Self {
        CloudArgs {
            listen: DEFAULT_LISTEN,
            admin_listen: DEFAULT_ADMIN_LISTEN,
            data_dir,
            database_url: None,
            token: Some(token.into()),
            read_connections: 4,
            shutdown_grace: Duration::from_secs(10),
            conflict_policy: Policy::Lww,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            migration_backup: edge_sql::BackupPolicy::Required,
            accept_postgres_durability_risk: false,
            write_faults: None,
        }
    }

    /// For tests: both ports on `127.0.0.1:0` (ephemeral), SQLite in
    /// `data_dir` unless `database_url` names a PostgreSQL database.
    pub fn for_test(
        data_dir: PathBuf,
        database_url: Option<String>,
        token: impl Into<String>,
    ) -> Self {
        CloudArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            shutdown_grace: Duration::from_secs(5),
            ..CloudArgs::new(data_dir, token)
        }
    }
}

impl std::fmt::Debug for CloudArgs {
    // By hand, so the token and the database URL (which may hold a password)
    // never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudArgs")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("read_connections", &self.read_connections)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("conflict_policy", &self.conflict_policy)
            .field("max_clock_skew", &self.max_clock_skew)
            .field("migration_backup", &self.migration_backup)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cloud: CloudArgs,
    }

    #[test]
    fn the_policy_and_skew_parse_and_default() {
        let cli = Cli::try_parse_from(["edge"]).expect("defaults");
        assert_eq!(cli.cloud.conflict_policy, Policy::Lww);
        assert_eq!(cli.cloud.max_clock_skew, DEFAULT_MAX_CLOCK_SKEW);
        let cli = Cli::try_parse_from([
            "edge",
            "--conflict-policy",
            "cloud-wins",
            "--max-clock-skew",
            "90s",
        ])
        .expect("flags");
        assert_eq!(cli.cloud.conflict_policy, Policy::CloudWins);
        assert_eq!(cli.cloud.max_clock_skew, Duration::from_secs(90));
        let err = Cli::try_parse_from(["edge", "--conflict-policy", "newest"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("lww, cloud-wins or edge-wins"), "{err}");
    }
}
