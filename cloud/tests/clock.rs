//! The cloud's hybrid logical clock: it moves past what sites push only up
//! to the clock-skew bound ahead of its wall clock (what is further ahead is
//! kept, flagged and counted), stamps its amendments above every version of
//! the reading (so amending works however far ahead a reading is stamped),
//! and falls back within the bound at start when it was dragged ahead.

mod common;

use std::sync::Arc;

use common::{TestCloud, amendment_of, json, version};
use edge_cloud_link::contract::{
    AmendmentRequest, Hlc, PushBatch, ReadingState, VersionRecord, VersionStatus,
};
use edge_testkit::{TestDatabase, on_both_backends};
use edge_versioning::{OffsetClock, SystemClock, WallClock};

const SITE: &str = "camp-5";

const HOUR_MS: u64 = 3_600_000;
const DAY_US: i64 = 86_400_000_000;
/// The default clock-skew bound.
const BOUND_MS: u64 = HOUR_MS;
/// The latest time a clock may read: the largest physical part a first
/// version may carry ("near the clock's limit").
const TOP_MS: u64 = (1 << 47) - 1 - (1 << 32);
/// The largest physical part any stamp may carry.
const MAX_PHYSICAL_MS: u64 = (1 << 47) - 1;

fn now_ms() -> u64 {
    (SystemClock.now_us() / 1_000) as u64
}

fn note(text: &str) -> AmendmentRequest {
    AmendmentRequest {
        note: Some(text.into()),
        ..Default::default()
    }
}

/// The cloud amends `reading_id`; its new current version's stamp.
async fn amend(cloud: &TestCloud, reading_id: &str, text: &str) -> Hlc {
    cloud
        .client()
        .amend(reading_id, &note(text))
        .await
        .unwrap_or_else(|e| panic!("amending {reading_id} ({text}): {e}"))
        .current
        .version
        .hlc
}

/// A first version of a new reading stamped `hlc`.
fn stamped(seq: u64, physical_ms: u64, logical: u32) -> VersionRecord {
    let mut v = version(SITE, seq);
    v.version.hlc = Hlc {
        physical_ms,
        logical,
    };
    v
}

async fn a_version_hours_ahead_is_flagged_and_does_not_drag_the_clock(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let ahead = stamped(1, now_ms() + 2 * HOUR_MS, 3);
    // A minute ahead is within the default hour: taken, not flagged.
    let slightly = stamped(2, now_ms() + 60_000, 0);
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
    let stats = cloud.admin.stats().await.expect("stats");
    assert_eq!(stats.clock_skew_versions, 1);
    let flagged = cloud.admin.all_clock_ahead().await.expect("flagged");
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0].reading_id, ahead.reading_id);
    let by_ms = flagged[0].clock_ahead_ms.expect("how far ahead");
    assert!((HOUR_MS..=2 * HOUR_MS).contains(&by_ms), "{by_ms}");
    let listed = cloud.admin.all_versions(SITE).await.expect("versions");
    assert_eq!(
        listed.iter().filter(|v| v.clock_ahead_ms.is_some()).count(),
        1
    );

    // The cloud's clock did not follow the version two hours ahead: its
    // amendment of the other reading is stamped within the bound...
    let other = amend(&cloud, &slightly.reading_id, "checked").await;
    assert!(
        other.physical_ms <= now_ms() + BOUND_MS,
        "{other:?} is beyond the bound"
    );
    assert!(other > slightly.version.hlc);
    // ...and its amendment of the reading from the future orders after it.
    let amended = amend(&cloud, &ahead.reading_id, "checked").await;
    assert!(
        amended > ahead.version.hlc,
        "{amended:?} must order after {:?}",
        ahead.version.hlc
    );
    cloud.stop().await;
}
on_both_backends!(a_version_hours_ahead_is_flagged_and_does_not_drag_the_clock);

