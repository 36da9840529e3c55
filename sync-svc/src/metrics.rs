//! sync-svc's instruments, with the names of docs/operations.md, Metrics.
//! Reading ids and sensor ids are never labels.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};

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
    /// `sync_pull_attempts_total`: change-feed pages asked for.
    pub pull_attempts: Counter<u64>,
    /// `sync_pull_failures_total`: pulls that stopped on a cloud or store
    /// failure (retried after a backoff).
    pub pull_failures: Counter<u64>,
    /// `sync_pulled_versions_total{result}`: feed versions handed to the
    /// store, by what it did (`applied`, `already_held`, `skipped`).
    pub pulled_versions: Counter<u64>,
    /// `sync_pull_apply_duration_seconds`: time store-svc took per page.
    pub apply_seconds: Histogram<f64>,
    /// `sync_conflict_policy_mismatch`: 1 while this site's configured rule
    /// differs from the one the cloud announces (the site follows the cloud).
    pub policy_mismatch: Gauge<u64>,
    /// `sync_batch_size`: versions the next lease asks for (adapted to the
    /// link, at most `--sync-batch-size`).
    pub batch_size: Gauge<u64>,
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
            pull_attempts: meter
                .u64_counter("sync_pull_attempts")
                .with_description("Change-feed pages asked of the cloud")
                .build(),
            pull_failures: meter
                .u64_counter("sync_pull_failures")
                .with_description("Pulls stopped by a cloud or store failure (retried)")
                .build(),
            pulled_versions: meter
                .u64_counter("sync_pulled_versions")
                .with_description(
                    "Versions from the cloud's change feed, by what the store did with them",
                )
                .build(),
            apply_seconds: meter
                .f64_histogram("sync_pull_apply_duration")
                .with_unit("s")
                .with_description("Time store-svc took to apply one page of the change feed")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .build(),
            policy_mismatch: meter
                .u64_gauge("sync_conflict_policy_mismatch")
                .with_description(
                    "1 while the site's configured conflict policy differs from the one the cloud announces",
                )
                .build(),
            batch_size: meter
                .u64_gauge("sync_batch_size")
                .with_description(
                    "Versions the next lease asks for: --sync-batch-size, halved after slow pushes",
                )
                .build(),
        }
    }

    /// Counts pulled versions by what the store did with them.
    pub fn pulled(&self, result: &'static str, count: u64) {
        if count > 0 {
            self.pulled_versions
                .add(count, &[KeyValue::new("result", result)]);
        }
    }

    /// Records whether the configured conflict policy disagrees with the
    /// cloud's.
    pub fn set_policy_mismatch(&self, mismatch: bool) {
        self.policy_mismatch.record(u64::from(mismatch), &[]);
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
