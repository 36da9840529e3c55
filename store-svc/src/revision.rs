//! Versions after the first: amendments made here and versions pulled from
//! the cloud, in the forms the database layer takes and gives.

use edge_proto::v1 as pb;
use edge_versioning::{Policy, SkewBound, Stamp};

use crate::hlc::Hlc;
use crate::model::Quality;

/// Longest note an amendment may carry, in characters (the cloud's limit).
pub const MAX_NOTE_CHARS: usize = 1_024;

/// A validated correction of one reading: `None` fields keep their value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Amendment {
    /// The reading.
    pub reading_id: String,
    /// Corrected °C.
    pub temperature: Option<f64>,
    /// Corrected %.
    pub humidity: Option<f64>,
    /// New quality.
    pub quality: Option<Quality>,
    /// New note; `Some("")` clears it.
    pub note: Option<String>,
    /// The identity that asked for it: the new version's writer.
    pub written_by: String,
}

/// The correctable part of a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Values {
    /// °C.
    pub temperature: f64,
    /// %.
    pub humidity: f64,
    /// Quality flag.
    pub quality: Quality,
    /// Note, if any.
    pub note: Option<String>,
}

/// One version from the cloud's change feed, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteVersion {
    /// Reading id.
    pub reading_id: String,
    /// Site the reading entered the mesh at.
    pub origin_site_id: String,
    /// The origin's seq of the reading.
    pub origin_seq: i64,
    /// Sensor id.
    pub sensor_id: String,
    /// µs since the epoch.
    pub measured_at_us: i64,
    /// µs since the epoch.
    pub received_at_us: i64,
    /// Stored priority (1 normal, 2 critical).
    pub priority: i64,
    /// The origin's clock flag.
    pub clock_suspect: bool,
    /// This version.
    pub stamp: Stamp,
    /// The version it amended.
    pub base: Option<Stamp>,
    /// Its values.
    pub values: Values,
    /// Its writer, as the cloud recorded it (`None`: not said).
    pub written_by: Option<String>,
}

/// A version stored although stamped beyond the clock-skew bound (flagged,
/// counted and logged).
#[derive(Debug, Clone, PartialEq)]
pub struct Skew {
    /// The reading.
    pub reading_id: String,
    /// The stamp.
    pub stamp: Stamp,
    /// How far ahead of the site's wall clock, ms.
    pub ahead_ms: u64,
}

/// What applying one page of the change feed did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyOutcome {
    /// Versions stored.
    pub applied: u64,
    /// Versions held already.
    pub already_held: u64,
    /// Versions of this site's readings it no longer stores.
    pub skipped: u64,
    /// Readings whose current version changed.
    pub readings_changed: u64,
    /// Conflicts resolved, by the side that won.
    pub conflicts: Vec<edge_versioning::Conflict>,
    /// Versions stored that were stamped beyond the clock-skew bound.
    pub skewed: Vec<Skew>,
    /// The feed cursor stored.
    pub cursor: i64,
    /// The clock-skew bound the page was applied under.
    pub bound: SkewBound,
    /// The page announced a bound other than the one stored before.
    pub bound_changed: bool,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ConflictRow {
    /// Log order.
    pub id: i64,
    /// The reading.
    pub reading_id: String,
    /// Packed HLC of the version held before.
    pub local_hlc: i64,
    /// Its site.
    pub local_site_id: String,
    /// Packed HLC of the version that arrived.
    pub remote_hlc: i64,
    /// Its site.
    pub remote_site_id: String,
    /// Packed HLC of the version current after.
    pub current_hlc: i64,
    /// Its site.
    pub current_site_id: String,
    /// `local` or `remote`.
    pub winner: String,
    /// The rule.
    pub policy: String,
    /// When, µs since the epoch (site clock).
    pub resolved_at_us: i64,
    /// The writer of the version held before, if recorded.
    pub local_written_by: Option<String>,
    /// The writer of the version that arrived, if the cloud said.
    pub remote_written_by: Option<String>,
}

/// A version stamp as the proto carries it.
pub fn stamp_to_proto(hlc_packed: i64, site_id: String) -> pb::VersionStamp {
    crate::model::VersionStamp {
        hlc: Hlc::unpack(hlc_packed),
        site_id,
    }
    .to_proto()
}

impl ConflictRow {
    /// To the proto message.
    pub fn into_proto(self) -> pb::ConflictEntry {
        pb::ConflictEntry {
            reading_id: self.reading_id,
            local: Some(stamp_to_proto(self.local_hlc, self.local_site_id)),
            remote: Some(stamp_to_proto(self.remote_hlc, self.remote_site_id)),
            current: Some(stamp_to_proto(self.current_hlc, self.current_site_id)),
            winner: self.winner,
            policy: self.policy,
            resolved_at: Some(crate::model::us_to_timestamp(self.resolved_at_us)),
            local_written_by: self.local_written_by.unwrap_or_default(),
            remote_written_by: self.remote_written_by.unwrap_or_default(),
        }
    }
}

