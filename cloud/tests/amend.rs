//! The cloud's own amendments, a reading's state, and conflicts between a
//! site's amendment and the cloud's under each policy, on both backends.

mod common;

use common::{TestCloud, amendment_of, error_body, token, version};
use edge_cloud_link::contract::{
    AmendmentRequest, MAX_NOTE_CHARS, PushBatch, Quality, VersionRecord, VersionStamp,
    VersionStatus, amendments_path, reading_path,
};
use edge_testkit::{TestDatabase, on_both_backends};
use edge_versioning::{CLOUD_SITE_ID, Policy};

const SITE: &str = "ship-3";

/// Pushes `versions` for `site` under `key` and expects each to be accepted.
async fn push_accepted(cloud: &TestCloud, site: &str, key: &str, versions: Vec<VersionRecord>) {
    let answer = cloud.push_ok(site, key, &PushBatch { versions }).await;
    assert!(
        answer
            .results
            .iter()
            .all(|r| r.status == VersionStatus::Accepted),
        "{answer:?}"
    );
}

async fn an_amendment_becomes_current_on_top_of_the_previous_version(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let client = cloud.client();
    let first = version(SITE, 1);
    push_accepted(&cloud, SITE, "k1", vec![first.clone()]).await;

    let state = client
        .amend(
            &first.reading_id,
            &AmendmentRequest {
                temperature_celsius: Some(25.5),
                quality: Some(Quality::Suspect),
                note: Some("recalibrated".into()),
                ..Default::default()
            },
        )
        .await
        .expect("amended");
    let current = &state.current;
    assert_eq!(current.version.site_id, CLOUD_SITE_ID);
    assert_eq!(current.base.as_ref(), Some(&first.version));
    assert!(current.version.hlc > first.version.hlc);
    assert_eq!(
        (
            current.temperature_celsius,
            current.humidity_percent,
            current.quality,
            current.note.as_deref()
        ),
        (
            25.5,
            first.humidity_percent,
            Quality::Suspect,
            Some("recalibrated")
        )
    );
    // What the reading is, is copied, never amended.
    assert_eq!(
        (
            &current.reading_id,
            current.seq,
            &current.origin_site_id,
            &current.sensor_id,
            current.measured_at_us,
            current.received_at_us,
            current.priority,
            current.clock_suspect
        ),
        (
            &first.reading_id,
            first.seq,
            &first.origin_site_id,
            &first.sensor_id,
            first.measured_at_us,
            first.received_at_us,
            first.priority,
            first.clock_suspect
        )
    );
    assert_eq!((state.versions, state.policy.as_str()), (2, "lww"));
    assert_eq!(
        client.reading(&first.reading_id).await.expect("reading"),
        state
    );

    // A second amendment sits on the first; an empty note clears it.
    let again = client
        .amend(
            &first.reading_id,
            &AmendmentRequest {
                note: Some(String::new()),
                ..Default::default()
            },
        )
        .await
        .expect("amended again");
    assert_eq!(again.current.base.as_ref(), Some(&state.current.version));
    assert_eq!(again.current.note, None);
    assert_eq!(again.current.temperature_celsius, 25.5);
    assert_eq!(again.current.quality, Quality::Suspect);
    assert_eq!(again.versions, 3);

    // The admin view agrees, no conflict was logged, and the site's books
    // count only what the site wrote.
    let current = cloud.admin.all_current(Some(SITE)).await.expect("current");
    assert_eq!(current, vec![again.current.clone()]);
    assert!(
        cloud
            .admin
            .all_conflicts(None)
            .await
            .expect("conflicts")
            .is_empty()
    );
    let stats = cloud.admin.stats().await.expect("stats");
    assert_eq!((stats.amendments, stats.conflicts_resolved), (2, 0));
    let coverage = cloud
        .admin
        .coverage(&cloud.url, SITE, &token(SITE))
        .await
        .expect("coverage");
    assert_eq!((coverage.versions, coverage.held_seqs), (1, 1));
    cloud.stop().await;
}
on_both_backends!(an_amendment_becomes_current_on_top_of_the_previous_version);

