//! P1 when the storage fails under a running site, with the real binary and
//! gateways that keep their batches until acknowledged:
//! - the disk holding the database is filled by another file until commits
//!   fail (or the site refuses first), then freed: ingest comes back by
//!   itself, and every reading acknowledged before and after is there,
//!   through a SIGKILL and restart, with seqs gap-free;
//! - the same with PostgreSQL's tablespace on a small file system;
//! - PostgreSQL restarted (cleanly, and as a crash) while ingest runs.
//!
//! Tests that fill, stop or restart PostgreSQL run a server of their own.

mod common;

use std::path::Path;
use std::time::Duration;

use common::gateways::{Books, Fleet};
use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_testkit::StoreClients;
use edge_testkit::{
    EdgeUp, PostgresServer, StopMode, TestDatabase, Tmpfs, eventually, spawn_edge_up_with_env,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::Code;

const MIB: u64 = 1 << 20;
/// How long a site may take to refuse, or to come back.
const PATIENCE: Duration = Duration::from_secs(90);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_edge"))
}

async fn edge_up(data_dir: &Path, database_url: Option<&str>, env: &[(&str, &str)]) -> EdgeUp {
    spawn_edge_up_with_env(exe(), data_dir, database_url, &[], env)
        .await
        .expect("edge up starts")
}

fn sigkill(site: &mut EdgeUp) -> Pid {
    let pid = Pid::from_raw(site.child.id().expect("pid") as i32);
    kill(pid, Signal::SIGKILL).expect("SIGKILL");
    pid
}

/// A metric's value summed over the samples whose labels include `labels`.
async fn metric(site: &EdgeUp, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = edge_testkit::scrape(&site.metrics_addr)
        .await
        .expect("scrape /metrics");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Stops the fleet, bounded: gateways finish once their batch in hand is
/// acknowledged, which needs a site that works again.
async fn stop(fleet: Fleet) -> Books {
    tokio::time::timeout(PATIENCE, fleet.stop())
        .await
        .expect("every gateway's last batch was acknowledged")
}

/// Every reading the gateways were told was stored is stored under the seq
/// they were told, and the site's seqs run 1..=N without a gap.
async fn check_books(site: &EdgeUp, books: &Books) {
    let mut store = StoreClients::of_site(site).await;
    let stored = common::query_all(&mut store).await;
    let by_id: std::collections::HashMap<&str, u64> =
        stored.iter().map(|r| (r.id.as_str(), r.seq)).collect();
    let missing: Vec<(&String, &u64)> = books
        .acked
        .iter()
        .filter(|(id, seq)| by_id.get(id.as_str()) != Some(*seq))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged readings are missing or under another seq, e.g. {:?}",
        missing.len(),
        books.acked.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let mut seqs: Vec<u64> = stored.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert!(seqs == expected, "the seqs have a gap or a repeat");
    let stats = store
        .readings
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(
        stats.last_seq,
        seqs.len() as u64,
        "last seq = readings held"
    );
}

/// Fills the disk under a running site until it refuses, frees it, and
/// checks that nothing acknowledged was lost, before and after a SIGKILL.
/// `fill` fills the disk (returning the filler's path); the site runs on
/// `data_dir` and, for PostgreSQL, `database_url`.
async fn fill_free_and_check(
    data_dir: &Path,
    database_url: Option<&str>,
    env: &[(&str, &str)],
    fill: impl Fn() -> std::path::PathBuf + Send + 'static,
) -> (Books, f64) {
    let mut site = edge_up(data_dir, database_url, env).await;
    let ingest = IngestServiceClient::new(site.channel(&site.ingest_url).await);
    let fleet = Fleet::start(ingest.clone(), 4, 100);
    eventually(
        PATIENCE,
        "readings acknowledged before the disk fills",
        || {
            let acked = fleet.acked();
            async move { (acked >= 3_000).then_some(()) }
        },
    )
    .await;

    let filler = tokio::task::spawn_blocking(fill).await.expect("filler");
    let refused_at_full = eventually(PATIENCE, "the site refuses for lack of room", || {
        let refused = fleet.refused_with(Code::ResourceExhausted);
        async move { (refused >= 20).then_some(refused) }
    })
    .await;
    assert!(refused_at_full >= 20);
    std::fs::remove_file(&filler).expect("free the disk");
    let acked_when_freed = fleet.acked();
    eventually(PATIENCE, "ingest resumes by itself", || {
        let acked = fleet.acked();
        async move { (acked >= acked_when_freed + 3_000).then_some(()) }
    })
    .await;
    let books = stop(fleet).await;
    let message = books
        .messages
        .get(&Code::ResourceExhausted)
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("full"),
        "the refusal says the storage is full: {message}"
    );
    check_books(&site, &books).await;
    let refused_seconds = metric(&site, "storage_refused_seconds_total", &[]).await;
    assert!(refused_seconds > 0.0, "the refusal period is counted");
    let commit_failures = metric(
        &site,
        "store_write_failures_total",
        &[("op", "append"), ("cause", "storage_full")],
    )
    .await;

    // The power goes; everything acknowledged must still be there.
    sigkill(&mut site);
    site.child.wait().await.expect("reaped");
    let site = edge_up(data_dir, database_url, env).await;
    check_books(&site, &books).await;
    let mut ingest = IngestServiceClient::new(site.channel(&site.ingest_url).await);
    let reply = ingest
        .ingest(pb::IngestRequest {
            readings: vec![common::reading("after-restart", 21.0)],
        })
        .await
        .expect("ingest after the restart")
        .into_inner();
    let max_seq = books.acked.values().max().copied().unwrap_or(0);
    assert_eq!(
        reply.results[0].seq,
        max_seq + 1,
        "the seq continues without a gap"
    );
    (books, commit_failures)
}

