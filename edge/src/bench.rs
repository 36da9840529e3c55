//! `edge bench`: the ingest benchmark matrix.
//!
//! For each backend (SQLite; PostgreSQL when a server is given) and each id
//! scheme (UUIDv7, UUIDv4), starts a fresh `edge up` as a child process on a
//! new data directory or database, with durable settings, and drives it with
//! the load generator from this process. Reports readings/s, latency per call
//! (per batch for streams) and the child's RSS: idle after start, and peak
//! (VmHWM) after each scenario. Prints a Markdown table; never fails for being
//! slow.

use anyhow::Context as _;

use crate::cli::{BenchArgs, BenchSuite, IdKind, LoadArgs, Mode};
use crate::load;

struct Scenario {
    name: &'static str,
    mode: Mode,
    batch: usize,
    concurrency: usize,
    connections: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "unary 1 reading, concurrency 1",
        mode: Mode::Unary,
        batch: 1,
        concurrency: 1,
        connections: 1,
    },
    Scenario {
        name: "unary 1 reading, concurrency 64",
        mode: Mode::Unary,
        batch: 1,
        concurrency: 64,
        connections: 4,
    },
    Scenario {
        name: "unary 100 readings, concurrency 16",
        mode: Mode::Unary,
        batch: 100,
        concurrency: 16,
        connections: 4,
    },
    Scenario {
        name: "stream 500 readings/batch, 4 streams",
        mode: Mode::Stream,
        batch: 500,
        concurrency: 4,
        connections: 4,
    },
];

impl Scenario {
    /// The load of this scenario with `ids`, for `duration`, as fast as the
    /// site acknowledges.
    fn load(&self, ids: IdKind, duration: std::time::Duration) -> LoadArgs {
        LoadArgs {
            mode: self.mode,
            batch: self.batch,
            concurrency: self.concurrency,
            connections: self.connections,
            in_flight: 4,
            ids,
            sensors: 1000,
            duration,
            rate: 0.0,
        }
    }
}

/// A running `edge up` child on a fresh data directory or database.
struct Site {
    process: edge_testkit::EdgeUp,
    _dir: tempfile::TempDir,
    postgres: Option<BenchDatabase>,
}

/// A fresh PostgreSQL database for one benchmark site.
pub(crate) struct BenchDatabase {
    server: String,
    name: String,
    /// Its URL, for `edge up`.
    pub(crate) url: String,
}

impl BenchDatabase {
    /// A new database on `server` (none without a server: SQLite).
    pub(crate) async fn create(server: Option<&str>, prefix: &str) -> anyhow::Result<Option<Self>> {
        let Some(server) = server else {
            return Ok(None);
        };
        let (url, name) = edge_testkit::create_postgres_database(server, prefix).await?;
        Ok(Some(BenchDatabase {
            server: server.to_owned(),
            name,
            url,
        }))
    }

