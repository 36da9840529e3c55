//! sync-svc's flags. Every flag has an environment fallback; with no cloud
//! URL the site runs offline by design and sync-svc only says so.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use edge_cloud_link::contract::{DEFAULT_CHANGES_PAGE, MAX_CHANGES_PAGE, MAX_SHARED_SENSORS};
use edge_cloud_link::{ClientUse, CloudLinkArgs};
use edge_versioning::Policy;

/// Which API the cloud offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CloudApi {
    /// The batch API of `docs/cloud-api.yaml`: idempotent, exactly once in effect.
    Batch,
    /// Compatibility mode: `POST /api/readings`, one reading per call. No
    /// idempotency key, so at-least-once: a retry after an ambiguous failure
    /// may duplicate, and each such retry is counted.
    Simple,
}

/// sync-svc configuration (shared by the `sync-svc` binary and `edge up`).
#[derive(Debug, Clone, Args)]
pub struct SyncConfig {
    /// Address sync-svc's gRPC server listens on. Loopback by default: only
    /// the site's own services and operators on this host call it (in
    /// Kubernetes, set to `0.0.0.0:…` and guarded by NetworkPolicies).
    #[arg(long, env = "EDGE_SYNC_ADDR", default_value_t = edge_runtime::ports::loopback(edge_runtime::ports::SYNC))]
    pub sync_addr: SocketAddr,

    /// The cloud, its token and the reachability probe (shared with
    /// health-svc: the same flags and environment variables).
    #[command(flatten)]
    pub link: CloudLinkArgs,

    /// The API the cloud offers.
    #[arg(long, env = "EDGE_CLOUD_API", value_enum, default_value_t = CloudApi::Batch)]
    pub cloud_api: CloudApi,

    /// Deadline for one push (connect, send, answer).
    #[arg(long, env = "EDGE_PUSH_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub push_timeout: Duration,

    /// Most versions per pushed batch (1 to 10000). The drain halves its
    /// batches after a push that took over half the push timeout, down to
    /// 100, and doubles them back after fast ones.
    #[arg(long, env = "EDGE_SYNC_BATCH_SIZE", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sync_batch_size: u32,

    /// Pushes in flight at once (1 to 64). The drain never takes more, so
    /// ingest keeps the rest of the site's capacity. Three drained fastest on
    /// a two-core site (BENCHMARKS.md), each yielding while ingest keeps
    /// the store busy (`--sync-yield`).
    #[arg(long, env = "EDGE_SYNC_CONCURRENCY", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub sync_concurrency: u32,

    /// Percent of every batch taken from the newest unsynced readings (0 to
    /// 100), so the cloud sees the present while a backlog drains.
    #[arg(long, env = "EDGE_SYNC_NEWEST_SHARE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub sync_newest_share: u32,

    /// Leave the store to ingest: after each batch, pause in proportion to how
    /// busy ingest kept store-svc's writer, so the drain takes only the
    /// capacity ingest leaves (at least 5 %).
    #[arg(long, env = "EDGE_SYNC_YIELD", default_value_t = true, action = clap::ArgAction::Set)]
    pub sync_yield: bool,

    /// First retry delay after a failed push (doubles per failure, with jitter).
    #[arg(long, env = "EDGE_SYNC_BACKOFF_INITIAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub backoff_initial: Duration,

    /// Longest retry delay.
    #[arg(long, env = "EDGE_SYNC_BACKOFF_MAX", default_value = "5m", value_parser = humantime::parse_duration)]
    pub backoff_max: Duration,

    /// Attempts after which a version is flagged stuck (and still retried).
    #[arg(long, env = "EDGE_SYNC_STUCK_AFTER", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub stuck_after_attempts: u32,

    /// How long a leased batch stays reserved (1s to 1h); if sync-svc dies
    /// mid-push the versions are due again after this. Keep it above the push
    /// timeout.
    #[arg(long, env = "EDGE_SYNC_LEASE", default_value = "90s", value_parser = parse_lease)]
    pub lease_duration: Duration,

    /// Compress pushed bodies with gzip.
    #[arg(long, env = "EDGE_SYNC_GZIP", default_value_t = true, action = clap::ArgAction::Set)]
    pub sync_gzip: bool,

    /// Largest cloud response read; a longer one is cut off and counts as a
    /// failed push.
    #[arg(long, env = "EDGE_SYNC_MAX_RESPONSE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_response_bytes: usize,

