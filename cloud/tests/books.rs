//! The books: coverage (contiguous, gaps, truncation), unsent reports, and
//! held winning over rejected or dropped; and the simple API.

mod common;

use common::{TestCloud, batch, error_body, json, token};
use edge_cloud_link::contract::{
    MAX_COVERAGE_GAPS, SIMPLE_READINGS_PATH, SeqRange, SimpleCreated, SimpleReading, UnsentAck,
    UnsentEntry, UnsentReport, UnsentStatus, unsent_path,
};
use edge_testkit::{TestDatabase, on_both_backends};

const SITE: &str = "mine-7";

fn unsent(seq: u64, status: UnsentStatus) -> UnsentEntry {
    let v = common::version(SITE, seq);
    UnsentEntry {
        seq,
        reading_id: v.reading_id,
        version: v.version,
        status,
        reason: Some("dead-lettered at the site".into()),
    }
}

async fn report(cloud: &TestCloud, entries: Vec<UnsentEntry>) -> reqwest::Response {
    cloud
        .http
        .put(cloud.at(&unsent_path(SITE)))
        .bearer_auth(token(SITE))
        .body(serde_json::to_vec(&UnsentReport { entries }).expect("serialise"))
        .send()
        .await
        .expect("an answer")
}

async fn coverage_counts_contiguous_seqs_and_lists_gaps(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let empty = cloud.coverage(SITE).await;
    assert_eq!(
        (
            empty.highest_contiguous_seq,
            empty.max_seq,
            empty.gaps.len()
        ),
        (0, 0, 0)
    );

    cloud.push_ok(SITE, "a", &batch(SITE, 1..=10)).await;
    let c = cloud.coverage(SITE).await;
    assert_eq!(
        (c.highest_contiguous_seq, c.max_seq, c.held_seqs, c.versions),
        (10, 10, 10, 10)
    );
    assert!(c.gaps.is_empty() && !c.gaps_truncated);

    cloud.push_ok(SITE, "b", &batch(SITE, [13, 14, 20])).await;
    let c = cloud.coverage(SITE).await;
    assert_eq!(
        (c.highest_contiguous_seq, c.max_seq, c.held_seqs),
        (10, 20, 13)
    );
    assert_eq!(
        c.gaps,
        vec![
            SeqRange {
                first: 11,
                last: 12
            },
            SeqRange {
                first: 15,
                last: 19
            }
        ]
    );

    // Filling the gaps moves the contiguous watermark past many seqs at once.
    cloud
        .push_ok(SITE, "fill", &batch(SITE, [11, 12, 15, 16, 17, 18, 19]))
        .await;
    cloud.push_ok(SITE, "long", &batch(SITE, 21..=3_000)).await;
    let c = cloud.coverage(SITE).await;
    assert_eq!(
        (c.highest_contiguous_seq, c.max_seq, c.held_seqs),
        (3_000, 3_000, 3_000)
    );
    assert!(c.gaps.is_empty());

    // A gap at the very start.
    cloud.push_ok("other", "c", &batch("other", [3])).await;
    let other = cloud
        .admin
        .coverage(&cloud.url, "other", &token("other"))
        .await
        .expect("coverage");
    assert_eq!(other.gaps, vec![SeqRange { first: 1, last: 2 }]);
    assert_eq!(other.highest_contiguous_seq, 0);
    cloud.stop().await;
}
on_both_backends!(coverage_counts_contiguous_seqs_and_lists_gaps);

