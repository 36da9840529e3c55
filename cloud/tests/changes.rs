//! The change feed: what a site pulls back (the cloud's amendments and
//! other sites' versions of its readings, plus shared sensors' readings,
//! never its own), paging by cursor, and its validation; and coverage
//! counting only the versions a site wrote. On both backends.

mod common;

use common::{TestCloud, amendment_of, error_body, token, version};
use edge_cloud_link::contract::{
    AmendmentRequest, ChangesPage, MAX_CHANGES_PAGE, MAX_SHARED_SENSORS, PushBatch, Quality,
    VersionRecord, VersionStatus, changes_path,
};
use edge_testkit::{TestDatabase, on_both_backends};

const A: &str = "ship-a";
const B: &str = "ship-b";
const SHARED: &str = "shared-1";

/// A reading of `site` with `seq` from `sensor`.
fn reading(site: &str, seq: u64, sensor: &str) -> VersionRecord {
    VersionRecord {
        sensor_id: sensor.into(),
        ..version(site, seq)
    }
}

async fn push(cloud: &TestCloud, site: &str, key: &str, versions: Vec<VersionRecord>) {
    let answer = cloud.push_ok(site, key, &PushBatch { versions }).await;
    assert!(
        answer
            .results
            .iter()
            .all(|r| r.status == VersionStatus::Accepted),
        "{answer:?}"
    );
}

/// (reading id, writer) of each version of a page: what tells them apart.
fn keys(versions: &[VersionRecord]) -> Vec<(String, String)> {
    versions
        .iter()
        .map(|v| (v.reading_id.clone(), v.version.site_id.clone()))
        .collect()
}

fn key(v: &VersionRecord) -> (String, String) {
    (v.reading_id.clone(), v.version.site_id.clone())
}

/// Every page of `site`'s feed from cursor 0, `limit` at a time.
async fn pull_all(
    cloud: &TestCloud,
    site: &str,
    limit: usize,
    sensors: &[String],
) -> Vec<ChangesPage> {
    let client = cloud.client_for(site);
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .changes(site, after, limit, sensors)
            .await
            .expect("a page");
        assert!(page.next_cursor >= after);
        after = page.next_cursor;
        let more = page.more;
        pages.push(page);
        if !more {
            return pages;
        }
    }
}

