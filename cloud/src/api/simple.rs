//! `POST /api/readings`: the simple API that compatibility mode targets. One
//! reading per call, answered `201` with the cloud's id. It has no
//! idempotency key, so nothing is deduplicated: a retried reading is stored
//! twice, which is exactly what compatibility mode must count.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use edge_cloud_link::contract::{SimpleCreated, SimpleReading};

use super::body::{parse_json, read_limited};
use super::error::ApiError;
use super::{ApiState, reply_delay};
use crate::batch::{check_humidity, check_sensor_id, check_temperature};
use crate::stats::add;

/// Largest simple-API body: one reading is a few hundred bytes.
pub const MAX_SIMPLE_BODY_BYTES: usize = 64 * 1024;

pub(super) async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<SimpleCreated>), ApiError> {
    let raw = read_limited(&headers, body, MAX_SIMPLE_BODY_BYTES).await?;
    let reading: SimpleReading = parse_json(&raw)?;
    check_simple(&reading)?;
    let id = state.db.insert_simple(&reading).await?;
    add(&state.counters.simple_received, 1);
    reply_delay(&state).await;
    Ok((StatusCode::CREATED, Json(SimpleCreated { id })))
}

/// Checks a simple reading; the error names the field at fault.
fn check_simple(reading: &SimpleReading) -> Result<(), ApiError> {
    check_sensor_id(&reading.sensor_id).map_err(|m| ApiError::invalid_field("sensor_id", m))?;
    check_temperature(reading.temperature)
        .map_err(|m| ApiError::invalid_field("temperature", m))?;
    check_humidity(reading.humidity).map_err(|m| ApiError::invalid_field("humidity", m))?;
    humantime::parse_rfc3339(&reading.timestamp).map_err(|e| {
        ApiError::invalid_field(
            "timestamp",
            format!("timestamp must be RFC 3339 in UTC, e.g. 2026-11-24T10:00:00Z: {e}"),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> SimpleReading {
        SimpleReading {
            sensor_id: "t-1".into(),
            temperature: 21.5,
            humidity: 40.0,
            timestamp: "2026-11-24T10:00:00.123456Z".into(),
        }
    }

    fn field_of(result: Result<(), ApiError>) -> Option<String> {
        match result {
            Err(ApiError::Invalid { field, .. }) => field,
            _ => None,
        }
    }

    #[test]
    fn a_good_reading_passes() {
        assert!(check_simple(&reading()).is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        let mut bad = reading();
        bad.timestamp = "yesterday".into();
        assert_eq!(field_of(check_simple(&bad)).as_deref(), Some("timestamp"));
        let mut bad = reading();
        bad.humidity = -1.0;
        assert_eq!(field_of(check_simple(&bad)).as_deref(), Some("humidity"));
        let mut bad = reading();
        bad.sensor_id.clear();
        assert_eq!(field_of(check_simple(&bad)).as_deref(), Some("sensor_id"));
    }
}