async fn a_version_near_the_clocks_limit_is_kept_flagged_and_amendable(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let top = stamped(1, TOP_MS, 65_535);
    let plain = version(SITE, 2);
    cloud
        .push_ok(
            SITE,
            "top",
            &PushBatch {
                versions: vec![top.clone(), plain.clone()],
            },
        )
        .await;
    let flagged = cloud.admin.all_clock_ahead().await.expect("flagged");
    assert_eq!(
        flagged.iter().map(|v| &v.reading_id).collect::<Vec<_>>(),
        vec![&top.reading_id]
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

    // Amended twice in the cloud: stamped past the top, into the headroom.
    let once = amend(&cloud, &top.reading_id, "once").await;
    let twice = amend(&cloud, &top.reading_id, "twice").await;
    assert_eq!(
        once,
        Hlc {
            physical_ms: TOP_MS + 1,
            logical: 0
        }
    );
    assert!(twice > once);
    // The cloud's clock stayed within the bound.
    let other = amend(&cloud, &plain.reading_id, "elsewhere").await;
    assert!(other.physical_ms <= now_ms() + BOUND_MS, "{other:?}");

    // A site's amendment in the headroom is accepted; stamps beyond the
    // range are malformed and rejected, naming the field and the limit.
    let mut current = top.clone();
    current.version.hlc = twice;
    current.version.site_id = "cloud".into();
    let mut in_headroom = amendment_of(&current, SITE, TOP_MS + 1, 30.0);
    in_headroom.version.hlc.logical = 5;
    let first_beyond = stamped(3, TOP_MS + 1, 0);
    let amendment_beyond = amendment_of(&plain, SITE, MAX_PHYSICAL_MS + 1, 31.0);
    let answer = cloud
        .push_ok(
            SITE,
            "beyond",
            &PushBatch {
                versions: vec![in_headroom.clone(), first_beyond, amendment_beyond],
            },
        )
        .await;
    let statuses: Vec<_> = answer.results.iter().map(|r| r.status).collect();
    // A first version in the headroom (an older build's clock could be
    // dragged there) is kept: only beyond the encoding is a stamp refused.
    assert_eq!(
        statuses,
        [
            VersionStatus::Accepted,
            VersionStatus::Accepted,
            VersionStatus::Rejected
        ]
    );
    let reasons: Vec<String> = answer
        .results
        .iter()
        .filter_map(|r| r.reason.clone())
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("version.hlc.physical_ms")
            && reasons[0].contains(&MAX_PHYSICAL_MS.to_string()),
        "{reasons:?}"
    );
    let state: ReadingState = cloud
        .client()
        .reading(&top.reading_id)
        .await
        .expect("the reading");
    assert_eq!(state.current.version, in_headroom.version);
    assert_eq!(state.versions, 4);
    cloud.stop().await;
}
on_both_backends!(a_version_near_the_clocks_limit_is_kept_flagged_and_amendable);

async fn a_clock_dragged_to_the_top_falls_back_at_start(db: &TestDatabase) {
    let args = TestCloud::args(db);
    let reading = version(SITE, 1);
    let other = version(SITE, 2);
    // A wall clock thousands of years ahead stamps the cloud's amendment at
    // the latest time a clock may read, and leaves its clock there.
    let far: Arc<dyn WallClock> = Arc::new(OffsetClock {
        offset_us: i64::MAX / 2,
    });
    let cloud = TestCloud::start_with_clock(args.clone(), far).await;
    cloud
        .push_ok(
            SITE,
            "two",
            &PushBatch {
                versions: vec![reading.clone(), other.clone()],
            },
        )
        .await;
    let future = amend(&cloud, &reading.reading_id, "from the future").await;
    assert_eq!(future.physical_ms, TOP_MS);
    cloud.stop().await;

    // Restarted with a right clock: the cloud's clock is back within the
    // bound, and the reading stamped at the top is still amendable.
    let cloud = TestCloud::start_with_clock(args, Arc::new(SystemClock)).await;
    let elsewhere = amend(&cloud, &other.reading_id, "now").await;
    assert!(
        elsewhere.physical_ms <= now_ms() + BOUND_MS,
        "the clock fell back: {elsewhere:?}"
    );
    let once = amend(&cloud, &reading.reading_id, "once").await;
    let twice = amend(&cloud, &reading.reading_id, "twice").await;
    assert!(
        future < once && once < twice,
        "{future:?} {once:?} {twice:?}"
    );
    cloud.stop().await;
}
on_both_backends!(a_clock_dragged_to_the_top_falls_back_at_start);

async fn a_readings_stamps_keep_increasing_across_a_restart_with_the_clock_set_back(
    db: &TestDatabase,
) {
    let args = TestCloud::args(db);
    let cloud = TestCloud::start(db).await;
    let reading = version(SITE, 1);
    let fresh = stamped(2, now_ms() - 2 * 24 * HOUR_MS, 0);
    cloud
        .push_ok(
            SITE,
            "one",
            &PushBatch {
                versions: vec![reading.clone()],
            },
        )
        .await;
    let before = amend(&cloud, &reading.reading_id, "before the restart").await;
    cloud.stop().await;

    // The same database, and a wall clock a day behind.
    let day_back: Arc<dyn WallClock> = Arc::new(OffsetClock { offset_us: -DAY_US });
    let cloud = TestCloud::start_with_clock(args, day_back.clone()).await;
    let mut stamps = vec![before];
    for n in 0..3 {
        stamps.push(
            amend(
                &cloud,
                &reading.reading_id,
                &format!("after the restart {n}"),
            )
            .await,
        );
    }
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "stamps go back: {stamps:?}"
    );
    // The clock itself fell back to the bound ahead of the wall clock: a
    // reading amended now for the first time is stamped there.
    let pushed = cloud
        .push(
            SITE,
            "fresh",
            &PushBatch {
                versions: vec![fresh.clone()],
            },
        )
        .await;
    assert_eq!(pushed.status(), 200);
    let _: edge_cloud_link::contract::PushResponse = json(pushed).await;
    let wall_ms = (day_back.now_us() / 1_000) as u64;
    let stamp = amend(&cloud, &fresh.reading_id, "fresh").await;
    assert!(
        stamp.physical_ms <= wall_ms + BOUND_MS + 1_000,
        "{stamp:?} is beyond the bound of {wall_ms}"
    );
    cloud.stop().await;
}
on_both_backends!(a_readings_stamps_keep_increasing_across_a_restart_with_the_clock_set_back);