async fn the_feed_holds_what_others_wrote_of_the_sites_readings(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let client = cloud.client_for(A);
    let (a1, a2, a3) = (
        reading(A, 1, "a-1"),
        reading(A, 2, "a-1"),
        reading(A, 3, "a-2"),
    );
    let (b1, b2) = (reading(B, 1, SHARED), reading(B, 2, "b-only"));
    push(&cloud, A, "a", vec![a1.clone(), a2.clone(), a3.clone()]).await;
    push(&cloud, B, "b", vec![b1.clone(), b2.clone()]).await;

    // The cloud amends a1; B amends A's a2 (a shared reading); A amends its
    // own a3 and B's b1 of the shared sensor.
    let by_cloud = client
        .amend(
            &a1.reading_id,
            &AmendmentRequest {
                quality: Some(Quality::Bad),
                note: Some("sensor fault".into()),
                ..Default::default()
            },
        )
        .await
        .expect("amended")
        .current;
    let b_of_a2 = amendment_of(&a2, B, a2.version.hlc.physical_ms + 10, 11.0);
    push(&cloud, B, "b-amends", vec![b_of_a2.clone()]).await;
    let a_of_a3 = amendment_of(&a3, A, a3.version.hlc.physical_ms + 10, 12.0);
    let a_of_b1 = amendment_of(&b1, A, b1.version.hlc.physical_ms + 10, 13.0);
    push(
        &cloud,
        A,
        "a-amends",
        vec![a_of_a3.clone(), a_of_b1.clone()],
    )
    .await;

    // A's feed: what the cloud and B wrote of A's readings, in storage
    // order, each with its quality, note and base.
    let page = client.changes(A, 0, 100, &[]).await.expect("a's feed");
    assert_eq!(page.versions, vec![by_cloud.clone(), b_of_a2.clone()]);
    assert_eq!(page.versions[0].quality, Quality::Bad);
    assert_eq!(page.versions[0].note.as_deref(), Some("sensor fault"));
    assert_eq!(page.versions[0].base.as_ref(), Some(&a1.version));
    assert_eq!(page.versions[1].base.as_ref(), Some(&a2.version));
    // Who wrote each, for the site's audit log: the site token that asked
    // for the cloud's amendment, and the identity B recorded.
    assert_eq!(page.versions[0].written_by.as_deref(), Some("site:ship-a"));
    assert_eq!(page.versions[1].written_by.as_deref(), Some("operator"));
    assert!(!page.more);
    assert_eq!(page.policy, "lww");
    // The deployment's clock-skew bound is announced beside the rule.
    assert_eq!(page.max_clock_skew_ms, Some(3_600_000));

    // With the shared sensor: B's reading of it too, but never A's own
    // amendment of that reading.
    let shared = vec![SHARED.to_owned()];
    let page = client.changes(A, 0, 100, &shared).await.expect("a's feed");
    assert_eq!(
        keys(&page.versions),
        vec![key(&b1), key(&by_cloud), key(&b_of_a2)]
    );

    // B's feed: A's amendment of B's reading; not B's own amendment of a2.
    let page = cloud
        .client_for(B)
        .changes(B, 0, 100, &[])
        .await
        .expect("b's feed");
    assert_eq!(page.versions, vec![a_of_b1.clone()]);

    // Paging one at a time gives the same versions, cursor after cursor,
    // and the cursor stays put once nothing is left.
    let pages = pull_all(&cloud, A, 1, &shared).await;
    let paged: Vec<VersionRecord> = pages.iter().flat_map(|p| p.versions.clone()).collect();
    assert_eq!(keys(&paged), vec![key(&b1), key(&by_cloud), key(&b_of_a2)]);
    assert!(pages.iter().all(|p| p.versions.len() <= 1));
    let last = pages.last().expect("pages").next_cursor;
    let empty = client.changes(A, last, 10, &shared).await.expect("empty");
    assert_eq!(
        (empty.versions.len(), empty.next_cursor, empty.more),
        (0, last, false)
    );
    // A cursor past the first version skips exactly it.
    let first_cursor = pages[0].next_cursor;
    let rest = client
        .changes(A, first_cursor, 2, &shared)
        .await
        .expect("rest");
    assert_eq!(keys(&rest.versions), vec![key(&by_cloud), key(&b_of_a2)]);
    assert!(!rest.more);
    let one = client
        .changes(A, first_cursor, 1, &shared)
        .await
        .expect("one");
    assert!(one.more);

    // Versions arriving later are after the cursor.
    let late = client
        .amend(
            &a3.reading_id,
            &AmendmentRequest {
                humidity_percent: Some(1.0),
                ..Default::default()
            },
        )
        .await
        .expect("amended")
        .current;
    let page = client.changes(A, last, 10, &shared).await.expect("new");
    assert_eq!(page.versions, vec![late.clone()]);
    assert_eq!(late.base.as_ref(), Some(&a_of_a3.version));

    // Coverage counts the versions each site wrote, whoever's readings they
    // amended; the cloud's amendments count for no site.
    let held = &cloud;
    let coverage = |site: &'static str| async move {
        held.admin.coverage(&held.url, site, &token(site)).await
    };
    let a = coverage(A).await.expect("coverage");
    assert_eq!(
        (a.versions, a.held_seqs, a.highest_contiguous_seq),
        (5, 3, 3)
    );
    let b = coverage(B).await.expect("coverage");
    assert_eq!(
        (b.versions, b.held_seqs, b.highest_contiguous_seq),
        (3, 2, 2)
    );
    cloud.stop().await;
}
on_both_backends!(the_feed_holds_what_others_wrote_of_the_sites_readings);

