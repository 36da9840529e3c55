//! Properties of ingest-svc's validation, the judge every gateway reading
//! and request goes through before anything is stored.
//!
//! What they protect:
//! - no input panics the judge: any strings (empty, huge, control
//!   characters, any Unicode), any numbers (NaN, infinities, subnormals),
//!   any timestamps and priorities, any bytes a gateway may send;
//! - a reading is accepted exactly when every field meets the rules
//!   `edge/v1/reading.proto` documents, checked here by an oracle written
//!   from those rules (not from `validate.rs`), and what is accepted is the
//!   reading as sent, its id canonicalised;
//! - a refusal names exactly the offending fields, each by its proto field
//!   name, with a non-empty reason saying which rule;
//! - a request refused as a whole (no readings, over the batch limit, bytes
//!   that do not decode) is INVALID_ARGUMENT with a reason, never a panic.
//!
//! Bounded for CI: 256 cases per property (fewer for the byte-level ones),
//! well under a second each in a debug build.

use edge_proto::v1 as pb;
use ingest_svc::error::IngestError;
use ingest_svc::validate::Limits;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use prost::Message as _;
use prost_types::Timestamp;
use tonic::{Code, Status};

/// The proto field names of `edge.v1.Reading`.
const READING_FIELDS: [&str; 6] = [
    "id",
    "sensor_id",
    "temperature_celsius",
    "humidity_percent",
    "measured_at",
    "priority",
];

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds, the range
/// the contract allows for `measured_at` (RFC 3339's years).
const YEAR_1: i64 = -62_135_596_800;
const YEAR_9999_END: i64 = 253_402_300_799;

// ---------------------------------------------------------------------------
// The oracle: the documented rules, written independently of validate.rs.
// ---------------------------------------------------------------------------

/// The canonical (lower-case, hyphenated) form of a UUID "in any standard
/// text form": hyphenated, simple (32 hex digits), braced, or a URN.
fn oracle_uuid(text: &str) -> Option<String> {
    fn hyphenated(s: &str) -> Option<String> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return None;
        }
        for (i, c) in b.iter().enumerate() {
            let ok = if [8, 13, 18, 23].contains(&i) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            };
            if !ok {
                return None;
            }
        }
        Some(s.to_ascii_lowercase())
    }
    if text.len() == 32 && text.bytes().all(|c| c.is_ascii_hexdigit()) {
        let s = text.to_ascii_lowercase();
        return Some(format!(
            "{}-{}-{}-{}-{}",
            &s[..8],
            &s[8..12],
            &s[12..16],
            &s[16..20],
            &s[20..]
        ));
    }
    if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        return hyphenated(inner);
    }
    if text.len() == 45 && text.is_char_boundary(9) && text[..9].eq_ignore_ascii_case("urn:uuid:") {
        return hyphenated(&text[9..]);
    }
    hyphenated(text)
}

/// Which rule a field breaks, as the words its reason must contain.
fn oracle_field_problems(r: &pb::Reading, limits: &Limits) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if !r.id.is_empty() && oracle_uuid(&r.id).is_none() {
        problems.push(("id", "UUID".to_owned()));
    }
    let sensor_chars = r.sensor_id.chars().count();
    if r.sensor_id.is_empty() {
        problems.push(("sensor_id", "required".to_owned()));
    } else if sensor_chars > 128 {
        problems.push(("sensor_id", "at most 128".to_owned()));
    } else if !r
        .sensor_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c))
    {
        problems.push(("sensor_id", "may only contain".to_owned()));
    }
    for (field, value, min, max) in [
        (
            "temperature_celsius",
            r.temperature_celsius,
            limits.temperature_min,
            limits.temperature_max,
        ),
        (
            "humidity_percent",
            r.humidity_percent,
            limits.humidity_min,
            limits.humidity_max,
        ),
    ] {
        match value {
            None => problems.push((field, "required".to_owned())),
            Some(v) if v.is_nan() || v.is_infinite() => {
                problems.push((field, "finite".to_owned()));
            }
            Some(v) if v < min || v > max => problems.push((field, "between".to_owned())),
            Some(_) => {}
        }
    }
    match &r.measured_at {
        None => problems.push(("measured_at", "required".to_owned())),
        Some(ts)
            if !(0..1_000_000_000).contains(&ts.nanos)
                || ts.seconds < YEAR_1
                || ts.seconds > YEAR_9999_END =>
        {
            problems.push(("measured_at", "valid time".to_owned()));
        }
        Some(_) => {}
    }
    if !(0..=2).contains(&r.priority) {
        problems.push(("priority", r.priority.to_string()));
    }
    problems
}

