//! Properties of the cloud's batch parser: the bytes of a
//! `POST /v1/sites/{site_id}/batches` body (gzip or not) through
//! [`gunzip_limited`], [`parse_push_body`] and the per-version rules of
//! [`CheckedBatch::check`].
//!
//! What they protect:
//! - no body panics the cloud: arbitrary bytes, arbitrary JSON, valid
//!   batches with bytes flipped, cut or inserted, gzip'd or not;
//! - a valid batch parses to exactly the versions the site sent;
//! - every refusal is a named error: `400 invalid_body` naming the encoding
//!   (gzip, JSON syntax) or the field at fault (its path in the body, such as
//!   `versions[3].seq`), or `413` naming the limit; never a panic, never a
//!   reason that leaves the site guessing;
//! - a version is rejected exactly when it breaks a rule the contract
//!   states (an oracle written from `docs/cloud-api.yaml`'s rules, not from
//!   `batch.rs`), with a reason that names the field.
//!
//! Bounded for CI: at most 256 cases per property, each property well under
//! a few seconds in a debug build.

use std::io::Write as _;

use edge_cloud_link::contract::{
    Hlc, MAX_BATCH_VERSIONS, MAX_NOTE_CHARS, Priority, PushBatch, Quality, VersionRecord,
    VersionStamp,
};
use proptest::prelude::*;
use serde_json::Value;

use super::batches::parse_push_body;
use super::body::gunzip_limited;
use super::error::ApiError;
use crate::batch::{CheckedBatch, check_version};
use crate::faults::Faults;

/// The pushing site in every property.
const SITE: &str = "ship-1";

/// Largest physical part of an HLC stamp the encoding holds (47 bits).
const MAX_PHYSICAL_MS: u64 = (1 << 47) - 1;

/// The fields of a pushed version, as the wire names them.
const VERSION_FIELDS: [&str; 15] = [
    "reading_id",
    "seq",
    "origin_site_id",
    "sensor_id",
    "temperature_celsius",
    "humidity_percent",
    "measured_at_us",
    "received_at_us",
    "priority",
    "clock_suspect",
    "version",
    "quality",
    "note",
    "base",
    "written_by",
];

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

fn encode(versions: &[VersionRecord]) -> Vec<u8> {
    serde_json::to_vec(&PushBatch {
        versions: versions.to_vec(),
    })
    .expect("a batch of finite numbers serialises")
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

/// A site or sensor id within the rules: 1 to 128 characters, no control
/// characters, not the cloud's reserved id.
fn valid_id() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9-]{1,16}", "\\PC{1,40}", "[a-zé😀]{128}",]
        .prop_filter("reserved for the cloud", |s| s != "cloud")
}

fn valid_stamp() -> impl Strategy<Value = VersionStamp> {
    (
        prop_oneof![0..=MAX_PHYSICAL_MS, Just(MAX_PHYSICAL_MS), Just(0)],
        prop_oneof![0..=65_535u32, Just(65_535)],
        prop_oneof![Just(SITE.to_owned()), valid_id()],
    )
        .prop_map(|(physical_ms, logical, site_id)| VersionStamp {
            hlc: Hlc {
                physical_ms,
                logical,
            },
            site_id,
        })
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
            -273.15,
            -273.150_000_000_000_03,
            0.0,
            -0.0,
            100.0,
            100.000_000_000_000_01,
        ]),
        -300.0..200.0f64,
    ]
}

