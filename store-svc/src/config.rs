//! store-svc's flags. Every flag has an environment fallback; the defaults run
//! a durable SQLite site in `./data` with no configuration at all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::db::faults::WriteFaults;
use crate::db::{DbConfig, Durability};
use crate::storage::{DiskProbe, StorageArgs};

/// store-svc configuration.
#[derive(Clone, Args)]
pub struct StoreConfig {
    /// Address store-svc's gRPC server listens on. Loopback by default: only
    /// the site's own services and operators on this host call it (in
    /// Kubernetes, set to `0.0.0.0:…` and guarded by NetworkPolicies).
    #[arg(long, env = "EDGE_STORE_ADDR", default_value_t = edge_runtime::ports::loopback(edge_runtime::ports::STORE))]
    pub store_addr: SocketAddr,

    /// This site's id, stamped on every reading and version. Unset: the id
    /// stored in the database, or a generated one on first start.
    #[arg(long, env = "EDGE_SITE_ID")]
    pub site_id: Option<String>,

    /// Directory of the embedded SQLite database (`edge.db`).
    #[arg(long, env = "EDGE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// `postgres://user:password@host/db` (or `postgresql://`) for PostgreSQL,
    /// or `sqlite:path`; any other scheme is refused at start-up. Unset:
    /// SQLite in the data directory. Never logged.
    #[arg(long, env = "EDGE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// File holding the operator's token (every scope a person uses). Made
    /// on first start with mode 0600 when missing; a changed file replaces
    /// the operator's token at the next start. Default:
    /// `<data-dir>/operator.token`.
    #[arg(long, env = "EDGE_OPERATOR_TOKEN_FILE")]
    pub operator_token_file: Option<PathBuf>,

    /// SQLite durability: `full` syncs every commit to disk before replying.
    #[arg(long, env = "EDGE_SQLITE_SYNC", value_enum, default_value_t = Durability::Full)]
    pub sqlite_sync: Durability,

    /// Database connections for queries and stats (writes use one more). On
    /// PostgreSQL the by-sensor index's batches are copied on one of them.
    #[arg(long, env = "EDGE_DB_READ_CONNECTIONS", default_value_t = 4)]
    pub db_read_connections: u32,

    /// A group-commit transaction stops taking further calls once it holds
    /// this many readings (the call that crosses it is included).
    #[arg(long, env = "EDGE_GROUP_COMMIT_MAX_ROWS", default_value_t = 10_000)]
    pub group_commit_max_rows: usize,

    /// A reading measured this far after the site's now is flagged clock_suspect.
    #[arg(long, env = "EDGE_CLOCK_SUSPECT_AHEAD", default_value = "5m", value_parser = humantime::parse_duration)]
    pub clock_suspect_ahead: Duration,

    /// A reading measured this far before the site's now is flagged
    /// clock_suspect (gateways legitimately buffer readings while the site is down).
    #[arg(long, env = "EDGE_CLOCK_SUSPECT_BEHIND", default_value = "30days", value_parser = humantime::parse_duration)]
    pub clock_suspect_behind: Duration,

    /// How far ahead of the site's wall clock a received stamp may move the
    /// site's clock, until the cloud announces the deployment's bound (then
    /// the announced one applies, here and at every start). A version pulled
    /// with a stamp further ahead is still stored (order must hold whatever
    /// the clocks say), but flagged with how far ahead it was, counted in
    /// `clock_skew_versions_total` and logged, and the clock stops at the
    /// bound; a clock found beyond it at start falls back to it.
    #[arg(long, env = "EDGE_MAX_CLOCK_SKEW", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_clock_skew: Duration,

    /// Readings the by-sensor index may trail the newest by before they are
    /// added in one sorted batch (queries scan that tail instead): on SQLite
    /// by the commit that reaches it, on PostgreSQL by a task beside the
    /// writer. Larger batches make ingest with many sensors cheaper (each
    /// sensor's index page is rewritten once per batch) and the tail longer
    /// (a query by sensor reads up to that many recent readings).
    #[arg(long, env = "EDGE_SENSOR_INDEX_BATCH", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    pub sensor_index_batch: u32,

    /// How often the backlog gauges (`unsynced_readings`, `dead_letters`, …)
    /// are recounted from the database.
    #[arg(long, env = "EDGE_STORE_GAUGE_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub gauge_interval: Duration,

    /// Retention, the storage budget and its policy.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Start on a PostgreSQL server whose settings do not make a commit
    /// durable (`fsync`, `synchronous_commit` or `full_page_writes` off). By
    /// default store-svc refuses to start there, naming the setting: a
    /// reading it acknowledged could be lost in a crash or power cut.
    #[arg(long, env = "EDGE_ACCEPT_POSTGRES_DURABILITY_RISK")]
    pub accept_postgres_durability_risk: bool,

    /// Before migrations change a SQLite database that already holds data,
    /// copy it to `backups/` beside the database file (the newest copy of
    /// each of the last three schemas is kept). `required`: if the copy
    /// cannot be made (no room), refuse to migrate and say why. `off`:
    /// migrate without a copy. PostgreSQL is never copied: take a pg_dump
    /// before upgrading.
    #[arg(long, env = "EDGE_MIGRATION_BACKUP", value_enum, default_value_t = edge_sql::BackupPolicy::Required)]
    pub migration_backup: edge_sql::BackupPolicy,

    /// Where free disk space is read from; unset: the data directory's file
    /// system (SQLite) or nowhere (PostgreSQL). Set by tests that cannot
    /// mount a small file system.
    #[arg(skip)]
    pub disk_probe: Option<Arc<dyn DiskProbe>>,

    /// Faults injected into the store's writes; set only by tests.
    #[arg(skip)]
    pub write_faults: Option<Arc<WriteFaults>>,
}

impl StoreConfig {
    /// Where the operator's token is.
    pub fn operator_token_path(&self) -> PathBuf {
        self.operator_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("operator.token"))
    }

    /// Defaults, as `edge up` with no flags would use them.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            store_addr: edge_runtime::ports::loopback(edge_runtime::ports::STORE),
            site_id: None,
            operator_token_file: None,
            data_dir,
            database_url: None,
            sqlite_sync: Durability::Full,
            db_read_connections: 4,
            group_commit_max_rows: 10_000,
            clock_suspect_ahead: Duration::from_secs(300),
            clock_suspect_behind: Duration::from_secs(30 * 86_400),
            max_clock_skew: edge_versioning::DEFAULT_MAX_CLOCK_SKEW,
            sensor_index_batch: 65_536,
            gauge_interval: Duration::from_secs(10),
            storage: StorageArgs::default(),
            accept_postgres_durability_risk: false,
            migration_backup: edge_sql::BackupPolicy::Required,
            disk_probe: None,
            write_faults: None,
        }
    }

    /// The database part of the configuration.
    pub fn db_config(&self) -> DbConfig {
        DbConfig {
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            site_id: self.site_id.clone(),
            durability: self.sqlite_sync,
            read_connections: self.db_read_connections,
            suspect_ahead: self.clock_suspect_ahead,
            suspect_behind: self.clock_suspect_behind,
            sensor_index_batch: self.sensor_index_batch,
            max_clock_skew: edge_versioning::SkewBound::from_duration(self.max_clock_skew),
            accept_postgres_durability_risk: self.accept_postgres_durability_risk,
            write_faults: self.write_faults.clone(),
            migration_backup: self.migration_backup,
        }
    }
}
