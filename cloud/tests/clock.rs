//! The cloud's hybrid logical clock: it moves past what sites push (and
//! counts what is too far ahead of its wall clock), stamps the cloud's
//! amendments above everything it has seen, and never goes back across a
//! restart, even with the wall clock set back.

mod common;

use std::sync::Arc;

use common::{TestCloud, version};
use edge_cloud_link::contract::{AmendmentRequest, Hlc, PushBatch, VersionStatus};
use edge_testkit::{TestDatabase, on_both_backends};
use edge_versioning::{OffsetClock, SystemClock, WallClock};

const SITE: &str = "camp-5";

const HOUR_MS: u64 = 3_600_000;
const DAY_US: i64 = 86_400_000_000;

fn now_ms() -> u64 {
    (SystemClock.now_us() / 1_000) as u64
}

fn note(text: &str) -> AmendmentRequest {
    AmendmentRequest {
        note: Some(text.into()),
        ..Default::default()
    }
}

async fn a_version_from_an_hour_ahead_moves_the_clock_and_is_counted(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let mut ahead = version(SITE, 1);
    ahead.version.hlc = Hlc {
        physical_ms: now_ms() + HOUR_MS,
        logical: 3,
    };
    // A minute ahead is within the default five minutes: not counted.
    let mut slightly = version(SITE, 2);
    slightly.version.hlc = Hlc {
        physical_ms: now_ms() + 60_000,
        logical: 0,
    };
    let answer = cloud
        .push_ok(
            SITE,
            "ahead",
            &PushBatch {
                versions: vec![ahead.clone(), slightly.clone()],
            },
        )
        .await;
    assert!(
        answer
            .results
            .iter()
            .all(|r| r.status == VersionStatus::Accepted),
        "accepted, however far ahead: {answer:?}"
    );
    assert_eq!(
        cloud
            .admin
            .stats()
            .await
            .expect("stats")
            .clock_skew_versions,
        1
    );

    // The cloud amends the other reading: its stamp is above the version
    // from the future, although its wall clock is an hour behind it.
    let amended = cloud
        .client()
        .amend(&slightly.reading_id, &note("checked"))
        .await
        .expect("amended")
        .current;
    assert!(
        amended.version.hlc > ahead.version.hlc,
        "{:?} must order after {:?}",
        amended.version.hlc,
        ahead.version.hlc
    );
    cloud.stop().await;
}
on_both_backends!(a_version_from_an_hour_ahead_moves_the_clock_and_is_counted);

async fn the_clock_never_goes_back_across_a_restart(db: &TestDatabase) {
    let args = TestCloud::args(db);
    let cloud = TestCloud::start(db).await;
    let reading = version(SITE, 1);
    cloud
        .push_ok(
            SITE,
            "one",
            &PushBatch {
                versions: vec![reading.clone()],
            },
        )
        .await;
    let before = cloud
        .client()
        .amend(&reading.reading_id, &note("before the restart"))
        .await
        .expect("amended")
        .current
        .version
        .hlc;
    cloud.stop().await;

    // The same database, and a wall clock a day behind.
    let day_back: Arc<dyn WallClock> = Arc::new(OffsetClock { offset_us: -DAY_US });
    let cloud = TestCloud::start_with_clock(args, day_back).await;
    let mut stamps = vec![before];
    for n in 0..3 {
        let stamp = cloud
            .client()
            .amend(
                &reading.reading_id,
                &note(&format!("after the restart {n}")),
            )
            .await
            .expect("amended")
            .current
            .version
            .hlc;
        stamps.push(stamp);
    }
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "stamps go back: {stamps:?}"
    );
    // The clock stays at its persisted time rather than follow the wall clock back.
    assert!(stamps[3].physical_ms >= before.physical_ms);
    cloud.stop().await;
}
on_both_backends!(the_clock_never_goes_back_across_a_restart);