/// Validates `r` and checks the outcome against the oracle, in full.
fn check_against_oracle(r: pb::Reading, limits: &Limits) -> Result<(), TestCaseError> {
    let expected = oracle_field_problems(&r, limits);
    let received_at = Timestamp {
        seconds: 1_750_000_000,
        nanos: 123_000,
    };
    match limits.validate(r.clone(), received_at, "gateway-1") {
        Ok(stored) => {
            prop_assert!(
                expected.is_empty(),
                "accepted a reading that breaks {expected:?}: {r:?}"
            );
            if r.id.is_empty() {
                let id = uuid::Uuid::parse_str(&stored.id).map_err(|e| {
                    TestCaseError::fail(format!("generated id {:?}: {e}", stored.id))
                })?;
                prop_assert_eq!(id.get_version_num(), 7);
                prop_assert_eq!(id.hyphenated().to_string(), stored.id);
            } else {
                prop_assert_eq!(Some(stored.id), oracle_uuid(&r.id));
            }
            prop_assert_eq!(stored.sensor_id, r.sensor_id);
            prop_assert_eq!(Some(stored.temperature_celsius), r.temperature_celsius);
            prop_assert_eq!(Some(stored.humidity_percent), r.humidity_percent);
            prop_assert_eq!(stored.measured_at, r.measured_at);
            prop_assert_eq!(stored.received_at, Some(received_at));
            prop_assert_eq!(stored.priority, r.priority);
            prop_assert_eq!(stored.written_by.as_str(), "gateway-1");
        }
        Err(rejection) => {
            prop_assert!(
                !expected.is_empty(),
                "refused a valid reading with {:?}: {r:?}",
                rejection.errors
            );
            let fields: Vec<&str> = rejection.errors.iter().map(|(f, _)| *f).collect();
            let expected_fields: Vec<&str> = expected.iter().map(|(f, _)| *f).collect();
            prop_assert_eq!(&fields, &expected_fields, "reading {:?}", r);
            for ((field, reason), (_, words)) in rejection.errors.iter().zip(&expected) {
                prop_assert!(READING_FIELDS.contains(field), "unknown field {field}");
                prop_assert!(
                    !reason.trim().is_empty(),
                    "{field} refused without a reason"
                );
                prop_assert!(
                    reason.contains(words.as_str()),
                    "{field}: reason {reason:?} should say {words:?} (reading {r:?})"
                );
            }
            prop_assert_eq!(rejection.reason_label(), fields[0]);
            // The id travels back canonicalised when it could be read.
            if let Some(canonical) = oracle_uuid(&r.id) {
                prop_assert_eq!(rejection.id, canonical);
            } else if !r.id.is_empty() {
                prop_assert_eq!(rejection.id, "");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

/// Any kind of text a gateway might put in a string field.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any::<String>(),
        "\\PC{0,40}",
        "[\\x00-\\x1f\\x7f ]{1,8}",
        "[A-Za-z0-9._:/-]{1,8}[^A-Za-z0-9._:/-][A-Za-z0-9._:/-]{0,8}",
        "[A-Za-z0-9._:/-]{120,136}",
        // Multi-byte characters: fewer characters than bytes.
        "[éß€😀]{20,140}",
        (0usize..100_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn valid_sensor_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._:/-]{1,128}",
        "[A-Za-z0-9._:/-]{128}",
        Just("hold-3/temp.1:a_b".to_owned()),
    ]
}

/// UUIDs in every text form the contract allows.
fn valid_uuid_text() -> impl Strategy<Value = String> {
    (any::<u128>(), 0..6u8).prop_map(|(bits, form)| {
        let id = uuid::Uuid::from_u128(bits);
        match form {
            0 => id.hyphenated().to_string(),
            1 => id.hyphenated().to_string().to_ascii_uppercase(),
            2 => id.simple().to_string(),
            3 => id.braced().to_string(),
            4 => id.urn().to_string(),
            _ => id.urn().to_string().to_ascii_uppercase(),
        }
    })
}

fn any_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        valid_uuid_text(),
        // Almost a UUID: one character replaced by anything.
        (
            valid_uuid_text(),
            any::<prop::sample::Index>(),
            any::<char>()
        )
            .prop_map(|(text, at, c)| {
                let mut chars: Vec<char> = text.chars().collect();
                let i = at.index(chars.len());
                chars[i] = c;
                chars.into_iter().collect()
            }),
        "[0-9a-fA-F-]{30,46}",
        any_text(),
    ]
}

/// Any double, the special ones often.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            -0.0,
            0.0,
            100.0,
            150.0,
            -100.0,
            f64::from_bits(1),
        ]),
        -300.0..300.0f64,
    ]
}

