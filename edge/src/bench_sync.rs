//! `edge bench --suite sync`: store and forward under load.
//!
//! Starts `edge cloud` and `edge up` as child processes on fresh directories
//! (SQLite, durable), on loopback, and measures:
//!
//! 1. ingest alone (the cloud dark, so nothing drains) while a backlog of
//!    `--backlog` readings builds up;
//! 2. the same ingest load while the backlog drains (the cloud back): ingest
//!    readings/s and p99, and how much drained meanwhile;
//! 3. the drain alone: the rest of the backlog, readings/s until the outbox
//!    is empty;
//! 4. ingest latency (unary, one reading, 64 callers) with no cloud
//!    configured, beside a cloud that is a black hole with a push hanging.
//!
//! The reference cloud shares the machine's CPU with the site, as loopback
//! does; `--cloud-nice 19` runs it at the lowest priority instead, to let it
//! stand in for a remote machine.
//!
//! Prints a Markdown table; never fails for being slow.

use crate::bench::BenchDatabase;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_cloud::{AdminClient, FaultMode, Faults};
use edge_proto::v1 as pb;
use edge_proto::v1::readings_service_client::ReadingsServiceClient;
use edge_runtime::client::AuthedChannel;
use edge_testkit::{EdgeCloud, EdgeUp};

use crate::cli::{BenchArgs, IdKind, LoadArgs, Mode};
use crate::load::{self, Report};

const TOKEN: &str = "bench-token";

fn stream_load(duration: Duration) -> LoadArgs {
    LoadArgs {
        mode: Mode::Stream,
        batch: 500,
        concurrency: 4,
        connections: 4,
        in_flight: 4,
        ids: IdKind::V7,
        sensors: 1000,
        duration,
        rate: 0.0,
    }
}

fn latency_load(duration: Duration) -> LoadArgs {
    LoadArgs {
        mode: Mode::Unary,
        batch: 1,
        concurrency: 64,
        connections: 4,
        ..stream_load(duration)
    }
}

async fn store_client(site: &EdgeUp) -> anyhow::Result<ReadingsServiceClient<AuthedChannel>> {
    Ok(ReadingsServiceClient::new(
        site.channel(&site.store_url).await,
    ))
}

async fn stats(
    store: &ReadingsServiceClient<AuthedChannel>,
) -> anyhow::Result<pb::GetStatsResponse> {
    Ok(store
        .clone()
        .get_stats(pb::GetStatsRequest {})
        .await?
        .into_inner())
}

/// The site's unsynced versions, asked again until it answers (a database
/// restarted by `--before-drain` fails calls for a moment), for at most a
/// minute.
async fn unsynced_once_answering(
    store: &ReadingsServiceClient<AuthedChannel>,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match stats(store).await {
            Ok(stats) => return Ok(stats.unsynced_versions),
            Err(err) if Instant::now() < deadline => {
                eprintln!("stats not answered yet: {err:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err.context("the site stopped answering stats")),
        }
    }
}

async fn set_mode(admin: &AdminClient, mode: FaultMode) -> anyhow::Result<()> {
    admin
        .set_faults(&Faults {
            mode,
            ..Faults::normal()
        })
        .await?;
    Ok(())
}

struct Rig {
    cloud: EdgeCloud,
    admin: AdminClient,
    site: EdgeUp,
    /// The site's PostgreSQL database, dropped by [`Rig::stop`].
    postgres: Option<BenchDatabase>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Stops the site and the cloud, and drops the site's database.
    async fn stop(mut self) {
        let _ = self.site.child.kill().await;
        let _ = self.cloud.child.kill().await;
        if let Some(db) = &self.postgres {
            db.drop().await;
        }
    }
}

/// A site (on a fresh database of `postgres_server` when given, else
/// SQLite) and a reference cloud, the site pointed at the cloud when
/// `cloud_url`.
async fn start_rig(
    cloud_url: bool,
    cloud_nice: i32,
    postgres_server: Option<&str>,
) -> anyhow::Result<Rig> {
    let exe = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let cloud =
        edge_testkit::spawn_edge_cloud(&exe, &dir.path().join("cloud"), "127.0.0.1:0", TOKEN)
            .await
            .context("cannot start edge cloud")?;
    if let Some(pid) = cloud.child.id() {
        lower_priority(pid, cloud_nice);
    }
    let admin: AdminClient = cloud.admin()?;
    let mut args = vec![
        "--probe-interval".to_owned(),
        "200ms".to_owned(),
        "--probe-successes".to_owned(),
        "1".to_owned(),
    ];
    if cloud_url {
        args.extend([
            "--cloud-url".to_owned(),
            cloud.url.clone(),
            "--cloud-token".to_owned(),
            edge_testkit::site_token(TOKEN, edge_testkit::TEST_SITE_ID),
            // The cloud knows this site's token (spawn_edge_cloud).
            "--site-id".to_owned(),
            edge_testkit::TEST_SITE_ID.to_owned(),
        ]);
    }
    let postgres = BenchDatabase::create(postgres_server, "edge_bench_sync").await?;
    let url = postgres.as_ref().map(|db| db.url.as_str());
    let site = edge_testkit::spawn_edge_up_with(&exe, &dir.path().join("site"), url, &args)
        .await
        .context("cannot start edge up")?;
    Ok(Rig {
        cloud,
        admin,
        site,
        postgres,
        _dir: dir,
    })
}

/// Sets the nice value of every thread of process `pid` (on Linux a nice
/// value is per thread; threads started later inherit their creator's). The
/// reference cloud stands in for a remote machine: at nice 19 its work runs
/// only on CPU the site leaves, as it would if it ran elsewhere.
fn lower_priority(pid: u32, nice: i32) {
    if nice == 0 {
        return;
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().parse::<i32>().ok();
        if let Some(tid) = tid.and_then(rustix::process::Pid::from_raw)
            && let Err(err) = rustix::process::setpriority_process(Some(tid), nice)
        {
            eprintln!("cannot renice the cloud's thread {tid:?}: {err}");
        }
    }
}

fn row(name: &str, r: &Report, note: &str) {
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {note} |",
        r.readings_per_sec(),
        r.latency_ms(0.5),
        r.latency_ms(0.99),
    );
}

