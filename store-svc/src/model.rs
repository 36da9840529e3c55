//! The store's domain types, built from proto messages once at the gRPC
//! boundary ([`crate::grpc`]) and validated there; the database layer only
//! ever sees these.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use edge_proto::v1 as pb;
use prost_types::Timestamp;
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_128;

use crate::hlc::Hlc;

pub use edge_proto::rules::MAX_APPEND_READINGS;
/// Default and largest query page sizes.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest query page size.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// A problem with one field of a request: `(field path, reason)`.
pub type FieldViolation = (String, String);

/// Forwarding priority, stored as a small integer (higher drains first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Ordinary measurement.
    Normal = 1,
    /// Forwarded first.
    Critical = 2,
}

impl Priority {
    /// From the proto enum; unspecified means normal.
    pub fn from_proto(value: i32) -> Option<Priority> {
        match pb::Priority::try_from(value).ok()? {
            pb::Priority::Unspecified | pb::Priority::Normal => Some(Priority::Normal),
            pb::Priority::Critical => Some(Priority::Critical),
        }
    }

    /// From the stored integer.
    pub fn from_db(value: i64) -> Priority {
        if value == Priority::Critical as i64 {
            Priority::Critical
        } else {
            Priority::Normal
        }
    }

    /// To the proto enum.
    pub fn to_proto(self) -> pb::Priority {
        match self {
            Priority::Normal => pb::Priority::Normal,
            Priority::Critical => pb::Priority::Critical,
        }
    }
}

/// Where a reading's current version stands with the cloud, stored as a small
/// integer on the reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Waiting in the outbox.
    Pending = 1,
    /// Acknowledged by the cloud.
    Synced = 2,
    /// Rejected by the cloud as permanently invalid.
    DeadLettered = 3,
}

impl SyncState {
    /// From the stored integer.
    pub fn from_db(value: i64) -> SyncState {
        match value {
            2 => SyncState::Synced,
            3 => SyncState::DeadLettered,
            _ => SyncState::Pending,
        }
    }

    /// To the proto enum.
    pub fn to_proto(self) -> pb::SyncState {
        match self {
            SyncState::Pending => pb::SyncState::Pending,
            SyncState::Synced => pb::SyncState::Synced,
            SyncState::DeadLettered => pb::SyncState::DeadLettered,
        }
    }
}

/// A validated reading to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReading {
    /// Canonical lower-case hyphenated UUID.
    pub id: String,
    /// Valid by `edge_proto::rules::sensor_id_problem`.
    pub sensor_id: String,
    /// Degrees Celsius, finite.
    pub temperature: f64,
    /// Percent, finite.
    pub humidity: f64,
    /// Gateway clock, microseconds since the epoch.
    pub measured_at_us: i64,
    /// Site clock at receipt, microseconds since the epoch.
    pub received_at_us: i64,
    /// Forwarding priority.
    pub priority: Priority,
    /// The identity whose call brought the reading to the site: its first
    /// version's writer.
    pub written_by: String,
}

impl NewReading {
    /// Validates one proto reading; `path` prefixes field names in violations
    /// (e.g. `readings[3]`). `caller`: the writer recorded when the reading
    /// names none (the identity that called Append).
    pub fn from_proto(
        p: edge_proto::internal::v1::NewReading,
        path: &str,
        caller: &str,
    ) -> Result<NewReading, Vec<FieldViolation>> {
        let mut errors = Vec::new();
        let mut err = |field: &str, reason: &str| {
            errors.push((format!("{path}.{field}"), reason.to_owned()));
        };
        let id = match Uuid::try_parse(&p.id) {
            Ok(id) => Some(id.hyphenated().to_string()),
            Err(_) => {
                err("id", "must be a UUID");
                None
            }
        };
        if let Some(problem) = edge_proto::rules::sensor_id_problem(&p.sensor_id) {
            err("sensor_id", &problem);
        }
        if !p.temperature_celsius.is_finite() {
            err("temperature_celsius", "must be a finite number");
        }
        if !p.humidity_percent.is_finite() {
            err("humidity_percent", "must be a finite number");
        }
        let measured_at_us = timestamp_to_us(p.measured_at.as_ref());
        if measured_at_us.is_none() {
            err("measured_at", "is required and must be a valid timestamp");
        }
        let received_at_us = timestamp_to_us(p.received_at.as_ref());
        if received_at_us.is_none() {
            err("received_at", "is required and must be a valid timestamp");
        }
        let priority = Priority::from_proto(p.priority);
        if priority.is_none() {
            err("priority", "is not a known priority");
        }
        if let Some(problem) = edge_proto::rules::written_by_problem(&p.written_by) {
            err("written_by", &problem);
        }
        match (id, measured_at_us, received_at_us, priority) {
            (Some(id), Some(measured_at_us), Some(received_at_us), Some(priority))
                if errors.is_empty() =>
            {
                Ok(NewReading {
                    id,
                    sensor_id: p.sensor_id,
                    temperature: p.temperature_celsius,
                    humidity: p.humidity_percent,
                    measured_at_us,
                    received_at_us,
                    priority,
                    written_by: if p.written_by.is_empty() {
                        caller.to_owned()
                    } else {
                        p.written_by
                    },
                })
            }
            _ => Err(errors),
        }
    }