async fn unsent_reports_fill_gaps_and_held_wins(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    cloud.push_ok(SITE, "a", &batch(SITE, [1, 2, 5])).await;
    let response = report(
        &cloud,
        vec![
            unsent(3, UnsentStatus::Rejected),
            unsent(4, UnsentStatus::Dropped),
            unsent(2, UnsentStatus::Dropped), // held: stays held
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let ack: UnsentAck = json(response).await;
    assert_eq!(ack.recorded, 3);
    let c = cloud.coverage(SITE).await;
    assert_eq!(
        (
            c.highest_contiguous_seq,
            c.held_seqs,
            c.rejected_seqs,
            c.dropped_seqs
        ),
        (5, 3, 1, 1)
    );
    assert!(c.gaps.is_empty());

    // Reporting again changes nothing; a later accepted version of a
    // rejected seq turns it held.
    assert_eq!(
        report(&cloud, vec![unsent(3, UnsentStatus::Rejected)])
            .await
            .status(),
        200
    );
    cloud.push_ok(SITE, "b", &batch(SITE, [3])).await;
    let c = cloud.coverage(SITE).await;
    assert_eq!((c.held_seqs, c.rejected_seqs, c.dropped_seqs), (4, 0, 1));
    assert_eq!(cloud.admin.stats().await.expect("stats").unsent_reports, 2);

    // Bad reports.
    let response = report(&cloud, vec![]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        error_body(response).await.error.field.as_deref(),
        Some("entries")
    );
    let response = report(&cloud, vec![unsent(0, UnsentStatus::Dropped)]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        error_body(response).await.error.field.as_deref(),
        Some("entries[0].seq")
    );
    cloud.stop().await;
}
on_both_backends!(unsent_reports_fill_gaps_and_held_wins);

async fn many_gaps_are_truncated(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    // Every other seq: MAX_COVERAGE_GAPS + 5 gaps of one seq each.
    let seqs: Vec<u64> = (0..=MAX_COVERAGE_GAPS as u64 + 5)
        .map(|i| 2 * i + 1)
        .collect();
    cloud.push_ok(SITE, "odd", &batch(SITE, seqs)).await;
    let c = cloud.coverage(SITE).await;
    assert_eq!(c.gaps.len(), MAX_COVERAGE_GAPS);
    assert!(c.gaps_truncated);
    assert_eq!(c.gaps[0], SeqRange { first: 2, last: 2 });
    assert_eq!(c.highest_contiguous_seq, 1);
    cloud.stop().await;
}
on_both_backends!(many_gaps_are_truncated);

async fn the_simple_api_stores_every_post(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let reading = SimpleReading {
        sensor_id: "t-9".into(),
        temperature: 4.5,
        humidity: 80.0,
        timestamp: "2026-11-24T10:00:00.123456Z".into(),
    };
    let post = |reading: &SimpleReading| {
        cloud
            .http
            .post(cloud.at(SIMPLE_READINGS_PATH))
            .bearer_auth(token(SITE))
            .body(serde_json::to_vec(reading).expect("serialise"))
            .send()
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = post(&reading).await.expect("answer");
        assert_eq!(response.status(), 201);
        let created: SimpleCreated = json(response).await;
        ids.push(created.id);
    }
    assert_ne!(ids[0], ids[1], "no idempotency key, so no deduplication");

    let bad = SimpleReading {
        timestamp: "24/11/2026".into(),
        ..reading.clone()
    };
    let response = post(&bad).await.expect("answer");
    assert_eq!(response.status(), 400);
    let body = error_body(response).await;
    assert_eq!(
        (body.error.code.as_str(), body.error.field.as_deref()),
        ("invalid_body", Some("timestamp"))
    );
    let bad = SimpleReading {
        sensor_id: String::new(),
        ..reading.clone()
    };
    let response = post(&bad).await.expect("answer");
    assert_eq!(
        error_body(response).await.error.field.as_deref(),
        Some("sensor_id")
    );

    let stored = cloud
        .admin
        .simple_readings_all()
        .await
        .expect("simple readings");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].id, ids[0]);
    assert_eq!(
        (
            stored[1].sensor_id.as_str(),
            stored[1].temperature,
            stored[1].timestamp.as_str()
        ),
        ("t-9", 4.5, "2026-11-24T10:00:00.123456Z")
    );
    assert_eq!(cloud.admin.stats().await.expect("stats").simple_received, 2);
    cloud.stop().await;
}
on_both_backends!(the_simple_api_stores_every_post);

async fn admin_listings_page_through(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    cloud.push_ok(SITE, "a", &batch(SITE, 1..=25)).await;
    cloud.push_ok(SITE, "b", &batch(SITE, 26..=30)).await;
    let first = cloud
        .admin
        .versions_page(SITE, None, 10)
        .await
        .expect("page");
    assert_eq!(first.versions.len(), 10);
    let second = cloud
        .admin
        .versions_page(SITE, first.next, 10)
        .await
        .expect("page");
    assert_eq!(second.versions[0].seq, 11);
    let all = cloud.admin.all_versions(SITE).await.expect("all");
    assert_eq!(
        all.iter().map(|v| v.seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    // Each push has its own, increasing number.
    assert!(all[0].push < all[29].push);
    let bad = cloud
        .http
        .get(format!(
            "{}/admin/sites/{SITE}/versions?limit=0",
            cloud.admin_url
        ))
        .bearer_auth(cloud.admin_token())
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), 400);
    assert_eq!(error_body(bad).await.error.field.as_deref(), Some("limit"));
    cloud.stop().await;
}
on_both_backends!(admin_listings_page_through);
