//! Checking a pushed batch, version by version.
//!
//! A version that breaks a rule is `rejected` with a reason that says which
//! rule; it never fails the batch, so one bad reading cannot poison the good
//! ones beside it (P5). Rejections are permanent: the site dead-letters them.
//! Batch-level refusals (bad JSON, too many versions, the injected
//! `batch_reject_sensors` fault) are decided in [`crate::api`], before this.

use edge_cloud_link::contract::{
    MAX_NOTE_CHARS, MAX_WRITTEN_BY_CHARS, VersionRecord, VersionStamp,
};
use edge_versioning::{CLOUD_SITE_ID, Hlc};

use crate::faults::Faults;

/// Longest sensor id, in characters.
pub const MAX_SENSOR_ID_CHARS: usize = 128;

/// Largest HLC logical counter.
pub const MAX_HLC_LOGICAL: u32 = 65_535;

/// Absolute zero, the lowest possible temperature.
pub const ABSOLUTE_ZERO_CELSIUS: f64 = -273.15;

/// A batch after per-version checks, ready to store.
#[derive(Debug)]
pub(crate) struct CheckedBatch {
    /// The site in the path: the pusher. The origin of most of its versions'
    /// readings, but not of its amendments of shared sensors' readings.
    pub site_id: String,
    /// The versions, in the order sent.
    pub versions: Vec<VersionRecord>,
    /// Per version: `Some(reason)` when rejected.
    pub rejections: Vec<Option<String>>,
}

impl CheckedBatch {
    /// Checks every version of `versions` pushed by `site_id`.
    pub fn check(site_id: &str, versions: Vec<VersionRecord>, faults: &Faults) -> CheckedBatch {
        let rejections = versions
            .iter()
            .map(|v| check_version(site_id, v, faults).err())
            .collect();
        CheckedBatch {
            site_id: site_id.to_owned(),
            versions,
            rejections,
        }
    }
}

/// Whether a rejected version's seq can be booked against the site: it must
/// be a real seq of the pushing site.
pub(crate) fn bookable_seq(site_id: &str, version: &VersionRecord) -> Option<i64> {
    if version.seq == 0 || version.origin_site_id != site_id {
        return None;
    }
    i64::try_from(version.seq).ok()
}

/// Why `version`, pushed by `site_id`, cannot be stored.
pub(crate) fn check_version(
    site_id: &str,
    version: &VersionRecord,
    faults: &Faults,
) -> Result<(), String> {
    if uuid::Uuid::try_parse(&version.reading_id).is_err() {
        return Err(format!(
            "reading_id {:?} is not a UUID",
            truncated(&version.reading_id)
        ));
    }
    if version.seq == 0 {
        return Err("seq must be at least 1".into());
    }
    if i64::try_from(version.seq).is_err() {
        return Err(format!(
            "seq {} is out of range (at most {})",
            version.seq,
            i64::MAX
        ));
    }
    // A site pushes the versions of its own readings, and the amendments it
    // wrote itself (of its readings or of a shared sensor's, originated
    // elsewhere); never a version someone else wrote of someone else's reading.
    if version.origin_site_id != site_id && version.version.site_id != site_id {
        return Err(format!(
            "origin_site_id {:?} is not the pushing site {site_id:?}, and neither is \
             version.site_id {:?}: a site pushes its own readings and its own amendments",
            truncated(&version.origin_site_id),
            truncated(&version.version.site_id)
        ));
    }
    check_sensor_id(&version.sensor_id)?;
    check_temperature(version.temperature_celsius)?;
    check_humidity(version.humidity_percent)?;
    check_stamp("version", &version.version)?;
    if version.version.site_id == CLOUD_SITE_ID {
        return Err(format!(
            "version.site_id {CLOUD_SITE_ID:?} is reserved for the cloud's own amendments"
        ));
    }
    if let Some(note) = &version.note {
        check_note(note)?;
    }
    if let Some(written_by) = &version.written_by {
        check_written_by(written_by)?;
    }
    if let Some(base) = &version.base {
        check_stamp("base", base)?;
        if base == &version.version {
            return Err("base names the version itself".into());
        }
    }
    if faults.reject_sensors.contains(&version.sensor_id) {
        return Err(format!(
            "sensor {} is not registered with the cloud",
            version.sensor_id
        ));
    }
    Ok(())
}

