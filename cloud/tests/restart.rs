//! What the cloud holds, and its push counter, survive a restart.

mod common;

use common::{TOKEN, TestCloud, batch};
use edge_cloud::{CloudApp, CloudArgs, CloudError};
use edge_cloud_link::contract::VersionStatus;
use edge_testkit::{Backend, TestDatabase};

const SITE: &str = "ship-9";

#[tokio::test]
async fn data_and_push_numbers_survive_a_restart() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let args = CloudArgs::for_test(db.data_dir.join("cloud"), None, TOKEN);

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
        .coverage(&cloud.url, SITE, TOKEN)
        .await
        .expect("coverage");
    assert_eq!(coverage.highest_contiguous_seq, 13);
    cloud.stop().await;
}

#[tokio::test]
async fn a_missing_token_fails_the_build() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mut args = CloudArgs::for_test(db.data_dir.clone(), None, "x");
    args.token = None;
    let err = CloudApp::build(&args)
        .await
        .err()
        .expect("no token, no cloud");
    assert!(matches!(err, CloudError::MissingToken));
    let message = err.to_string();
    assert!(
        message.contains("--cloud-token") && message.contains("EDGE_CLOUD_TOKEN"),
        "{message}"
    );
    args.token = Some("  ".into());
    assert!(matches!(
        CloudApp::build(&args).await,
        Err(CloudError::MissingToken)
    ));
}