    /// Drops the database; a failure is reported, not fatal.
    pub(crate) async fn drop(&self) {
        if let Err(err) = edge_testkit::drop_postgres_database(&self.server, &self.name).await {
            eprintln!("could not drop benchmark database {}: {err}", self.name);
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

async fn start_site(postgres_server: Option<&str>) -> anyhow::Result<Site> {
    start_site_with(postgres_server, &[]).await
}

async fn start_site_with(postgres_server: Option<&str>, extra: &[String]) -> anyhow::Result<Site> {
    let dir = tempfile::tempdir()?;
    let postgres = BenchDatabase::create(postgres_server, "edge_bench").await?;
    let url = postgres.as_ref().map(|db| db.url.as_str());
    let process = edge_testkit::spawn_edge_up_with(
        &std::env::current_exe()?,
        &dir.path().join("data"),
        url,
        extra,
    )
    .await
    .context("cannot start edge up")?;
    Ok(Site {
        process,
        _dir: dir,
        postgres,
    })
}

impl Site {
    fn pid(&self) -> u32 {
        self.process.child.id().unwrap_or(0)
    }

    async fn stop(mut self) {
        let _ = self.process.child.kill().await;
        if let Some(db) = &self.postgres {
            db.drop().await;
        }
    }
}

/// Runs the chosen suite and prints its table.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.suite {
        BenchSuite::Ingest => ingest_matrix(args).await,
        BenchSuite::Sync => crate::bench_sync::run(&args).await,
        BenchSuite::Security => security_matrix(args).await,
    }
}

/// What TLS and authentication cost: SQLite, UUIDv7, unary at concurrency
/// 64 and streaming, on a site with its defaults (TLS with its own CA, a
/// gateway's token checked on every call) beside the same site started with
/// `--insecure-plaintext` (tokens still checked). The gateway's token has no
/// rate limit of its own, so the numbers are the transport's, not a limit's.
async fn security_matrix(args: BenchArgs) -> anyhow::Result<()> {
    println!("| transport | scenario | readings/s | calls/s | p50 ms | p99 ms | failed |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let plaintext = ["--insecure-plaintext".to_owned()];
    // Interleaved, twice, so drift on a shared machine shows.
    for round in 0..2 {
        for (transport, extra) in [
            ("TLS + token", &[][..]),
            ("plaintext + token", &plaintext[..]),
        ] {
            let site = start_site_with(None, extra).await?;
            let credentials = gateway_credentials(&site.process).await?;
            for s in SCENARIOS
                .iter()
                .filter(|s| s.concurrency == 64 || s.mode == Mode::Stream)
            {
                let spec = s.load(IdKind::V7, args.duration);
                let r = load::run(&site.process.ingest_url, &credentials, &spec).await?;
                println!(
                    "| {transport} (run {}) | {} | {:.0} | {:.0} | {:.2} | {:.2} | {} |",
                    round + 1,
                    s.name,
                    r.readings_per_sec(),
                    r.calls_per_sec(),
                    r.latency_ms(0.5),
                    r.latency_ms(0.99),
                    r.errors,
                );
            }
            site.stop().await;
        }
    }
    Ok(())
}

/// A gateway's credentials on `site`: an `ingest` token without a rate
/// limit, made by the operator.
async fn gateway_credentials(
    site: &edge_testkit::EdgeUp,
) -> anyhow::Result<edge_runtime::client::Credentials> {
    use edge_proto::v1::tokens_service_client::TokensServiceClient;
    let mut tokens = TokensServiceClient::new(site.channel(&site.store_url).await);
    let created = tokens
        .create_token(edge_proto::v1::CreateTokenRequest {
            name: "bench-gateway".into(),
            scopes: vec!["ingest".into()],
            calls_per_second: Some(0),
            readings_per_second: Some(0),
        })
        .await?
        .into_inner();
    Ok(edge_runtime::client::Credentials {
        tls: site.credentials.tls.clone(),
        token: Some(created.token),
    })
}

/// Runs the ingest matrix and prints the table.
async fn ingest_matrix(args: BenchArgs) -> anyhow::Result<()> {
    let mut backends: Vec<(&str, Option<&str>)> = vec![("sqlite", None)];
    match args.postgres_url.as_deref() {
        Some(url) => backends.push(("postgres", Some(url))),
        None => eprintln!("no --postgres-url: PostgreSQL runs skipped"),
    }
    println!(
        "| backend | ids | scenario | readings/s | calls/s | p50 ms | p99 ms | failed | peak RSS MiB |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    let mut idle = Vec::new();
    for (backend, server) in backends {
        for ids in [IdKind::V7, IdKind::V4] {
            let id_name = if ids == IdKind::V7 { "v7" } else { "v4" };
            let site = start_site(server).await?;
            idle.push(format!(
                "{backend}/{id_name}: {} MiB",
                mib(proc_status_kib(site.pid(), "VmRSS:"))
            ));
            for s in SCENARIOS {
                if let Some(only) = &args.only
                    && !s.name.contains(only.as_str())
                {
                    continue;
                }
                let spec = s.load(ids, args.duration);
                let r =
                    load::run(&site.process.ingest_url, &site.process.credentials, &spec).await?;
                println!(
                    "| {backend} | {id_name} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {} |",
                    s.name,
                    r.readings_per_sec(),
                    r.calls_per_sec(),
                    r.latency_ms(0.5),
                    r.latency_ms(0.99),
                    r.errors,
                    mib(proc_status_kib(site.pid(), "VmHWM:")),
                );
            }
            site.stop().await;
        }
    }
    println!();
    println!(
        "`edge up` RSS right after start (idle): {}",
        idle.join(", ")
    );
    Ok(())
}
