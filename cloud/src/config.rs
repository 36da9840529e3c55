//! `edge cloud`'s flags. Every flag has an environment fallback. Sites
//! authenticate with their own tokens (issued by `edge cloud sites add`,
//! stored hashed in the database); `--site-token` registers known ones at
//! start for tests and demos. The admin API has its own credential, a file
//! created on first start.
//! The conflict rule is one setting for the whole deployment: the cloud
//! announces it on its change feed and every site applies what it announces.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use edge_versioning::Policy;

use crate::sites::SiteToken;

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

    /// Address of the admin API (fault injection, stats, stored data). Every
    /// request needs the admin token (`--admin-token-file`), even on
    /// loopback; still, keep it on loopback. It is a separate port so it
    /// keeps answering while the public one is dark.
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

    /// `SITE_ID=TOKEN`: registers TOKEN as the site's token at start (its
    /// hash replaces the site's active token), so a test or a demo can start
    /// a cloud and a site with a known token. Repeatable; the variable takes
    /// a comma-separated list. Re-applied at every start, so a token revoked
    /// with `edge cloud sites revoke` comes back: in production issue tokens
    /// with `edge cloud sites add` instead. Never logged.
    #[arg(
        long = "site-token",
        env = "EDGE_CLOUD_SITE_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub site_tokens: Vec<SiteToken>,

    /// How often the server reloads the site tokens from the database: a
    /// token revoked by `edge cloud sites revoke` is refused within this
    /// interval (a new one works at once).
    #[arg(
        long = "site-token-refresh",
        env = "EDGE_CLOUD_SITE_TOKEN_REFRESH",
        default_value = "2s",
        value_parser = parse_refresh
    )]
    pub site_token_refresh: Duration,

    /// The admin API's bearer token file: read if it exists, otherwise a new
    /// token (`edgeadmin_…`) is written there with mode 0600 on start.
    /// Default: `admin.token` in --cloud-data-dir.
    #[arg(long = "admin-token-file", env = "EDGE_CLOUD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// A connection that has not sent a request's headers whole within this
    /// long is closed (both ports), so a client that stalls mid-headers
    /// cannot hold a connection (and its memory) open. With TLS, the
    /// handshake gets this long too.
    #[arg(
        long = "header-timeout",
        env = "EDGE_CLOUD_HEADER_TIMEOUT",
        default_value = "10s",
        value_parser = parse_timeout
    )]
    pub header_timeout: Duration,

    /// PEM certificate chain (leaf first) both ports present: with
    /// `--tls-key`, the cloud speaks HTTPS. Re-read when the file changes
    /// (a rotated certificate needs no restart). Unset: plain HTTP, for
    /// tests, demos and a cloud behind a TLS-terminating proxy; a warning
    /// says so at start.
    #[arg(long = "tls-cert", env = "EDGE_CLOUD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long = "tls-key", env = "EDGE_CLOUD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A request body not received whole within this long after its headers
    /// is answered `408` and its connection closed (both ports).
    #[arg(
        long = "body-timeout",
        env = "EDGE_CLOUD_BODY_TIMEOUT",
        default_value = "30s",
        value_parser = parse_timeout
    )]
    pub body_timeout: Duration,

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
    /// Defaults as `edge cloud` would use them (no site tokens registered
    /// at start).
    pub fn new(data_dir: PathBuf) -> Self {
        CloudArgs {
            listen: DEFAULT_LISTEN,
            admin_listen: DEFAULT_ADMIN_LISTEN,
            data_dir,
            database_url: None,
            site_tokens: Vec::new(),
            site_token_refresh: DEFAULT_SITE_TOKEN_REFRESH,
            admin_token_file: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            tls_cert: None,
            tls_key: None,
            body_timeout: DEFAULT_BODY_TIMEOUT,
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
    pub fn for_test(data_dir: PathBuf, database_url: Option<String>) -> Self {
        CloudArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            shutdown_grace: Duration::from_secs(5),
            ..CloudArgs::new(data_dir)
        }
    }

    /// These arguments with `token` registered for `site_id` at start.
    pub fn with_site_token(mut self, site_id: &str, token: &str) -> Self {
        self.site_tokens.push(SiteToken::new(site_id, token));
        self
    }

    /// These arguments serving TLS with the certificate `cert` and its key
    /// `key`.
    pub fn with_tls(mut self, cert: PathBuf, key: PathBuf) -> Self {
        self.tls_cert = Some(cert);
        self.tls_key = Some(key);
        self
    }

    /// Where the admin token is: `--admin-token-file`, or `admin.token` in
    /// the data directory.
    pub fn admin_token_path(&self) -> PathBuf {
        self.admin_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(ADMIN_TOKEN_FILE))
    }
}

/// The admin token's file name in the data directory, by default.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Default `--site-token-refresh`.
pub const DEFAULT_SITE_TOKEN_REFRESH: Duration = Duration::from_secs(2);

/// Default `--header-timeout`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default `--body-timeout`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A timeout flag: at least 1 ms (zero would close every connection).
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let value = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if value < Duration::from_millis(1) {
        return Err("must be at least 1ms".into());
    }
    Ok(value)
}

/// `--site-token-refresh`: 10 ms to 1 h (zero would spin on the database;
/// beyond an hour a revoked token lives on too long).
fn parse_refresh(text: &str) -> Result<Duration, String> {
    let value = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&value) {
        return Err("must be between 10ms and 1h".into());
    }
    Ok(value)
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
            .field("site_tokens", &self.site_tokens)
            .field("site_token_refresh", &self.site_token_refresh)
            .field("admin_token_file", &self.admin_token_file)
            .field("header_timeout", &self.header_timeout)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("body_timeout", &self.body_timeout)
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

    #[test]
    fn the_certificate_and_key_come_together() {
        let cli = Cli::try_parse_from(["edge", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .expect("both");
        assert_eq!(cli.cloud.tls_cert, Some(PathBuf::from("c.pem")));
        assert!(Cli::try_parse_from(["edge", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["edge", "--tls-key", "k.pem"]).is_err());
    }
}