/// Versions within every rule, pushed by [`SITE`].
fn valid_version() -> impl Strategy<Value = VersionRecord> {
    let values = (
        any::<u128>(),
        1..=i64::MAX as u64,
        prop_oneof![
            -273.15..1e6f64,
            Just(-273.15),
            Just(f64::MAX),
            any::<f64>().prop_map(|t| match t {
                t if t.is_finite() && t >= -273.15 => t,
                t if t.is_finite() => -t,
                _ => 0.0,
            })
        ],
        prop_oneof![0.0..=100.0f64, Just(0.0), Just(100.0)],
        any::<i64>(),
        any::<i64>(),
        any::<bool>(),
        any::<bool>(),
    );
    let stamps = (
        valid_id(),
        valid_stamp(),
        prop::option::of(valid_stamp()),
        prop::option::of(prop_oneof![
            "[^\\x00]{0,64}",
            "[a-z ]{1024}",
            Just(String::new())
        ]),
        0..3u8,
        any::<bool>(),
        prop::option::of(prop_oneof![
            "[a-zA-Z0-9._:-]{1,64}",
            "[^\\p{Cc}]{256}",
            Just(String::new())
        ]),
    );
    (values, stamps).prop_map(
        |(
            (id, seq, temperature_celsius, humidity_percent, measured, received, critical, suspect),
            (sensor_id, mut version, base, note, quality, own, written_by),
        )| {
            // A site pushes its own readings, and its own amendments of
            // readings originated elsewhere.
            let origin_site_id = if own || version.site_id != SITE {
                SITE.to_owned()
            } else {
                "elsewhere".to_owned()
            };
            if base.as_ref() == Some(&version) {
                version.hlc.logical = (version.hlc.logical + 1) % 65_536;
            }
            VersionRecord {
                reading_id: uuid::Uuid::from_u128(id).hyphenated().to_string(),
                seq,
                origin_site_id,
                sensor_id,
                temperature_celsius,
                humidity_percent,
                measured_at_us: measured,
                received_at_us: received,
                priority: if critical {
                    Priority::Critical
                } else {
                    Priority::Normal
                },
                clock_suspect: suspect,
                version,
                quality: [Quality::Good, Quality::Suspect, Quality::Bad][usize::from(quality)],
                note,
                base,
                written_by,
            }
        },
    )
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("cloud".to_owned()),
        Just(SITE.to_owned()),
        any::<String>(),
        "[\\x00-\\x1f\\x7f]{1,4}",
        "[a-z]{120,140}",
        "[é😀]{120,140}",
        "[a-z\\x00]{1020,1030}",
    ]
}

fn any_stamp() -> impl Strategy<Value = VersionStamp> {
    (
        prop_oneof![any::<u64>(), MAX_PHYSICAL_MS - 1..=MAX_PHYSICAL_MS + 1],
        prop_oneof![any::<u32>(), 65_534..65_538u32],
        any_text(),
    )
        .prop_map(|(physical_ms, logical, site_id)| VersionStamp {
            hlc: Hlc {
                physical_ms,
                logical,
            },
            site_id,
        })
}

/// Versions with any field anything its type holds, rule-breaking often.
fn any_version() -> impl Strategy<Value = VersionRecord> {
    (
        valid_version(),
        prop::collection::vec(0..VERSION_FIELDS.len(), 0..4),
        (
            prop_oneof![
                any::<String>(),
                "[0-9a-fA-F{}-]{32,38}",
                Just("urn:uuid:0190f3f4-7c4e-7a6b-9d5e-3f2a1b0c9d8e".to_owned())
            ],
            prop_oneof![Just(0u64), any::<u64>(), Just(i64::MAX as u64 + 1)],
            any_text(),
            any_text(),
            any_f64(),
            any_f64(),
            any_stamp(),
            prop::option::of(any_text()),
            prop::option::of(any_stamp()),
            prop::option::of(any_text()),
        ),
    )
        .prop_map(
            |(mut v, fields, (id, seq, origin, sensor, t, h, stamp, note, base, written_by))| {
                for field in fields {
                    match VERSION_FIELDS[field] {
                        "reading_id" => v.reading_id = id.clone(),
                        "seq" => v.seq = seq,
                        "origin_site_id" => v.origin_site_id = origin.clone(),
                        "sensor_id" => v.sensor_id = sensor.clone(),
                        "temperature_celsius" => v.temperature_celsius = t,
                        "humidity_percent" => v.humidity_percent = h,
                        "version" => v.version = stamp.clone(),
                        "note" => v.note = note.clone(),
                        "written_by" => v.written_by = written_by.clone(),
                        "base" => {
                            // Sometimes the version itself, a rule of its own.
                            v.base = base.clone().or_else(|| Some(v.version.clone()));
                        }
                        _ => {}
                    }
                }
                v
            },
        )
}

/// Any JSON value, objects keyed by the contract's names often.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    let key = prop_oneof![
        Just("versions".to_owned()),
        prop::sample::select(VERSION_FIELDS.to_vec()).prop_map(str::to_owned),
        "[a-z_]{1,12}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `bytes` damaged: flipped bits, truncation, inserted and deleted bytes.