fn any_value() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![1 => Just(None), 6 => any_f64().prop_map(Some)]
}

fn any_timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    let seconds = prop_oneof![
        any::<i64>(),
        YEAR_1 - 2..YEAR_1 + 2,
        YEAR_9999_END - 2..YEAR_9999_END + 2,
        0i64..4_000_000_000,
        Just(i64::MIN),
        Just(i64::MAX),
    ];
    let nanos = prop_oneof![
        any::<i32>(),
        -2..2i32,
        999_999_998..1_000_000_002i32,
        0..1_000_000_000i32,
    ];
    prop_oneof![
        1 => Just(None),
        6 => (seconds, nanos).prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos })),
    ]
}

fn any_priority() -> impl Strategy<Value = i32> {
    prop_oneof![0..3i32, -2..6i32, any::<i32>()]
}

fn any_reading() -> impl Strategy<Value = pb::Reading> {
    (
        any_id(),
        prop_oneof![valid_sensor_id(), any_text()],
        any_value(),
        any_value(),
        any_timestamp(),
        any_priority(),
    )
        .prop_map(
            |(id, sensor_id, temperature_celsius, humidity_percent, measured_at, priority)| {
                pb::Reading {
                    id,
                    sensor_id,
                    temperature_celsius,
                    humidity_percent,
                    measured_at,
                    priority,
                }
            },
        )
}

/// Readings within the documented rules and `limits`' ranges.
fn valid_reading(limits: Limits) -> impl Strategy<Value = pb::Reading> {
    let in_range =
        |min: f64, max: f64| prop_oneof![Just(min), Just(max), min..=max, Just((min + max) / 2.0)];
    (
        prop_oneof![Just(String::new()), valid_uuid_text()],
        valid_sensor_id(),
        in_range(limits.temperature_min, limits.temperature_max),
        in_range(limits.humidity_min, limits.humidity_max),
        YEAR_1..=YEAR_9999_END,
        0..1_000_000_000i32,
        0..3i32,
    )
        .prop_map(
            |(id, sensor_id, t, h, seconds, nanos, priority)| pb::Reading {
                id,
                sensor_id,
                temperature_celsius: Some(t),
                humidity_percent: Some(h),
                measured_at: Some(Timestamp { seconds, nanos }),
                priority,
            },
        )
}

/// Configured limits: the defaults, or any finite ranges.
fn any_limits() -> impl Strategy<Value = Limits> {
    let range = || (-1e6..1e6f64, 0.0..1e6f64).prop_map(|(min, width)| (min, min + width));
    prop_oneof![
        Just(Limits::default()),
        (range(), range(), 1usize..10_000).prop_map(|((tmin, tmax), (hmin, hmax), max)| {
            Limits {
                max_batch_readings: max,
                temperature_min: tmin,
                temperature_max: tmax,
                humidity_min: hmin,
                humidity_max: hmax,
            }
        }),
    ]
}

/// An encoded `IngestRequest` damaged the ways a link or a buggy gateway
/// damages bytes: flipped bits, truncation, inserted and deleted bytes.
fn mutated(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = bytes.len().max(1);
    prop::collection::vec((0..4u8, 0..len, any::<u8>()), 1..8).prop_map(move |edits| {
        let mut b = bytes.clone();
        for (kind, at, byte) in edits {
            let at = at.min(b.len());
            match kind {
                0 if at < b.len() => b[at] ^= byte | 1,
                1 => b.truncate(at),
                2 => b.insert(at, byte),
                _ if at < b.len() => {
                    b.remove(at);
                }
                _ => b.push(byte),
            }
        }
        b
    })
}

