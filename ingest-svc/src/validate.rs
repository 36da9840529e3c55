//! Judging gateway readings one by one.
//!
//! A reading is refused only when it cannot be stored meaningfully: a missing
//! or malformed field, a value that is not a number or is outside the
//! configured physical range. Every refusal names the field and the reason. A
//! timestamp far from the site's clock is *not* refused (a gateway's clock may
//! be wrong while its measurement is real): store-svc keeps it and flags it
//! `clock_suspect`.

use clap::Args;
use edge_proto::rules;
use edge_proto::v1 as pb;
use prost_types::Timestamp;
use uuid::Uuid;

use crate::error::IngestError;

/// Configurable bounds on what a reading may hold.
#[derive(Debug, Clone, Copy, Args)]
pub struct Limits {
    /// Most readings in one Ingest call or stream batch (1 to 10000, checked
    /// at start-up).
    #[arg(long, env = "EDGE_MAX_BATCH_READINGS", default_value_t = 5_000)]
    pub max_batch_readings: usize,

    /// Lowest plausible temperature, °C (inclusive).
    #[arg(long, env = "EDGE_TEMPERATURE_MIN", default_value_t = -100.0, allow_negative_numbers = true)]
    pub temperature_min: f64,

    /// Highest plausible temperature, °C (inclusive).
    #[arg(
        long,
        env = "EDGE_TEMPERATURE_MAX",
        default_value_t = 150.0,
        allow_negative_numbers = true
    )]
    pub temperature_max: f64,

    /// Lowest plausible relative humidity, % (inclusive).
    #[arg(long, env = "EDGE_HUMIDITY_MIN", default_value_t = 0.0)]
    pub humidity_min: f64,

    /// Highest plausible relative humidity, % (inclusive).
    #[arg(long, env = "EDGE_HUMIDITY_MAX", default_value_t = 100.0)]
    pub humidity_max: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch_readings: 5_000,
            temperature_min: -100.0,
            temperature_max: 150.0,
            humidity_min: 0.0,
            humidity_max: 100.0,
        }
    }
}

/// One refused field: `(field, reason)`.
pub type FieldError = (&'static str, String);

/// Why a reading was refused: the canonical id when it could be read, and
/// every offending field.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The reading's id, if it was a valid UUID.
    pub id: String,
    /// The offending fields.
    pub errors: Vec<FieldError>,
}

impl Rejection {
    /// A bounded label for metrics: the first offending field.
    pub fn reason_label(&self) -> &'static str {
        self.errors.first().map_or("unknown", |(field, _)| field)
    }
}

fn check_range(
    errors: &mut Vec<FieldError>,
    field: &'static str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> f64 {
    match value {
        None => errors.push((field, "is required".into())),
        Some(v) if !v.is_finite() => errors.push((field, "must be a finite number".into())),
        Some(v) if v < min || v > max => {
            errors.push((field, format!("must be between {min} and {max}, got {v}")));
        }
        Some(v) => return v,
    }
    0.0
}

impl Limits {
    /// Refuses a batch of `len` readings over [`Limits::max_batch_readings`]
    /// as a whole: INVALID_ARGUMENT naming the field `readings`.
    pub fn check_batch_size(&self, len: usize) -> Result<(), IngestError> {
        if len > self.max_batch_readings {
            return Err(IngestError::Invalid {
                message: format!(
                    "batch of {len} readings exceeds the limit of {}",
                    self.max_batch_readings
                ),
                violations: vec![(
                    "readings".into(),
                    format!("at most {} readings per batch", self.max_batch_readings),
                )],
            });
        }
        Ok(())
    }

    /// Refuses an `IngestRequest` of `len` readings as a whole: none at all,
    /// or more than [`Limits::max_batch_readings`] (a stream batch may be
    /// empty: see [`Limits::check_batch_size`]).
    pub fn check_request_size(&self, len: usize) -> Result<(), IngestError> {
        if len == 0 {
            return Err(IngestError::Invalid {
                message: "the batch holds no readings".into(),
                violations: vec![("readings".into(), "must hold at least one reading".into())],
            });
        }
        self.check_batch_size(len)
    }

