//! The shipped monitoring assets against a real Prometheus: `edge up` syncs
//! a known workload to the reference cloud while a `prometheus` process
//! scrapes its metrics endpoint, and the dashboard's own queries (read from
//! `monitoring/grafana/edge-mesh.json`, so the test checks what ships) answer
//! through Prometheus's HTTP API with the values the workload implies.
//!
//! Needs the `prometheus` binary (Debian package `prometheus`): skipped with a
//! message when it is missing, a failure when `EDGE_REQUIRE_PROMETHEUS=1`.

mod common;

use std::path::Path;
use std::time::Duration;

use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_runtime::client::AuthedChannel;
use edge_testkit::StoreClients;
use edge_testkit::{
    Backend, Prometheus, TestDatabase, eventually, prometheus_binary, spawn_edge_cloud,
    spawn_edge_up_with, spawn_prometheus,
};

use common::reading;

const TOKEN: &str = "test-token";
/// Generous: CI machines are slow and shared; conditions usually hold in seconds.
const DEADLINE: Duration = Duration::from_secs(120);
/// The job name of `edge up` in monitoring/prometheus/prometheus.yml.
const JOB: &str = "edge-up";

/// The Grafana dashboard as shipped.
struct Dashboard(serde_json::Value);

impl Dashboard {
    fn load() -> Dashboard {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring/grafana/edge-mesh.json");
        let text = std::fs::read_to_string(&path).expect("the dashboard is in the repository");
        Dashboard(serde_json::from_str(&text).expect("the dashboard is valid JSON"))
    }

    /// The query of the panel titled `title`, with the template variables
    /// replaced as Grafana does when every job is selected (the default).
    fn query(&self, title: &str) -> String {
        let panels = self.0["panels"].as_array().expect("panels");
        let matching: Vec<_> = panels.iter().filter(|p| p["title"] == title).collect();
        assert_eq!(matching.len(), 1, "one panel titled {title:?}");
        let targets = matching[0]["targets"].as_array().expect("targets");
        assert_eq!(targets.len(), 1, "panel {title:?} has one query");
        let expr = targets[0]["expr"].as_str().expect("a PromQL expression");
        let expr = expr.replace("$job", ".*");
        assert!(
            !expr.contains('$'),
            "no other template variable in {expr:?}"
        );
        expr
    }
}

/// The single value of an instant query, once Prometheus has one.
async fn single(prometheus: &Prometheus, expr: &str) -> Option<f64> {
    match prometheus.query(expr).await {
        Ok(samples) if samples.len() == 1 => Some(samples[0].value),
        Ok(samples) if samples.is_empty() => None,
        Ok(samples) => panic!("{expr:?} gave {} series: {samples:?}", samples.len()),
        Err(err) => panic!("{err}"),
    }
}

/// Ingests `n` readings of `sensor` in one call; all must be stored.
async fn ingest(client: &IngestServiceClient<AuthedChannel>, n: usize, sensor: &str) {
    let readings: Vec<pb::Reading> = (0..n).map(|_| reading(sensor, 21.5)).collect();
    let reply = client
        .clone()
        .ingest(pb::IngestRequest { readings })
        .await
        .expect("ingest")
        .into_inner();
    let stored = reply.summary.map_or(0, |s| s.stored);
    assert_eq!(stored as usize, n, "every reading stored");
}

/// Waits until the site holds `total` versions, all acknowledged by the cloud.
async fn synced(store: &StoreClients, total: u64) {
    eventually(DEADLINE, "the site to sync everything", || async {
        let stats = store
            .clone()
            .readings
            .get_stats(pb::GetStatsRequest {})
            .await
            .ok()?
            .into_inner();
        (stats.total_versions == total && stats.unsynced_versions == 0 && stats.dead_letters == 0)
            .then_some(())
    })
    .await;
}

/// Waits until Prometheus's latest `sync_attempts_total` is at least the one
/// `edge up` exports now, so queries see the state after the last push.
async fn caught_up(prometheus: &Prometheus, metrics_addr: &str) -> f64 {
    let now = edge_testkit::sample(
        &edge_testkit::scrape(metrics_addr).await.expect("scrape"),
        "sync_attempts_total",
    )
    .expect("sync_attempts_total is exported after a push");
    let query = format!("sync_attempts_total{{job=\"{JOB}\"}}");
    eventually(
        DEADLINE,
        "Prometheus to scrape the latest pushes",
        || async { single(prometheus, &query).await.filter(|seen| *seen >= now) },
    )
    .await
}

