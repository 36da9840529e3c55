//! What the store-only benchmarks share.

use store_svc::model::{NewReading, Priority};

/// Readings appended per transaction while a benchmark sets up.
pub const SETUP_GROUP: usize = 4_000;

/// Readings `from..to` of a benchmark's data set, received at `now_us`:
/// UUIDv7 ids, 1,000 sensors, one gateway.
pub fn sample_readings(from: usize, to: usize, now_us: i64) -> Vec<NewReading> {
    (from..to)
        .map(|i| NewReading {
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            sensor_id: format!("sensor-{}", i % 1_000),
            temperature: 20.0 + (i % 10) as f64,
            humidity: 50.0,
            measured_at_us: now_us,
            received_at_us: now_us,
            priority: Priority::Normal,
            written_by: "gateway-1".into(),
        })
        .collect()
}
