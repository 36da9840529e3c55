//! The cloud contract's JSON bodies (docs/architecture.md, The cloud
//! contract), shared by the site's push client and the reference cloud server
//! so both sides serialise exactly the same shapes. `docs/cloud-api.yaml` is
//! the OpenAPI description of the same contract; keep the two in step.
//!
//! Conventions: times are integer microseconds since the Unix epoch (UTC);
//! HLC stamps are `{physical_ms, logical}`; enums are lower-case strings.

use serde::{Deserialize, Serialize};

/// Reachability probe: `200` when the cloud accepts data.
pub const HEALTH_PATH: &str = "/health";

/// The batch push path, for one site.
pub fn batches_path(site_id: &str) -> String {
    format!("/v1/sites/{site_id}/batches")
}

/// The coverage path, for one site.
pub fn coverage_path(site_id: &str) -> String {
    format!("/v1/sites/{site_id}/coverage")
}

/// Where a site reports the seqs it will not deliver (dead letters, drops).
pub fn unsent_path(site_id: &str) -> String {
    format!("/v1/sites/{site_id}/unsent")
}

/// The change feed for one site: versions written elsewhere (the cloud, other
/// sites) of the readings the site originated and of the shared sensors it
/// names, after a cursor. Query: `after`, `limit`, and `sensor` repeated.
pub fn changes_path(site_id: &str) -> String {
    format!("/v1/sites/{site_id}/changes")
}

/// Where the cloud's own amendments are made (`POST`), for one reading.
pub fn amendments_path(reading_id: &str) -> String {
    format!("/v1/readings/{reading_id}/amendments")
}

/// One reading's current version and how many versions the cloud holds.
pub fn reading_path(reading_id: &str) -> String {
    format!("/v1/readings/{reading_id}")
}

/// Most versions one page of the change feed holds; `limit` above it is `400`.
pub const MAX_CHANGES_PAGE: usize = 10_000;

/// Versions per page of the change feed when `limit` is absent.
pub const DEFAULT_CHANGES_PAGE: usize = 1_000;

/// Most shared sensors one change-feed request may name; more is `400`.
pub const MAX_SHARED_SENSORS: usize = 100;

/// Longest note an amendment may carry, in characters; more is rejected.
pub const MAX_NOTE_CHARS: usize = 1_024;

/// Longest writer name a version may carry, in characters; more is rejected.
/// Holds the cloud's own `site:<site id>` (site ids have at most 128).
pub const MAX_WRITTEN_BY_CHARS: usize = 256;

/// The simple single-reading API of compatibility mode.
pub const SIMPLE_READINGS_PATH: &str = "/api/readings";

/// Header carrying the batch id; a replayed key with the same body gets the
/// first answer again.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Most versions in one pushed batch the cloud accepts; more is `413`.
pub const MAX_BATCH_VERSIONS: usize = 10_000;

/// Largest request body the cloud accepts after decompression; more is `413`.
pub const MAX_BATCH_BODY_BYTES: usize = 32 * 1024 * 1024;

/// A hybrid logical clock value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch.
    pub physical_ms: u64,
    /// Orders stamps within one millisecond (0 to 65535).
    pub logical: u32,
}

/// Identifies one version of a reading: `(reading id, hlc, site id)` is what
/// the cloud deduplicates on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionStamp {
    /// The writing site's clock value.
    pub hlc: Hlc,
    /// The site that wrote the version.
    pub site_id: String,
}

/// Forwarding priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// An ordinary measurement.
    Normal,
    /// Forwarded first.
    Critical,
}

