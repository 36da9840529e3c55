//! Applying pulled changes: versions/s for a page stream of remote versions
//! straight into the database through [`Database::apply_remote`], the call
//! store-svc's `ApplyRemoteVersions` makes (no gRPC, no HTTP). BENCHMARKS.md
//! holds the numbers.
//!
//! The site holds `--versions` readings of its own; `--conflict-percent` of
//! them were amended at the site while the cloud amended every one of them.
//! The cloud's amendments arrive in pages of `--page` versions (the change
//! feed's default page is 1000): each is a new version on top of the
//! reading's first one, so those of the locally amended readings are
//! concurrent with the site's amendment, a conflict resolved by the rule and
//! written to the audit log. A fresh database every run (a temporary
//! PostgreSQL database on the server given, dropped afterwards).
//!
//! ```sh
//! cargo run --release -p store-svc --example apply_bench -- \
//!     [--versions N] [--conflict-percent P] [--page N] [--policy lww|cloud-wins|edge-wins] [postgres://…]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_versioning::{Policy, Stamp};
use store_svc::StoreConfig;
use store_svc::db::Database;
use store_svc::hlc::{Hlc, SystemClock, WallClock};
use store_svc::model::Quality;
use store_svc::model::{NewReading, Priority};
use store_svc::revision::{Amendment, RemoteVersion, Values};

mod common;
use common::{SETUP_GROUP, sample_readings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let number = |flag: &str, default: usize| -> anyhow::Result<usize> {
        value_of(flag).map_or(Ok(default), |v| {
            v.parse().context(format!("{flag} must be a number"))
        })
    };
    let total = number("--versions", 100_000)?.max(1);
    let conflict_percent = number("--conflict-percent", 10)?.min(100);
    let page = number("--page", 1_000)?.clamp(1, 10_000);
    let policy: Policy = value_of("--policy")
        .map_or(Ok(Policy::Lww), |p| p.parse())
        .context("--policy")?;
    let server = args.iter().find(|a| a.starts_with("postgres")).cloned();

    let dir = tempfile::tempdir()?;
    let fresh = match &server {
        Some(server) => Some(edge_testkit::create_postgres_database(server, "apply_bench").await?),
        None => None,
    };
    let mut store_config = StoreConfig::new(dir.path().to_path_buf());
    store_config.database_url = fresh.as_ref().map(|(url, _)| url.clone());
    store_config.site_id = Some("bench".into());
    store_config.db_read_connections = 1;
    let config = store_config.db_config();
    let clock = Arc::new(SystemClock);
    let db = Database::open(&config, clock.clone()).await?;

    // The site's readings, and their first versions.
    let setup = Instant::now();
    let mut readings: Vec<(NewReading, Stamp)> = Vec::with_capacity(total);
    while readings.len() < total {
        let now = clock.now_us();
        let group = sample_readings(readings.len(), total.min(readings.len() + SETUP_GROUP), now);
        let refs: Vec<&NewReading> = group.iter().collect();
        let outcomes = db.append(&refs).await?;
        for (reading, outcome) in group.into_iter().zip(outcomes) {
            let stamp = Stamp::new(outcome.version.hlc, outcome.version.site_id);
            readings.push((reading, stamp));
        }
    }
    // Every tenth (at 10 %) reading amended at the site meanwhile.
    let conflicting = total * conflict_percent / 100;
    let stride = total.checked_div(conflicting).unwrap_or(usize::MAX);
    for (i, (reading, _)) in readings.iter().enumerate() {
        if i % stride == 0 && i / stride < conflicting {
            db.amend(&Amendment {
                reading_id: reading.id.clone(),
                temperature: Some(-1.0),
                humidity: None,
                quality: Some(Quality::Bad),
                note: Some("faulty at the site".into()),
                written_by: "operator".into(),
            })
            .await?;
        }
    }
    let setup = setup.elapsed();

    // The cloud's amendment of every reading, an hour ahead (at the
    // clock-skew bound: the site's clock moves to it, and most are flagged).
    let cloud_ms = Hlc::ms_from_us(clock.now_us()) + 3_600_000;
    let remote: Vec<RemoteVersion> = readings
        .iter()
        .enumerate()
        .map(|(i, (r, first))| RemoteVersion {
            reading_id: r.id.clone(),
            origin_site_id: "bench".into(),
            origin_seq: i as i64 + 1,
            sensor_id: r.sensor_id.clone(),
            measured_at_us: r.measured_at_us,
            received_at_us: r.received_at_us,
            priority: Priority::Normal as i64,
            clock_suspect: false,
            stamp: Stamp::new(
                Hlc {
                    physical_ms: cloud_ms + (i / 1_000) as u64,
                    logical: (i % 1_000) as u16,
                },
                "cloud",
            ),
            base: Some(first.clone()),
            values: Values {
                temperature: r.temperature + 0.5,
                humidity: r.humidity,
                quality: Quality::Suspect,
                note: Some("calibration".into()),
            },
            written_by: Some("site:shore".into()),
        })
        .collect();

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let (mut applied, mut conflicts) = (0u64, 0usize);
    for (n, chunk) in remote.chunks(page).enumerate() {
        let t = Instant::now();
        let outcome = db.apply_remote(chunk, policy, (n + 1) as i64, None).await?;
        slowest = slowest.max(t.elapsed());
        applied += outcome.applied;
        conflicts += outcome.conflicts.len();
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(applied == total as u64, "applied {applied} of {total}");
    anyhow::ensure!(
        conflicts == conflicting,
        "{conflicts} conflicts, expected {conflicting}"
    );
    println!(
        "{total} remote versions ({conflicting} conflicting, {policy}) on {} in pages of {page}: \
         {:.0} versions/s, {:.1} s in all, slowest page {:.0} ms (set-up {:.1} s)",
        db.backend(),
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        slowest.as_secs_f64() * 1_000.0,
        setup.as_secs_f64(),
    );
    db.close().await;
    if let (Some(server), Some((_, name))) = (&server, &fresh) {
        edge_testkit::drop_postgres_database(server, name).await?;
    }
    Ok(())
}