async fn unknown_readings_and_invalid_amendments_are_refused(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let known = version(SITE, 1);
    push_accepted(&cloud, SITE, "k1", vec![known.clone()]).await;
    let post = |reading_id: &str, body: String| {
        cloud
            .http
            .post(cloud.at(&amendments_path(reading_id)))
            .bearer_auth(token(SITE))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let unknown = uuid::Uuid::new_v4().to_string();
    let response = post(&unknown, r#"{"temperature_celsius": 1.0}"#.into())
        .await
        .expect("answer");
    assert_eq!(response.status(), 404);
    assert_eq!(error_body(response).await.error.code, "not_found");
    let response = cloud
        .http
        .get(cloud.at(&reading_path(&unknown)))
        .bearer_auth(token(SITE))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 404);
    let err = cloud
        .client()
        .reading(&unknown)
        .await
        .expect_err("unknown reading");
    assert_eq!(err.status(), Some(404));

    let note = "n".repeat(MAX_NOTE_CHARS + 1);
    for (reading_id, body, field) in [
        (
            "not-a-uuid",
            r#"{"temperature_celsius": 1.0}"#.to_owned(),
            Some("reading_id"),
        ),
        (known.reading_id.as_str(), "{}".to_owned(), None),
        (
            known.reading_id.as_str(),
            r#"{"temperature_celsius": -300.0}"#.to_owned(),
            Some("temperature_celsius"),
        ),
        (
            known.reading_id.as_str(),
            r#"{"humidity_percent": 100.5}"#.to_owned(),
            Some("humidity_percent"),
        ),
        (
            known.reading_id.as_str(),
            format!(r#"{{"note": "{note}"}}"#),
            Some("note"),
        ),
        (
            known.reading_id.as_str(),
            r#"{"quality": "dubious"}"#.to_owned(),
            Some("quality"),
        ),
    ] {
        let response = post(reading_id, body.clone()).await.expect("answer");
        assert_eq!(response.status(), 400, "{body}");
        let error = error_body(response).await.error;
        assert_eq!(error.code, "invalid_body", "{body}");
        assert_eq!(error.field.as_deref(), field, "{body}: {}", error.message);
    }

    let response = cloud
        .http
        .post(cloud.at(&amendments_path(&known.reading_id)))
        .body(r#"{"temperature_celsius": 1.0}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 401);

    // Nothing above changed the reading.
    let state = cloud
        .client()
        .reading(&known.reading_id)
        .await
        .expect("reading");
    assert_eq!((state.versions, &state.current), (1, &known));
    cloud.stop().await;
}
on_both_backends!(unknown_readings_and_invalid_amendments_are_refused);

/// The physical part of a stamp.
fn physical(stamp: &VersionStamp) -> u64 {
    stamp.hlc.physical_ms
}

async fn concurrent_amendments_are_resolved_by_the_policy_and_audited(db: &TestDatabase) {
    // Per policy: the winner when the site amended later than the cloud,
    // and when it amended earlier (both on the same base).
    for (policy, later_wins, earlier_wins) in [
        (Policy::Lww, "site", "cloud"),
        (Policy::CloudWins, "cloud", "cloud"),
        (Policy::EdgeWins, "site", "site"),
    ] {
        let cloud = TestCloud::start_with_policy(db, policy).await;
        let client = cloud.client();
        // Fresh readings per policy: on PostgreSQL the database is shared.
        let seq = |n: u64| n + 10 * policy_index(policy);
        let later = version(SITE, seq(1));
        let earlier = version(SITE, seq(2));
        push_accepted(
            &cloud,
            SITE,
            &format!("{policy}-originals"),
            vec![later.clone(), earlier.clone()],
        )
        .await;

        let mut site_versions = Vec::new();
        for (original, site_is_later, expected) in
            [(&later, true, later_wins), (&earlier, false, earlier_wins)]
        {
            let by_cloud = client
                .amend(
                    &original.reading_id,
                    &AmendmentRequest {
                        temperature_celsius: Some(-5.0),
                        ..Default::default()
                    },
                )
                .await
                .expect("cloud amendment")
                .current;
            // The site amended the same base without having seen the
            // cloud's amendment: concurrent.
            let stamp = if site_is_later {
                physical(&by_cloud.version) + 1_000
            } else {
                physical(&original.version) + 1
            };
            assert!((stamp > physical(&by_cloud.version)) == site_is_later);
            let by_site = amendment_of(original, SITE, stamp, 30.0);
            push_accepted(
                &cloud,
                SITE,
                &format!("{policy}-{}", original.reading_id),
                vec![by_site.clone()],
            )
            .await;

            let state = client.reading(&original.reading_id).await.expect("reading");
            let (winner, side) = match expected {
                "site" => (&by_site, "remote"),
                _ => (&by_cloud, "local"),
            };
            assert_eq!(
                &state.current, winner,
                "{policy}, site later: {site_is_later}"
            );
            assert_eq!(
                (state.versions, state.policy.as_str()),
                (3, policy.as_str())
            );
            let log = cloud
                .admin
                .all_conflicts(Some(&original.reading_id))
                .await
                .expect("conflicts");
            assert_eq!(log.len(), 1, "{policy}: {log:?}");
            let conflict = &log[0];
            assert_eq!(
                (
                    &conflict.local,
                    &conflict.remote,
                    conflict.winner.as_str(),
                    conflict.policy.as_str()
                ),
                (&by_cloud.version, &by_site.version, side, policy.as_str()),
                "{policy}, site later: {site_is_later}"
            );
            // Who wrote each: the site token that asked for the cloud's
            // amendment (`cloud.client()` holds ship-1's), and the identity
            // the site recorded for its own.
            assert_eq!(
                (
                    conflict.local_written_by.as_deref(),
                    conflict.remote_written_by.as_deref()
                ),
                (Some("site:ship-1"), Some("operator")),
                "{policy}"
            );
            site_versions.push(by_site);
        }

        // Pushing the same versions again changes nothing and logs nothing.
        let before = cloud.admin.all_current(Some(SITE)).await.expect("current");
        let again = cloud
            .push_ok(
                SITE,
                &format!("{policy}-again"),
                &PushBatch {
                    versions: site_versions,
                },
            )
            .await;
        assert!(
            again
                .results
                .iter()
                .all(|r| r.status == VersionStatus::Duplicate)
        );
        assert_eq!(
            cloud.admin.all_current(Some(SITE)).await.expect("current"),
            before
        );
        let stats = cloud.admin.stats().await.expect("stats");
        assert_eq!(stats.conflicts_resolved, 2, "{policy}");
        for reading in [&later, &earlier] {
            assert_eq!(
                cloud
                    .admin
                    .all_conflicts(Some(&reading.reading_id))
                    .await
                    .expect("conflicts")
                    .len(),
                1
            );
        }
        cloud.stop().await;
    }
}
on_both_backends!(concurrent_amendments_are_resolved_by_the_policy_and_audited);

fn policy_index(policy: Policy) -> u64 {
    Policy::ALL
        .iter()
        .position(|p| *p == policy)
        .unwrap_or_default() as u64
}
