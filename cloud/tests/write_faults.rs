//! The cloud's writes when its database fails under it, driven through the
//! fault seam on both backends: a push whose storing failed is never
//! answered as stored; a push whose COMMIT's answer was lost is settled by
//! the site's retry (duplicates); failures in a row leave nothing open
//! behind later pushes, which survive a restart. The cloud's own amendments
//! are held to the same.

mod common;

use std::sync::Arc;

use common::{TestCloud, batch, error_body, token, version};
use edge_cloud_link::contract::{PushBatch, VersionStatus, amendments_path};
use edge_sql::{Fault, FaultPoint, WriteFaults};
use edge_testkit::{TestDatabase, on_both_backends};

const SITE: &str = "mine-2";

fn disk_full(db: &TestDatabase) -> &'static str {
    if db.url.is_some() { "53100" } else { "13" }
}

fn connection_lost(db: &TestDatabase) -> &'static str {
    if db.url.is_some() { "08006" } else { "10" }
}

async fn start(db: &TestDatabase, faults: &Arc<WriteFaults>) -> TestCloud {
    let mut args = TestCloud::args(db);
    args.write_faults = Some(faults.clone());
    TestCloud::start_with(args).await
}

async fn held_seqs(cloud: &TestCloud) -> u64 {
    cloud
        .admin
        .coverage(&cloud.url, SITE, &token(SITE))
        .await
        .expect("coverage")
        .held_seqs
}

async fn failed_pushes_are_never_answered_stored(db: &TestDatabase) {
    let faults = Arc::new(WriteFaults::default());
    let cloud = start(db, &faults).await;

    // A COMMIT that fails for a full disk: 503, nothing held.
    faults.arm("push", FaultPoint::Commit, Fault::Error(disk_full(db)), 1);
    // (Each batch is built once: a retry sends the same versions.)
    let first = batch(SITE, 1..=5);
    let refused = cloud.push(SITE, "k1", &first).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(error_body(refused).await.error.code, "storage_full");
    assert_eq!(held_seqs(&cloud).await, 0);

    // The site's retry (a fresh key, as sync-svc sends) stores them.
    let stored = cloud.push_ok(SITE, "k2", &first).await;
    assert!(
        stored
            .results
            .iter()
            .all(|r| r.status == VersionStatus::Accepted)
    );

    // A COMMIT that succeeded but whose answer was lost: not answered 200;
    // the retry finds every version already held.
    faults.arm(
        "push",
        FaultPoint::AfterCommit,
        Fault::Error(connection_lost(db)),
        1,
    );
    let second = batch(SITE, 6..=9);
    let lost = cloud.push(SITE, "k3", &second).await;
    assert_eq!(lost.status(), 503);
    let retried = cloud.push_ok(SITE, "k4", &second).await;
    assert!(
        retried
            .results
            .iter()
            .all(|r| r.status == VersionStatus::Duplicate),
        "{retried:?}"
    );

    // What SQLite does on a COMMIT that cannot write, then a failing
    // statement: later pushes must still really commit.
    faults.arm("push", FaultPoint::Commit, Fault::RolledBackUnderneath, 1);
    faults.arm(
        "push",
        FaultPoint::Statement,
        Fault::Error(disk_full(db)),
        1,
    );
    let third = batch(SITE, 10..=12);
    assert_eq!(cloud.push(SITE, "k5", &third).await.status(), 503);
    assert_eq!(cloud.push(SITE, "k6", &third).await.status(), 503);
    cloud.push_ok(SITE, "k7", &third).await;
    for (i, first) in [13u64, 16].into_iter().enumerate() {
        cloud
            .push_ok(SITE, &format!("ok-{i}"), &batch(SITE, first..=first + 2))
            .await;
    }
    assert_eq!(faults.injected(), 4);
    assert_eq!(held_seqs(&cloud).await, 18);
    cloud.stop().await;

    let cloud = start(db, &faults).await;
    assert_eq!(held_seqs(&cloud).await, 18, "held across a restart");
    let coverage = cloud
        .admin
        .coverage(&cloud.url, SITE, &token(SITE))
        .await
        .expect("coverage");
    assert_eq!(coverage.highest_contiguous_seq, 18);
    assert_eq!(coverage.versions, 18, "each version once");
    cloud.stop().await;
}
on_both_backends!(failed_pushes_are_never_answered_stored);

/// An amendment whose COMMIT failed (a full disk, or SQLite's rollback
/// behind the driver followed by a failing statement) is answered 503 and
/// leaves the reading as it was; the next amendment commits on top of the
/// stored version, and what it wrote survives a restart.
async fn a_failed_amendment_changes_nothing_and_the_next_one_commits(db: &TestDatabase) {
    let faults = Arc::new(WriteFaults::default());
    let cloud = start(db, &faults).await;
    let first = version(SITE, 1);
    cloud
        .push_ok(
            SITE,
            "k1",
            &PushBatch {
                versions: vec![first.clone()],
            },
        )
        .await;
    let amend = |celsius: f64| {
        cloud
            .http
            .post(cloud.at(&amendments_path(&first.reading_id)))
            .bearer_auth(token(SITE))
            .header("content-type", "application/json")
            .body(format!(r#"{{"temperature_celsius": {celsius}}}"#))
            .send()
    };
    let client = cloud.client();

    faults.arm("amend", FaultPoint::Commit, Fault::Error(disk_full(db)), 1);
    let refused = amend(30.0).await.expect("answer");
    assert_eq!(refused.status(), 503);
    assert_eq!(error_body(refused).await.error.code, "storage_full");
    faults.arm("amend", FaultPoint::Commit, Fault::RolledBackUnderneath, 1);
    faults.arm(
        "amend",
        FaultPoint::Statement,
        Fault::Error(disk_full(db)),
        1,
    );
    assert_eq!(amend(31.0).await.expect("answer").status(), 503);
    assert_eq!(amend(32.0).await.expect("answer").status(), 503);
    assert_eq!(faults.injected(), 3);
    let unchanged = client.reading(&first.reading_id).await.expect("reading");
    assert_eq!(unchanged.versions, 1, "{unchanged:?}");
    assert_eq!(unchanged.current, first);

    assert_eq!(amend(33.0).await.expect("answer").status(), 200);
    let amended = client.reading(&first.reading_id).await.expect("reading");
    assert_eq!(amended.versions, 2, "{amended:?}");
    assert_eq!(amended.current.temperature_celsius, 33.0);
    assert_eq!(amended.current.base.as_ref(), Some(&first.version));
    cloud.stop().await;

    let cloud = start(db, &faults).await;
    let after = cloud
        .client()
        .reading(&first.reading_id)
        .await
        .expect("reading");
    assert_eq!(after, amended, "held across a restart");
    cloud.stop().await;
}
on_both_backends!(a_failed_amendment_changes_nothing_and_the_next_one_commits);