/// Runs the sync suite and prints its table.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let duration = args.duration;
    println!("| phase | readings/s | p50 ms | p99 ms | notes |");
    println!("|---|---:|---:|---:|---|");

    // 1–3: backlog, ingest alone and while draining, drain alone, on
    // SQLite and then, with `--postgres-url`, on PostgreSQL.
    let servers = std::iter::once(None).chain(args.postgres_url.as_deref().map(Some));
    for server in servers {
        drain_phases(args, server).await?;
    }

    // 4: ingest latency with no cloud, and beside a black hole.
    let rig = start_rig(false, args.cloud_nice, None).await?;
    let none = load::run(
        &rig.site.ingest_url,
        &rig.site.credentials,
        &latency_load(duration),
    )
    .await?;
    row("unary c64, no cloud configured", &none, "");
    drop(rig);

    let rig = start_rig(true, args.cloud_nice, None).await?;
    let store = store_client(&rig.site).await?;
    let mut sync = edge_proto::v1::sync_service_client::SyncServiceClient::new(
        rig.site.channel(&rig.site.sync_url).await,
    );
    while sync
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner()
        .status
        .is_none_or(|s| s.state != pb::SyncLinkState::Idle as i32)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    set_mode(&rig.admin, FaultMode::BlackHole).await?;
    let hung = load::run(
        &rig.site.ingest_url,
        &rig.site.credentials,
        &latency_load(duration),
    )
    .await?;
    let s = stats(&store).await?;
    row(
        "unary c64, cloud a black hole",
        &hung,
        &format!(
            "{} versions unsynced, {} synced: the push hangs, ingest does not",
            s.unsynced_versions, s.synced_versions
        ),
    );
    drop(rig.cloud);
    Ok(())
}

/// Phases 1–3 on one site: a backlog built with the cloud refusing, ingest
/// alone, ingest beside the drain, then the drain alone. Rows name the
/// backend.
async fn drain_phases(args: &BenchArgs, postgres_server: Option<&str>) -> anyhow::Result<()> {
    let duration = args.duration;
    let backend = if postgres_server.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let rig = start_rig(true, args.cloud_nice, postgres_server).await?;
    set_mode(&rig.admin, FaultMode::Refuse).await?;
    let store = store_client(&rig.site).await?;
    while stats(&store).await?.unsynced_versions < args.backlog {
        load::run(
            &rig.site.ingest_url,
            &rig.site.credentials,
            &stream_load(Duration::from_secs(1)),
        )
        .await?;
    }
    let alone = load::run(
        &rig.site.ingest_url,
        &rig.site.credentials,
        &stream_load(duration),
    )
    .await?;
    let before = stats(&store).await?;
    row(
        &format!("ingest alone (cloud dark), {backend}"),
        &alone,
        &format!("backlog {} versions", before.unsynced_versions),
    );

    set_mode(&rig.admin, FaultMode::Normal).await?;
    let started = Instant::now();
    // Wait for the drain to be under way before measuring beside it.
    while stats(&store).await?.synced_versions == 0 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the drain never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let synced_at_start = stats(&store).await?.synced_versions;
    let beside = load::run(
        &rig.site.ingest_url,
        &rig.site.credentials,
        &stream_load(duration),
    )
    .await?;
    let after = stats(&store).await?;
    let drained_beside = after.synced_versions - synced_at_start;
    row(
        &format!("ingest while draining, {backend}"),
        &beside,
        &format!(
            "{:.0} % of alone; {} versions drained meanwhile ({:.0}/s)",
            100.0 * beside.readings_per_sec() / alone.readings_per_sec().max(1.0),
            drained_beside,
            drained_beside as f64 / beside.elapsed.as_secs_f64()
        ),
    );

    let mut rest = after.unsynced_versions;
    let mut phase = format!("drain alone, {backend}");
    if let Some(command) = &args.before_drain {
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status()
            .await
            .with_context(|| format!("cannot run `{command}`"))?;
        anyhow::ensure!(status.success(), "`{command}` failed: {status}");
        phase = format!("{phase}, after `{command}`");
        // What is left once the site answers again (pushes kept draining
        // while the command ran).
        rest = unsynced_once_answering(&store).await?;
    }
    let started = Instant::now();
    // Stats count whole tables: asked for ten times a second, they took a
    // good share of the site's CPU from the drain they measure. Once a
    // second costs little and rounds a drain of a minute or more by ~1 %.
    while unsynced_once_answering(&store).await? > 0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let took = started.elapsed();
    let cloud_stats = rig.admin.stats().await?;
    println!(
        "| {phase} | {:.0} | | | {rest} versions in {:.1} s; {} pushes, {} accepted, {} duplicate at the cloud |",
        rest as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        cloud_stats.pushes,
        cloud_stats.versions_accepted,
        cloud_stats.versions_duplicate,
    );
    rig.stop().await;
    Ok(())
}