    /// A digest of what the gateway said about this reading (everything but the
    /// site's receive time), to tell a retry (same digest) from a different
    /// reading reusing an id (different digest).
    pub fn content_digest(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.sensor_id.len() + 40);
        buf.extend_from_slice(self.sensor_id.as_bytes());
        buf.push(0);
        buf.extend_from_slice(&self.temperature.to_bits().to_le_bytes());
        buf.extend_from_slice(&self.humidity.to_bits().to_le_bytes());
        buf.extend_from_slice(&self.measured_at_us.to_le_bytes());
        buf.push(self.priority as u8);
        xxh3_128(&buf).to_le_bytes().to_vec()
    }
}

/// What happened to one appended reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Newly stored.
    Stored,
    /// Stored before with the same content.
    Duplicate,
    /// Stored before with different content; the stored one is kept.
    Conflict,
}

/// A version's identity: the HLC stamp and the writing site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStamp {
    /// Clock value assigned by the writing site.
    pub hlc: Hlc,
    /// The writing site.
    pub site_id: String,
}

impl VersionStamp {
    /// To the proto message.
    pub fn to_proto(&self) -> pb::VersionStamp {
        pb::VersionStamp {
            hlc: Some(pb::Hlc {
                physical_ms: self.hlc.physical_ms,
                logical: u32::from(self.hlc.logical),
            }),
            site_id: self.site_id.clone(),
        }
    }
}

/// The result of appending one reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// What happened.
    pub outcome: Outcome,
    /// Site sequence number of the reading stored under this id.
    pub seq: i64,
    /// The stored reading's clock flag.
    pub clock_suspect: bool,
    /// The stored reading's current version.
    pub version: VersionStamp,
}

/// A stored reading as queries return it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredReading {
    /// Site sequence number.
    pub seq: i64,
    /// Reading id.
    pub reading_id: String,
    /// Site the reading entered the mesh at.
    pub origin_site_id: String,
    /// Sensor id.
    pub sensor_id: String,
    /// Current temperature, °C.
    pub temperature: f64,
    /// Current humidity, %.
    pub humidity: f64,
    /// Gateway clock, µs since the epoch.
    pub measured_at_us: i64,
    /// Site clock at receipt, µs since the epoch.
    pub received_at_us: i64,
    /// Stored priority.
    pub priority: i64,
    /// measured_at looked wrong on arrival.
    pub clock_suspect: bool,
    /// Packed HLC of the current version.
    pub version_hlc: i64,
    /// Site of the current version.
    pub version_site_id: String,
    /// Stored [`SyncState`].
    pub sync_state: i64,
    /// Current [`Quality`].
    pub quality: i64,
    /// Current note, if any.
    pub note: Option<String>,
    /// The origin site's seq for another site's reading (a shared
    /// sensor's); `None` for this site's own, whose seq is `seq`.
    pub origin_seq: Option<i64>,
    /// How far ahead of the site's wall clock the current version was
    /// stamped when it arrived, if beyond the clock-skew bound (flagged).
    pub version_clock_ahead_ms: Option<i64>,
    /// The identity that wrote the current version, if recorded.
    pub version_written_by: Option<String>,
}

impl StoredReading {
    /// To the proto message.
    pub fn into_proto(self) -> pb::StoredReading {
        pb::StoredReading {
            id: self.reading_id,
            sensor_id: self.sensor_id,
            temperature_celsius: self.temperature,
            humidity_percent: self.humidity,
            measured_at: Some(us_to_timestamp(self.measured_at_us)),
            received_at: Some(us_to_timestamp(self.received_at_us)),
            priority: Priority::from_db(self.priority).to_proto() as i32,
            site_id: self.origin_site_id,
            seq: u64::try_from(self.origin_seq.unwrap_or(self.seq)).unwrap_or(0),
            version: Some(
                VersionStamp {
                    hlc: Hlc::unpack(self.version_hlc),
                    site_id: self.version_site_id,
                }
                .to_proto(),
            ),
            clock_suspect: self.clock_suspect,
            sync_state: SyncState::from_db(self.sync_state).to_proto() as i32,
            quality: Quality::from_db(self.quality).to_proto() as i32,
            note: self.note.unwrap_or_default(),
            version_clock_ahead: self.version_clock_ahead_ms.map(|ms| prost_types::Duration {
                seconds: ms / 1_000,
                nanos: (ms % 1_000 * 1_000_000) as i32,
            }),
            written_by: self.version_written_by.unwrap_or_default(),
        }
    }
}

