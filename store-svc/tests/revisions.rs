//! Amendments and versions pulled from the cloud, through store-svc's real
//! gRPC API on both backends: what is current after each, what goes to the
//! outbox (and what never does), the audit log, and the clock: far-ahead
//! stamps are stored and flagged but move the clock only up to the bound,
//! and amending works whatever the stamps.

use edge_proto::internal::v1 as ipb;
use edge_proto::v1 as pb;
use edge_testkit::StoreClients;
use edge_testkit::{TestDatabase, on_both_backends, query_all};
use tonic::Code;

mod common;

use common::*;

const DAY_US: i64 = 86_400_000_000;
const HOUR_MS: u64 = 3_600_000;

fn stamp(physical_ms: u64, logical: u32, site_id: &str) -> pb::VersionStamp {
    pb::VersionStamp {
        hlc: Some(pb::Hlc {
            physical_ms,
            logical,
        }),
        site_id: site_id.into(),
    }
}

fn hlc_of(v: &Option<pb::VersionStamp>) -> (u64, u32) {
    let hlc = v.as_ref().and_then(|v| v.hlc).unwrap_or_default();
    (hlc.physical_ms, hlc.logical)
}

async fn current(client: &mut StoreClients, id: &str) -> pb::StoredReading {
    query_all(client, pb::QueryReadingsRequest::default())
        .await
        .into_iter()
        .find(|r| r.id == id)
        .expect("reading stored")
}

async fn amend(
    client: &mut StoreClients,
    request: pb::AmendRequest,
) -> Result<pb::StoredReading, tonic::Status> {
    client
        .operations
        .amend(request)
        .await
        .map(|r| r.into_inner().reading.expect("reading"))
}

/// A remote version of `reading` (as the store returned it) with new values.
fn remote_of(
    reading: &pb::StoredReading,
    version: pb::VersionStamp,
    base: Option<pb::VersionStamp>,
    temperature: f64,
) -> ipb::RemoteVersion {
    ipb::RemoteVersion {
        reading_id: reading.id.clone(),
        origin_site_id: reading.site_id.clone(),
        origin_seq: reading.seq,
        sensor_id: reading.sensor_id.clone(),
        temperature_celsius: temperature,
        humidity_percent: reading.humidity_percent,
        measured_at: reading.measured_at,
        received_at: reading.received_at,
        priority: reading.priority,
        clock_suspect: reading.clock_suspect,
        version: Some(version),
        base,
        quality: pb::Quality::Good as i32,
        note: String::new(),
        written_by: "site:ship-9".into(),
    }
}

async fn apply(
    client: &mut StoreClients,
    versions: Vec<ipb::RemoteVersion>,
    policy: &str,
    next_cursor: u64,
) -> ipb::ApplyRemoteVersionsResponse {
    client
        .sync
        .apply_remote_versions(ipb::ApplyRemoteVersionsRequest {
            versions,
            policy: policy.into(),
            next_cursor,
            max_clock_skew: None,
        })
        .await
        .expect("apply")
        .into_inner()
}

/// The latest time a clock may read: the largest physical part a first
/// version may carry ("near the clock's limit").
const TOP_MS: u64 = (1 << 47) - 1 - (1 << 32);
/// The default clock-skew bound.
const BOUND_MS: u64 = HOUR_MS;

fn ms_of(us: i64) -> u64 {
    (us / 1_000) as u64
}

/// The site's clock as its stats show it.
async fn site_clock(client: &mut StoreClients) -> (u64, u32) {
    let hlc = stats(client).await.hlc.expect("an HLC");
    (hlc.physical_ms, hlc.logical)
}

fn clock_ahead_ms(reading: &pb::StoredReading) -> Option<i64> {
    reading
        .version_clock_ahead
        .map(|d| d.seconds * 1_000 + i64::from(d.nanos) / 1_000_000)
}