/// One version of a reading, as pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Gateway-supplied reading id (lower-case hyphenated UUID).
    pub reading_id: String,
    /// The origin site's sequence number of the reading (gap-free per site).
    pub seq: u64,
    /// The site where the reading entered the mesh.
    pub origin_site_id: String,
    /// Sensor id.
    pub sensor_id: String,
    /// Degrees Celsius, as of this version.
    pub temperature_celsius: f64,
    /// Percent relative humidity, as of this version.
    pub humidity_percent: f64,
    /// Gateway clock at measurement, µs since the epoch.
    pub measured_at_us: i64,
    /// Site clock at arrival, µs since the epoch.
    pub received_at_us: i64,
    /// Forwarding priority.
    pub priority: Priority,
    /// `measured_at` looked wrong to the site when it arrived.
    pub clock_suspect: bool,
    /// Which version this is.
    pub version: VersionStamp,
    /// Data quality as of this version (absent: `good`).
    #[serde(default)]
    pub quality: Quality,
    /// A note an amendment attached (at most [`MAX_NOTE_CHARS`] characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The version this one amended; absent for a reading's first version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<VersionStamp>,
    /// The identity that wrote this version at the site that stamped it (a
    /// gateway for a first version, an operator for an amendment), at most
    /// [`MAX_WRITTEN_BY_CHARS`] characters; absent when not recorded. Kept
    /// for the record: nothing is decided by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
}

/// A reading's data quality, a correctable field of every version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Nothing known against it.
    #[default]
    Good,
    /// Doubtful: keep, but do not rely on it alone.
    Suspect,
    /// Known wrong (a faulty sensor): keep for the record, exclude from use.
    Bad,
}

/// `POST /v1/readings/{reading_id}/amendments` body: the fields to correct.
/// At least one must be present; absent ones keep the current version's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AmendmentRequest {
    /// Corrected degrees Celsius (finite, not below -273.15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<f64>,
    /// Corrected percent relative humidity (finite, 0 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub humidity_percent: Option<f64>,
    /// New quality flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// A note (at most [`MAX_NOTE_CHARS`] characters; empty clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `200` answer to an amendment, and to `GET /v1/readings/{reading_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingState {
    /// The reading's current version (for an amendment: the version it made,
    /// which is current unless a concurrent version beats it under the rule).
    pub current: VersionRecord,
    /// Distinct versions of the reading the cloud holds.
    pub versions: u64,
    /// The rule the cloud resolves conflicts by.
    pub policy: String,
}

/// `GET /v1/sites/{site_id}/changes` answer: one page of the change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangesPage {
    /// Versions written elsewhere, in the order the cloud stored them; never
    /// one the asking site wrote itself.
    pub versions: Vec<VersionRecord>,
    /// Pass as `after` for the next page. Never smaller than the `after`
    /// sent; it may move past versions the site was not given (filtered out).
    pub next_cursor: u64,
    /// More versions may be waiting beyond this page: ask again from
    /// `next_cursor`. A page may be empty and still say so (a feed that
    /// names shared sensors is read a window of row ids at a time).
    pub more: bool,
    /// The deployment's conflict rule (`lww`, `cloud-wins`, `edge-wins`):
    /// every site applies what the cloud announces.
    pub policy: String,
    /// The deployment's clock-skew bound in milliseconds: how far ahead of a
    /// node's wall clock a received stamp may move its clock (versions
    /// stamped further ahead are stored and flagged). Every site applies
    /// what the cloud announces; absent from clouds that announce none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clock_skew_ms: Option<u64>,
}

/// `POST /v1/sites/{site_id}/batches` body (optionally gzip-encoded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushBatch {
    /// 1 to [`MAX_BATCH_VERSIONS`] versions.
    pub versions: Vec<VersionRecord>,
}

/// What the cloud did with one pushed version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Newly stored.
    Accepted,
    /// This reading id and version were already held; nothing changed.
    Duplicate,
    /// Permanently invalid: never retried until an operator re-drives it.
    Rejected,
}

/// The result for one pushed version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionResult {
    /// The version's reading id.
    pub reading_id: String,
    /// The version.
    pub version: VersionStamp,
    /// What happened.
    pub status: VersionStatus,
    /// Why it was rejected; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `200` answer to a batch push: one result per pushed version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushResponse {
    /// One result per version sent, in any order.
    pub results: Vec<VersionResult>,
}

/// Why a site will not deliver a seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsentStatus {
    /// The cloud rejected it as permanently invalid (dead letter).
    Rejected,
    /// The site's storage policy dropped it unsynced.
    Dropped,
}