/// Where a page ended: the last row's sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// measured_at of the last row returned.
    pub measured_at_us: i64,
    /// seq of the last row returned.
    pub seq: i64,
}

/// A validated query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingQuery {
    /// Only this sensor.
    pub sensor_id: Option<String>,
    /// measured_at at or after, µs.
    pub from_us: Option<i64>,
    /// measured_at before, µs.
    pub to_us: Option<i64>,
    /// Only this sync state.
    pub sync_state: Option<SyncState>,
    /// Rows per page.
    pub page_size: u32,
    /// Continue after this row.
    pub after: Option<Cursor>,
}

impl ReadingQuery {
    /// Validates a proto query.
    pub fn from_proto(p: pb::QueryReadingsRequest) -> Result<ReadingQuery, Vec<FieldViolation>> {
        let mut errors: Vec<FieldViolation> = Vec::new();
        let page_size = match p.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n <= MAX_PAGE_SIZE => n,
            _ => {
                errors.push((
                    "page_size".into(),
                    format!("must be at most {MAX_PAGE_SIZE}"),
                ));
                DEFAULT_PAGE_SIZE
            }
        };
        let mut bound = |field: &str, ts: Option<&Timestamp>| match ts {
            None => None,
            Some(ts) => {
                let us = timestamp_to_us(Some(ts));
                if us.is_none() {
                    errors.push((field.into(), "must be a valid timestamp".into()));
                }
                us
            }
        };
        let from_us = bound("measured_from", p.measured_from.as_ref());
        let to_us = bound("measured_to", p.measured_to.as_ref());
        let sync_state = match pb::SyncState::try_from(p.sync_state) {
            Ok(pb::SyncState::Unspecified) => None,
            Ok(pb::SyncState::Pending) => Some(SyncState::Pending),
            Ok(pb::SyncState::Synced) => Some(SyncState::Synced),
            Ok(pb::SyncState::DeadLettered) => Some(SyncState::DeadLettered),
            Err(_) => {
                errors.push(("sync_state".into(), "is not a known sync state".into()));
                None
            }
        };
        let mut query = ReadingQuery {
            sensor_id: (!p.sensor_id.is_empty()).then_some(p.sensor_id),
            from_us,
            to_us,
            sync_state,
            page_size,
            after: None,
        };
        if !p.page_token.is_empty() {
            match query.decode_token(&p.page_token) {
                Some(cursor) => query.after = Some(cursor),
                None => errors.push((
                    "page_token".into(),
                    "is not a token returned for this query's filters".into(),
                )),
            }
        }
        if errors.is_empty() {
            Ok(query)
        } else {
            Err(errors)
        }
    }

    /// A fingerprint of the filters, carried in page tokens so a token is not
    /// silently reused with other filters.
    fn fingerprint(&self) -> u64 {
        let text = format!(
            "{:?}|{:?}|{:?}|{:?}",
            self.sensor_id, self.from_us, self.to_us, self.sync_state
        );
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    }

    /// The opaque token that continues this query after `cursor`.
    pub fn encode_token(&self, cursor: Cursor) -> String {
        let raw = format!(
            "{}.{}.{:x}",
            cursor.measured_at_us,
            cursor.seq,
            self.fingerprint()
        );
        URL_SAFE_NO_PAD.encode(raw)
    }

    fn decode_token(&self, token: &str) -> Option<Cursor> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let mut parts = raw.split('.');
        let measured_at_us = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let fingerprint = u64::from_str_radix(parts.next()?, 16).ok()?;
        (parts.next().is_none() && fingerprint == self.fingerprint()).then_some(Cursor {
            measured_at_us,
            seq,
        })
    }
}