/// Amends `id` with a note, expecting success.
async fn amend_note(client: &mut StoreClients, id: &str, note: &str) -> pb::StoredReading {
    amend(
        client,
        pb::AmendRequest {
            reading_id: id.to_owned(),
            note: Some(note.to_owned()),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("amending {id} ({note}): {e:?}"))
}

async fn conflicts(client: &mut StoreClients) -> Vec<pb::ConflictEntry> {
    client
        .operations
        .list_conflicts(pb::ListConflictsRequest::default())
        .await
        .expect("conflicts")
        .into_inner()
        .conflicts
}

async fn an_amendment_is_a_new_current_version_queued_for_the_cloud(db: &TestDatabase) {
    let store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    // ingest-svc names the gateway behind each reading; a reading that
    // names none was written by whoever called Append (here the mesh).
    let from_gateway = ipb::NewReading {
        written_by: "gateway-7".into(),
        ..reading(1, "s1", T0_US)
    };
    append(&mut client, vec![from_gateway, reading(2, "s1", T0_US)]).await;
    let first = current(&mut client, &reading(1, "s1", T0_US).id).await;
    assert_eq!(first.written_by, "gateway-7");
    let unnamed = current(&mut client, &reading(2, "s1", T0_US).id).await;
    assert_eq!(unnamed.written_by, "mesh");

    let amended = amend(
        &mut client,
        pb::AmendRequest {
            reading_id: first.id.clone(),
            quality: pb::Quality::Bad as i32,
            note: Some("sensor s1 iced over".into()),
            ..Default::default()
        },
    )
    .await
    .expect("amend");
    assert_eq!(amended.quality, pb::Quality::Bad as i32);
    assert_eq!(amended.note, "sensor s1 iced over");
    assert_eq!(
        amended.temperature_celsius, first.temperature_celsius,
        "kept"
    );
    assert_eq!(amended.sync_state, pb::SyncState::Pending as i32);
    assert_eq!(
        amended.written_by, "operator",
        "the caller of Amend wrote it"
    );
    assert_eq!(
        current(&mut client, &first.id).await.written_by,
        "operator",
        "queries show the current version's writer"
    );
    assert!(hlc_of(&amended.version) > hlc_of(&first.version));
    assert_eq!(amended.seq, first.seq, "same reading, same seq");

    // Every version waits in the outbox, with its writer for the cloud;
    // the amendment names its base.
    let leased = client
        .sync
        .lease_batch(ipb::LeaseBatchRequest {
            max_versions: 10,
            ..Default::default()
        })
        .await
        .expect("lease")
        .into_inner();
    assert_eq!(leased.versions.len(), 3);
    let writers: Vec<&str> = leased
        .versions
        .iter()
        .map(|v| v.written_by.as_str())
        .collect();
    assert_eq!(writers, ["gateway-7", "mesh", "operator"]);
    let amendment = &leased.versions[2];
    assert_eq!(amendment.base, first.version);
    assert_eq!(amendment.version, amended.version);
    assert_eq!(amendment.quality, pb::Quality::Bad as i32);
    assert_eq!(amendment.note, "sensor s1 iced over");
    let s = stats(&mut client).await;
    assert_eq!((s.total_versions, s.unsynced_versions), (3, 3));

    // A writer that is no name is refused, naming the field.
    let err = client
        .ingest
        .append(ipb::AppendRequest {
            readings: vec![ipb::NewReading {
                written_by: "gate\u{1b}[2Jway".into(),
                ..reading(3, "s1", T0_US)
            }],
        })
        .await
        .expect_err("control characters");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        format!("{err:?}").contains("readings[0].written_by"),
        "{err:?}"
    );

    // Bad input names the field; an unknown reading is NOT_FOUND.
    let err = amend(
        &mut client,
        pb::AmendRequest {
            reading_id: first.id.clone(),
            humidity_percent: Some(140.0),
            ..Default::default()
        },
    )
    .await
    .expect_err("out of range");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(format!("{err:?}").contains("humidity_percent"), "{err:?}");
    let err = amend(
        &mut client,
        pb::AmendRequest {
            reading_id: first.id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect_err("nothing to change");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = amend(
        &mut client,
        pb::AmendRequest {
            reading_id: "01900000-0000-7000-8000-999999999999".into(),
            temperature_celsius: Some(1.0),
            ..Default::default()
        },
    )
    .await
    .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    store.stop().await;
}

/// The site amends a reading while the cloud amends the same one: under
/// each rule the expected version is current, the audit log says so, and
/// the same page applied again changes nothing.
async fn concurrent_versions_are_resolved_by_the_announced_rule(db: &TestDatabase) {
    let store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    for (n, (policy, cloud_wins)) in [("lww", false), ("cloud-wins", true), ("edge-wins", false)]
        .into_iter()
        .enumerate()
    {
        let n = n as u32 + 1;
        append(&mut client, vec![reading(n, "s1", T0_US)]).await;
        let id = reading(n, "s1", T0_US).id;
        let first = current(&mut client, &id).await;
        let local = amend(
            &mut client,
            pb::AmendRequest {
                reading_id: id.clone(),
                temperature_celsius: Some(11.0),
                ..Default::default()
            },
        )
        .await
        .expect("amend");
        // The cloud's amendment, on the same base, an hour behind in HLC:
        // under lww the site's later stamp wins.
        let (ms, _) = hlc_of(&first.version);
        let cloud = stamp(ms - HOUR_MS, 0, "cloud");
        let page = vec![remote_of(
            &first,
            cloud.clone(),
            first.version.clone(),
            22.0,
        )];
        let unsynced = stats(&mut client).await.unsynced_versions;
        let applied = apply(&mut client, page.clone(), policy, u64::from(n) * 10).await;
        assert_eq!((applied.applied, applied.conflicts), (1, 1), "{policy}");
        let now = current(&mut client, &id).await;
        let (winner, temperature) = if cloud_wins {
            (Some(cloud.clone()), 22.0)
        } else {
            (local.version.clone(), 11.0)
        };
        assert_eq!(now.version, winner, "{policy}");
        assert_eq!(now.temperature_celsius, temperature, "{policy}");
        let winner_by = if cloud_wins {
            "site:ship-9"
        } else {
            "operator"
        };
        assert_eq!(now.written_by, winner_by, "{policy}");
        let log: Vec<_> = conflicts(&mut client)
            .await
            .into_iter()
            .filter(|c| c.reading_id == id)
            .collect();
        assert_eq!(log.len(), 1, "{policy}");
        assert_eq!(log[0].local, local.version, "{policy}");
        assert_eq!(log[0].remote, Some(cloud.clone()), "{policy}");
        assert_eq!(log[0].current, winner, "{policy}");
        assert_eq!(log[0].winner, if cloud_wins { "remote" } else { "local" });
        assert_eq!(log[0].policy, policy);
        // Both writers, as they were when it was resolved.
        assert_eq!(
            (
                log[0].local_written_by.as_str(),
                log[0].remote_written_by.as_str()
            ),
            ("operator", "site:ship-9"),
            "{policy}"
        );

        // Again: nothing changes, nothing is logged, the cursor stays.
        let again = apply(&mut client, page, policy, 5).await;
        assert_eq!(
            (again.applied, again.already_held, again.cursor),
            (0, 1, u64::from(n) * 10)
        );
        assert_eq!(conflicts(&mut client).await.len(), n as usize);
        // Nothing pulled is queued for the cloud.
        assert_eq!(
            stats(&mut client).await.unsynced_versions,
            unsynced,
            "{policy}"
        );
    }
    store.stop().await;
}

/// A correction made on top of the site's version replaces it under every
/// rule: no conflict. Stamped a day ahead, it is flagged and moves the
/// site's clock only up to the bound, and the site's next amendment still
/// orders after it.
async fn a_correction_on_top_is_no_conflict_and_the_next_amendment_orders_after_it(
    db: &TestDatabase,
) {
    let store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    append(&mut client, vec![reading(1, "s1", T0_US)]).await;
    let id = reading(1, "s1", T0_US).id;
    let first = current(&mut client, &id).await;
    let (ms, _) = hlc_of(&first.version);
    // From a cloud whose clock runs a day ahead of the site's.
    let ahead = stamp(ms + 24 * HOUR_MS, 3, "cloud");
    let applied = apply(
        &mut client,
        vec![remote_of(
            &first,
            ahead.clone(),
            first.version.clone(),
            30.0,
        )],
        "edge-wins",
        1,
    )
    .await;
    assert_eq!(
        (applied.applied, applied.conflicts, applied.clock_ahead),
        (1, 0, 1)
    );
    let now = current(&mut client, &id).await;
    assert_eq!(now.version, Some(ahead.clone()));
    assert_eq!(now.sync_state, pb::SyncState::Synced as i32);
    assert!(clock_ahead_ms(&now).is_some(), "flagged: {now:?}");
    assert!(site_clock(&mut client).await.0 <= ms_of(T0_US) + BOUND_MS);
    // The site's next version orders after the one it received.
    let amended = amend(
        &mut client,
        pb::AmendRequest {
            reading_id: id.clone(),
            temperature_celsius: Some(31.0),
            ..Default::default()
        },
    )
    .await
    .expect("amend");
    assert!(hlc_of(&amended.version) > hlc_of(&Some(ahead)));
    assert_eq!(amended.temperature_celsius, 31.0);
    store.stop().await;
}

/// A shared sensor's reading from another site is stored with its origin's
/// seq, found by sensor, and never counted on this site's books.
async fn another_sites_reading_is_stored_under_its_origin(db: &TestDatabase) {
    let store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    append(&mut client, vec![reading(1, "shared", T0_US)]).await;
    let mut foreign = remote_of(
        &current(&mut client, &reading(1, "shared", T0_US).id).await,
        stamp(1_000, 0, "site-b"),
        None,
        5.0,
    );
    foreign.reading_id = "01900000-0000-7000-8000-00000000bbbb".into();
    foreign.origin_site_id = "site-b".into();
    foreign.origin_seq = 42;
    let applied = apply(&mut client, vec![foreign.clone()], "lww", 3).await;
    assert_eq!(applied.applied, 1);
    let by_sensor = query_all(
        &mut client,
        pb::QueryReadingsRequest {
            sensor_id: "shared".into(),
            ..Default::default()
        },
    )
    .await;
    let theirs = by_sensor
        .iter()
        .find(|r| r.id == foreign.reading_id)
        .expect("found by sensor");
    assert_eq!((theirs.site_id.as_str(), theirs.seq), ("site-b", 42));
    assert_eq!(
        theirs.written_by, "site:ship-9",
        "the writer the cloud said"
    );
    let s = stats(&mut client).await;
    assert_eq!(s.last_seq, 1, "this site's seqs stay its own");
    assert_eq!(s.unsynced_versions, 1);
    assert_eq!(s.synced_versions, 0, "a pulled version is not this site's");
    assert_eq!(s.total_readings, 2, "theirs is held here too");

    // Amending it here queues a version of site-b's reading, seq 42.
    amend(
        &mut client,
        pb::AmendRequest {
            reading_id: foreign.reading_id.clone(),
            quality: pb::Quality::Suspect as i32,
            ..Default::default()
        },
    )
    .await
    .expect("amend a shared reading");
    let leased = client
        .sync
        .lease_batch(ipb::LeaseBatchRequest {
            max_versions: 10,
            ..Default::default()
        })
        .await
        .expect("lease")
        .into_inner();
    let queued = leased
        .versions
        .iter()
        .find(|v| v.reading_id == foreign.reading_id)
        .expect("amendment queued");
    assert_eq!((queued.origin_site_id.as_str(), queued.seq), ("site-b", 42));
    assert_eq!(
        queued.version.as_ref().map(|v| v.site_id.as_str()),
        Some("site-a")
    );
    assert_eq!(
        client
            .sync
            .get_pull_cursor(ipb::GetPullCursorRequest {})
            .await
            .expect("cursor")
            .into_inner()
            .cursor,
        3
    );
    store.stop().await;
}

/// A site restarted with its wall clock set back a day keeps stamping each
/// reading's versions in increasing order (above what it stamped before the
/// restart), while its clock falls back to the bound ahead of the wall
/// clock, where new readings are stamped.
async fn a_restart_with_the_clock_set_back_a_day_keeps_each_readings_stamps_increasing(
    db: &TestDatabase,
) {
    let clock = TestClock::at(T0_US);
    let store = RunningStore::start(db, clock.clone(), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    append(&mut client, vec![reading(1, "s1", T0_US)]).await;
    let id = reading(1, "s1", T0_US).id;
    let before = amend(
        &mut client,
        pb::AmendRequest {
            reading_id: id.clone(),
            note: Some("before".into()),
            ..Default::default()
        },
    )
    .await
    .expect("amend");
    store.stop().await;

    clock.set(T0_US - DAY_US);
    let store = RunningStore::start(db, clock.clone(), Some("site-a"))
        .await
        .expect("restart");
    let mut client = store.client.clone();
    let mut last = hlc_of(&before.version);
    for n in 0..3 {
        let next = amend(
            &mut client,
            pb::AmendRequest {
                reading_id: id.clone(),
                note: Some(format!("after {n}")),
                ..Default::default()
            },
        )
        .await
        .expect("amend");
        assert!(
            hlc_of(&next.version) > last,
            "{n}: {:?} after {last:?}",
            next.version
        );
        last = hlc_of(&next.version);
    }
    append(&mut client, vec![reading(2, "s1", T0_US - DAY_US)]).await;
    let fresh = current(&mut client, &reading(2, "s1", T0_US).id).await;
    let (fresh_ms, _) = hlc_of(&fresh.version);
    assert!(
        (ms_of(T0_US - DAY_US)..=ms_of(T0_US - DAY_US) + BOUND_MS).contains(&fresh_ms),
        "a new reading is stamped within the bound of the wall clock: {fresh_ms}"
    );
    assert!(site_clock(&mut client).await.0 <= ms_of(T0_US - DAY_US) + BOUND_MS);
    store.stop().await;
}

on_both_backends!(an_amendment_is_a_new_current_version_queued_for_the_cloud);
on_both_backends!(concurrent_versions_are_resolved_by_the_announced_rule);
on_both_backends!(a_correction_on_top_is_no_conflict_and_the_next_amendment_orders_after_it);
on_both_backends!(another_sites_reading_is_stored_under_its_origin);
on_both_backends!(a_restart_with_the_clock_set_back_a_day_keeps_each_readings_stamps_increasing);

/// A pulled version stamped at the latest time a clock may read, counter
/// full: stored, flagged, counted; the site's clock stays within the bound;
/// the reading is amended twice (stamps carried past the top) and each
/// amendment is current and queued. A first version there (another site's
/// reading) likewise. A stamp beyond the range is refused, naming the field
/// and the limit.
async fn a_version_near_the_clocks_limit_is_kept_flagged_and_amendable(db: &TestDatabase) {
    let store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    append(&mut client, vec![reading(1, "shared", T0_US)]).await;
    let id = reading(1, "shared", T0_US).id;
    let first = current(&mut client, &id).await;
    let top = stamp(TOP_MS, 65_535, "cloud");
    let mut foreign = remote_of(&first, stamp(TOP_MS, 65_535, "site-b"), None, 5.0);
    foreign.reading_id = "01900000-0000-7000-8000-00000000bbbb".into();
    foreign.origin_site_id = "site-b".into();
    foreign.origin_seq = 7;
    let applied = apply(
        &mut client,
        vec![
            remote_of(&first, top.clone(), first.version.clone(), 30.0),
            foreign.clone(),
        ],
        "lww",
        1,
    )
    .await;
    assert_eq!((applied.applied, applied.clock_ahead), (2, 2));
    let held = current(&mut client, &id).await;
    assert_eq!(held.version, Some(top.clone()));
    let flagged = clock_ahead_ms(&held).expect("flagged");
    assert!(flagged as u64 > TOP_MS - ms_of(T0_US) - 1_000, "{flagged}");
    let s = stats(&mut client).await;
    assert_eq!(s.clock_ahead_versions, 2);
    assert!(
        site_clock(&mut client).await.0 <= ms_of(T0_US) + BOUND_MS,
        "the clock stays within the bound: {:?}",
        s.hlc
    );

    for reading_id in [&id, &foreign.reading_id] {
        let once = amend_note(&mut client, reading_id, "first look").await;
        let twice = amend_note(&mut client, reading_id, "second look").await;
        let (top_ms, top_logical) = (TOP_MS, 65_535);
        assert!(hlc_of(&once.version) > (top_ms, top_logical));
        assert!(hlc_of(&twice.version) > hlc_of(&once.version));
        assert_eq!(twice.note, "second look");
        assert_eq!(clock_ahead_ms(&twice), None, "the site's own version");
        assert_eq!(
            current(&mut client, reading_id).await.version,
            twice.version
        );
    }
    let leased = client
        .sync
        .lease_batch(ipb::LeaseBatchRequest {
            max_versions: 10,
            ..Default::default()
        })
        .await
        .expect("lease")
        .into_inner();
    assert_eq!(
        leased.versions.len(),
        5,
        "a first version and four amendments"
    );
    assert!(site_clock(&mut client).await.0 <= ms_of(T0_US) + BOUND_MS);
    // New readings are stamped by the clock, near the wall clock.
    append(&mut client, vec![reading(2, "s1", T0_US)]).await;
    let fresh = current(&mut client, &reading(2, "s1", T0_US).id).await;
    assert!(hlc_of(&fresh.version).0 <= ms_of(T0_US) + BOUND_MS);

    // A first version stamped in the amendment headroom (an older build's
    // clock could be dragged there) is still kept: no reading is refused
    // for its stamp.
    let mut legacy = foreign.clone();
    legacy.reading_id = "01900000-0000-7000-8000-00000000dddd".into();
    legacy.origin_seq = 77;
    legacy.version = Some(stamp(TOP_MS + 1, 0, "site-b"));
    let applied = client
        .sync
        .apply_remote_versions(ipb::ApplyRemoteVersionsRequest {
            versions: vec![legacy],
            policy: "lww".into(),
            next_cursor: 2,
            max_clock_skew: None,
        })
        .await
        .expect("a first version in the headroom is kept")
        .into_inner();
    assert_eq!(applied.applied, 1);

    // Only beyond what the encoding holds is a stamp malformed input.
    const ENCODING_MAX_MS: u64 = (1 << 47) - 1;
    let mut beyond = foreign.clone();
    beyond.reading_id = "01900000-0000-7000-8000-00000000cccc".into();
    beyond.version = Some(stamp(ENCODING_MAX_MS + 1, 0, "site-b"));
    let err = client
        .sync
        .apply_remote_versions(ipb::ApplyRemoteVersionsRequest {
            versions: vec![beyond],
            policy: "lww".into(),
            next_cursor: 3,
            max_clock_skew: None,
        })
        .await
        .expect_err("beyond the clock's range");
    assert_eq!(err.code(), Code::InvalidArgument);
    let details = format!("{err:?}");
    assert!(
        details.contains("versions[0].version.hlc.physical_ms")
            && details.contains(&ENCODING_MAX_MS.to_string()),
        "{details}"
    );
    store.stop().await;
}

/// The bound the cloud announced is kept and used: a version half an hour
/// ahead is flagged under an announced ten minutes although the site's own
/// setting is an hour, before and after a restart, and a page without an
/// announcement keeps it.
async fn the_announced_bound_is_kept_and_used(db: &TestDatabase) {
    let clock = TestClock::at(T0_US);
    let store = RunningStore::start(db, clock.clone(), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    append(
        &mut client,
        vec![reading(1, "s1", T0_US), reading(2, "s1", T0_US)],
    )
    .await;
    let s = stats(&mut client).await;
    assert_eq!(
        (
            s.max_clock_skew.map(|d| d.seconds),
            s.max_clock_skew_announced
        ),
        (Some(3_600), false)
    );
    let half_hour_ahead = ms_of(T0_US) + HOUR_MS / 2;
    let first = current(&mut client, &reading(1, "s1", T0_US).id).await;
    let ten_minutes = prost_types::Duration {
        seconds: 600,
        nanos: 0,
    };
    let applied = client
        .sync
        .apply_remote_versions(ipb::ApplyRemoteVersionsRequest {
            versions: vec![remote_of(
                &first,
                stamp(half_hour_ahead, 0, "cloud"),
                first.version.clone(),
                21.0,
            )],
            policy: "lww".into(),
            next_cursor: 1,
            max_clock_skew: Some(ten_minutes),
        })
        .await
        .expect("apply")
        .into_inner();
    assert_eq!(applied.clock_ahead, 1);
    assert!(site_clock(&mut client).await.0 <= ms_of(T0_US) + 600_000);
    store.stop().await;

    let store = RunningStore::start(db, clock.clone(), Some("site-a"))
        .await
        .expect("restart");
    let mut client = store.client.clone();
    let s = stats(&mut client).await;
    assert_eq!(
        (
            s.max_clock_skew.map(|d| d.seconds),
            s.max_clock_skew_announced
        ),
        (Some(600), true)
    );
    let second = current(&mut client, &reading(2, "s1", T0_US).id).await;
    let applied = apply(
        &mut client,
        vec![remote_of(
            &second,
            stamp(half_hour_ahead, 1, "cloud"),
            second.version.clone(),
            22.0,
        )],
        "lww",
        2,
    )
    .await;
    assert_eq!(
        applied.clock_ahead, 1,
        "still flagged under the announced bound"
    );
    assert!(clock_ahead_ms(&current(&mut client, &second.id).await).is_some());
    assert_eq!(stats(&mut client).await.clock_ahead_versions, 2);
    store.stop().await;
}

/// A wall clock that jumps far ahead (a reading is stamped there) and back:
/// at the next start the site's clock falls back within the bound, the
/// reading stamped in the future is amended twice, and new readings are
/// stamped near the wall clock again. The same while running, without a
/// restart.
async fn a_wall_clock_that_jumped_ahead_and_back_recovers(db: &TestDatabase) {
    let clock = TestClock::at(T0_US);
    let store = RunningStore::start(db, clock.clone(), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    // Ten thousand years ahead: the site's clock reads the latest it may.
    clock.set(i64::MAX / 2);
    append(&mut client, vec![reading(1, "s1", T0_US)]).await;
    let future = current(&mut client, &reading(1, "s1", T0_US).id).await;
    assert_eq!(hlc_of(&future.version).0, TOP_MS, "{:?}", future.version);
    store.stop().await;

    clock.set(T0_US);
    let store = RunningStore::start(db, clock.clone(), Some("site-a"))
        .await
        .expect("restart");
    let mut client = store.client.clone();
    assert!(
        site_clock(&mut client).await.0 <= ms_of(T0_US) + BOUND_MS,
        "fell back at start"
    );
    let once = amend_note(&mut client, &future.id, "once").await;
    let twice = amend_note(&mut client, &future.id, "twice").await;
    assert!(hlc_of(&once.version) > hlc_of(&future.version));
    assert!(hlc_of(&twice.version) > hlc_of(&once.version));
    append(&mut client, vec![reading(2, "s1", T0_US)]).await;
    let fresh = current(&mut client, &reading(2, "s1", T0_US).id).await;
    assert!((ms_of(T0_US)..=ms_of(T0_US) + BOUND_MS).contains(&hlc_of(&fresh.version).0));

    // A day ahead and back while running: the next write falls back.
    clock.set(T0_US + DAY_US);
    append(&mut client, vec![reading(3, "s1", T0_US)]).await;
    clock.set(T0_US);
    append(&mut client, vec![reading(4, "s1", T0_US)]).await;
    let after = current(&mut client, &reading(4, "s1", T0_US).id).await;
    assert!(hlc_of(&after.version).0 <= ms_of(T0_US) + BOUND_MS);
    assert!(site_clock(&mut client).await.0 <= ms_of(T0_US) + BOUND_MS);
    let ahead = current(&mut client, &reading(3, "s1", T0_US).id).await;
    let amended = amend_note(&mut client, &ahead.id, "after the jump").await;
    assert!(hlc_of(&amended.version) > hlc_of(&ahead.version));
    store.stop().await;
}

on_both_backends!(a_version_near_the_clocks_limit_is_kept_flagged_and_amendable);
on_both_backends!(the_announced_bound_is_kept_and_used);
on_both_backends!(a_wall_clock_that_jumped_ahead_and_back_recovers);
