//! The store's books as Prometheus gauges (DESIGN §6, owner store-svc):
//! `unsynced_readings`, `oldest_unsynced_age_seconds`, `dead_letters`,
//! `stuck_versions`, `storage_bytes`.
//!
//! Gauges are read synchronously at scrape time, but the figures come from
//! counting queries, so a background task refreshes them on an interval and
//! the gauges read the latest result. Counted from the database every time,
//! never kept as counters a restart would reset.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::metrics::Meter;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::Database;
use crate::hlc::WallClock;
use crate::model::Stats;

/// The latest books, shared with the gauge callbacks.
type Latest = Arc<Mutex<Option<Stats>>>;

fn read<T>(latest: &Latest, f: impl FnOnce(&Stats) -> T) -> Option<T> {
    latest.lock().ok()?.as_ref().map(f)
}

fn register(meter: &Meter, latest: &Latest, clock: Arc<dyn WallClock>) {
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
    gauge("storage_bytes", "Bytes in use by the site database", |s| {
        s.database_bytes
    });
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
    clock: Arc<dyn WallClock>,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let latest: Latest = Arc::new(Mutex::new(None));
    register(&edge_runtime::telemetry::meter("store-svc"), &latest, clock);
    tokio::spawn(async move {
        loop {
            match db.stats().await {
                Ok(stats) => {
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