fn mutated(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = bytes.len().max(1);
    prop::collection::vec((0..4u8, 0..len, any::<u8>()), 1..6).prop_map(move |edits| {
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

// ---------------------------------------------------------------------------
// The named-error checks and the oracle.
// ---------------------------------------------------------------------------

/// Whether `err` is a refusal of a body that names what was wrong, as the
/// site would see it: a 4xx with a non-empty message naming the encoding,
/// the JSON syntax (line and column) or a field.
fn check_named_refusal(err: &ApiError, body: Option<&[u8]>) -> Result<(), TestCaseError> {
    use axum::response::IntoResponse as _;
    match err {
        ApiError::Invalid {
            code,
            field,
            message,
        } => {
            prop_assert_eq!(*code, "invalid_body");
            prop_assert!(!message.trim().is_empty());
            let names_encoding = message.contains("gzip") || message.contains("UTF-8");
            let names_syntax = message.starts_with("malformed JSON body: ")
                && message.contains("line ")
                && message.contains("column ");
            let names_field = field.as_deref().is_some_and(|f| !f.is_empty());
            prop_assert!(
                names_encoding || names_syntax || names_field,
                "an unnamed refusal: {err:?}"
            );
            // Valid JSON in the wrong shape: the field at fault is named
            // (or the body as a whole, when it is not a batch object).
            if let Some(body) = body
                && serde_json::from_slice::<Value>(body).is_ok()
            {
                prop_assert!(
                    names_field
                        || message.contains("missing field `versions`")
                        || message.contains("expected struct PushBatch")
                        // A batch written as an array with more than one item.
                        || message.contains("trailing characters"),
                    "JSON of the wrong shape refused without naming the field: {err:?}"
                );
            }
        }
        ApiError::TooLarge { message, .. } => {
            prop_assert!(message.contains("exceeds") || message.contains("at most"));
        }
        other => return Err(TestCaseError::fail(format!("unexpected refusal {other:?}"))),
    }
    let status = match err {
        ApiError::Invalid {
            code,
            field,
            message,
        } => ApiError::Invalid {
            code,
            field: field.clone(),
            message: message.clone(),
        },
        ApiError::TooLarge { field, message } => ApiError::TooLarge {
            field: field.clone(),
            message: message.clone(),
        },
        _ => return Ok(()),
    }
    .into_response()
    .status();
    prop_assert!(status.is_client_error(), "{status}");
    Ok(())
}

/// Runs a body through the parser as the push handler does (inflating it
/// first when `gzip`) and checks that it either parses, every version then
/// judged with a named reason, or is refused with a named error.
fn parse_anything(body: &[u8], gzip: bool) -> Result<Option<Vec<VersionRecord>>, TestCaseError> {
    let raw = if gzip {
        match gunzip_limited(body, 1 << 20) {
            Ok(raw) => raw.to_vec(),
            Err(err) => {
                check_named_refusal(&err, None)?;
                return Ok(None);
            }
        }
    } else {
        body.to_vec()
    };
    match parse_push_body(&raw) {
        Ok(versions) => {
            prop_assert!(!versions.is_empty() && versions.len() <= MAX_BATCH_VERSIONS);
            let checked = CheckedBatch::check(SITE, versions.clone(), &Faults::default());
            prop_assert_eq!(checked.rejections.len(), versions.len());
            for (version, rejection) in versions.iter().zip(&checked.rejections) {
                check_verdict(version, rejection.clone())?;
            }
            Ok(Some(versions))
        }
        Err(err) => {
            check_named_refusal(&err, Some(&raw))?;
            Ok(None)
        }
    }
}

/// A stamp within the rules: the words of the first rule it breaks.
fn stamp_problem(what: &str, stamp: &VersionStamp) -> Option<String> {
    if stamp.site_id.is_empty()
        || stamp.site_id.chars().count() > 128
        || stamp.site_id.chars().any(|c| c.is_control())
    {
        Some(format!("{what}.site_id"))
    } else if stamp.hlc.logical > 65_535 {
        Some(format!("{what}.hlc.logical"))
    } else if stamp.hlc.physical_ms > MAX_PHYSICAL_MS {
        Some(format!("{what}.hlc.physical_ms"))
    } else {
        None
    }
}

/// The oracle: every rule `version` breaks, as the field its reason names
/// (by the contract's rules: docs/cloud-api.yaml, VersionRecord).
fn oracle_problems(v: &VersionRecord) -> Vec<String> {
    let mut problems = Vec::new();
    if uuid::Uuid::try_parse(&v.reading_id).is_err() {
        problems.push("reading_id".to_owned());
    }
    if v.seq == 0 || v.seq > i64::MAX as u64 {
        problems.push("seq".to_owned());
    }
    if v.origin_site_id != SITE && v.version.site_id != SITE {
        problems.push("origin_site_id".to_owned());
    }
    if v.sensor_id.is_empty()
        || v.sensor_id.chars().count() > 128
        || v.sensor_id.chars().any(|c| c.is_control())
    {
        problems.push("sensor_id".to_owned());
    }
    if !v.temperature_celsius.is_finite() || v.temperature_celsius < -273.15 {
        problems.push("temperature".to_owned());
    }
    if !v.humidity_percent.is_finite() || !(0.0..=100.0).contains(&v.humidity_percent) {
        problems.push("humidity".to_owned());
    }
    if let Some(p) = stamp_problem("version", &v.version) {
        problems.push(p);
    }
    if v.version.site_id == "cloud" {
        problems.push("version.site_id".to_owned());
    }
    if let Some(note) = &v.note
        && (note.chars().count() > MAX_NOTE_CHARS || note.contains('\0'))
    {
        problems.push("note".to_owned());
    }
    if let Some(written_by) = &v.written_by
        && (written_by.chars().count() > 256 || written_by.chars().any(char::is_control))
    {
        problems.push("written_by".to_owned());
    }
    if let Some(base) = &v.base {
        if let Some(p) = stamp_problem("base", base) {
            problems.push(p);
        } else if base == &v.version {
            problems.push("base".to_owned());
        }
    }
    problems
}

/// The verdict on `version` is the oracle's, and a rejection's reason names
/// one of the fields at fault.
fn check_verdict(version: &VersionRecord, verdict: Option<String>) -> Result<(), TestCaseError> {
    let problems = oracle_problems(version);
    match verdict {
        None => prop_assert!(
            problems.is_empty(),
            "accepted a version breaking {problems:?}: {version:?}"
        ),
        Some(reason) => {
            prop_assert!(
                !problems.is_empty(),
                "rejected a valid version ({reason}): {version:?}"
            );
            prop_assert!(
                problems.iter().any(|p| reason.contains(p.as_str())),
                "reason {reason:?} names none of {problems:?}"
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Valid batches, gzip'd or not, parse to exactly the versions sent and
    /// every version passes the rules.
    #[test]
    fn valid_batches_parse_to_the_versions_sent(
        versions in prop::collection::vec(valid_version(), 1..8),
        gzipped in any::<bool>(),
    ) {
        let json = encode(&versions);
        let body = if gzipped { gzip(&json) } else { json };
        let parsed = parse_anything(&body, gzipped)?;
        prop_assert_eq!(parsed.as_ref(), Some(&versions));
        let checked = CheckedBatch::check(SITE, versions, &Faults::default());
        prop_assert!(checked.rejections.iter().all(Option::is_none), "{:?}", checked.rejections);
    }

    /// Any version: judged as the contract's rules say, rejections naming
    /// the field; never a panic.
    #[test]
    fn any_version_is_judged_as_the_rules_say(v in any_version()) {
        check_verdict(&v, check_version(SITE, &v, &Faults::default()).err())?;
        // On the wire too, when it can be encoded (JSON has no NaN).
        if v.temperature_celsius.is_finite() && v.humidity_percent.is_finite() {
            let parsed = parse_anything(&encode(std::slice::from_ref(&v)), false)?;
            prop_assert_eq!(parsed, Some(vec![v]));
        }
    }

    /// Any JSON value as a body: parsed (then judged) or refused naming the
    /// field at fault.
    #[test]
    fn any_json_is_parsed_or_refused_by_name(value in any_json(), wrap in any::<bool>()) {
        let value = if wrap { serde_json::json!({ "versions": [value] }) } else { value };
        let body = serde_json::to_vec(&value).expect("a JSON value serialises");
        parse_anything(&body, false)?;
    }

    /// One field of one version of a valid batch replaced by any JSON value
    /// (or removed): parsed, or refused naming that very field.
    #[test]
    fn a_mistyped_field_is_named_by_its_path(
        versions in prop::collection::vec(valid_version(), 1..4),
        at in any::<prop::sample::Index>(),
        field in prop::sample::select(VERSION_FIELDS.to_vec()),
        replacement in prop::option::of(any_json()),
    ) {
        let mut value = serde_json::to_value(PushBatch { versions: versions.clone() })
            .expect("a batch serialises");
        let i = at.index(versions.len());
        let object = value["versions"][i]
            .as_object_mut()
            .expect("a version is an object");
        match replacement {
            Some(replacement) => {
                object.insert(field.to_owned(), replacement);
            }
            None => {
                object.remove(field);
            }
        }
        let body = serde_json::to_vec(&value).expect("a JSON value serialises");
        if let Err(err) = parse_push_body(&body) {
            check_named_refusal(&err, Some(&body))?;
            let path = format!("versions[{i}]");
            let named = match &err {
                ApiError::Invalid { field: Some(f), message, .. } => {
                    f == &format!("{path}.{field}")
                        || f.starts_with(&format!("{path}.{field}."))
                        || f.starts_with(&format!("{path}.{field}["))
                        || (f == &path && message.contains(&format!("`{field}`")))
                }
                _ => false,
            };
            prop_assert!(named, "{field} of version {i} broken, refusal names something else: {err:?}");
        }
        parse_anything(&body, false)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes, as a plain or a gzip body: no panic, named errors.
    #[test]
    fn any_bytes_are_parsed_or_refused_by_name(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        gzipped in any::<bool>(),
    ) {
        parse_anything(&bytes, gzipped)?;
    }

    /// A valid batch damaged byte by byte, before or after gzip: no panic,
    /// named errors; whatever still parses is judged by the rules.
    #[test]
    fn damaged_batches_are_parsed_or_refused_by_name(
        // NaN and the infinities go on the wire as `null`: a named error too.
        (body, gzipped) in (prop::collection::vec(any_version(), 1..4), 0..3u8)
            .prop_flat_map(|(versions, how)| {
                let json = encode(&versions);
                match how {
                    // Damaged JSON, sent plain.
                    0 => (mutated(json), Just(false)).boxed(),
                    // Damaged JSON, then gzip'd: the JSON is at fault.
                    1 => (mutated(json).prop_map(|j| gzip(&j)), Just(true)).boxed(),
                    // Damaged gzip: the encoding is at fault (or, rarely,
                    // the inflated JSON).
                    _ => (mutated(gzip(&json)), Just(true)).boxed(),
                }
            })
    ) {
        parse_anything(&body, gzipped)?;
    }

    /// A gzip bomb never inflates beyond the limit: refused as too large.
    #[test]
    fn gzip_beyond_the_limit_is_too_large(extra in 1usize..4096, limit in 0usize..4096) {
        let body = gzip(&vec![b' '; limit + extra]);
        let err = gunzip_limited(&body, limit).expect_err("beyond the limit");
        prop_assert!(matches!(err, ApiError::TooLarge { .. }), "{err:?}");
        check_named_refusal(&err, None)?;
    }
}

/// The batch-level limits, at their edges (too slow for a property: ten
/// thousand versions).
#[test]
fn batch_sizes_are_refused_naming_versions() {
    for body in [&b"{\"versions\": []}"[..], b"{\"versions\": [] }\n"] {
        let err = parse_push_body(body).expect_err("empty");
        assert!(
            matches!(&err, ApiError::Invalid { field: Some(f), .. } if f == "versions"),
            "{err:?}"
        );
    }
    let one = serde_json::to_string(&serde_json::json!({
        "reading_id": "0190f3f4-7c4e-7a6b-9d5e-3f2a1b0c9d8e", "seq": 1,
        "origin_site_id": SITE, "sensor_id": "t-1", "temperature_celsius": 1.0,
        "humidity_percent": 1.0, "measured_at_us": 1, "received_at_us": 1,
        "priority": "normal", "clock_suspect": false,
        "version": {"hlc": {"physical_ms": 1, "logical": 0}, "site_id": SITE}
    }))
    .expect("JSON");
    let body = |n: usize| format!("{{\"versions\": [{}]}}", vec![one.as_str(); n].join(","));
    let parsed = parse_push_body(body(MAX_BATCH_VERSIONS).as_bytes()).expect("at the limit");
    assert_eq!(parsed.len(), MAX_BATCH_VERSIONS);
    let err = parse_push_body(body(MAX_BATCH_VERSIONS + 1).as_bytes()).expect_err("over");
    assert!(
        matches!(&err, ApiError::TooLarge { field: Some(f), .. } if f == "versions"),
        "{err:?}"
    );
}
