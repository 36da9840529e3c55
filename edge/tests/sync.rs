//! Store and forward, end to end: the mesh (store-svc, ingest-svc, sync-svc)
//! and the reference cloud, both real servers on ephemeral ports, with the
//! cloud's faults switched at run time. Every scenario ends by comparing
//! what the site acknowledged with what the cloud holds (P2, P3).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use edge_cloud::{AdminClient, FaultMode, Faults};
use edge_proto::internal::v1 as ipb;
use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_runtime::client::AuthedChannel;
use edge_testkit::StoreClients;
use edge_testkit::{
    TestDatabase, eventually, on_both_backends, spawn_edge_cloud, spawn_edge_up_with,
};
use store_svc::storage::{Policy, Reserve};
use sync_svc::SyncConfig;
use sync_svc::config::CloudApi;

use common::reading;
use common::site::{Site, TOKEN, quick_sync, stats, token_of};

/// Generous: CI machines are slow and shared; conditions usually hold in seconds.
const DEADLINE: Duration = Duration::from_secs(120);

/// The reference cloud in this process.
type Cloud = edge_testkit::InProcessCloud;

/// Ingests `n` readings of `sensor` in batches of up to 5000, four calls at
/// a time; returns the acknowledged ids.
async fn ingest(
    client: &IngestServiceClient<AuthedChannel>,
    n: usize,
    sensor: &str,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let size = left.min(5_000);
            if size == 0 {
                break;
            }
            left -= size;
            let mut client = client.clone();
            let readings: Vec<pb::Reading> = (0..size).map(|_| reading(sensor, 20.0)).collect();
            calls.spawn(async move {
                let reply = client
                    .ingest(pb::IngestRequest { readings })
                    .await
                    .expect("ingest")
                    .into_inner();
                reply.results.into_iter().map(|r| r.id).collect::<Vec<_>>()
            });
        }
        while let Some(batch) = calls.join_next().await {
            ids.extend(batch.expect("ingest call"));
        }
    }
    ids
}

/// Waits until the site's outbox is empty (dead letters aside).
async fn drained(store: &StoreClients) -> pb::GetStatsResponse {
    eventually(DEADLINE, "the outbox to drain", || async {
        let s = stats(store).await;
        (s.unsynced_versions == 0).then_some(s)
    })
    .await
}

/// The cloud (public API at `cloud_url`, admin API through `admin`) holds
/// exactly `acked` for the site, each once, its coverage is contiguous up to
/// the site's last seq, and the books balance.
async fn assert_exactly_once(
    admin: &AdminClient,
    cloud_url: &str,
    site_id: &str,
    acked: &[String],
    site: &pb::GetStatsResponse,
) {
    let held = admin.all_versions(site_id).await.expect("cloud versions");
    let held_ids: Vec<&str> = held.iter().map(|v| v.reading_id.as_str()).collect();
    let distinct: HashSet<&str> = held_ids.iter().copied().collect();
    assert_eq!(distinct.len(), held_ids.len(), "a version is held twice");
    let expected: HashSet<&str> = acked.iter().map(String::as_str).collect();
    let missing = expected.difference(&distinct).count();
    let extra = distinct.difference(&expected).count();
    assert_eq!((missing, extra), (0, 0), "cloud and site disagree");
    let coverage = admin
        .coverage(cloud_url, site_id, &token_of(site_id))
        .await
        .expect("coverage");
    assert_eq!(
        coverage.highest_contiguous_seq, site.last_seq,
        "{coverage:?}"
    );
    assert!(coverage.gaps.is_empty(), "{coverage:?}");
    assert_books_balance(site, &coverage);
}

/// docs/architecture.md, Metrics: the versions the site settled with the cloud
/// (acknowledged, or dead-lettered on the cloud's rejection) equal the
/// distinct versions the cloud holds plus those it rejected.
fn assert_books_balance(
    site: &pb::GetStatsResponse,
    coverage: &edge_cloud_link::contract::Coverage,
) {
    assert_eq!(
        site.synced_versions + site.dead_letters,
        coverage.versions + coverage.rejected_seqs,
        "the books do not balance: site {site:?}, cloud {coverage:?}"
    );
}