/// The site's books, computed from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// This site's id.
    pub site_id: String,
    /// Versions pulled from the cloud that are stored (not this site's own).
    pub remote_versions: i64,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Readings stored.
    pub total_readings: i64,
    /// Readings above the by-sensor index's high mark, which queries by
    /// sensor scan rather than look up: up to a batch, more only while the
    /// batches are not copied (PostgreSQL's copying task failing).
    pub sensor_index_lag: i64,
    /// Versions stored.
    pub total_versions: i64,
    /// Outbox entries not acknowledged, dead letters excluded.
    pub unsynced_versions: i64,
    /// Outbox entries dead-lettered.
    pub dead_letters: i64,
    /// Unsynced entries flagged stuck.
    pub stuck_versions: i64,
    /// Versions the cloud acknowledged, pruned ones included.
    pub synced_versions: i64,
    /// Synced versions removed by retention or the budget, ever.
    pub pruned_versions: i64,
    /// Unsynced versions removed by the drop policy, ever.
    pub dropped_versions: i64,
    /// Dropped versions the cloud's coverage was not told about yet.
    pub unreported_drops: i64,
    /// Enqueue time of the oldest unsynced version, µs.
    pub oldest_unsynced_us: Option<i64>,
    /// Bytes the database occupies.
    pub database_bytes: i64,
    /// Highest seq assigned.
    pub last_seq: i64,
    /// Last persisted HLC.
    pub hlc: Hlc,
    /// Versions stored although stamped beyond the clock-skew bound.
    pub clock_ahead_versions: i64,
    /// The clock-skew bound in force.
    pub max_clock_skew: edge_versioning::SkewBound,
    /// The bound in force is the one a cloud announced.
    pub max_clock_skew_announced: bool,
}

pub use edge_proto::rules::us_to_timestamp;

/// Microseconds since the epoch from an optional proto timestamp; `None`
/// when absent or outside the contract's range.
pub fn timestamp_to_us(ts: Option<&Timestamp>) -> Option<i64> {
    edge_proto::rules::timestamp_to_us(ts?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> ReadingQuery {
        ReadingQuery::from_proto(pb::QueryReadingsRequest {
            sensor_id: "s-1".into(),
            ..Default::default()
        })
        .expect("valid query")
    }

    #[test]
    fn page_tokens_round_trip_for_the_same_filters() {
        let q = query();
        let cursor = Cursor {
            measured_at_us: -5,
            seq: 42,
        };
        assert_eq!(q.decode_token(&q.encode_token(cursor)), Some(cursor));
    }

    #[test]
    fn page_tokens_are_refused_with_other_filters() {
        let q = query();
        let token = q.encode_token(Cursor {
            measured_at_us: 1,
            seq: 2,
        });
        let err = ReadingQuery::from_proto(pb::QueryReadingsRequest {
            sensor_id: "s-2".into(),
            page_token: token,
            ..Default::default()
        })
        .expect_err("token for other filters");
        assert_eq!(err[0].0, "page_token");
    }

    #[test]
    fn timestamps_convert_both_ways_including_before_1970() {
        for us in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_001] {
            assert_eq!(timestamp_to_us(Some(&us_to_timestamp(us))), Some(us));
        }
        assert_eq!(
            timestamp_to_us(Some(&Timestamp {
                seconds: 1,
                nanos: -1
            })),
            None
        );
        assert_eq!(timestamp_to_us(None), None);
    }

    #[test]
    fn digest_differs_when_content_differs() {
        let a = NewReading {
            id: "x".into(),
            sensor_id: "s".into(),
            temperature: 1.0,
            humidity: 2.0,
            measured_at_us: 3,
            received_at_us: 4,
            priority: Priority::Normal,
            written_by: "gateway-1".into(),
        };
        let mut b = a.clone();
        b.received_at_us = 99;
        b.written_by = "gateway-2".into();
        assert_eq!(
            a.content_digest(),
            b.content_digest(),
            "receive time and writer are not content: a retry through another gateway \
             is the same reading"
        );
        b.temperature = 1.5;
        assert_ne!(a.content_digest(), b.content_digest());
    }
}

/// A reading's data quality (stored as 1, 2, 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quality {
    /// Nothing known against it.
    #[default]
    Good = 1,
    /// Doubtful.
    Suspect = 2,
    /// Known wrong.
    Bad = 3,
}

impl Quality {
    /// From the database; anything unknown reads as good.
    pub fn from_db(value: i64) -> Quality {
        match value {
            2 => Quality::Suspect,
            3 => Quality::Bad,
            _ => Quality::Good,
        }
    }

    /// From the proto enum; `None` for unspecified (unchanged) or unknown.
    pub fn from_proto(value: i32) -> Option<Quality> {
        match pb::Quality::try_from(value).ok()? {
            pb::Quality::Unspecified => None,
            pb::Quality::Good => Some(Quality::Good),
            pb::Quality::Suspect => Some(Quality::Suspect),
            pb::Quality::Bad => Some(Quality::Bad),
        }
    }

    /// To the proto enum.
    pub fn to_proto(self) -> pb::Quality {
        match self {
            Quality::Good => pb::Quality::Good,
            Quality::Suspect => pb::Quality::Suspect,
            Quality::Bad => pb::Quality::Bad,
        }
    }
}
