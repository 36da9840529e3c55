//! Batch push throughput of the reference cloud, and the cost of a coverage
//! query over everything pushed. A benchmark, not a test: it prints figures
//! and never fails for being slow.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-cloud cargo run --release -p edge-cloud --example push_bench -- \
//!     --versions 1000000 --batch 5000 --concurrency 2
//! ```
//!
//! SQLite in a temporary directory unless `--database-url` names PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use edge_cloud::{AdminClient, CloudApp, CloudArgs};
use edge_cloud_link::contract::{
    Hlc, IDEMPOTENCY_KEY_HEADER, Priority, PushBatch, PushResponse, VersionRecord, VersionStamp,
    batches_path,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Versions to push in all.
    #[arg(long, default_value_t = 500_000)]
    versions: u64,
    /// Versions per batch.
    #[arg(long, default_value_t = 5_000)]
    batch: u64,
    /// Pushes in flight at once.
    #[arg(long, default_value_t = 2)]
    concurrency: u64,
    /// Send bodies gzip-encoded.
    #[arg(long)]
    gzip: bool,
    /// Leave seq 1 out, so coverage has to scan every seq (its worst case).
    #[arg(long)]
    gap_at_start: bool,
    /// PostgreSQL instead of SQLite.
    #[arg(long)]
    database_url: Option<String>,
}

const SITE: &str = "bench-site";
const TOKEN: &str = "bench-token";

fn body(first_seq: u64, count: u64, gzip: bool) -> Vec<u8> {
    let versions = (first_seq..first_seq + count)
        .map(|seq| VersionRecord {
            reading_id: uuid::Uuid::new_v4().to_string(),
            seq,
            origin_site_id: SITE.into(),
            sensor_id: format!("sensor-{}", seq % 200),
            temperature_celsius: 20.0 + (seq % 100) as f64 / 10.0,
            humidity_percent: 50.0,
            measured_at_us: 1_780_000_000_000_000 + seq as i64 * 1_000,
            received_at_us: 1_780_000_000_000_000 + seq as i64 * 1_000 + 5,
            priority: Priority::Normal,
            clock_suspect: false,
            version: VersionStamp {
                hlc: Hlc {
                    physical_ms: 1_780_000_000_000 + seq,
                    logical: 0,
                },
                site_id: SITE.into(),
            },
            quality: Default::default(),
            note: None,
            base: None,
            written_by: None,
        })
        .collect();
    let json = serde_json::to_vec(&PushBatch { versions }).unwrap_or_default();
    if !gzip {
        return json;
    }
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(&json);
    encoder.finish().unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let app = CloudApp::build(
        &CloudArgs::for_test(dir.path().to_path_buf(), args.database_url.clone())
            .with_site_token(SITE, TOKEN),
    )
    .await?;
    let url = format!("http://{}", app.local_addr());
    let admin = AdminClient::from_token_file(
        format!("http://{}", app.admin_addr()),
        app.admin_token_file(),
    )?;
    println!("backend: {}", app.backend());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?;
    let batches = args.versions.div_ceil(args.batch);
    let next_batch = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (http, url, next_batch, accepted) = (
            http.clone(),
            url.clone(),
            next_batch.clone(),
            accepted.clone(),
        );
        let (size, total, gzip) = (args.batch, args.versions, args.gzip);
        let offset = u64::from(args.gap_at_start);
        workers.push(tokio::spawn(async move {
            loop {
                let n = next_batch.fetch_add(1, Ordering::Relaxed);
                if n >= batches {
                    return Ok::<(), String>(());
                }
                let first = n * size + 1 + offset;
                let count = size.min(total - n * size);
                let payload = tokio::task::spawn_blocking(move || body(first, count, gzip))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut request = http
                    .post(format!("{url}{}", batches_path(SITE)))
                    .bearer_auth(TOKEN)
                    .header(IDEMPOTENCY_KEY_HEADER, format!("batch-{n}"))
                    .body(payload);
                if gzip {
                    request = request.header("content-encoding", "gzip");
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("push {n} answered {}", response.status()));
                }
                let bytes = response.bytes().await.map_err(|e| e.to_string())?;
                let answer: PushResponse =
                    serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                accepted.fetch_add(answer.results.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let elapsed = started.elapsed();
    let pushed = accepted.load(Ordering::Relaxed);
    println!(
        "pushed {pushed} versions in {batches} batches of {} ({} in flight{}) in {:.2} s: {:.0} versions/s",
        args.batch,
        args.concurrency,
        if args.gzip { ", gzip" } else { "" },
        elapsed.as_secs_f64(),
        pushed as f64 / elapsed.as_secs_f64()
    );

    for _ in 0..3 {
        let started = Instant::now();
        let coverage = admin.coverage(&url, SITE, TOKEN).await?;
        println!(
            "coverage of {} seqs: {:.0} ms (highest contiguous {}, {} gaps)",
            coverage.held_seqs,
            started.elapsed().as_secs_f64() * 1_000.0,
            coverage.highest_contiguous_seq,
            coverage.gaps.len()
        );
    }
    let stats = admin.stats().await?;
    println!("stats: {stats:?}");
    shutdown.cancel();
    server.await??;
    Ok(())
}
