//! The storage flags: budget, free-disk reserve, policy, retention.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// What happens once the site needs room and nothing synced is left to prune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Policy {
    /// Refuse new readings (`RESOURCE_EXHAUSTED`) so gateways keep their own
    /// buffer; nothing already accepted is touched. Default.
    #[default]
    Reject,
    /// Drop the oldest unsynced versions, counting each one and reporting it
    /// to the cloud's coverage as dropped.
    DropOldestUnsynced,
}

impl Policy {
    /// The flag value, as shown in stats.
    pub fn label(self) -> &'static str {
        match self {
            Policy::Reject => "reject",
            Policy::DropOldestUnsynced => "drop-oldest-unsynced",
        }
    }
}

/// Free disk the site leaves alone: a share of the file system or bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reserve {
    /// Percent of the file system's size, 0 to 90.
    Percent(f64),
    /// Bytes.
    Bytes(u64),
}

impl Reserve {
    /// The reserve in bytes on a file system of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            Reserve::Percent(percent) => (total as f64 * percent / 100.0) as u64,
            Reserve::Bytes(bytes) => bytes,
        }
    }
}

impl FromStr for Reserve {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(percent) = s.strip_suffix('%') {
            let percent: f64 = percent
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage like 10%"))?;
            if !(0.0..=90.0).contains(&percent) {
                return Err(format!("{s:?}: the reserve must be 0% to 90%"));
            }
            Ok(Reserve::Percent(percent))
        } else {
            parse_bytes(s).map(Reserve::Bytes)
        }
    }
}

impl fmt::Display for Reserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reserve::Percent(percent) => write!(f, "{percent}%"),
            Reserve::Bytes(bytes) => write!(f, "{}", bytesize::ByteSize::b(*bytes)),
        }
    }
}

/// Bytes from `20GiB`, `500 MB`, `1048576`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|err| format!("{s:?} is not a size like 500MiB or 20GB: {err}"))
}

/// Longest retention accepted (100 years): longer is "keep synced data until
/// the budget needs the room".
const MAX_RETENTION: Duration = Duration::from_secs(100 * 365 * 86_400);

fn parse_retention(s: &str) -> Result<Duration, String> {
    let retention = humantime::parse_duration(s).map_err(|err| err.to_string())?;
    if retention > MAX_RETENTION {
        return Err(format!("{s:?}: at most 100 years"));
    }
    Ok(retention)
}

/// Bounded storage (docs/architecture.md, Storage at the site;
/// docs/storage.md): every flag has an environment fallback.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Most bytes the site database may occupy, e.g. `20GiB` (SQLite: pages
    /// in use; PostgreSQL: the site's tables and indexes). When reached, the
    /// oldest synced versions go first, then the policy decides. Unset: no
    /// budget (the free-disk reserve still applies).
    #[arg(long, env = "EDGE_STORAGE_BUDGET", value_parser = parse_bytes)]
    pub storage_budget: Option<u64>,

    /// Free space the site leaves on the data directory's file system,
    /// whatever the budget says: a percentage from 0 to 90 (`10%`) or bytes
    /// like `2GiB`. Keep it above the kubelet's eviction threshold. Not
    /// measured on PostgreSQL (the database server's disk is not visible to
    /// store-svc).
    #[arg(long, env = "EDGE_STORAGE_RESERVE", default_value = "10%")]
    pub storage_reserve: Reserve,

    /// Once nothing synced is left to prune: `reject` new readings, or
    /// `drop-oldest-unsynced` (each drop counted and reported to the cloud).
    #[arg(long, env = "EDGE_STORAGE_POLICY", value_enum, default_value_t)]
    pub storage_policy: Policy,

    /// Synced versions received longer ago than this are pruned (at most 100
    /// years). Unsynced versions are never pruned by age.
    #[arg(long, env = "EDGE_RETENTION", default_value = "30days", value_parser = parse_retention)]
    pub retention: Duration,

    /// How often storage is measured and retention applied (the writer also
    /// asks for room whenever its estimate runs out).
    #[arg(long, env = "EDGE_STORAGE_CHECK_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub storage_check_interval: Duration,

    /// Versions removed per transaction by pruning and dropping (1 to
    /// 100000): small, so ingest waits at most one such transaction.
    #[arg(long, env = "EDGE_PRUNE_BATCH", default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub prune_batch: u32,
}

impl Default for StorageArgs {
    fn default() -> Self {
        StorageArgs {
            storage_budget: None,
            storage_reserve: Reserve::Percent(10.0),
            storage_policy: Policy::Reject,
            retention: Duration::from_secs(30 * 86_400),
            storage_check_interval: Duration::from_secs(1),
            prune_batch: 2_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_parse_as_percent_or_bytes() {
        assert_eq!("10%".parse::<Reserve>(), Ok(Reserve::Percent(10.0)));
        assert_eq!("2GiB".parse::<Reserve>(), Ok(Reserve::Bytes(2 << 30)));
        assert_eq!("500 MB".parse::<Reserve>(), Ok(Reserve::Bytes(500_000_000)));
        assert!("95%".parse::<Reserve>().is_err());
        assert!("lots".parse::<Reserve>().is_err());
        assert_eq!(Reserve::Percent(10.0).bytes(1_000), 100);
    }

    #[test]
    fn retention_is_bounded() {
        assert!(parse_retention("7days").is_ok());
        assert!(parse_retention("1000years").is_err());
    }
}
