//! Batch push: per-version results, idempotency, limits and batch-level
//! refusals, on both backends.

mod common;

use common::{TestCloud, batch, error_body, gzip, token, version};
use edge_cloud_link::contract::{
    IDEMPOTENCY_KEY_HEADER, MAX_BATCH_BODY_BYTES, MAX_BATCH_VERSIONS, PushBatch, PushResponse,
    VersionStatus, batches_path,
};
use edge_testkit::{TestDatabase, on_both_backends};

const SITE: &str = "ship-1";

fn statuses(answer: &PushResponse) -> Vec<VersionStatus> {
    answer.results.iter().map(|r| r.status).collect()
}

async fn a_new_batch_is_accepted_and_stored(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let pushed = batch(SITE, 1..=50);
    let answer = cloud.push_ok(SITE, "batch-1", &pushed).await;
    assert!(
        statuses(&answer)
            .iter()
            .all(|s| *s == VersionStatus::Accepted)
    );
    for (result, sent) in answer.results.iter().zip(&pushed.versions) {
        assert_eq!(result.reading_id, sent.reading_id);
        assert_eq!(result.version, sent.version);
        assert_eq!(result.reason, None);
    }

    let stored = cloud.admin.all_versions(SITE).await.expect("versions");
    assert_eq!(stored.len(), 50);
    let first = &stored[0];
    let sent = &pushed.versions[0];
    assert_eq!(
        (
            first.seq,
            &first.reading_id,
            &first.version,
            &first.sensor_id
        ),
        (sent.seq, &sent.reading_id, &sent.version, &sent.sensor_id)
    );
    assert_eq!(first.temperature_celsius, sent.temperature_celsius);
    assert_eq!(first.measured_at_us, sent.measured_at_us);
    assert!(stored.iter().all(|v| v.push == first.push));

    let stats = cloud.admin.stats().await.expect("stats");
    assert_eq!(
        (stats.pushes_received, stats.pushes, stats.versions_accepted),
        (1, 1, 50)
    );
    cloud.stop().await;
}
on_both_backends!(a_new_batch_is_accepted_and_stored);

async fn a_replay_gets_the_first_answer_and_a_reused_key_is_refused(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let pushed = batch(SITE, 1..=20);
    let first = cloud.push_ok(SITE, "key-a", &pushed).await;
    let again = cloud.push_ok(SITE, "key-a", &pushed).await;
    assert_eq!(
        first, again,
        "a replay answers exactly what the first push answered"
    );
    let stats = cloud.admin.stats().await.expect("stats");
    assert_eq!(stats.batch_replays, 1);
    assert_eq!(stats.versions_accepted, 20);
    assert_eq!(stats.pushes, 2);

    let other = batch(SITE, 21..=25);
    let reused = cloud.push(SITE, "key-a", &other).await;
    assert_eq!(reused.status(), 422);
    assert_eq!(
        error_body(reused).await.error.code,
        "idempotency_key_reused"
    );

    // The same key is independent per site.
    let elsewhere = batch("ship-2", 1..=3);
    cloud.push_ok("ship-2", "key-a", &elsewhere).await;

    // A new key with versions already held: every one a duplicate.
    let dup = cloud.push_ok(SITE, "key-b", &pushed).await;
    assert!(
        statuses(&dup)
            .iter()
            .all(|s| *s == VersionStatus::Duplicate)
    );
    assert_eq!(
        cloud
            .admin
            .all_versions(SITE)
            .await
            .expect("versions")
            .len(),
        20
    );
    assert_eq!(
        cloud.admin.stats().await.expect("stats").versions_duplicate,
        20
    );

    // Held and new versions mixed: each gets its own status.
    let mut mixed = batch(SITE, 21..=23);
    mixed
        .versions
        .splice(1..1, pushed.versions[..4].iter().cloned());
    let answer = cloud.push_ok(SITE, "key-c", &mixed).await;
    use VersionStatus::*;
    assert_eq!(
        statuses(&answer),
        vec![
            Accepted, Duplicate, Duplicate, Duplicate, Duplicate, Accepted, Accepted
        ]
    );
    assert_eq!(
        cloud
            .admin
            .all_versions(SITE)
            .await
            .expect("versions")
            .len(),
        23
    );
    cloud.stop().await;
}
on_both_backends!(a_replay_gets_the_first_answer_and_a_reused_key_is_refused);