async fn sqlite_on_a_full_disk(reserve: &str, check_interval: Option<&str>) -> Option<f64> {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("sqlite");
    // Room for the database and the WAL the budget keeps in hand (64 MiB).
    let tmpfs = Tmpfs::mount(&db.data_dir, 256 * MIB, None).expect("tmpfs")?;
    let mut env = vec![("EDGE_STORAGE_RESERVE", reserve)];
    if let Some(interval) = check_interval {
        env.push(("EDGE_STORAGE_CHECK_INTERVAL", interval));
    }
    let filler = tmpfs.dir().join("filler");
    let (books, commit_failures) = fill_free_and_check(&db.data_dir, None, &env, move || {
        edge_testkit::tmpfs::fill(&filler).expect("fill").0
    })
    .await;
    eprintln!(
        "acknowledged {} readings; refusals {:?}; commits failed for a full disk: {commit_failures}",
        books.acked.len(),
        books.refusals
    );
    drop(tmpfs);
    Some(commit_failures)
}

/// The default flags (a 10 % reserve, the budget measured every second):
/// whichever comes first, the budget's measurement or a failing commit,
/// refuses; nothing is lost either way.
#[tokio::test]
async fn a_full_disk_with_the_default_flags_loses_nothing_on_sqlite() {
    sqlite_on_a_full_disk("10%", None).await;
}

/// No reserve, and the budget not measuring on its own: only a failing
/// commit can notice the full disk, which this makes certain.
#[tokio::test]
async fn a_commit_that_fails_for_a_full_disk_loses_nothing_on_sqlite() {
    if let Some(commit_failures) = sqlite_on_a_full_disk("0", Some("1h")).await {
        assert!(
            commit_failures >= 1.0,
            "a commit failed for the full disk (store_write_failures_total)"
        );
    }
}

/// PostgreSQL with the site's database in a tablespace on a small file
/// system, filled by another file: the server answers "could not extend
/// file" (disk full) while its WAL, elsewhere, keeps working.
#[tokio::test]
async fn a_full_tablespace_loses_nothing_on_postgres() {
    let Some(server) = PostgresServer::start().expect("a PostgreSQL server of our own") else {
        return;
    };
    let space = server.dir("small").expect("tablespace directory");
    let Some(tmpfs) = Tmpfs::mount(&space, 96 * MIB, server.owner()).expect("tmpfs") else {
        return;
    };
    server
        .execute(&format!(
            "CREATE TABLESPACE small LOCATION '{}'",
            space.display()
        ))
        .await
        .expect("a tablespace on the small file system");
    server
        .execute("CREATE DATABASE site TABLESPACE small")
        .await
        .expect("a database on the small tablespace");
    let data_dir = tempfile::tempdir().expect("data dir");
    let filler = tmpfs.dir().join("filler");
    let (books, commit_failures) =
        fill_free_and_check(data_dir.path(), Some(&server.url("site")), &[], move || {
            edge_testkit::tmpfs::fill(&filler).expect("fill").0
        })
        .await;
    eprintln!(
        "acknowledged {} readings; refusals {:?}",
        books.acked.len(),
        books.refusals
    );
    assert!(
        commit_failures >= 1.0,
        "PostgreSQL refused writes for the full disk: {}",
        server.log()
    );
    drop(tmpfs);
}

/// PostgreSQL restarted under a running site, once cleanly and once as a
/// crash: calls in flight are refused (never answered STORED unless
/// committed), ingest comes back by itself, nothing acknowledged is lost.
#[tokio::test]
async fn postgres_restarts_under_ingest_lose_nothing() {
    let Some(mut server) = PostgresServer::start().expect("a PostgreSQL server of our own") else {
        return;
    };
    server
        .execute("CREATE DATABASE site")
        .await
        .expect("create the site database");
    let data_dir = tempfile::tempdir().expect("data dir");
    let url = server.url("site");
    let site = edge_up(data_dir.path(), Some(&url), &[]).await;
    let ingest = IngestServiceClient::new(site.channel(&site.ingest_url).await);
    let fleet = Fleet::start(ingest, 4, 100);
    for mode in [StopMode::Fast, StopMode::Immediate] {
        let before = fleet.acked();
        eventually(PATIENCE, "ingest runs", || {
            let acked = fleet.acked();
            async move { (acked >= before + 2_000).then_some(()) }
        })
        .await;
        let refused_before = fleet.refused();
        server.stop(mode).expect("stop the server");
        eventually(
            PATIENCE,
            "calls are refused while the server is down",
            || {
                let refused = fleet.refused();
                async move { (refused > refused_before).then_some(()) }
            },
        )
        .await;
        server.start_again().expect("start the server again");
    }
    let before = fleet.acked();
    eventually(PATIENCE, "ingest resumes by itself", || {
        let acked = fleet.acked();
        async move { (acked >= before + 2_000).then_some(()) }
    })
    .await;
    let books = stop(fleet).await;
    eprintln!(
        "acknowledged {} readings; refusals {:?}",
        books.acked.len(),
        books.refusals
    );
    assert_eq!(
        books.refusals.get(&Code::Internal),
        None,
        "a restarting database is UNAVAILABLE (retry), not INTERNAL: {:?}",
        books.messages
    );
    check_books(&site, &books).await;
}
