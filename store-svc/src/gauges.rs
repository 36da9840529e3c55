//! The store's books as Prometheus gauges (docs/architecture.md, Metrics;
//! owner store-svc): `unsynced_readings`, `oldest_unsynced_age_seconds`,
//! `dead_letters`, `stuck_versions`, `storage_bytes`,
//! `sensor_index_lag_readings`; the storage budget's
//! `storage_budget_bytes`, `storage_free_disk_bytes`, `storage_reserve_bytes`,
//! `storage_room_bytes`, `storage_full`, `unreported_drops`; the counters
//! `readings_pruned_total` and `readings_dropped_total` (versions, kept in the
//! database) and `storage_refused_seconds_total` (since start-up); the
//! forecasts `backlog_drain_eta_seconds` and `storage_full_eta_seconds` (see
//! [`crate::eta`]).
//!
//! Gauges are read synchronously at scrape time, but the figures come from
//! counting queries, so a background task refreshes them on an interval and
//! the gauges read the latest result. Counted from the database every time,
//! never kept as counters a restart would reset. The storage figures come
//! from the budget's latest measurement (every `--storage-check-interval`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::metrics::Meter;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::Database;
use crate::eta::Forecasts;
use crate::hlc::WallClock;
use crate::model::Stats;
use crate::storage::{Budget, StorageSnapshot};

/// The latest books, shared with the gauge callbacks.
type Latest = Arc<Mutex<Option<Stats>>>;

fn read<T>(latest: &Latest, f: impl FnOnce(&Stats) -> T) -> Option<T> {
    latest.lock().ok()?.as_ref().map(f)
}