/// `cases` per property; failures are kept beside this file
/// (`validate_props.proptest-regressions`) and replayed first.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// Any reading: no panic, and the verdict is the oracle's, field by
    /// field, with reasons that name the rule.
    #[test]
    fn any_reading_is_judged_as_the_rules_say(r in any_reading(), limits in any_limits()) {
        check_against_oracle(r, &limits)?;
    }

    /// Readings within the rules are always accepted, under any limits.
    #[test]
    fn valid_readings_are_always_accepted(
        (limits, r) in any_limits().prop_flat_map(|l| (Just(l), valid_reading(l)))
    ) {
        let verdict = limits.validate(r.clone(), Timestamp::default(), "gateway-1");
        prop_assert!(verdict.is_ok(), "refused {:?}: {:?}", r, verdict.err());
        check_against_oracle(r, &limits)?;
    }

    /// One broken field of a valid reading is refused naming that field
    /// alone.
    #[test]
    fn one_bad_field_is_named_alone(
        r in valid_reading(Limits::default()),
        which in 0..READING_FIELDS.len(),
        bad in any_reading(),
    ) {
        let limits = Limits::default();
        let mut r2 = r;
        match which {
            0 => r2.id = bad.id,
            1 => r2.sensor_id = bad.sensor_id,
            2 => r2.temperature_celsius = bad.temperature_celsius,
            3 => r2.humidity_percent = bad.humidity_percent,
            4 => r2.measured_at = bad.measured_at,
            _ => r2.priority = bad.priority,
        }
        let expected = oracle_field_problems(&r2, &limits);
        prop_assert!(expected.len() <= 1);
        if let Err(rejection) = limits.validate(r2.clone(), Timestamp::default(), "gateway-1") {
            prop_assert_eq!(rejection.errors.len(), 1);
            prop_assert_eq!(rejection.errors[0].0, READING_FIELDS[which]);
        }
        check_against_oracle(r2, &limits)?;
    }

    /// A whole request: refused as a whole exactly when it holds no readings
    /// or more than the limit, as INVALID_ARGUMENT naming `readings`;
    /// otherwise every reading is judged on its own as the rules say.
    #[test]
    fn whole_requests_are_refused_only_for_their_size(
        readings in prop::collection::vec(any_reading(), 0..24),
        max in 1usize..24,
    ) {
        let limits = Limits { max_batch_readings: max, ..Limits::default() };
        let len = readings.len();
        match limits.check_request_size(len) {
            Ok(()) => prop_assert!((1..=max).contains(&len)),
            Err(err) => {
                prop_assert!(len == 0 || len > max, "{len} readings refused under {max}");
                let whole_request = matches!(err, IngestError::Invalid { .. });
                prop_assert!(whole_request, "{err:?}");
                let status = Status::from(err);
                prop_assert_eq!(status.code(), Code::InvalidArgument);
                prop_assert!(!status.message().is_empty());
                let v = edge_runtime::status::field_violations(&status);
                prop_assert_eq!(v.len(), 1);
                prop_assert_eq!(v[0].0.as_str(), "readings");
                prop_assert!(!v[0].1.is_empty());
            }
        }
        // A stream batch may be empty; the limit is the same.
        prop_assert_eq!(limits.check_batch_size(len).is_ok(), len <= max);
        for r in readings {
            check_against_oracle(r, &limits)?;
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Any bytes as an `IngestRequest`: decoding never panics; bytes that do
    /// not decode get the server codec's INVALID_ARGUMENT with prost's
    /// reason; whatever decodes is judged as the rules say.
    #[test]
    fn any_bytes_decode_or_are_invalid_argument(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            prop::collection::vec(any_reading(), 1..6)
                .prop_flat_map(|readings| mutated(pb::IngestRequest { readings }.encode_to_vec())),
        ]
    ) {
        match pb::IngestRequest::decode(bytes.as_slice()) {
            Ok(request) => {
                for r in request.readings {
                    check_against_oracle(r, &Limits::default())?;
                }
            }
            Err(err) => {
                let status = edge_proto::codec::undecodable(&err);
                prop_assert_eq!(status.code(), Code::InvalidArgument);
                prop_assert!(
                    status.message().starts_with("request could not be decoded: ")
                        && status.message().len() > "request could not be decoded: ".len(),
                    "{}", status.message()
                );
            }
        }
    }

    /// Encoding then decoding a request gives it back unchanged (NaN aside,
    /// compared by bits), so what the judge sees is what the gateway sent.
    #[test]
    fn requests_round_trip_through_the_wire(readings in prop::collection::vec(any_reading(), 0..6)) {
        let request = pb::IngestRequest { readings };
        let decoded = pb::IngestRequest::decode(request.encode_to_vec().as_slice())
            .map_err(|e| TestCaseError::fail(format!("a request we encoded must decode: {e}")))?;
        prop_assert_eq!(decoded.readings.len(), request.readings.len());
        for (a, b) in decoded.readings.iter().zip(&request.readings) {
            prop_assert_eq!(&a.id, &b.id);
            prop_assert_eq!(&a.sensor_id, &b.sensor_id);
            prop_assert_eq!(a.temperature_celsius.map(f64::to_bits), b.temperature_celsius.map(f64::to_bits));
            prop_assert_eq!(a.humidity_percent.map(f64::to_bits), b.humidity_percent.map(f64::to_bits));
            prop_assert_eq!(&a.measured_at, &b.measured_at);
            prop_assert_eq!(a.priority, b.priority);
        }
    }
}