    /// How often an idle drain looks at the outbox again.
    #[arg(long, env = "EDGE_SYNC_IDLE_POLL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub idle_poll: Duration,

    /// How often the backlog figures are refreshed from store-svc.
    #[arg(long, env = "EDGE_SYNC_STATS_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub stats_interval: Duration,

    /// How often the cloud's change feed is read while the link is up (also
    /// at once when the link returns, and on SyncNow).
    #[arg(long, env = "EDGE_PULL_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub pull_interval: Duration,

    /// Versions per page of the change feed (1 to 10000). Each page is
    /// applied in one store transaction.
    #[arg(long, env = "EDGE_PULL_PAGE_SIZE", default_value_t = DEFAULT_CHANGES_PAGE, value_parser = parse_page_size)]
    pub pull_page_size: usize,

    /// Sensors whose readings this site follows wherever they entered the
    /// mesh (comma-separated, at most 100), besides its own readings. Never
    /// the whole fleet. A sensor added later is followed from the feed's
    /// position then, not from its history.
    #[arg(long, env = "EDGE_SHARED_SENSORS", value_delimiter = ',', value_parser = parse_sensor, num_args = 0..)]
    pub shared_sensors: Vec<String>,

    /// The conflict rule this site expects (`lww`, `cloud-wins`,
    /// `edge-wins`). The cloud announces the deployment's rule and the site
    /// always follows it; if this disagrees, sync-svc says so loudly (log,
    /// status, `sync_conflict_policy_mismatch`). Unset: no expectation.
    #[arg(long, env = "EDGE_CONFLICT_POLICY")]
    pub conflict_policy: Option<Policy>,
}

/// A change-feed page size the cloud accepts.
fn parse_page_size(text: &str) -> Result<usize, String> {
    let size: usize = text
        .parse()
        .map_err(|_| "must be a whole number".to_owned())?;
    if (1..=MAX_CHANGES_PAGE).contains(&size) {
        Ok(size)
    } else {
        Err(format!("must be between 1 and {MAX_CHANGES_PAGE}"))
    }
}

/// A shared sensor id, by the rule ingest applies to every sensor id.
fn parse_sensor(text: &str) -> Result<String, String> {
    let sensor = text.trim();
    match edge_proto::rules::sensor_id_problem(sensor) {
        Some(problem) => Err(problem),
        None => Ok(sensor.to_owned()),
    }
}

/// A lease length store-svc accepts: 1 s to 1 h.
fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if (Duration::from_secs(1)..=Duration::from_secs(3_600)).contains(&lease) {
        Ok(lease)
    } else {
        Err("must be between 1s and 1h".into())
    }
}

impl SyncConfig {
    /// Defaults, as `edge up` with no flags would use them.
    pub fn new() -> Self {
        SyncConfig {
            sync_addr: edge_runtime::ports::loopback(edge_runtime::ports::SYNC),
            link: CloudLinkArgs::new(),
            cloud_api: CloudApi::Batch,
            push_timeout: Duration::from_secs(30),
            sync_batch_size: 5000,
            sync_concurrency: 3,
            sync_newest_share: 10,
            sync_yield: true,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            stuck_after_attempts: 10,
            lease_duration: Duration::from_secs(90),
            sync_gzip: true,
            max_response_bytes: 8 * 1024 * 1024,
            idle_poll: Duration::from_secs(1),
            stats_interval: Duration::from_secs(5),
            pull_interval: Duration::from_secs(30),
            pull_page_size: DEFAULT_CHANGES_PAGE,
            shared_sensors: Vec::new(),
            conflict_policy: None,
        }
    }

    /// Checks what clap cannot check flag by flag.
    pub fn validate(&self) -> Result<(), String> {
        let mut distinct = self.shared_sensors.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > MAX_SHARED_SENSORS {
            return Err(format!(
                "--shared-sensors: at most {MAX_SHARED_SENSORS} sensors, got {}",
                distinct.len()
            ));
        }
        Ok(())
    }

    /// How sync-svc uses its HTTP client: pushes under the push timeout,
    /// gzip as configured, bounded answers.
    pub fn client_use(&self) -> ClientUse {
        ClientUse {
            request_timeout: self.push_timeout,
            gzip: self.sync_gzip,
            max_response_bytes: self.max_response_bytes,
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self::new()
    }
}
