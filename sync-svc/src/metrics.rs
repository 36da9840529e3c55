//! sync-svc's instruments, with the names of DESIGN §6. Reading ids and
//! sensor ids are never labels.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

/// The instruments sync-svc records.
#[derive(Clone)]
pub struct SyncMetrics {
    /// `sync_attempts_total`: HTTP pushes of a batch (or, in compatibility
    /// mode, of a reading).
    pub attempts: Counter<u64>,
    /// `sync_success_total`: pushes answered 2xx with a well-formed result.
    pub successes: Counter<u64>,
    /// `readings_synced_total{result}`: versions acknowledged.
    pub synced: Counter<u64>,
    /// `sync_stuck_versions_total`: versions flagged stuck.
    pub stuck: Counter<u64>,
    /// `sync_possible_duplicates_total`: compatibility-mode retries after an
    /// ambiguous failure.
    pub possible_duplicates: Counter<u64>,
    /// `sync_push_duration_seconds`: push latency.
    pub push_seconds: Histogram<f64>,
}

impl SyncMetrics {
    /// Registers the instruments in the process registry.
    pub fn new() -> Self {
        let meter = edge_runtime::telemetry::meter("sync-svc");
        SyncMetrics {
            attempts: meter
                .u64_counter("sync_attempts")
                .with_description("HTTP pushes to the cloud")
                .build(),
            successes: meter
                .u64_counter("sync_success")
                .with_description("Pushes answered 2xx with a well-formed per-version result")
                .build(),
            synced: meter
                .u64_counter("readings_synced")
                .with_description("Versions acknowledged by the cloud, by result")
                .build(),
            stuck: meter
                .u64_counter("sync_stuck_versions")
                .with_description(
                    "Versions flagged stuck after repeated failed attempts (still retried)",
                )
                .build(),
            possible_duplicates: meter
                .u64_counter("sync_possible_duplicates")
                .with_description(
                    "Compatibility-mode retries after an ambiguous failure (may duplicate)",
                )
                .build(),
            push_seconds: meter
                .f64_histogram("sync_push_duration")
                .with_unit("s")
                .with_description("Time from sending a push to its answer")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .build(),
        }
    }

    /// Counts acknowledged versions by result.
    pub fn synced(&self, result: &'static str, count: u64) {
        if count > 0 {
            self.synced.add(count, &[KeyValue::new("result", result)]);
        }
    }
}

impl Default for SyncMetrics {
    fn default() -> Self {
        Self::new()
    }
}
