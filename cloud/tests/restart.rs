//! What the cloud holds, and its push counter, survive a restart.

mod common;

use common::{TestCloud, batch, token};
use edge_cloud::{CloudApp, CloudArgs, CloudError};
use edge_cloud_link::contract::VersionStatus;
use edge_testkit::{Backend, TestDatabase};

const SITE: &str = "ship-9";

#[tokio::test]
async fn data_and_push_numbers_survive_a_restart() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let args = TestCloud::args_in(db.data_dir.join("cloud"), None);

    let cloud = TestCloud::start_with(args.clone()).await;
    let first = batch(SITE, 1..=10);
    cloud.push_ok(SITE, "one", &first).await;
    cloud.push_ok(SITE, "two", &batch(SITE, 11..=12)).await;
    let before = cloud.admin.all_versions(SITE).await.expect("versions");
    cloud.stop().await;

    let cloud = TestCloud::start_with(args).await;
    assert_eq!(
        cloud.admin.all_versions(SITE).await.expect("versions"),
        before
    );
    // Idempotency records survive too: a replay after the restart.
    let replay = cloud.push_ok(SITE, "one", &first).await;
    assert!(
        replay
            .results
            .iter()
            .all(|r| r.status == VersionStatus::Accepted)
    );
    cloud.push_ok(SITE, "three", &batch(SITE, 13..=13)).await;
    let after = cloud.admin.all_versions(SITE).await.expect("versions");
    let last_before = before
        .iter()
        .map(|v| v.push)
        .max()
        .expect("versions before");
    assert!(
        after[12].push > last_before,
        "push numbers keep growing across restarts"
    );
    let coverage = cloud
        .admin
        .coverage(&cloud.url, SITE, &token(SITE))
        .await
        .expect("coverage");
    assert_eq!(coverage.highest_contiguous_seq, 13);
    cloud.stop().await;
}

#[tokio::test]
async fn a_site_token_of_another_site_fails_the_build() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let args = CloudArgs::for_test(db.data_dir.clone(), None)
        .with_site_token("ship-1", "shared-secret")
        .with_site_token("ship-2", "shared-secret");
    let err = CloudApp::build(&args)
        .await
        .err()
        .expect("one token, one site");
    assert!(matches!(err, CloudError::SiteTokenTaken { .. }));
    let message = err.to_string();
    assert!(
        message.contains("--site-token ship-2") && !message.contains("shared-secret"),
        "{message}"
    );
}