async fn a_version_sent_twice_in_one_batch_is_stored_once(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let mut pushed = batch(SITE, 1..=3);
    pushed.versions.push(pushed.versions[1].clone());
    // A second version of reading 1 (same seq, later HLC) is a new version.
    let mut amended = pushed.versions[0].clone();
    amended.version.hlc.logical = 1;
    amended.temperature_celsius = 30.0;
    pushed.versions.push(amended);
    let answer = cloud.push_ok(SITE, "k", &pushed).await;
    use VersionStatus::*;
    assert_eq!(
        statuses(&answer),
        vec![Accepted, Accepted, Accepted, Duplicate, Accepted]
    );
    let coverage = cloud
        .admin
        .coverage(&cloud.url, SITE, &token(SITE))
        .await
        .expect("coverage");
    assert_eq!((coverage.versions, coverage.held_seqs), (4, 3));
    cloud.stop().await;
}
on_both_backends!(a_version_sent_twice_in_one_batch_is_stored_once);

async fn invalid_versions_are_rejected_one_by_one(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let mut pushed = batch(SITE, 1..=6);
    pushed.versions[1].reading_id = "not-a-uuid".into();
    pushed.versions[2].humidity_percent = 140.0;
    // Someone else's version of someone else's reading (a site may push
    // only its own readings and its own amendments).
    pushed.versions[3].origin_site_id = "someone-else".into();
    pushed.versions[3].version.site_id = "someone-else".into();
    pushed.versions[4].version.hlc.logical = 70_000;
    let answer = cloud.push_ok(SITE, "mixed", &pushed).await;
    use VersionStatus::*;
    assert_eq!(
        statuses(&answer),
        vec![Accepted, Rejected, Rejected, Rejected, Rejected, Accepted]
    );
    let reasons: Vec<String> = answer
        .results
        .iter()
        .filter_map(|r| r.reason.clone())
        .collect();
    assert!(reasons[0].contains("UUID"), "{reasons:?}");
    assert!(reasons[1].contains("humidity"), "{reasons:?}");
    assert!(reasons[2].contains("origin_site_id"), "{reasons:?}");
    assert!(reasons[3].contains("logical"), "{reasons:?}");
    assert_eq!(
        cloud.admin.stats().await.expect("stats").versions_rejected,
        4
    );
    assert_eq!(
        cloud
            .admin
            .all_versions(SITE)
            .await
            .expect("versions")
            .len(),
        2
    );

    // Rejections the cloud made are booked (except the foreign seq 4).
    let coverage = cloud
        .admin
        .coverage(&cloud.url, SITE, &token(SITE))
        .await
        .expect("coverage");
    assert_eq!((coverage.held_seqs, coverage.rejected_seqs), (2, 3));
    assert_eq!(coverage.highest_contiguous_seq, 3);
    cloud.stop().await;
}
on_both_backends!(invalid_versions_are_rejected_one_by_one);

async fn a_gzip_body_is_accepted(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let pushed = batch(SITE, 1..=100);
    let body = gzip(&serde_json::to_vec(&pushed).expect("serialise"));
    let response = cloud
        .http
        .post(cloud.at(&batches_path(SITE)))
        .bearer_auth(token(SITE))
        .header(IDEMPOTENCY_KEY_HEADER, "gz")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let answer: PushResponse = common::json(response).await;
    assert_eq!(answer.results.len(), 100);
    assert!(
        statuses(&answer)
            .iter()
            .all(|s| *s == VersionStatus::Accepted)
    );
    // The digest is of the decompressed body: the same batch sent plain is a replay.
    let plain = cloud.push_ok(SITE, "gz", &pushed).await;
    assert_eq!(plain, answer);
    cloud.stop().await;
}
on_both_backends!(a_gzip_body_is_accepted);