#[tokio::test]
async fn prometheus_scrapes_edge_up_and_the_dashboard_queries_answer() {
    let Some(prometheus_exe) = prometheus_binary() else {
        return;
    };
    let dashboard = Dashboard::load();
    let success_rate = dashboard.query("Sync success rate");
    let unsynced = dashboard.query("Unsynced readings");
    assert_eq!(
        success_rate,
        r#"rate(sync_success_total{job=~".*"}[5m]) / rate(sync_attempts_total{job=~".*"}[5m])"#,
        "the success rate as docs/architecture.md (Metrics) defines it"
    );

    let exe = Path::new(env!("CARGO_BIN_EXE_edge"));
    let cloud_dir = tempfile::tempdir().expect("temp dir");
    let cloud = spawn_edge_cloud(exe, cloud_dir.path(), "127.0.0.1:0", TOKEN)
        .await
        .expect("edge cloud");
    let site_db = TestDatabase::new(Backend::Sqlite)
        .await
        .expect("SQLite fixture");
    let token = edge_testkit::site_token(TOKEN, edge_testkit::TEST_SITE_ID);
    let args = [
        "--cloud-url",
        &cloud.url,
        "--cloud-token",
        &token,
        "--site-id",
        edge_testkit::TEST_SITE_ID,
        "--probe-interval",
        "100ms",
        "--gauge-interval",
        "100ms",
    ]
    .map(str::to_owned);
    let site = spawn_edge_up_with(exe, &site_db.data_dir, None, &args)
        .await
        .expect("edge up");
    let ingest_client = IngestServiceClient::new(site.channel(&site.ingest_url).await);
    let store = StoreClients::of_site(&site).await;

    // Two rounds. The first is synced before Prometheus starts, so the sync
    // counters exist (a counter appears at its first push) and Prometheus's
    // first samples of them are taken while no push is in flight: a rate
    // reads the first and last samples of its window, and both counters
    // must start from the same point for a clean sync to read exactly 1.
    // The second round makes them grow while Prometheus scrapes.
    let (first, second) = (300, 200);
    ingest(&ingest_client, first, "prometheus-1").await;
    synced(&store, first as u64).await;

    let prometheus = spawn_prometheus(
        &prometheus_exe,
        JOB,
        &site.metrics_addr,
        Duration::from_secs(1),
    )
    .await
    .expect("prometheus starts");
    eventually(DEADLINE, "Prometheus to scrape edge up", || async {
        (single(&prometheus, &format!("up{{job=\"{JOB}\"}}")).await? == 1.0).then_some(())
    })
    .await;
    let attempts_after_first = caught_up(&prometheus, &site.metrics_addr).await;

    ingest(&ingest_client, second, "prometheus-2").await;
    synced(&store, (first + second) as u64).await;
    let attempts = caught_up(&prometheus, &site.metrics_addr).await;
    assert!(attempts > attempts_after_first, "the second round pushed");

    // The dashboard's success rate: every push succeeded.
    let rate = single(&prometheus, &success_rate)
        .await
        .expect("the success rate has a value");
    assert!(
        (rate - 1.0).abs() < 1e-9,
        "success rate after a clean sync is 1, not {rate}"
    );
    // The dashboard's backlog: drained (the store refreshes the gauge on
    // its interval; Prometheus sees it on a later scrape).
    eventually(DEADLINE, "the unsynced query to read 0", || async {
        (single(&prometheus, &unsynced).await? == 0.0).then_some(())
    })
    .await;
    // The counters behind the ingest and sync panels hold the workload.
    let total = (first + second) as f64;
    let ingested = single(
        &prometheus,
        &format!("sum(readings_ingested_total{{job=\"{JOB}\"}})"),
    )
    .await;
    assert_eq!(ingested, Some(total), "readings ingested");
    let accepted = single(
        &prometheus,
        &format!("sum(readings_synced_total{{job=\"{JOB}\",result=\"accepted\"}})"),
    )
    .await;
    assert_eq!(accepted, Some(total), "versions the cloud accepted");

    drop(prometheus);
    drop(site);
    drop(cloud);
    site_db.cleanup().await;
}