async fn a_week_offline_drains_exactly_once(db: &TestDatabase) {
    let cloud = Cloud::start(TOKEN).await;
    cloud.mode(FaultMode::Refuse).await;
    let site = Site::start(db, quick_sync(&cloud.url)).await;
    let acked = ingest(&site.mesh.ingest_client.clone(), 100_000, "hold-1").await;
    assert_eq!(acked.len(), 100_000);
    eventually(DEADLINE, "sync-svc to report offline", || async {
        (site.status().await.state == pb::SyncLinkState::Offline as i32).then_some(())
    })
    .await;
    assert_eq!(
        cloud.admin.stats().await.expect("stats").pushes,
        0,
        "nothing pushed while dark"
    );

    cloud.mode(FaultMode::Normal).await;
    let after = drained(&site.mesh.store_client).await;
    assert_eq!(after.dead_letters, 0);
    assert_exactly_once(&cloud.admin, &cloud.url, &site.site_id, &acked, &after).await;
    site.stop().await;
    cloud.stop().await;
}

async fn a_failing_cloud_only_delays(db: &TestDatabase) {
    let cloud = Cloud::start(TOKEN).await;
    let mut config = quick_sync(&cloud.url);
    config.sync_batch_size = 500;
    config.stuck_after_attempts = 3;
    let site = Site::start(db, config).await;

    // 5xx at 30 %, 429 with Retry-After at 10 %, slow answers, and a link
    // flapping dark/bright every few hundred ms while readings arrive.
    let flaky = Faults {
        latency_ms: 20,
        error_rate: 0.3,
        error_status: 503,
        throttle_rate: 0.1,
        retry_after_seconds: 1,
        ..Faults::normal()
    };
    let mut acked = Vec::new();
    for round in 0..6 {
        let mode = if round % 2 == 0 {
            FaultMode::Normal
        } else {
            FaultMode::Refuse
        };
        cloud
            .faults(Faults {
                mode,
                ..flaky.clone()
            })
            .await;
        acked.extend(ingest(&site.mesh.ingest_client, 2_000, "flap").await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Dark for longer than the stuck threshold's worth of attempts: every
    // push fails with 5xx until versions are flagged stuck.
    cloud
        .faults(Faults {
            error_rate: 1.0,
            error_status: 500,
            ..Faults::normal()
        })
        .await;
    acked.extend(ingest(&site.mesh.ingest_client, 500, "stuck").await);
    eventually(DEADLINE, "versions flagged stuck", || async {
        (site.stats().await.stuck_versions > 0).then_some(())
    })
    .await;
    cloud.mode(FaultMode::Normal).await;
    site.sync_client
        .clone()
        .sync_now(pb::SyncNowRequest {})
        .await
        .expect("sync now");
    let after = drained(&site.mesh.store_client).await;
    assert_eq!(
        after.dead_letters, 0,
        "transient failures never dead-letter"
    );
    assert_exactly_once(&cloud.admin, &cloud.url, &site.site_id, &acked, &after).await;
    let status = site.status().await;
    assert!(!status.last_error.is_empty(), "the failures were reported");
    site.stop().await;
    cloud.stop().await;
}

async fn rejected_versions_are_dead_lettered_reported_and_redriven(db: &TestDatabase) {
    let cloud = Cloud::start(TOKEN).await;
    cloud
        .faults(Faults {
            reject_sensors: vec!["unregistered".into()],
            batch_reject_sensors: vec!["poison".into()],
            ..Faults::normal()
        })
        .await;
    let site = Site::start(db, quick_sync(&cloud.url)).await;
    let mut acked = ingest(&site.mesh.ingest_client, 300, "good").await;
    let rejected = ingest(&site.mesh.ingest_client, 1, "unregistered").await;
    acked.extend(ingest(&site.mesh.ingest_client, 300, "good").await);
    let poison = ingest(&site.mesh.ingest_client, 1, "poison").await;
    acked.extend(ingest(&site.mesh.ingest_client, 300, "good").await);

    let after = drained(&site.mesh.store_client).await;
    assert_eq!(after.dead_letters, 2, "exactly the two bad versions");
    let mut store = site.mesh.store_client.clone();
    let dead: HashSet<String> = store
        .operations
        .list_dead_letters(pb::ListDeadLettersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .dead_letters
        .into_iter()
        .filter_map(|d| d.version.map(|v| v.reading_id))
        .collect();
    assert_eq!(
        dead,
        HashSet::from([rejected[0].clone(), poison[0].clone()])
    );
    let held: HashSet<String> = cloud
        .admin
        .all_versions(&site.site_id)
        .await
        .expect("versions")
        .into_iter()
        .map(|v| v.reading_id)
        .collect();
    assert_eq!(
        held,
        acked.iter().cloned().collect::<HashSet<_>>(),
        "the good ones all arrived"
    );
    // The dead letters reach the cloud's coverage as rejected: no gaps.
    let coverage = eventually(DEADLINE, "dead letters reported to the cloud", || async {
        let c = cloud
            .admin
            .coverage(&cloud.url, &site.site_id, &token_of(&site.site_id))
            .await
            .ok()?;
        (c.rejected_seqs == 2 && c.highest_contiguous_seq == after.last_seq).then_some(c)
    })
    .await;
    assert!(coverage.gaps.is_empty());
    assert_books_balance(&stats(&site.mesh.store_client).await, &coverage);

    // Once the cloud accepts them, a re-drive delivers them.
    cloud.mode(FaultMode::Normal).await;
    let redriven = store
        .operations
        .redrive_dead_letters(pb::RedriveDeadLettersRequest {
            all: true,
            ..Default::default()
        })
        .await
        .expect("redrive")
        .into_inner();
    assert_eq!(redriven.redriven, 2);
    let after = drained(&site.mesh.store_client).await;
    assert_eq!(after.dead_letters, 0);
    acked.extend(rejected);
    acked.extend(poison);
    assert_exactly_once(&cloud.admin, &cloud.url, &site.site_id, &acked, &after).await;
    site.stop().await;
    cloud.stop().await;
}

async fn ingest_never_waits_on_a_black_hole(db: &TestDatabase) {
    let cloud = Cloud::start(TOKEN).await;
    let mut config = quick_sync(&cloud.url);
    config.push_timeout = Duration::from_secs(120);
    config.lease_duration = Duration::from_secs(300);
    config.sync_concurrency = 1;
    let site = Site::start(db, config).await;
    eventually(DEADLINE, "the link to come up", || async {
        (site.status().await.state == pb::SyncLinkState::Idle as i32).then_some(())
    })
    .await;
    cloud.mode(FaultMode::BlackHole).await;
    let first = ingest(&site.mesh.ingest_client, 100, "probe").await;
    // A push is in flight: the readings are leased (nothing is left to lease)
    // and the drain reports itself draining, with no answer yet.
    let mut store = site.mesh.store_client.clone();
    eventually(DEADLINE, "a push in flight", || {
        let mut store = store.clone();
        async move {
            let spare = store
                .sync
                .lease_batch(ipb::LeaseBatchRequest {
                    max_versions: 10,
                    newest_share_percent: 0,
                    lease_duration: None,
                })
                .await
                .ok()?
                .into_inner();
            spare.versions.is_empty().then_some(())
        }
    })
    .await;
    assert_eq!(
        site.status().await.state,
        pb::SyncLinkState::Draining as i32
    );
    // Thousands of ingests complete while that push hangs.
    let mut acked = first;
    for _ in 0..20 {
        let mut client = site.mesh.ingest_client.clone();
        let reply = client
            .ingest(pb::IngestRequest {
                readings: (0..100).map(|_| reading("during", 21.0)).collect(),
            })
            .await
            .expect("ingest while the cloud is a black hole")
            .into_inner();
        assert_eq!(reply.summary.expect("summary").stored, 100);
        acked.extend(reply.results.into_iter().map(|r| r.id));
    }
    assert_eq!(
        site.status().await.synced_since_start,
        0,
        "the push is still unanswered"
    );
    let s = stats(&store).await;
    assert_eq!(s.unsynced_versions, 2_100);
    // The hung push is abandoned at shutdown; nothing was lost.
    let _ = store.readings.get_stats(pb::GetStatsRequest {}).await;
    site.stop().await;
    cloud.stop().await;
}

async fn the_present_arrives_within_a_few_pushes(db: &TestDatabase) {
    let cloud = Cloud::start(TOKEN).await;
    cloud.mode(FaultMode::Refuse).await;
    let mut config = quick_sync(&cloud.url);
    config.sync_batch_size = 500;
    config.sync_concurrency = 1;
    config.sync_newest_share = 10;
    let site = Site::start(db, config).await;
    let backlog = ingest(&site.mesh.ingest_client, 30_000, "backlog").await;
    assert_eq!(backlog.len(), 30_000);
    cloud
        .faults(Faults {
            latency_ms: 50,
            ..Faults::normal()
        })
        .await;
    eventually(DEADLINE, "the drain to start", || async {
        (cloud.admin.stats().await.ok()?.pushes >= 3).then_some(())
    })
    .await;
    let pushes_before = cloud.admin.stats().await.expect("stats").pushes;
    let live = ingest(&site.mesh.ingest_client, 1, "live").await;
    let arrived = eventually(DEADLINE, "the live reading at the cloud", || async {
        let held = cloud.admin.all_versions(&site.site_id).await.ok()?;
        held.into_iter().find(|v| v.reading_id == live[0])
    })
    .await;
    assert!(
        arrived.push <= pushes_before + 3,
        "the live reading waited {} pushes",
        arrived.push - pushes_before
    );
    let held = cloud
        .admin
        .all_versions(&site.site_id)
        .await
        .expect("versions")
        .len();
    assert!(
        held < 30_000,
        "it arrived before the backlog finished ({held} held)"
    );
    site.stop().await;
    cloud.stop().await;
}

async fn compatibility_mode_delivers_everything_at_least_once(db: &TestDatabase) {
    let cloud = Cloud::start(TOKEN).await;
    let mut config = quick_sync(&cloud.url);
    config.cloud_api = CloudApi::Simple;
    config.push_timeout = Duration::from_millis(500);
    let site = Site::start(db, config).await;
    // Answers that come after the client gave up: the cloud stored the
    // reading, the site cannot know. Those retries may duplicate.
    cloud
        .faults(Faults {
            reply_delay_ms: 800,
            ..Faults::normal()
        })
        .await;
    let mut acked = ingest(&site.mesh.ingest_client, 3, "compat").await;
    eventually(DEADLINE, "ambiguous failures", || async {
        (!site.status().await.last_error.is_empty()).then_some(())
    })
    .await;
    cloud.mode(FaultMode::Normal).await;
    acked.extend(ingest(&site.mesh.ingest_client, 200, "compat").await);
    drained(&site.mesh.store_client).await;
    let held = cloud
        .admin
        .simple_readings_all()
        .await
        .expect("simple readings");
    assert!(held.len() >= acked.len(), "everything arrives");
    let metrics = edge_runtime::telemetry::metrics().render();
    let counted: u64 = metrics
        .lines()
        .find(|l| l.starts_with("sync_possible_duplicates_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64);
    let duplicates = (held.len() - acked.len()) as u64;
    assert!(
        duplicates <= counted,
        "{duplicates} duplicates but only {counted} ambiguous retries counted"
    );
    site.stop().await;
    cloud.stop().await;
}

/// A store that cannot record the cloud's answers (its disk full when the
/// completion's transaction needs a page): the drain backs off as for a
/// failed push instead of pushing the same batch again in a loop, and once
/// the store records again every version arrives exactly once.
async fn a_store_that_cannot_record_completions_makes_the_drain_back_off(db: &TestDatabase) {
    use store_svc::db::faults::{Fault, FaultPoint, WriteFaults, WriteOp};
    let cloud = Cloud::start(TOKEN).await;
    let faults = std::sync::Arc::new(WriteFaults::default());
    let full = if db.url.is_some() { "53100" } else { "13" };
    faults.arm(
        WriteOp::Complete,
        FaultPoint::Commit,
        Fault::Error(full),
        1_000,
    );
    let mut config = quick_sync(&cloud.url);
    // Long enough that a loop would show, short enough to end the test.
    config.backoff_initial = Duration::from_secs(2);
    config.backoff_max = Duration::from_secs(2);
    let site = Site::start_with(db, config, {
        let faults = faults.clone();
        move |store| store.write_faults = Some(faults)
    })
    .await;
    let acked = ingest(&site.mesh.ingest_client, 50, "full-disk").await;
    let status = eventually(
        DEADLINE,
        "the drain backs off after a failed completion",
        || async {
            let status = site.status().await;
            (status.state == pb::SyncLinkState::BackingOff as i32
                && status.last_error.contains("store-svc"))
            .then_some(status)
        },
    )
    .await;
    assert!(status.next_attempt_at.is_some(), "{status:?}");
    let pushes = cloud.admin.stats().await.expect("stats").pushes;
    assert!(
        pushes <= faults.injected() + 1,
        "one push per failed completion, not a loop: {pushes} pushes, {} completions failed",
        faults.injected()
    );
    faults.disarm();
    let after = drained(&site.mesh.store_client).await;
    assert_exactly_once(&cloud.admin, &cloud.url, &site.site_id, &acked, &after).await;
    site.stop().await;
    cloud.stop().await;
}

/// A site whose change feed has nothing for it still learns the cloud's
/// clock-skew bound.
async fn a_quiet_feed_still_hands_over_the_clock_skew_bound(db: &TestDatabase) {
    let bound = Duration::from_secs(300);
    let cloud = Cloud::builder(TOKEN).max_clock_skew(bound).start().await;
    // A new site announces no bound of its own and runs on the default
    // (1 h); the first pull may come before the first look, so what shows
    // that the bound came from the feed is its value.
    let site = Site::start(db, quick_sync(&cloud.url)).await;
    let stats = eventually(DEADLINE, "the cloud's bound reaches the site", || async {
        let stats = site.stats().await;
        stats.max_clock_skew_announced.then_some(stats)
    })
    .await;
    assert_eq!(
        stats.max_clock_skew.map(|d| d.seconds),
        Some(300),
        "{stats:?}"
    );
    assert_eq!(stats.remote_versions, 0, "the feed had nothing to apply");
    site.stop().await;
    cloud.stop().await;
}

on_both_backends!(a_store_that_cannot_record_completions_makes_the_drain_back_off);
on_both_backends!(a_quiet_feed_still_hands_over_the_clock_skew_bound);
on_both_backends!(a_week_offline_drains_exactly_once);
on_both_backends!(a_failing_cloud_only_delays);
on_both_backends!(rejected_versions_are_dead_lettered_reported_and_redriven);
on_both_backends!(ingest_never_waits_on_a_black_hole);
on_both_backends!(the_present_arrives_within_a_few_pushes);
on_both_backends!(compatibility_mode_delivers_everything_at_least_once);

/// SIGKILL of the whole site mid-push, then of the cloud mid-batch: nothing
/// lost, nothing duplicated.
async fn sigkill_of_the_site_or_the_cloud_mid_push_loses_and_duplicates_nothing(
    site_db: &TestDatabase,
) {
    let exe = Path::new(env!("CARGO_BIN_EXE_edge"));
    let cloud_dir = tempfile::tempdir().expect("temp dir");
    let mut cloud = spawn_edge_cloud(exe, cloud_dir.path(), "127.0.0.1:0", TOKEN)
        .await
        .expect("edge cloud");
    let admin: AdminClient = cloud.admin().expect("admin");
    admin
        .set_faults(&Faults {
            reply_delay_ms: 200,
            ..Faults::normal()
        })
        .await
        .expect("faults");
    let args = vec![
        "--cloud-url".to_owned(),
        cloud.url.clone(),
        "--cloud-token".to_owned(),
        token_of(edge_testkit::TEST_SITE_ID),
        "--site-id".to_owned(),
        edge_testkit::TEST_SITE_ID.to_owned(),
        "--probe-interval".to_owned(),
        "100ms".to_owned(),
        "--sync-batch-size".to_owned(),
        "500".to_owned(),
        "--lease-duration".to_owned(),
        "3s".to_owned(),
        "--backoff-max".to_owned(),
        "500ms".to_owned(),
        "--gauge-interval".to_owned(),
        "100ms".to_owned(),
    ];
    let database_url = site_db.url.as_deref();
    let mut site = spawn_edge_up_with(exe, &site_db.data_dir, database_url, &args)
        .await
        .expect("edge up");
    let ingest_client = IngestServiceClient::new(site.channel(&site.ingest_url).await);
    let mut acked = ingest(&ingest_client, 20_000, "kill").await;
    eventually(DEADLINE, "pushes under way", || async {
        (admin.stats().await.ok()?.pushes >= 2).then_some(())
    })
    .await;
    kill9(&mut site.child).await;

    let mut site = spawn_edge_up_with(exe, &site_db.data_dir, database_url, &args)
        .await
        .expect("edge up again");
    let ingest_client = IngestServiceClient::new(site.channel(&site.ingest_url).await);
    acked.extend(ingest(&ingest_client, 5_000, "kill").await);
    let store = StoreClients::of_site(&site).await;
    let pushes = admin.stats().await.expect("stats").pushes;
    eventually(DEADLINE, "pushes to the cloud again", || async {
        (admin.stats().await.ok()?.pushes > pushes).then_some(())
    })
    .await;
    kill9(&mut cloud.child).await;
    // Back on the same address, as a restarted server would be.
    let listen = cloud.url.trim_start_matches("http://").to_owned();
    let cloud = spawn_edge_cloud(exe, cloud_dir.path(), &listen, TOKEN)
        .await
        .expect("edge cloud again");
    let admin: AdminClient = cloud.admin().expect("admin");
    let after = drained(&store).await;
    assert_exactly_once(&admin, &cloud.url, &after.site_id, &acked, &after).await;

    // What Prometheus sees of it: the books from store-svc, the pushes from
    // sync-svc, the link as sync-svc's probe sees it.
    let scrape = eventually(DEADLINE, "the gauges to catch up", || async {
        let text = edge_testkit::scrape(&site.metrics_addr).await.ok()?;
        (edge_testkit::sample(&text, "unsynced_readings") == Some(0.0)).then_some(text)
    })
    .await;
    let metric = |name: &str| edge_testkit::sample(&scrape, name).unwrap_or(-1.0);
    assert_eq!(metric("dead_letters"), 0.0);
    assert_eq!(metric("oldest_unsynced_age_seconds"), 0.0);
    assert!(metric("storage_bytes") > 0.0);
    assert!(metric("sync_attempts_total") >= metric("sync_success_total"));
    assert!(metric("sync_success_total") > 0.0);
    assert!(metric("readings_synced_total{result=\"accepted\"}") > 0.0);
    assert_eq!(metric("cloud_reachable{probe=\"sync\"}"), 1.0);
    kill9(&mut site.child).await;
}

on_both_backends!(sigkill_of_the_site_or_the_cloud_mid_push_loses_and_duplicates_nothing);

async fn kill9(child: &mut tokio::process::Child) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(child.id().expect("pid") as i32);
    kill(pid, Signal::SIGKILL).expect("SIGKILL");
    child.wait().await.expect("reaped");
}

/// `WatchStatus` sends the status at once, then every change of the link.
#[tokio::test]
async fn watch_status_follows_the_link_going_dark_and_back() {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("SQLite fixture");
    let cloud = Cloud::start(TOKEN).await;
    let site = Site::start(&db, quick_sync(&cloud.url)).await;
    let mut updates = site
        .sync_client
        .clone()
        .watch_status(pb::WatchStatusRequest {})
        .await
        .expect("watch")
        .into_inner();
    let idle = wait_for(&mut updates, pb::SyncLinkState::Idle).await;
    assert_eq!(idle.cloud_url, cloud.url);
    cloud.mode(FaultMode::Refuse).await;
    let offline = wait_for(&mut updates, pb::SyncLinkState::Offline).await;
    let since = |s: &pb::SyncStatus| s.link_since.map(|t| (t.seconds, t.nanos));
    assert!(since(&offline) > since(&idle), "the transition is timed");
    cloud.mode(FaultMode::Normal).await;
    wait_for(&mut updates, pb::SyncLinkState::Idle).await;
    site.stop().await;
    cloud.stop().await;
    db.cleanup().await;
}

/// The next update in `state`.
async fn wait_for(
    updates: &mut tonic::Streaming<pb::WatchStatusResponse>,
    state: pb::SyncLinkState,
) -> pb::SyncStatus {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let update = updates.message().await.expect("stream").expect("an update");
            if update.status.as_ref().map(|s| s.state) == Some(state as i32) {
                return update.status.unwrap_or_default();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {state:?} update"))
}

/// With no cloud configured the site runs offline by design, and says so.
#[tokio::test]
async fn without_a_cloud_url_sync_is_disabled_not_failing() {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("SQLite fixture");
    let config = SyncConfig {
        sync_addr: "127.0.0.1:0".parse().expect("address"),
        ..SyncConfig::new()
    };
    let site = Site::start(&db, config).await;
    ingest(&site.mesh.ingest_client, 10, "offline").await;
    let status = site.status().await;
    assert_eq!(status.state, pb::SyncLinkState::Disabled as i32);
    assert!(status.cloud_url.is_empty());
    let err = site
        .sync_client
        .clone()
        .sync_now(pb::SyncNowRequest {})
        .await
        .expect_err("nothing to sync to");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("--cloud-url"), "{}", err.message());
    assert_eq!(
        site.stats().await.unsynced_versions,
        10,
        "kept for a later cloud"
    );
    site.stop().await;
    db.cleanup().await;
}

/// A full site under `drop-oldest-unsynced` while the cloud is dark: ingest
/// never stops, the oldest versions go, and once the link is back the cloud's
/// coverage accounts for every seq: held, or dropped by the site (P2).
async fn drops_under_a_full_budget_reach_the_cloud_as_dropped(db: &TestDatabase) {
    let cloud = Cloud::start(TOKEN).await;
    cloud.mode(FaultMode::Refuse).await;
    // Drops skip a batch that a push holds at that moment (it may be on its
    // way to the cloud), so pushes here are small, one at a time and oldest
    // first: what is dropped is then the oldest, give or take one batch.
    const PUSH_BATCH: u32 = 50;
    const BUDGET: u64 = 2 << 20;
    let sync = SyncConfig {
        sync_batch_size: PUSH_BATCH,
        sync_concurrency: 1,
        sync_newest_share: 0,
        ..quick_sync(&cloud.url)
    };
    let site = Site::start_with(db, sync, |config| {
        config.storage.storage_budget = Some(BUDGET);
        config.storage.storage_policy = Policy::DropOldestUnsynced;
        config.storage.storage_reserve = Reserve::Bytes(0);
        config.storage.storage_check_interval = Duration::from_millis(50);
        config.storage.prune_batch = 500;
    })
    .await;
    let mut acked = Vec::new();
    for _ in 0..20 {
        acked.extend(ingest(&site.mesh.ingest_client, 500, "full").await);
    }
    assert_eq!(acked.len(), 10_000, "ingest never refused");
    // The last call may have nudged a pass that is still dropping. A pass
    // starts only when room falls below the slack (5 % of the budget) and
    // publishes room only when it ends, with twice the slack free; so once
    // room is at least the slack, no pass is running or due, and the drain
    // below cannot race a drop. (Not "twice the slack": the outbox's own
    // bookkeeping of failed pushes may take a few pages of that back.)
    let storage = eventually(DEADLINE, "no drop pass running or due", || async {
        let s = site.stats().await.storage?;
        (s.room_bytes >= BUDGET / 20).then_some(s)
    })
    .await;
    assert!(storage.dropped_versions > 0, "{storage:?}");

    cloud.mode(FaultMode::Normal).await;
    let after = drained(&site.mesh.store_client).await;
    let dropped = after.storage.clone().expect("storage").dropped_versions;
    let coverage = eventually(DEADLINE, "drops reported to the cloud", || async {
        let c = cloud
            .admin
            .coverage(&cloud.url, &site.site_id, &token_of(&site.site_id))
            .await
            .ok()?;
        (c.dropped_seqs == dropped && c.highest_contiguous_seq == after.last_seq).then_some(c)
    })
    .await;
    assert!(coverage.gaps.is_empty(), "{coverage:?}");
    assert_eq!(coverage.held_seqs + coverage.dropped_seqs, after.last_seq);
    assert_books_balance(&after, &coverage);
    // What the cloud holds is what was acknowledged minus `dropped` readings,
    // all of them among the oldest (a batch in flight was spared).
    let held: HashSet<String> = cloud
        .admin
        .all_versions(&site.site_id)
        .await
        .expect("versions")
        .into_iter()
        .map(|v| v.reading_id)
        .collect();
    let dropped_count = usize::try_from(dropped).expect("small");
    let missing: Vec<usize> = (0..acked.len())
        .filter(|&i| !held.contains(&acked[i]))
        .collect();
    assert_eq!(missing.len(), dropped_count, "each drop counted once");
    assert_eq!(
        held.len(),
        acked.len() - dropped_count,
        "nothing unknown held"
    );
    let oldest = dropped_count + PUSH_BATCH as usize;
    assert!(
        missing.iter().all(|&i| i < oldest),
        "dropped readings beyond the oldest {oldest}: {:?}",
        missing
            .iter()
            .filter(|&&i| i >= oldest)
            .take(10)
            .collect::<Vec<_>>()
    );
    // Forgotten by the store once the cloud confirmed them.
    eventually(DEADLINE, "reported drops forgotten", || async {
        let s = site.stats().await;
        (s.storage?.unreported_drops == 0).then_some(())
    })
    .await;
    site.stop().await;
    cloud.stop().await;
}

#[tokio::test]
async fn drops_under_a_full_budget_reach_the_cloud_as_dropped_on_sqlite() {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("sqlite");
    drops_under_a_full_budget_reach_the_cloud_as_dropped(&db).await;
}