fn register(
    meter: &Meter,
    latest: &Latest,
    forecasts: &Arc<Mutex<Forecasts>>,
    budget: &Arc<Budget>,
    clock: Arc<dyn WallClock>,
) {
    let gauge = |name: &'static str, description: &'static str, f: fn(&Stats) -> i64| {
        let latest = latest.clone();
        meter
            .i64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |g| {
                if let Some(value) = read(&latest, f) {
                    g.observe(value, &[]);
                }
            })
            .build();
    };
    gauge(
        "unsynced_readings",
        "Versions in the outbox not yet acknowledged by the cloud (dead letters excluded)",
        |s| s.unsynced_versions,
    );
    gauge(
        "dead_letters",
        "Versions the cloud rejected as permanently invalid",
        |s| s.dead_letters,
    );
    gauge(
        "stuck_versions",
        "Unsynced versions that failed repeatedly (still retried)",
        |s| s.stuck_versions,
    );
    gauge(
        "sensor_index_lag_readings",
        "Readings not yet copied into the by-sensor index, which queries by sensor scan instead \
         (up to --sensor-index-batch; more means the copying fails)",
        |s| s.sensor_index_lag,
    );
    gauge(
        "unreported_drops",
        "Versions dropped by the storage policy that the cloud was not told about yet",
        |s| s.unreported_drops,
    );
    let counter = |name: &'static str, description: &'static str, f: fn(&Stats) -> i64| {
        let latest = latest.clone();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |c| {
                if let Some(value) = read(&latest, f) {
                    c.observe(u64::try_from(value).unwrap_or(0), &[]);
                }
            })
            .build();
    };
    counter(
        "readings_pruned",
        "Synced versions removed by retention or to stay within the storage limits",
        |s| s.pruned_versions,
    );
    counter(
        "readings_dropped",
        "Unsynced versions dropped by the drop-oldest-unsynced storage policy",
        |s| s.dropped_versions,
    );
    let storage =
        |name: &'static str, description: &'static str, f: fn(&StorageSnapshot) -> Option<i64>| {
            let budget = budget.clone();
            meter
                .i64_observable_gauge(name)
                .with_description(description)
                .with_callback(move |g| {
                    let snapshot = budget.snapshot();
                    if let Some(value) = f(&snapshot).filter(|_| snapshot.measured) {
                        g.observe(value, &[]);
                    }
                })
                .build();
        };
    storage(
        "storage_bytes",
        "Bytes in use by the site database (SQLite pages in use; PostgreSQL the site's tables and indexes)",
        |s| Some(s.used_bytes),
    );
    storage(
        "storage_budget_bytes",
        "The configured storage budget",
        |s| s.budget_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
    );
    storage(
        "storage_free_disk_bytes",
        "Free bytes on the data directory's file system",
        |s| {
            s.disk_free_bytes
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
        },
    );
    storage(
        "storage_reserve_bytes",
        "Free disk the site leaves alone",
        |s| Some(i64::try_from(s.reserve_bytes).unwrap_or(i64::MAX)),
    );
    storage(
        "storage_room_bytes",
        "Bytes the site may still grow by before the budget or the reserve stops it",
        |s| Some(s.room_bytes.max(0)),
    );
    storage(
        "storage_full",
        "1 while ingest is refused because the site's storage is full (its budget or reserve, or a full disk)",
        |s| Some(i64::from(s.full)),
    );

    let refusals = budget.clone();
    meter
        .f64_observable_counter("storage_refused")
        .with_unit("s")
        .with_description(
            "Seconds ingest was refused for lack of storage (the budget, the reserve or a full disk) since start-up",
        )
        .with_callback(move |c| c.observe(refusals.refusals().refused_seconds(), &[]))
        .build();

    let forecast =
        |name: &'static str, description: &'static str, f: fn(&Forecasts) -> Option<f64>| {
            let forecasts = forecasts.clone();
            meter
                .f64_observable_gauge(name)
                .with_unit("s")
                .with_description(description)
                .with_callback(move |g| {
                    if let Some(value) = forecasts.lock().ok().and_then(|guard| f(&guard)) {
                        g.observe(value, &[]);
                    }
                })
                .build();
        };
    forecast(
        "backlog_drain_eta",
        "Unsynced versions over the rate they were synced at in the last 5 minutes; +Inf while nothing drains",
        |f| f.drain_eta,
    );
    forecast(
        "storage_full_eta",
        "Room left (budget or free disk above the reserve) over the rate storage grew at in the last 5 minutes; +Inf while it does not grow",
        |f| f.full_eta,
    );

    let latest = latest.clone();
    meter
        .f64_observable_gauge("oldest_unsynced_age_seconds")
        .with_description("Age of the oldest unsynced version; 0 when none")
        .with_callback(move |g| {
            if let Some(oldest) = read(&latest, |s| s.oldest_unsynced_us) {
                let age_us = oldest.map_or(0, |at| (clock.now_us() - at).max(0));
                g.observe(age_us as f64 / 1e6, &[]);
            }
        })
        .build();
}

/// Registers the gauges and refreshes them every `interval` until `stop`.
pub fn spawn(
    db: Arc<Database>,
    budget: Arc<Budget>,
    clock: Arc<dyn WallClock>,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let latest: Latest = Arc::new(Mutex::new(None));
    let forecasts = Arc::new(Mutex::new(Forecasts::default()));
    register(
        &edge_runtime::telemetry::meter("store-svc"),
        &latest,
        &forecasts,
        &budget,
        clock,
    );
    tokio::spawn(async move {
        loop {
            match db.stats().await {
                Ok(stats) => {
                    let storage = budget.snapshot();
                    let limited = storage.measured
                        && (storage.budget_bytes.is_some() || storage.disk_free_bytes.is_some());
                    if let Ok(mut f) = forecasts.lock() {
                        f.update(
                            Instant::now(),
                            stats.synced_versions,
                            stats.unsynced_versions,
                            limited.then_some((storage.used_bytes, storage.room_bytes.max(0))),
                        );
                    }
                    if let Ok(mut slot) = latest.lock() {
                        *slot = Some(stats);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot refresh the store gauges"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}