async fn the_feed_validates_its_parameters(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let get = |site: &str, query: String| {
        cloud
            .http
            .get(format!("{}?{query}", cloud.at(&changes_path(site))))
            .bearer_auth(token(site))
            .send()
    };
    let many: Vec<String> = (0..=MAX_SHARED_SENSORS)
        .map(|i| format!("sensor=s-{i}"))
        .collect();
    for (site, query, field) in [
        (A, "limit=0".to_owned(), "limit"),
        (A, format!("limit={}", MAX_CHANGES_PAGE + 1), "limit"),
        (A, "limit=many".to_owned(), "limit"),
        (A, "after=-3".to_owned(), "after"),
        (A, many.join("&"), "sensor"),
        (A, "sensors=x".to_owned(), "sensors"),
    ] {
        let response = get(site, query.clone()).await.expect("answer");
        assert_eq!(response.status(), 400, "{query}");
        let error = error_body(response).await.error;
        assert_eq!(
            error.field.as_deref(),
            Some(field),
            "{query}: {}",
            error.message
        );
    }
    // No site may be `cloud`, so no token is valid for it.
    let reserved = cloud
        .http
        .get(cloud.at(&changes_path("cloud")))
        .bearer_auth(token(A))
        .send()
        .await
        .expect("answer");
    assert_eq!(reserved.status(), 403);
    // The limits themselves are fine, and so is the largest cursor.
    let ok = get(
        A,
        format!(
            "limit={MAX_CHANGES_PAGE}&after={}&{}",
            u64::MAX,
            many[..MAX_SHARED_SENSORS].join("&")
        ),
    )
    .await
    .expect("answer");
    assert_eq!(ok.status(), 200);
    let page: ChangesPage = common::json(ok).await;
    assert_eq!(
        (page.versions.len(), page.next_cursor, page.more),
        (0, u64::MAX, false)
    );

    let response = cloud
        .http
        .get(cloud.at(&changes_path(A)))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 401);
    cloud.stop().await;
}
on_both_backends!(the_feed_validates_its_parameters);

async fn a_shared_sensor_behind_windows_of_other_versions_is_reached_page_by_page(
    db: &TestDatabase,
) {
    let cloud = TestCloud::start(db).await;
    // B's readings: one of the shared sensor, then more than two feed
    // windows of its other sensors, then the shared sensor again.
    let first = reading(B, 1, SHARED);
    let others = 2 * usize::try_from(edge_cloud::FEED_WINDOW).expect("fits") + 10;
    let last = reading(B, others as u64 + 2, SHARED);
    push(&cloud, B, "first", vec![first.clone()]).await;
    let mut seq = 2;
    for (i, chunk) in (0..others).collect::<Vec<_>>().chunks(10_000).enumerate() {
        let versions = chunk
            .iter()
            .map(|_| {
                seq += 1;
                reading(B, seq - 1, "b-only")
            })
            .collect();
        push(&cloud, B, &format!("others-{i}"), versions).await;
    }
    push(&cloud, B, "last", vec![last.clone()]).await;

    // A follows the shared sensor from the start: every page looks at most
    // a window of row ids, a window where nothing matches still moves the
    // cursor on (and says there is more), and both readings arrive.
    let shared = vec![SHARED.to_owned()];
    let pages = pull_all(&cloud, A, 100, &shared).await;
    let got: Vec<VersionRecord> = pages.iter().flat_map(|p| p.versions.clone()).collect();
    assert_eq!(keys(&got), vec![key(&first), key(&last)]);
    let mut after = 0;
    for page in &pages {
        assert!(
            page.next_cursor > after && page.next_cursor - after <= edge_cloud::FEED_WINDOW as u64,
            "a page moves the cursor by at most a window: {after} -> {}",
            page.next_cursor
        );
        after = page.next_cursor;
    }
    assert!(
        pages.iter().any(|p| p.versions.is_empty() && p.more),
        "a window of B's other sensors alone: {:?}",
        pages
            .iter()
            .map(|p| (p.versions.len(), p.next_cursor, p.more))
            .collect::<Vec<_>>()
    );
    // The end of the feed: the cursor stays put.
    let client = cloud.client_for(A);
    let end = client.changes(A, after, 100, &shared).await.expect("end");
    assert_eq!(
        (end.versions.len(), end.next_cursor, end.more),
        (0, after, false)
    );

    // Without shared sensors the feed holds none of B's readings, at once.
    let page = client.changes(A, 0, 100, &[]).await.expect("own feed");
    assert!(page.versions.is_empty() && !page.more);
    cloud.stop().await;
}
on_both_backends!(a_shared_sensor_behind_windows_of_other_versions_is_reached_page_by_page);
