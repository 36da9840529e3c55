//! What the cloud holds, row by row, as its database reads it back and the
//! admin listings ([`crate::admin`]) show it: shared by both, so neither
//! depends on the other for it.

use edge_cloud_link::contract::{Priority, VersionStamp};
use serde::{Deserialize, Serialize};

/// One stored version, as `GET /admin/sites/{site_id}/versions` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVersion {
    /// The origin site's seq of the reading.
    pub seq: u64,
    /// The reading id.
    pub reading_id: String,
    /// Which version this is.
    pub version: VersionStamp,
    /// Sensor id.
    pub sensor_id: String,
    /// Degrees Celsius.
    pub temperature_celsius: f64,
    /// Percent relative humidity.
    pub humidity_percent: f64,
    /// Gateway clock at measurement, µs since the epoch.
    pub measured_at_us: i64,
    /// Site clock at arrival, µs since the epoch.
    pub received_at_us: i64,
    /// Forwarding priority.
    pub priority: Priority,
    /// The site flagged `measured_at` as suspect.
    pub clock_suspect: bool,
    /// Cloud-wide number of the push that stored it (grows across restarts;
    /// 0 for the cloud's own amendments, which no push carried).
    pub push: u64,
    /// Set when it was stamped further ahead of the cloud's wall clock than
    /// `--max-clock-skew` when stored: how far, in milliseconds. Kept all
    /// the same; the cloud's clock stopped at the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_ahead_ms: Option<u64>,
    /// The identity that wrote it, as recorded; absent when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
}

/// One resolved conflict, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConflict {
    /// The log's id (order of resolution).
    pub id: i64,
    /// The reading.
    pub reading_id: String,
    /// The version the cloud held as current.
    pub local: VersionStamp,
    /// The concurrent version that arrived.
    pub remote: VersionStamp,
    /// `local` or `remote`: which is current after resolution.
    pub winner: String,
    /// The rule that decided (`lww`, `cloud-wins`, `edge-wins`).
    pub policy: String,
    /// The cloud's wall clock when it was resolved, µs since the epoch.
    pub resolved_at_us: i64,
    /// The writer of the version held, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_written_by: Option<String>,
    /// The writer of the version that arrived, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_written_by: Option<String>,
}

/// One reading received through the simple API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSimpleReading {
    /// The id answered in `201`.
    pub id: i64,
    /// Sensor id.
    pub sensor_id: String,
    /// Degrees Celsius.
    pub temperature: f64,
    /// Percent relative humidity.
    pub humidity: f64,
    /// The timestamp as sent (RFC 3339).
    pub timestamp: String,
}
