//! Fault injection through the admin port: connection modes (refuse,
//! black hole) on new and open connections, injected errors, throttling,
//! per-version and batch-level rejection, health, and recovery.

mod common;

use std::time::Duration;

use common::{TestCloud, batch, error_body, http_client, token};
use edge_cloud::{FaultMode, Faults};
use edge_cloud_link::contract::{VersionStatus, coverage_path};
use edge_testkit::{Backend, TestDatabase};

const SITE: &str = "camp-3";

async fn start() -> (TestDatabase, TestCloud) {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let cloud = TestCloud::start(&db).await;
    (db, cloud)
}

async fn set(cloud: &TestCloud, faults: Faults) {
    let stored = cloud.admin.set_faults(&faults).await.expect("faults set");
    assert_eq!(stored, faults);
}

async fn health(client: &reqwest::Client, cloud: &TestCloud) -> Result<u16, reqwest::Error> {
    client
        .get(cloud.at("/health"))
        .send()
        .await
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn refuse_resets_new_and_open_connections_and_normal_recovers() {
    let (_db, cloud) = start().await;
    let client = http_client(Duration::from_secs(10));
    // An open keep-alive connection first.
    assert_eq!(health(&client, &cloud).await.expect("healthy"), 200);

    set(
        &cloud,
        Faults {
            mode: FaultMode::Refuse,
            ..Faults::default()
        },
    )
    .await;
    for _ in 0..3 {
        let err = health(&client, &cloud).await.expect_err("refused");
        assert!(!err.is_timeout(), "refused, not timed out: {err}");
    }
    let fresh = http_client(Duration::from_secs(10));
    let err = health(&fresh, &cloud).await.expect_err("refused");
    assert!(!err.is_timeout(), "{err}");

    // The admin port is unaffected.
    assert_eq!(
        cloud.admin.faults().await.expect("faults").mode,
        FaultMode::Refuse
    );

    set(&cloud, Faults::normal()).await;
    assert_eq!(health(&client, &cloud).await.expect("healthy again"), 200);
    cloud
        .push_ok(SITE, "after-refuse", &batch(SITE, 1..=3))
        .await;
    cloud.stop().await;
}

#[tokio::test]
async fn black_hole_stalls_until_the_mode_changes() {
    let (_db, cloud) = start().await;
    let client = http_client(Duration::from_millis(400));
    assert_eq!(health(&client, &cloud).await.expect("healthy"), 200);

    set(
        &cloud,
        Faults {
            mode: FaultMode::BlackHole,
            ..Faults::default()
        },
    )
    .await;
    // The open connection and a new one both stall.
    let err = health(&client, &cloud).await.expect_err("stalled");
    assert!(err.is_timeout(), "timed out, not refused: {err}");
    let fresh = http_client(Duration::from_millis(400));
    let err = health(&fresh, &cloud).await.expect_err("stalled");
    assert!(err.is_timeout(), "{err}");

    // A patient request is held, then answered once the hole closes.
    let patient = http_client(Duration::from_secs(30));
    let url = cloud.at("/health");
    let mut waiting =
        tokio::spawn(async move { patient.get(url).send().await.map(|r| r.status().as_u16()) });
    // It gets no answer while the hole is open (a bounded wait).
    let early = tokio::time::timeout(Duration::from_millis(300), &mut waiting).await;
    assert!(early.is_err(), "answered inside a black hole: {early:?}");
    set(&cloud, Faults::normal()).await;
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("answered after the mode changed")
        .expect("task joins")
        .expect("an answer");
    assert_eq!(status, 200);

    // The short-timeout client works again (keep-alive pool and all).
    assert_eq!(health(&client, &cloud).await.expect("healthy again"), 200);
    cloud.stop().await;
}

#[tokio::test]
async fn shutdown_is_not_blocked_by_a_black_hole() {
    let (_db, cloud) = start().await;
    set(
        &cloud,
        Faults {
            mode: FaultMode::BlackHole,
            ..Faults::default()
        },
    )
    .await;
    let client = http_client(Duration::from_millis(200));
    assert!(health(&client, &cloud).await.is_err());
    tokio::time::timeout(Duration::from_secs(10), cloud.stop())
        .await
        .expect("the cloud stops while holding black-holed connections");
}

#[tokio::test]
async fn injected_errors_and_throttles_answer_json() {
    let (_db, cloud) = start().await;
    set(
        &cloud,
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let response = cloud.push(SITE, "k1", &batch(SITE, 1..=2)).await;
    assert_eq!(response.status(), 503);
    assert_eq!(error_body(response).await.error.code, "unavailable");
    // Health is not a data request.
    assert_eq!(health(&cloud.http, &cloud).await.expect("answer"), 200);

    set(
        &cloud,
        Faults {
            error_rate: 1.0,
            error_status: 500,
            ..Faults::default()
        },
    )
    .await;
    assert_eq!(
        cloud.push(SITE, "k1", &batch(SITE, 1..=2)).await.status(),
        500
    );

    set(
        &cloud,
        Faults {
            throttle_rate: 1.0,
            retry_after_seconds: 7,
            ..Faults::default()
        },
    )
    .await;
    let response = cloud.push(SITE, "k1", &batch(SITE, 1..=2)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(error_body(response).await.error.code, "rate_limited");

    set(
        &cloud,
        Faults {
            health_down: true,
            ..Faults::default()
        },
    )
    .await;
    let response = cloud
        .http
        .get(cloud.at("/health"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 503);
    assert_eq!(error_body(response).await.error.code, "unavailable");

    // Nothing stored, every push counted as received.
    set(&cloud, Faults::normal()).await;
    let stats = cloud.admin.stats().await.expect("stats");
    assert_eq!((stats.pushes_received, stats.pushes), (3, 0));
    assert!(
        cloud
            .admin
            .all_versions(SITE)
            .await
            .expect("versions")
            .is_empty()
    );
    cloud.push_ok(SITE, "k1", &batch(SITE, 1..=2)).await;
    cloud.stop().await;
}

#[tokio::test]
async fn sensors_can_be_rejected_per_version_or_per_batch() {
    let (_db, cloud) = start().await;
    let pushed = batch(SITE, 1..=7); // sensors sensor-1 … sensor-6, sensor-0
    set(
        &cloud,
        Faults {
            reject_sensors: vec!["sensor-3".into()],
            ..Faults::default()
        },
    )
    .await;
    let answer = cloud.push_ok(SITE, "per-version", &pushed).await;
    for (result, sent) in answer.results.iter().zip(&pushed.versions) {
        if sent.sensor_id == "sensor-3" {
            assert_eq!(result.status, VersionStatus::Rejected);
            assert_eq!(
                result.reason.as_deref(),
                Some("sensor sensor-3 is not registered with the cloud")
            );
        } else {
            assert_eq!(result.status, VersionStatus::Accepted);
        }
    }

    set(
        &cloud,
        Faults {
            batch_reject_sensors: vec!["sensor-5".into()],
            ..Faults::default()
        },
    )
    .await;
    let response = cloud.push(SITE, "whole", &batch(SITE, 10..=20)).await;
    assert_eq!(response.status(), 400);
    let body = error_body(response).await;
    assert_eq!(body.error.code, "invalid_batch");
    assert_eq!(body.error.field, None);
    // A batch without that sensor passes.
    cloud.push_ok(SITE, "clean", &batch(SITE, [10, 11])).await;
    cloud.stop().await;
}

#[tokio::test]
async fn reply_delay_commits_before_the_client_gives_up() {
    let (_db, cloud) = start().await;
    set(
        &cloud,
        Faults {
            reply_delay_ms: 2_000,
            ..Faults::default()
        },
    )
    .await;
    let impatient = http_client(Duration::from_millis(300));
    let pushed = batch(SITE, 1..=5);
    let err = impatient
        .post(cloud.at(&edge_cloud_link::contract::batches_path(SITE)))
        .bearer_auth(token(SITE))
        .header(edge_cloud_link::contract::IDEMPOTENCY_KEY_HEADER, "slow")
        .body(serde_json::to_vec(&pushed).expect("serialise"))
        .send()
        .await
        .expect_err("the client times out");
    assert!(err.is_timeout());
    // The versions are committed although the client never saw the answer.
    let stored = edge_testkit::eventually(
        Duration::from_secs(10),
        "the slow push to commit",
        || async {
            let versions = cloud.admin.all_versions(SITE).await.ok()?;
            (versions.len() == 5).then_some(versions)
        },
    )
    .await;
    assert_eq!(stored.len(), 5);
    // The retry replays the answer.
    set(&cloud, Faults::normal()).await;
    let answer = cloud.push_ok(SITE, "slow", &pushed).await;
    assert!(
        answer
            .results
            .iter()
            .all(|r| r.status == VersionStatus::Accepted)
    );
    assert_eq!(cloud.admin.stats().await.expect("stats").batch_replays, 1);
    cloud.stop().await;
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let (_db, cloud) = start().await;
    set(
        &cloud,
        Faults {
            latency_ms: 300,
            ..Faults::default()
        },
    )
    .await;
    let started = std::time::Instant::now();
    assert_eq!(health(&cloud.http, &cloud).await.expect("answer"), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    cloud.stop().await;
}

#[tokio::test]
async fn bad_fault_settings_name_the_field() {
    let (_db, cloud) = start().await;
    for (body, field) in [
        (r#"{"error_rate": 2}"#, "error_rate"),
        (r#"{"throttle_rate": -0.1}"#, "throttle_rate"),
        (r#"{"error_status": 200}"#, "error_status"),
    ] {
        let response = cloud
            .http
            .put(format!("{}/admin/faults", cloud.admin_url))
            .bearer_auth(cloud.admin_token())
            .body(body)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(
            error_body(response).await.error.field.as_deref(),
            Some(field)
        );
    }
    let response = cloud
        .http
        .put(format!("{}/admin/faults", cloud.admin_url))
        .bearer_auth(cloud.admin_token())
        .body(r#"{"mode": "sideways"}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    assert_eq!(
        cloud.admin.faults().await.expect("faults"),
        Faults::normal()
    );
    // Coverage is a data request too: it answers normally.
    let response = cloud
        .http
        .get(cloud.at(&coverage_path(SITE)))
        .bearer_auth(token(SITE))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    cloud.stop().await;
}
