//! The sync outbox as sync-svc sees it: versions waiting for the cloud,
//! leases over batches of them, and what the cloud's answer changes.
//!
//! Most versions are in the outbox without a row of their own (see
//! `crate::db::outbox`): a version above the outbox floor that is neither
//! acknowledged nor held in an outbox row is due, with no attempts yet.
//!
//! Invariants:
//! - a version leaves the outbox only when the cloud acknowledged exactly
//!   that version id (accepted or duplicate); a later version of the same
//!   reading has its own id, so an earlier ack can never mark it synced;
//! - transient failures only delay an entry (attempts, next attempt time,
//!   last error; `stuck` once attempts reach a threshold) and never remove it;
//! - only a permanent rejection dead-letters an entry; it stays in the outbox
//!   (flagged) until re-driven, so it is counted and listed, never lost.

use edge_proto::v1 as pb;

use crate::hlc::Hlc;
use crate::model::{Priority, VersionStamp, us_to_timestamp};

/// Which end of the outbox a lease draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueOrder {
    /// Critical versions, oldest first.
    Critical,
    /// All versions, oldest first.
    Oldest,
    /// All versions, newest first (the live share).
    Newest,
}

/// One unsynced version and the reading it belongs to.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxEntry {
    /// Outbox key: the site-local version id.
    pub version_id: i64,
    /// Reading id.
    pub reading_id: String,
    /// The reading's seq.
    pub seq: i64,
    /// Site the reading entered the mesh at.
    pub origin_site_id: String,
    /// Sensor.
    pub sensor_id: String,
    /// This version's temperature, °C.
    pub temperature: f64,
    /// This version's humidity, %.
    pub humidity: f64,
    /// Gateway clock, µs.
    pub measured_at_us: i64,
    /// Site clock at receipt, µs.
    pub received_at_us: i64,
    /// Stored priority.
    pub priority: i64,
    /// measured_at looked wrong on arrival.
    pub clock_suspect: bool,
    /// Packed HLC of this version.
    pub hlc: i64,
    /// Site that wrote this version.
    pub version_site_id: String,
    /// Pushes attempted.
    pub attempts: i64,
    /// When the version entered the outbox, µs.
    pub enqueued_at_us: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// This version's [`crate::model::Quality`].
    pub quality: i64,
    /// This version's note.
    pub note: Option<String>,
    /// Packed HLC of the version it amended (none for a first version).
    pub base_hlc: Option<i64>,
    /// Site of the version it amended.
    pub base_site_id: Option<String>,
    /// The identity that wrote this version, if recorded.
    pub written_by: Option<String>,
}

impl OutboxEntry {
    /// To the proto message.
    pub fn into_proto(self) -> pb::OutboxVersion {
        pb::OutboxVersion {
            version_id: u64::try_from(self.version_id).unwrap_or(0),
            reading_id: self.reading_id,
            seq: u64::try_from(self.seq).unwrap_or(0),
            origin_site_id: self.origin_site_id,
            sensor_id: self.sensor_id,
            temperature_celsius: self.temperature,
            humidity_percent: self.humidity,
            measured_at: Some(us_to_timestamp(self.measured_at_us)),
            received_at: Some(us_to_timestamp(self.received_at_us)),
            priority: Priority::from_db(self.priority).to_proto() as i32,
            clock_suspect: self.clock_suspect,
            version: Some(
                VersionStamp {
                    hlc: Hlc::unpack(self.hlc),
                    site_id: self.version_site_id,
                }
                .to_proto(),
            ),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            enqueued_at: Some(us_to_timestamp(self.enqueued_at_us)),
            last_error: self.last_error.unwrap_or_default(),
            quality: crate::model::Quality::from_db(self.quality).to_proto() as i32,
            note: self.note.unwrap_or_default(),
            base: self
                .base_hlc
                .zip(self.base_site_id)
                .map(|(hlc, site_id)| crate::revision::stamp_to_proto(hlc, site_id)),
            written_by: self.written_by.unwrap_or_default(),
        }
    }
}

/// A dead-lettered version.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeadLetterEntry {
    /// The version and its reading.
    #[sqlx(flatten)]
    pub entry: OutboxEntry,
    /// When the cloud rejected it, µs.
    pub dead_lettered_at_us: i64,
    /// Whether the cloud's coverage was told.
    pub dead_letter_reported: bool,
}

impl DeadLetterEntry {
    /// The proto form, the same for operators (`ListDeadLetters`) and for
    /// sync-svc (`ListUnreportedDeadLetters`).
    pub fn into_proto(self) -> pb::DeadLetter {
        pb::DeadLetter {
            dead_lettered_at: Some(us_to_timestamp(self.dead_lettered_at_us)),
            reported: self.dead_letter_reported,
            version: Some(self.entry.into_proto()),
        }
    }
}

/// Versions whose push failed for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedGroup {
    /// The versions.
    pub version_ids: Vec<i64>,
    /// What went wrong.
    pub error: String,
    /// Not to be leased again before this time, µs.
    pub retry_at_us: i64,
    /// The versions were sent (an attempt counts); `false` for versions a
    /// failed batch never got to.
    pub attempted: bool,
}

/// What the cloud did with a leased batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// Accepted or duplicate: leave the outbox.
    pub synced: Vec<i64>,
    /// Permanently rejected, with the cloud's reason.
    pub rejected: Vec<(i64, String)>,
    /// Transient failures.
    pub failed: Vec<FailedGroup>,
    /// Attempts at which a version is flagged stuck.
    pub stuck_after_attempts: i64,
}

impl Completion {
    /// Every version id the completion names.
    pub fn version_ids(&self) -> Vec<i64> {
        self.synced
            .iter()
            .copied()
            .chain(self.rejected.iter().map(|(id, _)| *id))
            .chain(
                self.failed
                    .iter()
                    .flat_map(|g| g.version_ids.iter().copied()),
            )
            .collect()
    }
}

/// What a completion changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompletionCounts {
    /// Entries that left the outbox.
    pub synced: u64,
    /// Entries dead-lettered.
    pub dead_lettered: u64,
    /// Failures recorded.
    pub failed: u64,
    /// Entries flagged stuck now.
    pub newly_stuck: u64,
}

pub use edge_sql::runs::{gaps, id_runs, merge_runs};