    /// Judges one reading. On success returns the reading as store-svc takes
    /// it, with its id (generated UUIDv7 when absent), the site's receive
    /// time and `written_by`, the identity that sent it (empty: the store
    /// records ingest-svc's own).
    pub fn validate(
        &self,
        r: pb::Reading,
        received_at: Timestamp,
        written_by: &str,
    ) -> Result<edge_proto::internal::v1::NewReading, Rejection> {
        let mut errors = Vec::new();
        let id = if r.id.is_empty() {
            Uuid::now_v7().hyphenated().to_string()
        } else {
            match Uuid::try_parse(&r.id) {
                Ok(id) => id.hyphenated().to_string(),
                Err(_) => {
                    errors.push((
                        "id",
                        "must be a UUID (or empty to have one generated)".into(),
                    ));
                    String::new()
                }
            }
        };
        if let Some(problem) = rules::sensor_id_problem(&r.sensor_id) {
            errors.push(("sensor_id", problem));
        }
        let temperature = check_range(
            &mut errors,
            "temperature_celsius",
            r.temperature_celsius,
            self.temperature_min,
            self.temperature_max,
        );
        let humidity = check_range(
            &mut errors,
            "humidity_percent",
            r.humidity_percent,
            self.humidity_min,
            self.humidity_max,
        );
        match &r.measured_at {
            None => errors.push(("measured_at", "is required".into())),
            Some(ts) if rules::timestamp_to_us(ts).is_none() => {
                errors.push((
                    "measured_at",
                    "must be a valid time in years 0001 to 9999".into(),
                ));
            }
            Some(_) => {}
        }
        if pb::Priority::try_from(r.priority).is_err() {
            errors.push((
                "priority",
                format!("{} is not a known priority", r.priority),
            ));
        }
        if !errors.is_empty() {
            return Err(Rejection { id, errors });
        }
        Ok(edge_proto::internal::v1::NewReading {
            id,
            sensor_id: r.sensor_id,
            temperature_celsius: temperature,
            humidity_percent: humidity,
            measured_at: r.measured_at,
            received_at: Some(received_at),
            priority: r.priority,
            written_by: written_by.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> pb::Reading {
        pb::Reading {
            id: "0190a6d2-7b1c-7cc3-8f00-000000000001".into(),
            sensor_id: "hold-3/temp.1".into(),
            temperature_celsius: Some(21.5),
            humidity_percent: Some(40.0),
            measured_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            priority: pb::Priority::Critical as i32,
        }
    }

    fn fields(r: pb::Reading) -> Vec<&'static str> {
        Limits::default()
            .validate(r, Timestamp::default(), "gateway-1")
            .expect_err("should be refused")
            .errors
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    #[test]
    fn a_good_reading_passes_with_its_id_canonicalised() {
        let mut r = good();
        r.id = "0190A6D2-7B1C-7CC3-8F00-000000000001".into();
        let ok = Limits::default()
            .validate(r, Timestamp::default(), "gateway-1")
            .expect("valid");
        assert_eq!(ok.id, "0190a6d2-7b1c-7cc3-8f00-000000000001");
        assert_eq!(ok.temperature_celsius, 21.5);
    }

    #[test]
    fn a_missing_id_is_generated_as_uuid_v7() {
        let mut r = good();
        r.id.clear();
        let ok = Limits::default()
            .validate(r, Timestamp::default(), "gateway-1")
            .expect("valid");
        let id = Uuid::parse_str(&ok.id).expect("uuid");
        assert_eq!(id.get_version_num(), 7);
    }

    #[test]
    fn every_bad_field_is_named() {
        let r = pb::Reading {
            id: "not-a-uuid".into(),
            sensor_id: "bad sensor!".into(),
            temperature_celsius: Some(f64::NAN),
            humidity_percent: Some(120.0),
            measured_at: None,
            priority: 9,
        };
        assert_eq!(
            fields(r),
            [
                "id",
                "sensor_id",
                "temperature_celsius",
                "humidity_percent",
                "measured_at",
                "priority"
            ]
        );
    }

    #[test]
    fn missing_values_are_refused_not_read_as_zero() {
        let mut r = good();
        r.temperature_celsius = None;
        r.humidity_percent = None;
        assert_eq!(fields(r), ["temperature_celsius", "humidity_percent"]);
    }

    #[test]
    fn range_bounds_are_inclusive_and_configurable() {
        let limits = Limits {
            temperature_min: -10.0,
            temperature_max: 10.0,
            ..Limits::default()
        };
        let mut r = good();
        r.temperature_celsius = Some(10.0);
        assert!(
            limits
                .validate(r.clone(), Timestamp::default(), "gateway-1")
                .is_ok()
        );
        r.temperature_celsius = Some(10.5);
        let err = limits
            .validate(r, Timestamp::default(), "gateway-1")
            .expect_err("out of range");
        assert_eq!(err.errors[0].1, "must be between -10 and 10, got 10.5");
    }

    #[test]
    fn sensor_ids_are_bounded() {
        let mut r = good();
        r.sensor_id = "x".repeat(129);
        assert_eq!(fields(r.clone()), ["sensor_id"]);
        r.sensor_id = "x".repeat(128);
        assert!(
            Limits::default()
                .validate(r, Timestamp::default(), "gateway-1")
                .is_ok()
        );
    }

    #[test]
    fn timestamps_outside_years_1_to_9999_are_refused() {
        let mut r = good();
        r.measured_at = Some(Timestamp {
            seconds: 9_223_372_036_854,
            nanos: 999_999_999,
        });
        assert_eq!(fields(r), ["measured_at"]);
    }

    #[test]
    fn a_far_future_timestamp_is_not_refused_here() {
        let mut r = good();
        r.measured_at = Some(Timestamp {
            seconds: 4_000_000_000,
            nanos: 0,
        });
        assert!(
            Limits::default()
                .validate(r, Timestamp::default(), "gateway-1")
                .is_ok()
        );
    }
}