#[tokio::test]
async fn a_missing_or_wrong_token_is_401() {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("fixture");
    let cloud = TestCloud::start(&db).await;
    let body = serde_json::to_vec(&batch(SITE, 1..=1)).expect("serialise");
    for token in [None, Some("wrong"), Some("")] {
        let mut request = cloud
            .http
            .post(cloud.at(&batches_path(SITE)))
            .header(IDEMPOTENCY_KEY_HEADER, "k")
            .body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), 401, "token {token:?}");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        assert_eq!(error_body(response).await.error.code, "unauthorized");
    }
    let coverage = cloud
        .http
        .get(cloud.at("/v1/sites/ship-1/coverage"))
        .send()
        .await
        .expect("answer");
    assert_eq!(coverage.status(), 401);
    // Health needs no token.
    let health = cloud
        .http
        .get(cloud.at("/health"))
        .send()
        .await
        .expect("answer");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), r#"{"status":"ok"}"#);
    assert_eq!(
        cloud
            .admin
            .all_versions(SITE)
            .await
            .expect("versions")
            .len(),
        0
    );
    cloud.stop().await;
}

#[tokio::test]
async fn batch_level_refusals_answer_json() {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("fixture");
    let cloud = TestCloud::start(&db).await;
    let post = |key: Option<&str>, body: Vec<u8>| {
        let mut request = cloud
            .http
            .post(cloud.at(&batches_path(SITE)))
            .bearer_auth(token(SITE))
            .body(body);
        if let Some(key) = key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        request.send()
    };
    let one = serde_json::to_vec(&batch(SITE, 1..=1)).expect("serialise");

    let response = post(None, one.clone()).await.expect("answer");
    assert_eq!(response.status(), 400);
    assert_eq!(
        error_body(response).await.error.code,
        "missing_idempotency_key"
    );

    let response = post(Some(&"k".repeat(201)), one.clone())
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    assert_eq!(
        error_body(response).await.error.code,
        "invalid_idempotency_key"
    );

    let response = post(Some("bad-json"), b"{\"versions\": [".to_vec())
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    let body = error_body(response).await;
    assert_eq!(body.error.code, "invalid_body");
    assert!(
        body.error.message.contains("line 1"),
        "serde's message: {}",
        body.error.message
    );

    let response = post(Some("empty"), br#"{"versions":[]}"#.to_vec())
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    assert_eq!(
        error_body(response).await.error.field.as_deref(),
        Some("versions")
    );

    let too_many = PushBatch {
        versions: (1..=MAX_BATCH_VERSIONS as u64 + 1)
            .map(|seq| version(SITE, seq))
            .collect(),
    };
    let response = post(
        Some("many"),
        serde_json::to_vec(&too_many).expect("serialise"),
    )
    .await
    .expect("answer");
    assert_eq!(response.status(), 413);
    assert_eq!(error_body(response).await.error.code, "too_large");

    // A gzip bomb: a small body that inflates past the limit.
    let bomb = gzip(&vec![b' '; MAX_BATCH_BODY_BYTES + 1024]);
    assert!(bomb.len() < MAX_BATCH_BODY_BYTES / 100);
    let response = cloud
        .http
        .post(cloud.at(&batches_path(SITE)))
        .bearer_auth(token(SITE))
        .header(IDEMPOTENCY_KEY_HEADER, "bomb")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 413);
    assert_eq!(error_body(response).await.error.code, "too_large");

    let response = cloud
        .http
        .post(cloud.at(&batches_path(SITE)))
        .bearer_auth(token(SITE))
        .header(IDEMPOTENCY_KEY_HEADER, "br")
        .header("content-encoding", "br")
        .body(one)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 415);

    let response = cloud
        .http
        .get(cloud.at("/no/such/thing"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 404);
    assert_eq!(error_body(response).await.error.code, "not_found");

    // Nothing above was stored, and every push reached the handler.
    assert!(
        cloud
            .admin
            .all_versions(SITE)
            .await
            .expect("versions")
            .is_empty()
    );
    let stats = cloud.admin.stats().await.expect("stats");
    assert_eq!((stats.pushes_received, stats.pushes), (7, 0));
    cloud.stop().await;
}
