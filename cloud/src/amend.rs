//! The cloud's own amendments (`POST /v1/readings/{reading_id}/amendments`):
//! what a request may change, and the version it makes.
//!
//! An amendment is a new version on top of the reading's current one: the
//! cloud's stamp, the current version as its base, the current values with
//! the request's laid over them. What the reading *is* (its origin, seq,
//! sensor, times, priority, clock flag) is never amended: those are copied.

use edge_cloud_link::contract::{AmendmentRequest, Hlc as WireHlc, VersionRecord, VersionStamp};
use edge_versioning::{CLOUD_SITE_ID, Hlc};

use crate::batch::{check_humidity, check_note, check_temperature};

/// Why an amendment request cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidAmendment {
    /// The offending field; `None` when the request as a whole is at fault.
    pub field: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

/// Checks `request`: at least one field, each within its range.
pub(crate) fn check(request: &AmendmentRequest) -> Result<(), InvalidAmendment> {
    let AmendmentRequest {
        temperature_celsius,
        humidity_percent,
        quality,
        note,
    } = request;
    if temperature_celsius.is_none()
        && humidity_percent.is_none()
        && quality.is_none()
        && note.is_none()
    {
        return Err(InvalidAmendment {
            field: None,
            message: "an amendment changes at least one of temperature_celsius, \
                      humidity_percent, quality, note"
                .into(),
        });
    }
    let in_field = |field: &'static str| {
        move |message: String| InvalidAmendment {
            field: Some(field),
            message,
        }
    };
    if let Some(celsius) = temperature_celsius {
        check_temperature(*celsius).map_err(in_field("temperature_celsius"))?;
    }
    if let Some(percent) = humidity_percent {
        check_humidity(*percent).map_err(in_field("humidity_percent"))?;
    }
    if let Some(note) = note {
        check_note(note).map_err(in_field("note"))?;
    }
    Ok(())
}

/// The version the cloud writes for `request` (already checked) on top of
/// `current`, stamped `stamp`, recording `written_by` as its writer.
pub(crate) fn amended(
    current: &VersionRecord,
    request: &AmendmentRequest,
    stamp: Hlc,
    written_by: &str,
) -> VersionRecord {
    let note = match &request.note {
        // An empty note clears it.
        Some(note) if note.is_empty() => None,
        Some(note) => Some(note.clone()),
        None => current.note.clone(),
    };
    VersionRecord {
        temperature_celsius: request
            .temperature_celsius
            .unwrap_or(current.temperature_celsius),
        humidity_percent: request.humidity_percent.unwrap_or(current.humidity_percent),
        quality: request.quality.unwrap_or(current.quality),
        note,
        version: VersionStamp {
            hlc: WireHlc {
                physical_ms: stamp.physical_ms,
                logical: u32::from(stamp.logical),
            },
            site_id: CLOUD_SITE_ID.to_owned(),
        },
        base: Some(current.version.clone()),
        written_by: Some(written_by.to_owned()),
        ..current.clone()
    }
}

#[cfg(test)]
mod tests {
    use edge_cloud_link::contract::{Priority, Quality};

    use super::*;

    fn current() -> VersionRecord {
        VersionRecord {
            reading_id: "0190f3f4-7c4e-7a6b-9d5e-3f2a1b0c9d8e".into(),
            seq: 7,
            origin_site_id: "ship-1".into(),
            sensor_id: "t-1".into(),
            temperature_celsius: 20.0,
            humidity_percent: 50.0,
            measured_at_us: 1,
            received_at_us: 2,
            priority: Priority::Critical,
            clock_suspect: true,
            version: VersionStamp {
                hlc: WireHlc {
                    physical_ms: 10,
                    logical: 0,
                },
                site_id: "ship-1".into(),
            },
            quality: Quality::Good,
            note: Some("calibrated".into()),
            base: None,
            written_by: None,
        }
    }

    #[test]
    fn an_empty_request_is_refused_without_a_field() {
        let err = check(&AmendmentRequest::default()).expect_err("empty");
        assert_eq!(err.field, None);
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (
                AmendmentRequest {
                    temperature_celsius: Some(f64::INFINITY),
                    ..Default::default()
                },
                "temperature_celsius",
            ),
            (
                AmendmentRequest {
                    temperature_celsius: Some(-300.0),
                    ..Default::default()
                },
                "temperature_celsius",
            ),
            (
                AmendmentRequest {
                    humidity_percent: Some(100.1),
                    ..Default::default()
                },
                "humidity_percent",
            ),
            (
                AmendmentRequest {
                    note: Some("x".repeat(1_025)),
                    ..Default::default()
                },
                "note",
            ),
        ];
        for (request, field) in cases {
            assert_eq!(check(&request).map_err(|e| e.field), Err(Some(field)));
        }
    }

    #[test]
    fn the_request_is_laid_over_the_current_version() {
        let stamp = Hlc {
            physical_ms: 99,
            logical: 1,
        };
        let request = AmendmentRequest {
            humidity_percent: Some(40.0),
            quality: Some(Quality::Suspect),
            ..Default::default()
        };
        let v = amended(&current(), &request, stamp, "site:ship-1");
        assert_eq!(v.written_by.as_deref(), Some("site:ship-1"));
        assert_eq!(
            (v.temperature_celsius, v.humidity_percent, v.quality),
            (20.0, 40.0, Quality::Suspect)
        );
        assert_eq!(v.note.as_deref(), Some("calibrated"));
        assert_eq!(v.base, Some(current().version));
        assert_eq!(v.version.site_id, CLOUD_SITE_ID);
        assert_eq!(v.version.hlc.physical_ms, 99);
        assert_eq!(
            (v.seq, v.priority, v.clock_suspect, v.sensor_id.as_str()),
            (7, Priority::Critical, true, "t-1")
        );

        let cleared = amended(
            &current(),
            &AmendmentRequest {
                note: Some(String::new()),
                ..Default::default()
            },
            stamp,
            "site:ship-1",
        );
        assert_eq!(cleared.note, None);
    }
}
