//! The one translation between the store's protobuf shapes and the cloud
//! contract's JSON records, both ways: what the drain pushes
//! ([`record`]) and what the pull hands to store-svc ([`remote_version`]),
//! so a field can never be mapped one way and forgotten the other.

use edge_cloud_link::contract::{self, VersionRecord};
use edge_proto::internal::v1 as ipb;
use edge_proto::rules::{timestamp_to_us, us_to_timestamp};
use edge_proto::v1 as pb;

/// The contract's record of an outbox version.
pub fn record(v: &pb::OutboxVersion) -> VersionRecord {
    VersionRecord {
        reading_id: v.reading_id.clone(),
        seq: v.seq,
        origin_site_id: v.origin_site_id.clone(),
        sensor_id: v.sensor_id.clone(),
        temperature_celsius: v.temperature_celsius,
        humidity_percent: v.humidity_percent,
        measured_at_us: us(v.measured_at.as_ref()),
        received_at_us: us(v.received_at.as_ref()),
        priority: if v.priority == pb::Priority::Critical as i32 {
            contract::Priority::Critical
        } else {
            contract::Priority::Normal
        },
        clock_suspect: v.clock_suspect,
        version: version_stamp(v.version.as_ref()),
        quality: match pb::Quality::try_from(v.quality) {
            Ok(pb::Quality::Suspect) => contract::Quality::Suspect,
            Ok(pb::Quality::Bad) => contract::Quality::Bad,
            _ => contract::Quality::Good,
        },
        note: (!v.note.is_empty()).then(|| v.note.clone()),
        base: v.base.as_ref().map(|b| version_stamp(Some(b))),
        written_by: (!v.written_by.is_empty()).then(|| v.written_by.clone()),
    }
}

// The site takes from the feed every writer the cloud contract allows.
const _: () = assert!(edge_proto::rules::MAX_WRITTEN_BY_CHARS == contract::MAX_WRITTEN_BY_CHARS);

/// A feed version in the store's shape (the inverse of [`record`]). A
/// writer the site's rules refuse (too long, control characters) is not
/// believed and not stored, but does not cost the page: the writer is a
/// record, and nothing is decided by it.
pub fn remote_version(v: VersionRecord) -> ipb::RemoteVersion {
    let written_by = match v.written_by {
        Some(by) if edge_proto::rules::written_by_problem(&by).is_some() => {
            tracing::warn!(
                reading_id = %v.reading_id,
                "the cloud named a version's writer the site does not accept; stored without it"
            );
            String::new()
        }
        by => by.unwrap_or_default(),
    };
    ipb::RemoteVersion {
        reading_id: v.reading_id,
        origin_site_id: v.origin_site_id,
        origin_seq: v.seq,
        sensor_id: v.sensor_id,
        temperature_celsius: v.temperature_celsius,
        humidity_percent: v.humidity_percent,
        measured_at: Some(us_to_timestamp(v.measured_at_us)),
        received_at: Some(us_to_timestamp(v.received_at_us)),
        priority: match v.priority {
            contract::Priority::Critical => pb::Priority::Critical,
            contract::Priority::Normal => pb::Priority::Normal,
        } as i32,
        clock_suspect: v.clock_suspect,
        version: Some(store_stamp(v.version)),
        base: v.base.map(store_stamp),
        quality: quality_to_pb(v.quality) as i32,
        note: v.note.unwrap_or_default(),
        written_by,
    }
}

/// A contract quality flag in the store's shape.
pub fn quality_to_pb(quality: contract::Quality) -> pb::Quality {
    match quality {
        contract::Quality::Good => pb::Quality::Good,
        contract::Quality::Suspect => pb::Quality::Suspect,
        contract::Quality::Bad => pb::Quality::Bad,
    }
}

/// A store version stamp in the cloud contract's shape.
pub fn version_stamp(stamp: Option<&pb::VersionStamp>) -> contract::VersionStamp {
    let stamp = stamp.cloned().unwrap_or_default();
    let hlc = stamp.hlc.unwrap_or_default();
    contract::VersionStamp {
        hlc: contract::Hlc {
            physical_ms: hlc.physical_ms,
            logical: hlc.logical,
        },
        site_id: stamp.site_id,
    }
}

