//! Rules the contracts state for individual fields, in one place so that every
//! service judges a field the same way (a reading ingest-svc accepts must never
//! be refused by store-svc, or the good readings beside it would fail too).

use prost_types::Timestamp;

/// Earliest accepted timestamp: 0001-01-01T00:00:00Z (RFC 3339's range).
pub const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// Latest accepted timestamp: 9999-12-31T23:59:59Z.
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
/// Longest sensor id.
pub const MAX_SENSOR_ID_LEN: usize = 128;
/// Most readings one `StoreIngestService.Append` takes
/// (`edge/internal/v1/store_ingest.proto`). ingest-svc's
/// batch limit must stay within it.
pub const MAX_APPEND_READINGS: usize = 10_000;
/// Longest name a version's writer may carry, in characters: identity names,
/// certificate common names (at most 64 by X.509) and the cloud's
/// `site:<site id>` (site ids have at most 128) fit with room. The cloud
/// contract's limit is the same.
pub const MAX_WRITTEN_BY_CHARS: usize = 256;

/// Microseconds since the epoch, or `None` when the timestamp is outside
/// years 0001–9999 or its nanos are out of range.
pub fn timestamp_to_us(ts: &Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&ts.nanos)
        || !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&ts.seconds)
    {
        return None;
    }
    Some(ts.seconds * 1_000_000 + i64::from(ts.nanos / 1_000))
}

/// A timestamp from microseconds since the epoch.
pub fn us_to_timestamp(us: i64) -> Timestamp {
    Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// Why `sensor_id` is not acceptable, or `None` when it is: 1 to 128
/// characters from `[A-Za-z0-9._:/-]`.
pub fn sensor_id_problem(sensor_id: &str) -> Option<String> {
    if sensor_id.is_empty() {
        Some("is required".into())
    } else if sensor_id.chars().count() > MAX_SENSOR_ID_LEN {
        // Characters, as documented, not bytes: 50 characters of `é` are
        // refused for their characters, not reported as too long.
        Some(format!("must be at most {MAX_SENSOR_ID_LEN} characters"))
    } else if !sensor_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
    {
        Some("may only contain A-Z a-z 0-9 . _ : / -".into())
    } else {
        None
    }
}

/// Why `written_by` (a version's writer, an identity's name) is not
/// acceptable, or `None` when it is: at most [`MAX_WRITTEN_BY_CHARS`]
/// characters, none of them control characters (it is shown in terminals
/// and logs as it is).
pub fn written_by_problem(written_by: &str) -> Option<String> {
    if written_by.chars().count() > MAX_WRITTEN_BY_CHARS {
        Some(format!("must be at most {MAX_WRITTEN_BY_CHARS} characters"))
    } else if written_by.chars().any(char::is_control) {
        Some("may not contain control characters".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_within_range_and_are_refused_outside() {
        for us in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_001] {
            assert_eq!(timestamp_to_us(&us_to_timestamp(us)), Some(us));
        }
        let max = Timestamp {
            seconds: MAX_TIMESTAMP_SECONDS,
            nanos: 999_999_999,
        };
        assert!(timestamp_to_us(&max).is_some());
        assert_eq!(
            timestamp_to_us(&Timestamp {
                seconds: MAX_TIMESTAMP_SECONDS + 1,
                nanos: 0
            }),
            None
        );
        assert_eq!(
            timestamp_to_us(&Timestamp {
                seconds: 9_223_372_036_854,
                nanos: 999_999_999
            }),
            None
        );
        assert_eq!(
            timestamp_to_us(&Timestamp {
                seconds: 1,
                nanos: -1
            }),
            None
        );
    }

    #[test]
    fn sensor_ids_follow_the_contract() {
        assert_eq!(sensor_id_problem("hold-3/temp.1:a_b"), None);
        assert!(sensor_id_problem("").is_some());
        assert!(sensor_id_problem("bad\0id").is_some());
        assert!(sensor_id_problem(&"x".repeat(129)).is_some());
        assert_eq!(sensor_id_problem(&"x".repeat(128)), None);
        assert_eq!(
            sensor_id_problem(&"é".repeat(100)).as_deref(),
            Some("may only contain A-Z a-z 0-9 . _ : / -")
        );
    }

    #[test]
    fn writers_are_bounded_and_printable() {
        assert_eq!(written_by_problem("gateway-7"), None);
        assert_eq!(written_by_problem(""), None);
        assert_eq!(written_by_problem(&"é".repeat(MAX_WRITTEN_BY_CHARS)), None);
        assert!(written_by_problem(&"a".repeat(MAX_WRITTEN_BY_CHARS + 1)).is_some());
        assert!(written_by_problem("op\u{1b}[2Jerator").is_some());
        assert!(written_by_problem("line\nbreak").is_some());
    }
}