/// One seq a site reports as not (or not yet) delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsentEntry {
    /// The reading's seq.
    pub seq: u64,
    /// The reading id.
    pub reading_id: String,
    /// The version concerned.
    pub version: VersionStamp,
    /// Why it is not delivered.
    pub status: UnsentStatus,
    /// The reason recorded at the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `PUT /v1/sites/{site_id}/unsent` body. Idempotent: reporting a seq again
/// changes nothing; a seq the cloud holds stays held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsentReport {
    /// 1 to [`MAX_BATCH_VERSIONS`] entries.
    pub entries: Vec<UnsentEntry>,
}

/// `200` answer to an unsent report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsentAck {
    /// Entries recorded (new or already known).
    pub recorded: u64,
}

/// An inclusive range of seqs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    /// First seq of the range.
    pub first: u64,
    /// Last seq of the range.
    pub last: u64,
}

/// Most gaps one coverage answer lists; `gaps_truncated` says when there are more.
pub const MAX_COVERAGE_GAPS: usize = 1_000;

/// `GET /v1/sites/{site_id}/coverage`: which of a site's seqs the cloud can
/// account for. A seq is accounted for when the cloud holds a version of it
/// or the site reported it rejected or dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// The site.
    pub site_id: String,
    /// Largest n such that every seq 1..=n is accounted for (0: none).
    pub highest_contiguous_seq: u64,
    /// Largest seq accounted for (0: none).
    pub max_seq: u64,
    /// Seqs with at least one version held.
    pub held_seqs: u64,
    /// Distinct versions the site wrote (first writes and its amendments,
    /// of its own readings or shared ones) that the cloud holds: what the
    /// site counts as synced.
    pub versions: u64,
    /// Seqs accounted for as rejected (and not held).
    pub rejected_seqs: u64,
    /// Seqs accounted for as dropped by the site (and not held).
    pub dropped_seqs: u64,
    /// Unaccounted ranges below `max_seq`, lowest first, at most [`MAX_COVERAGE_GAPS`].
    pub gaps: Vec<SeqRange>,
    /// More gaps exist than are listed.
    pub gaps_truncated: bool,
}

/// The simple API's reading: `POST /api/readings`, answered `201`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleReading {
    /// Sensor id.
    pub sensor_id: String,
    /// Degrees Celsius.
    pub temperature: f64,
    /// Percent relative humidity.
    pub humidity: f64,
    /// Measurement time, RFC 3339 (e.g. `2026-11-24T10:00:00.123456Z`).
    pub timestamp: String,
}

/// `201` answer of the simple API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleCreated {
    /// The cloud's id for the stored reading.
    pub id: i64,
}

/// Every 4xx/5xx answer's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `invalid_body`, `unauthorized`,
    /// `too_large`, `idempotency_key_reused`, `unavailable`, `rate_limited`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The offending field, when one is to blame (e.g. `versions[3].seq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    /// An error body with no field.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                field: None,
            },
        }
    }

    /// An error body naming a field.
    pub fn field(
        code: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                field: Some(field.into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_are_lower_case_strings() {
        assert_eq!(
            serde_json::to_string(&VersionStatus::Duplicate)
                .ok()
                .as_deref(),
            Some("\"duplicate\"")
        );
        assert_eq!(
            serde_json::to_string(&Priority::Critical).ok().as_deref(),
            Some("\"critical\"")
        );
        assert_eq!(
            serde_json::to_string(&UnsentStatus::Dropped)
                .ok()
                .as_deref(),
            Some("\"dropped\"")
        );
    }

    #[test]
    fn a_result_without_reason_omits_it() {
        let result = VersionResult {
            reading_id: "r".into(),
            version: VersionStamp {
                hlc: Hlc {
                    physical_ms: 1,
                    logical: 2,
                },
                site_id: "s".into(),
            },
            status: VersionStatus::Accepted,
            reason: None,
        };
        let text = serde_json::to_string(&result).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"reading_id":"r","version":{"hlc":{"physical_ms":1,"logical":2},"site_id":"s"},"status":"accepted"}"#
        );
    }
}