/// A contract version stamp in the store's shape (the inverse of
/// [`version_stamp`]).
fn store_stamp(s: contract::VersionStamp) -> pb::VersionStamp {
    pb::VersionStamp {
        hlc: Some(pb::Hlc {
            physical_ms: s.hlc.physical_ms,
            logical: s.hlc.logical,
        }),
        site_id: s.site_id,
    }
}

fn us(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.and_then(timestamp_to_us).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feed version survives the trip into the store's shape and back
    /// (what the site would push of it) unchanged, field by field.
    #[test]
    fn a_feed_version_round_trips_through_the_store_shape() {
        let original = VersionRecord {
            reading_id: "0b3f2a4e-7c1d-4e8a-9f00-1234567890ab".into(),
            seq: 42,
            origin_site_id: "mine-7".into(),
            sensor_id: "pump/3".into(),
            temperature_celsius: -12.5,
            humidity_percent: 88.25,
            measured_at_us: 1_700_000_000_123_456,
            received_at_us: 1_700_000_001_000_001,
            priority: contract::Priority::Critical,
            clock_suspect: true,
            version: contract::VersionStamp {
                hlc: contract::Hlc {
                    physical_ms: 1_700_000_002_000,
                    logical: 3,
                },
                site_id: "cloud".into(),
            },
            quality: contract::Quality::Bad,
            note: Some("sensor drifted".into()),
            base: Some(contract::VersionStamp {
                hlc: contract::Hlc {
                    physical_ms: 1_700_000_001_000,
                    logical: 0,
                },
                site_id: "mine-7".into(),
            }),
            written_by: Some("shore-office".into()),
        };
        let stored = remote_version(original.clone());
        let back = record(&pb::OutboxVersion {
            reading_id: stored.reading_id.clone(),
            seq: stored.origin_seq,
            origin_site_id: stored.origin_site_id.clone(),
            sensor_id: stored.sensor_id.clone(),
            temperature_celsius: stored.temperature_celsius,
            humidity_percent: stored.humidity_percent,
            measured_at: stored.measured_at,
            received_at: stored.received_at,
            priority: stored.priority,
            clock_suspect: stored.clock_suspect,
            version: stored.version.clone(),
            quality: stored.quality,
            note: stored.note.clone(),
            base: stored.base.clone(),
            written_by: stored.written_by.clone(),
            ..Default::default()
        });
        assert_eq!(back, original);

        let plain = VersionRecord {
            note: None,
            base: None,
            written_by: None,
            quality: contract::Quality::Good,
            priority: contract::Priority::Normal,
            ..original
        };
        let stored = remote_version(plain);
        assert_eq!(stored.note, "");
        assert_eq!(stored.written_by, "");
        assert_eq!(stored.base, None);
        assert_eq!(stored.quality, pb::Quality::Good as i32);
        assert_eq!(stored.priority, pb::Priority::Normal as i32);
    }

    /// A writer the site would refuse is dropped, never the version: a
    /// record must not stop the pull.
    #[test]
    fn a_writer_the_site_refuses_is_dropped_not_the_version() {
        let record = VersionRecord {
            reading_id: "0b3f2a4e-7c1d-4e8a-9f00-1234567890ab".into(),
            seq: 1,
            origin_site_id: "mine-7".into(),
            sensor_id: "pump/3".into(),
            temperature_celsius: 1.0,
            humidity_percent: 2.0,
            measured_at_us: 3,
            received_at_us: 4,
            priority: contract::Priority::Normal,
            clock_suspect: false,
            version: contract::VersionStamp {
                hlc: contract::Hlc {
                    physical_ms: 5,
                    logical: 0,
                },
                site_id: "cloud".into(),
            },
            quality: contract::Quality::Good,
            note: None,
            base: None,
            written_by: None,
        };
        for refused in ["x".repeat(257), "gate\u{1b}[2Jway".to_owned()] {
            let stored = remote_version(VersionRecord {
                written_by: Some(refused),
                ..record.clone()
            });
            assert_eq!(stored.written_by, "");
            assert_eq!(stored.reading_id, record.reading_id);
        }
        let kept = remote_version(VersionRecord {
            written_by: Some(format!("site:{}", "s".repeat(128))),
            ..record
        });
        assert_eq!(kept.written_by.len(), 133);
    }
}