/// A version stamp (`what` is `version` or `base`): a writer's site id of 1
/// to [`MAX_SENSOR_ID_CHARS`] characters, a logical counter that fits 16 bits
/// and a physical part the encoding holds ([`Hlc::check_received`]). How far
/// ahead of the cloud's clock it is does not matter here: that is flagged,
/// never refused.
fn check_stamp(what: &str, stamp: &VersionStamp) -> Result<(), String> {
    if stamp.site_id.is_empty() {
        return Err(format!("{what}.site_id is empty"));
    }
    if stamp.site_id.chars().count() > MAX_SENSOR_ID_CHARS {
        return Err(format!(
            "{what}.site_id is longer than {MAX_SENSOR_ID_CHARS} characters"
        ));
    }
    if stamp.site_id.chars().any(char::is_control) {
        return Err(format!("{what}.site_id contains a control character"));
    }
    if stamp.hlc.logical > MAX_HLC_LOGICAL {
        return Err(format!(
            "{what}.hlc.logical {} is above {MAX_HLC_LOGICAL}",
            stamp.hlc.logical
        ));
    }
    let hlc = Hlc {
        physical_ms: stamp.hlc.physical_ms,
        logical: 0,
    };
    hlc.check_received()
        .map_err(|err| format!("{what}.hlc.{err}"))
}

/// Notes: at most [`MAX_NOTE_CHARS`] characters.
pub(crate) fn check_note(note: &str) -> Result<(), String> {
    let chars = note.chars().count();
    if chars > MAX_NOTE_CHARS {
        return Err(format!(
            "note has {chars} characters; at most {MAX_NOTE_CHARS} are allowed"
        ));
    }
    // PostgreSQL's text cannot hold it: refused by name here, not by the
    // database on every retry.
    if note.contains('\0') {
        return Err("note contains a NUL character".into());
    }
    Ok(())
}

/// Writers: at most [`MAX_WRITTEN_BY_CHARS`] characters, no control
/// characters (names are shown as they are in terminals and logs).
pub(crate) fn check_written_by(written_by: &str) -> Result<(), String> {
    let chars = written_by.chars().count();
    if chars > MAX_WRITTEN_BY_CHARS {
        return Err(format!(
            "written_by has {chars} characters; at most {MAX_WRITTEN_BY_CHARS} are allowed"
        ));
    }
    if written_by.chars().any(char::is_control) {
        return Err("written_by contains a control character".into());
    }
    Ok(())
}

/// Sensor ids: 1 to [`MAX_SENSOR_ID_CHARS`] characters.
pub(crate) fn check_sensor_id(sensor_id: &str) -> Result<(), String> {
    if sensor_id.is_empty() {
        return Err("sensor_id is empty".into());
    }
    if sensor_id.chars().count() > MAX_SENSOR_ID_CHARS {
        return Err(format!(
            "sensor_id is longer than {MAX_SENSOR_ID_CHARS} characters"
        ));
    }
    if sensor_id.chars().any(char::is_control) {
        return Err("sensor_id contains a control character".into());
    }
    Ok(())
}

/// Temperatures: finite and not below absolute zero.
pub(crate) fn check_temperature(celsius: f64) -> Result<(), String> {
    if !celsius.is_finite() {
        return Err("temperature is not a finite number".into());
    }
    if celsius < ABSOLUTE_ZERO_CELSIUS {
        return Err(format!("temperature {celsius} °C is below absolute zero"));
    }
    Ok(())
}

/// Relative humidity: a finite percentage, 0 to 100.
pub(crate) fn check_humidity(percent: f64) -> Result<(), String> {
    if !percent.is_finite() {
        return Err("humidity is not a finite number".into());
    }
    if !(0.0..=100.0).contains(&percent) {
        return Err(format!("humidity {percent} % is outside 0 to 100"));
    }
    Ok(())
}