/// The policy name the cloud announced, parsed.
pub fn parse_policy(name: &str) -> Result<Policy, edge_versioning::PolicyParseError> {
    name.parse()
}

/// Most versions one ApplyRemoteVersions call may carry (the feed's page limit).
pub const MAX_REMOTE_VERSIONS: usize = 10_000;

type Violations = Vec<crate::model::FieldViolation>;

fn check_temperature(field: &str, value: f64, out: &mut Violations) {
    if !value.is_finite() || value < -273.15 {
        out.push((
            field.to_owned(),
            "must be a finite number not below -273.15".into(),
        ));
    }
}

fn check_humidity(field: &str, value: f64, out: &mut Violations) {
    if !value.is_finite() || !(0.0..=100.0).contains(&value) {
        out.push((
            field.to_owned(),
            "must be a finite number from 0 to 100".into(),
        ));
    }
}

fn check_note(field: &str, note: &str, out: &mut Violations) {
    let chars = note.chars().count();
    if chars > MAX_NOTE_CHARS {
        out.push((
            field.to_owned(),
            format!("must be at most {MAX_NOTE_CHARS} characters, got {chars}"),
        ));
    } else if note.contains('\0') {
        // PostgreSQL's text cannot hold it: refused here, by name, rather
        // than by the database on every retry.
        out.push((
            field.to_owned(),
            "must not contain NUL characters".to_owned(),
        ));
    }
}

/// Ids in a pulled version (site and sensor ids, as the cloud holds them):
/// required, at most
/// [`edge_proto::rules::MAX_SENSOR_ID_LEN`] characters, no control
/// characters.
fn check_id(field: String, id: &str, out: &mut Violations) {
    let max = edge_proto::rules::MAX_SENSOR_ID_LEN;
    if id.is_empty() {
        out.push((field, "is required".to_owned()));
    } else if id.chars().count() > max {
        out.push((field, format!("must be at most {max} characters")));
    } else if id.chars().any(char::is_control) {
        out.push((field, "must not contain control characters".to_owned()));
    }
}

/// Validates an amend call. The bounds are the cloud's, so an amendment the
/// site accepts is never dead-lettered by the cloud.
/// `written_by`: the identity that called Amend.
pub fn amendment_from_proto(
    request: &pb::AmendRequest,
    written_by: String,
) -> Result<Amendment, Violations> {
    let mut violations = Vec::new();
    let canonical = uuid::Uuid::parse_str(&request.reading_id)
        .ok()
        .map(|u| u.hyphenated().to_string());
    if canonical.as_deref() != Some(request.reading_id.as_str()) {
        violations.push((
            "reading_id".to_owned(),
            "must be a lower-case hyphenated UUID".to_owned(),
        ));
    }
    if let Some(t) = request.temperature_celsius {
        check_temperature("temperature_celsius", t, &mut violations);
    }
    if let Some(h) = request.humidity_percent {
        check_humidity("humidity_percent", h, &mut violations);
    }
    let quality = match pb::Quality::try_from(request.quality) {
        Ok(_) => Quality::from_proto(request.quality),
        Err(_) => {
            violations.push(("quality".to_owned(), "is not a known quality".to_owned()));
            None
        }
    };
    if let Some(note) = &request.note {
        check_note("note", note, &mut violations);
    }
    if request.temperature_celsius.is_none()
        && request.humidity_percent.is_none()
        && quality.is_none()
        && request.note.is_none()
    {
        violations.push((
            "amendment".to_owned(),
            "set at least one of temperature_celsius, humidity_percent, quality, note".to_owned(),
        ));
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(Amendment {
        reading_id: request.reading_id.clone(),
        temperature: request.temperature_celsius,
        humidity: request.humidity_percent,
        quality,
        note: request.note.clone(),
        written_by,
    })
}

/// A stamp from the wire, within what the encoding holds
/// ([`Hlc::check_received`]): however far ahead of this site's clock, and
/// whichever part of the range, it is taken (and flagged when stored).
fn stamp_from_proto(
    field: &str,
    stamp: Option<&pb::VersionStamp>,
    out: &mut Violations,
) -> Option<Stamp> {
    let Some(stamp) = stamp else {
        out.push((field.to_owned(), "is required".to_owned()));
        return None;
    };
    let hlc = stamp.hlc.unwrap_or_default();
    let Ok(logical) = u16::try_from(hlc.logical) else {
        out.push((
            format!("{field}.hlc.logical"),
            "must be at most 65535".to_owned(),
        ));
        return None;
    };
    let hlc = Hlc {
        physical_ms: hlc.physical_ms,
        logical,
    };
    if let Err(err) = hlc.check_received() {
        out.push((format!("{field}.hlc.physical_ms"), err.to_string()));
        return None;
    }
    let before = out.len();
    check_id(format!("{field}.site_id"), &stamp.site_id, out);
    if out.len() > before {
        return None;
    }
    Some(Stamp::new(hlc, stamp.site_id.clone()))
}

/// One page of the change feed, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePage {
    /// The versions, in feed order.
    pub versions: Vec<RemoteVersion>,
    /// The rule the cloud announced.
    pub policy: Policy,
    /// The cursor after the page.
    pub next_cursor: i64,
    /// The clock-skew bound the cloud announced, if it did.
    pub max_clock_skew: Option<SkewBound>,
}

