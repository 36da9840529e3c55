//! Store-only append throughput: readings straight into the database through
//! [`Database::append`], no gRPC, no group-commit queue. Separates what the
//! database costs from what the services around it cost (BENCHMARKS.md).
//!
//! ```sh
//! cargo run --release -p store-svc --example append_bench -- [--v4] [--group N] [--sensors N] [postgres://…]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use store_svc::StoreConfig;
use store_svc::db::Database;
use store_svc::hlc::{SystemClock, WallClock};
use store_svc::model::{NewReading, Priority};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of = |flag: &str, default: usize| -> anyhow::Result<usize> {
        match args.iter().position(|a| a == flag) {
            Some(i) => args
                .get(i + 1)
                .context(format!("{flag} needs a value"))?
                .parse()
                .context(format!("{flag} must be a number")),
            None => Ok(default),
        }
    };
    let v4 = args.iter().any(|a| a == "--v4");
    let group = value_of("--group", 4_000)?;
    let sensors = value_of("--sensors", 1_000)?.max(1);
    let url = args.iter().find(|a| a.starts_with("postgres")).cloned();

    let dir = tempfile::tempdir()?;
    let mut store_config = StoreConfig::new(dir.path().to_path_buf());
    store_config.database_url = url;
    store_config.site_id = Some("bench".into());
    store_config.db_read_connections = 1;
    let config = store_config.db_config();
    let clock = Arc::new(SystemClock);
    let db = Database::open(&config, clock.clone()).await?;

    let deadline = Instant::now() + Duration::from_secs(8);
    let start = Instant::now();
    let (mut total, mut appending) = (0usize, Duration::ZERO);
    while Instant::now() < deadline {
        let now = clock.now_us();
        let readings: Vec<NewReading> = (0..group)
            .map(|i| NewReading {
                id: if v4 {
                    uuid::Uuid::new_v4()
                } else {
                    uuid::Uuid::now_v7()
                }
                .hyphenated()
                .to_string(),
                sensor_id: format!("sensor-{}", (total + i) % sensors),
                temperature: 20.0 + (i % 10) as f64,
                humidity: 50.0,
                measured_at_us: now,
                received_at_us: now,
                priority: Priority::Normal,
                written_by: format!("gateway-{}", i % 8),
            })
            .collect();
        let refs: Vec<&NewReading> = readings.iter().collect();
        let t = Instant::now();
        db.append(&refs).await?;
        appending += t.elapsed();
        total += group;
    }
    println!(
        "{total} readings in groups of {group}, {sensors} sensors, {} ids on {}: \
         {:.0} readings/s overall, {:.0} readings/s inside append",
        if v4 { "v4" } else { "v7" },
        db.backend(),
        total as f64 / start.elapsed().as_secs_f64(),
        total as f64 / appending.as_secs_f64(),
    );
    db.close().await;
    Ok(())
}