/// At most 64 characters of untrusted text, for messages.
fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use edge_cloud_link::contract::{Hlc, Priority, VersionStamp};

    use super::*;

    fn version() -> VersionRecord {
        VersionRecord {
            reading_id: "0190f3f4-7c4e-7a6b-9d5e-3f2a1b0c9d8e".into(),
            seq: 1,
            origin_site_id: "ship-1".into(),
            sensor_id: "t-1".into(),
            temperature_celsius: 20.0,
            humidity_percent: 50.0,
            measured_at_us: 1,
            received_at_us: 2,
            priority: Priority::Normal,
            clock_suspect: false,
            version: VersionStamp {
                hlc: Hlc {
                    physical_ms: 1,
                    logical: 0,
                },
                site_id: "ship-1".into(),
            },
            quality: Default::default(),
            note: None,
            base: None,
            written_by: None,
        }
    }

    fn reason(f: impl FnOnce(&mut VersionRecord)) -> Option<String> {
        let mut v = version();
        f(&mut v);
        check_version("ship-1", &v, &Faults::default()).err()
    }

    #[test]
    fn a_valid_version_passes() {
        assert_eq!(reason(|_| {}), None);
    }

    #[test]
    fn each_rule_rejects_with_its_own_reason() {
        type Change = Box<dyn FnOnce(&mut VersionRecord)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|v| v.reading_id = "nope".into()), "not a UUID"),
            (Box::new(|v| v.seq = 0), "seq"),
            (
                Box::new(|v| v.sensor_id = String::new()),
                "sensor_id is empty",
            ),
            (
                Box::new(|v| v.sensor_id = "x".repeat(129)),
                "longer than 128",
            ),
            (
                Box::new(|v| v.temperature_celsius = f64::NAN),
                "temperature",
            ),
            (
                Box::new(|v| v.temperature_celsius = -274.0),
                "absolute zero",
            ),
            (Box::new(|v| v.humidity_percent = 100.5), "humidity"),
            (
                Box::new(|v| v.sensor_id = "mast\u{0}1".into()),
                "sensor_id contains a control character",
            ),
            (
                Box::new(|v| v.note = Some("valve\u{0}stuck".into())),
                "note contains a NUL",
            ),
            (
                Box::new(|v| v.written_by = Some("gate\u{1b}[2Jway".into())),
                "written_by contains a control character",
            ),
            (
                Box::new(|v| v.written_by = Some("w".repeat(MAX_WRITTEN_BY_CHARS + 1))),
                "written_by has 257 characters",
            ),
            (
                Box::new(|v| v.version.site_id = "site\n".into()),
                "version.site_id contains a control character",
            ),
            (
                Box::new(|v| v.version.site_id = String::new()),
                "version.site_id",
            ),
            (
                Box::new(|v| {
                    v.origin_site_id = "other".into();
                    v.version.site_id = "other".into();
                }),
                "origin_site_id",
            ),
            (Box::new(|v| v.version.hlc.logical = 65_536), "logical"),
            (
                Box::new(|v| v.version.hlc.physical_ms = edge_versioning::Hlc::MAX_PHYSICAL_MS + 1),
                "version.hlc.physical_ms 140737488355328 is above 140737488355327",
            ),
            (
                Box::new(|v| {
                    v.base = Some(v.version.clone());
                    v.version.hlc.physical_ms = edge_versioning::Hlc::MAX_PHYSICAL_MS + 1;
                }),
                "version.hlc.physical_ms 140737488355328 is above 140737488355327",
            ),
            (Box::new(|v| v.version.hlc.physical_ms = u64::MAX), "above"),
            (
                Box::new(|v| v.version.site_id = CLOUD_SITE_ID.into()),
                "reserved for the cloud",
            ),
            (
                Box::new(|v| v.note = Some("n".repeat(MAX_NOTE_CHARS + 1))),
                "note has 1025 characters",
            ),
            (
                Box::new(|v| {
                    v.base = Some(VersionStamp {
                        hlc: Hlc {
                            physical_ms: 1,
                            logical: 70_000,
                        },
                        site_id: "ship-1".into(),
                    })
                }),
                "base.hlc.logical",
            ),
            (
                Box::new(|v| v.base = Some(v.version.clone())),
                "base names the version itself",
            ),
            (
                Box::new(|v| {
                    v.base = Some(VersionStamp {
                        hlc: Hlc {
                            physical_ms: 1,
                            logical: 0,
                        },
                        site_id: String::new(),
                    })
                }),
                "base.site_id is empty",
            ),
        ];
        for (change, expected) in cases {
            let got = reason(change).unwrap_or_default();
            assert!(
                got.contains(expected),
                "{got:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn a_site_may_push_its_own_amendment_of_a_reading_originated_elsewhere() {
        let mut v = version();
        v.origin_site_id = "mine-2".into();
        v.note = Some("n".repeat(MAX_NOTE_CHARS));
        v.base = Some(VersionStamp {
            hlc: Hlc {
                physical_ms: 1,
                logical: 0,
            },
            site_id: "mine-2".into(),
        });
        v.version.hlc.logical = 1;
        assert_eq!(check_version("ship-1", &v, &Faults::default()), Ok(()));
    }

    #[test]
    fn rejected_sensors_are_named() {
        let faults = Faults {
            reject_sensors: vec!["t-1".into()],
            ..Faults::default()
        };
        let got = check_version("ship-1", &version(), &faults)
            .err()
            .unwrap_or_default();
        assert_eq!(got, "sensor t-1 is not registered with the cloud");
    }
}
