//! Store-only drain: the work store-svc does per version while a backlog
//! drains, without gRPC, sync-svc or a cloud. Each cycle is what a sync
//! worker asks for: a lease of `--batch` versions (`--newest-share` percent
//! of them the newest), then a completion that acknowledges them all. It
//! separates the store's share of the drain from the push's (BENCHMARKS.md).
//!
//! ```sh
//! cargo run --release -p store-svc --example drain_bench -- \
//!     [--backlog N] [--batch N] [--newest-share P] [postgres://…]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use store_svc::StoreConfig;
use store_svc::db::Database;
use store_svc::hlc::{SystemClock, WallClock};
use store_svc::lease::{LeaseRequest, Leases};
use store_svc::model::NewReading;
use store_svc::outbox::Completion;

mod common;
use common::{SETUP_GROUP, sample_readings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |flag: &str, default: usize| -> anyhow::Result<usize> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map_or(Ok(default), |v| {
                v.parse().context(format!("{flag} must be a number"))
            })
    };
    let backlog = number("--backlog", 300_000)?.max(1);
    let batch = number("--batch", 2_000)?.clamp(1, 10_000);
    let newest_share = u32::try_from(number("--newest-share", 10)?.min(100))?;
    let server = args.iter().find(|a| a.starts_with("postgres")).cloned();

    let dir = tempfile::tempdir()?;
    let fresh = match &server {
        Some(server) => Some(edge_testkit::create_postgres_database(server, "drain_bench").await?),
        None => None,
    };
    let mut store_config = StoreConfig::new(dir.path().to_path_buf());
    store_config.database_url = fresh.as_ref().map(|(url, _)| url.clone());
    store_config.site_id = Some("bench".into());
    let config = store_config.db_config();
    let clock = Arc::new(SystemClock);
    let db = Database::open(&config, clock.clone()).await?;

    let mut appended = 0;
    while appended < backlog {
        let now = clock.now_us();
        let group = sample_readings(appended, backlog.min(appended + SETUP_GROUP), now);
        let refs: Vec<&NewReading> = group.iter().collect();
        db.append(&refs).await?;
        appended += group.len();
    }

    // What the books cost over this backlog: sync-svc and the gauges ask
    // for them every few seconds.
    let t = Instant::now();
    db.stats().await?;
    let stats_ms = t.elapsed().as_secs_f64() * 1_000.0;

    let leases = Leases::default();
    let request = LeaseRequest {
        max_versions: batch,
        newest_share_percent: newest_share,
        duration: Duration::from_secs(60),
    };
    let (mut drained, mut cycles) = (0usize, 0usize);
    let (mut leasing, mut completing) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    loop {
        let t = Instant::now();
        let leased = leases.lease(&db, request, clock.now_us()).await?;
        leasing += t.elapsed();
        if leased.entries.is_empty() {
            break;
        }
        let completion = Completion {
            synced: leased.entries.iter().map(|e| e.version_id).collect(),
            stuck_after_attempts: 10,
            ..Completion::default()
        };
        let t = Instant::now();
        db.complete(&completion).await?;
        completing += t.elapsed();
        leases
            .release(&leased.lease_id, &completion.version_ids())
            .await;
        drained += leased.entries.len();
        cycles += 1;
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(
        drained == backlog,
        "drained {drained} versions of a backlog of {backlog}"
    );
    let per_cycle = |d: Duration| d.as_secs_f64() * 1_000.0 / cycles.max(1) as f64;
    println!(
        "{} backlog {backlog}, batches of {batch} ({newest_share} % newest): \
         {:.0} versions/s; per batch {:.2} ms leasing, {:.2} ms completing; \
         stats over the whole backlog {stats_ms:.1} ms",
        db.backend(),
        drained as f64 / elapsed.as_secs_f64(),
        per_cycle(leasing),
        per_cycle(completing),
    );
    db.close().await;
    if let (Some(server), Some((_, name))) = (&server, &fresh) {
        edge_testkit::drop_postgres_database(server, name).await?;
    }
    Ok(())
}