/// Validates one page of the change feed, naming each bad field by its
/// index (`versions[3].version.site_id`).
pub fn remote_page_from_proto(
    request: &edge_proto::internal::v1::ApplyRemoteVersionsRequest,
) -> Result<RemotePage, Violations> {
    let mut violations = Vec::new();
    let policy =
        parse_policy(&request.policy).map_err(|e| vec![("policy".to_owned(), e.to_string())])?;
    let max_clock_skew = match request.max_clock_skew {
        None => None,
        Some(d) => Some(
            std::time::Duration::try_from(d)
                .map(SkewBound::from_duration)
                .map_err(|_| {
                    vec![(
                        "max_clock_skew".to_owned(),
                        "must be a non-negative duration".to_owned(),
                    )]
                })?,
        ),
    };
    if request.versions.len() > MAX_REMOTE_VERSIONS {
        return Err(vec![(
            "versions".to_owned(),
            format!(
                "at most {MAX_REMOTE_VERSIONS} versions, got {}",
                request.versions.len()
            ),
        )]);
    }
    let cursor = i64::try_from(request.next_cursor)
        .map_err(|_| vec![("next_cursor".to_owned(), "must be below 2^63".to_owned())])?;
    let mut versions = Vec::with_capacity(request.versions.len());
    for (i, v) in request.versions.iter().enumerate() {
        let at = |name: &str| format!("versions[{i}].{name}");
        let before = violations.len();
        if uuid::Uuid::try_parse(&v.reading_id).is_err() {
            violations.push((at("reading_id"), "must be a UUID".to_owned()));
        }
        check_id(at("origin_site_id"), &v.origin_site_id, &mut violations);
        check_id(at("sensor_id"), &v.sensor_id, &mut violations);
        let origin_seq = i64::try_from(v.origin_seq).ok().filter(|s| *s >= 1);
        if origin_seq.is_none() {
            violations.push((at("origin_seq"), "must be from 1 to 2^63-1".to_owned()));
        }
        check_temperature(
            &at("temperature_celsius"),
            v.temperature_celsius,
            &mut violations,
        );
        check_humidity(&at("humidity_percent"), v.humidity_percent, &mut violations);
        check_note(&at("note"), &v.note, &mut violations);
        let measured = crate::model::timestamp_to_us(v.measured_at.as_ref());
        let received = crate::model::timestamp_to_us(v.received_at.as_ref());
        if measured.is_none() {
            violations.push((at("measured_at"), "is required".to_owned()));
        }
        if received.is_none() {
            violations.push((at("received_at"), "is required".to_owned()));
        }
        let stamp = stamp_from_proto(&at("version"), v.version.as_ref(), &mut violations);
        let base = match &v.base {
            None => None,
            Some(b) => stamp_from_proto(&at("base"), Some(b), &mut violations),
        };
        let priority = crate::model::Priority::from_proto(v.priority);
        if priority.is_none() {
            violations.push((at("priority"), "is not a known priority".to_owned()));
        }
        if let Some(problem) = edge_proto::rules::written_by_problem(&v.written_by) {
            violations.push((at("written_by"), problem));
        }
        if violations.len() > before {
            continue;
        }
        let (
            Some(origin_seq),
            Some(measured_at_us),
            Some(received_at_us),
            Some(stamp),
            Some(priority),
        ) = (origin_seq, measured, received, stamp, priority)
        else {
            continue;
        };
        versions.push(RemoteVersion {
            reading_id: v.reading_id.clone(),
            origin_site_id: v.origin_site_id.clone(),
            origin_seq,
            sensor_id: v.sensor_id.clone(),
            measured_at_us,
            received_at_us,
            priority: priority as i64,
            clock_suspect: v.clock_suspect,
            stamp,
            base,
            values: Values {
                temperature: v.temperature_celsius,
                humidity: v.humidity_percent,
                quality: Quality::from_proto(v.quality).unwrap_or_default(),
                note: (!v.note.is_empty()).then(|| v.note.clone()),
            },
            written_by: (!v.written_by.is_empty()).then(|| v.written_by.clone()),
        });
    }
    if violations.is_empty() {
        Ok(RemotePage {
            versions,
            policy,
            next_cursor: cursor,
            max_clock_skew,
        })
    } else {
        Err(violations)
    }
}
