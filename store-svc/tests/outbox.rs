//! The outbox API sync-svc drives (lease, complete, dead letters), through
//! store-svc's real gRPC API on both backends.

use std::time::Duration;

use edge_proto::internal::v1 as ipb;
use edge_proto::v1 as pb;
use edge_testkit::StoreClients;
use edge_testkit::{TestDatabase, eventually, on_both_backends, query_all};
use tonic::Code;

mod common;

use common::*;

async fn lease(
    client: &mut StoreClients,
    max_versions: u32,
    newest_share_percent: u32,
    lease_secs: i64,
) -> ipb::LeaseBatchResponse {
    client
        .sync
        .lease_batch(ipb::LeaseBatchRequest {
            max_versions,
            newest_share_percent,
            lease_duration: Some(prost_types::Duration {
                seconds: lease_secs,
                nanos: 0,
            }),
        })
        .await
        .expect("lease")
        .into_inner()
}

fn seqs(batch: &ipb::LeaseBatchResponse) -> Vec<u64> {
    batch.versions.iter().map(|v| v.seq).collect()
}

fn ids(batch: &ipb::LeaseBatchResponse) -> Vec<u64> {
    batch.versions.iter().map(|v| v.version_id).collect()
}

/// Appends `n` normal readings, then `critical` critical ones.
async fn fill(client: &mut StoreClients, n: u32, critical: u32) {
    let mut readings: Vec<ipb::NewReading> = (1..=n)
        .map(|i| reading(i, "s-1", T0_US + i64::from(i)))
        .collect();
    for i in 0..critical {
        let mut r = reading(n + 1 + i, "alarm", T0_US);
        r.priority = pb::Priority::Critical as i32;
        readings.push(r);
    }
    append(client, readings).await;
}

async fn state_of(client: &mut StoreClients, state: pb::SyncState) -> Vec<u64> {
    let mut rows: Vec<u64> = query_all(
        client,
        pb::QueryReadingsRequest {
            sync_state: state as i32,
            page_size: 1000,
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .map(|r| r.seq)
    .collect();
    rows.sort_unstable();
    rows
}

async fn leases_critical_first_then_oldest_and_never_twice(db: &TestDatabase) {
    let store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    fill(&mut client, 10, 2).await;

    let first = lease(&mut client, 5, 0, 60).await;
    assert!(!first.lease_id.is_empty());
    assert_eq!(
        seqs(&first),
        vec![11, 12, 1, 2, 3],
        "critical first, then oldest"
    );
    let v = &first.versions[0];
    assert_eq!(v.priority, pb::Priority::Critical as i32);
    assert_eq!(v.origin_site_id, "site-a");
    assert_eq!(
        v.version.as_ref().map(|s| s.site_id.as_str()),
        Some("site-a")
    );

    // A second lease skips what the first holds; half of it is the newest.
    let second = lease(&mut client, 4, 50, 60).await;
    assert_eq!(
        seqs(&second),
        vec![4, 5, 9, 10],
        "oldest half and newest half"
    );
    let third = lease(&mut client, 100, 0, 60).await;
    assert_eq!(seqs(&third), vec![6, 7, 8]);
    assert!(
        lease(&mut client, 100, 0, 60).await.versions.is_empty(),
        "everything is leased"
    );
    store.stop().await;
}

async fn completion_syncs_dead_letters_and_delays(db: &TestDatabase) {
    let clock = TestClock::at(T0_US);
    let store = RunningStore::start(db, clock.clone(), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    fill(&mut client, 6, 0).await;
    let batch = lease(&mut client, 6, 0, 60).await;
    let v = ids(&batch);
    let done = client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: batch.lease_id.clone(),
            synced_version_ids: vec![v[0], v[1], v[2]],
            rejected: vec![ipb::RejectedVersion {
                version_id: v[3],
                reason: "sensor s-1 is not registered".into(),
            }],
            failed: vec![ipb::FailedVersions {
                version_ids: vec![v[4]],
                error: "HTTP 503".into(),
                not_attempted: false,
                retry_at: ts(T0_US + 60_000_000),
            }],
            stuck_after_attempts: 0,
        })
        .await
        .expect("complete")
        .into_inner();
    assert_eq!((done.synced, done.dead_lettered, done.failed), (3, 1, 1));
    // Acknowledging again changes nothing.
    let again = client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            synced_version_ids: vec![v[0], v[1], v[2]],
            ..Default::default()
        })
        .await
        .expect("complete again")
        .into_inner();
    assert_eq!(again.synced, 0);

    let s = stats(&mut client).await;
    assert_eq!(
        (s.synced_versions, s.unsynced_versions, s.dead_letters),
        (3, 2, 1)
    );
    assert_eq!(
        state_of(&mut client, pb::SyncState::Synced).await,
        vec![1, 2, 3]
    );
    assert_eq!(
        state_of(&mut client, pb::SyncState::DeadLettered).await,
        vec![4]
    );
    assert_eq!(
        state_of(&mut client, pb::SyncState::Pending).await,
        vec![5, 6]
    );

    // The lease was released: the unmentioned version is due, the failed one
    // waits for its retry time, the dead letter is never leased.
    assert_eq!(seqs(&lease(&mut client, 10, 0, 60).await), vec![6]);
    clock.set(T0_US + 60_000_000);
    let retried = lease(&mut client, 10, 0, 60).await;
    assert_eq!(seqs(&retried), vec![5]);
    assert_eq!(retried.versions[0].attempts, 1);
    assert_eq!(retried.versions[0].last_error, "HTTP 503");

    // Dead letters: listed, reported, re-driven.
    let listed = client
        .operations
        .list_dead_letters(pb::ListDeadLettersRequest {
            unreported_only: true,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.dead_letters.len(), 1);
    let dead = &listed.dead_letters[0];
    let dead_version = dead.version.as_ref().expect("version");
    assert_eq!((dead_version.seq, dead.reported), (4, false));
    assert_eq!(dead_version.last_error, "sensor s-1 is not registered");
    client
        .sync
        .mark_dead_letters_reported(ipb::MarkDeadLettersReportedRequest {
            version_ids: vec![dead_version.version_id],
        })
        .await
        .expect("mark");
    let unreported = client
        .operations
        .list_dead_letters(pb::ListDeadLettersRequest {
            unreported_only: true,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(unreported.dead_letters.is_empty());
    let redriven = client
        .operations
        .redrive_dead_letters(pb::RedriveDeadLettersRequest {
            all: true,
            ..Default::default()
        })
        .await
        .expect("redrive")
        .into_inner();
    assert_eq!(redriven.redriven, 1);
    assert_eq!(stats(&mut client).await.dead_letters, 0);
    assert_eq!(
        state_of(&mut client, pb::SyncState::Pending).await,
        vec![4, 5, 6]
    );
    assert_eq!(seqs(&lease(&mut client, 10, 0, 60).await), vec![4]);
    store.stop().await;
}

async fn repeated_failures_flag_versions_stuck_but_keep_them(db: &TestDatabase) {
    let store = RunningStore::start(db, TestClock::at(T0_US), None)
        .await
        .expect("start");
    let mut client = store.client.clone();
    fill(&mut client, 2, 0).await;
    let mut newly_stuck = 0;
    for attempt in 1..=3 {
        let batch = lease(&mut client, 10, 0, 60).await;
        assert_eq!(batch.versions.len(), 2, "attempt {attempt}: still retried");
        let done = client
            .sync
            .complete_batch(ipb::CompleteBatchRequest {
                lease_id: batch.lease_id.clone(),
                failed: vec![ipb::FailedVersions {
                    version_ids: ids(&batch),
                    error: "timeout".into(),
                    not_attempted: false,
                    retry_at: ts(T0_US),
                }],
                stuck_after_attempts: 2,
                ..Default::default()
            })
            .await
            .expect("complete")
            .into_inner();
        newly_stuck += done.newly_stuck;
    }
    assert_eq!(newly_stuck, 2, "each flagged once");
    let s = stats(&mut client).await;
    assert_eq!(
        (s.stuck_versions, s.unsynced_versions, s.dead_letters),
        (2, 2, 0)
    );
    store.stop().await;
}

async fn a_lapsed_lease_or_a_restart_makes_versions_due_again(db: &TestDatabase) {
    let store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    fill(&mut client, 3, 0).await;
    assert_eq!(lease(&mut client, 10, 0, 1).await.versions.len(), 3);
    let again = eventually(Duration::from_secs(10), "the lease to lapse", || {
        let mut client = client.clone();
        async move {
            let batch = lease(&mut client, 10, 0, 60).await;
            (!batch.versions.is_empty()).then_some(batch)
        }
    })
    .await;
    assert_eq!(seqs(&again), vec![1, 2, 3]);
    store.stop().await;

    // Leases live in memory: a restarted store hands the versions out again.
    let store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("restart");
    let mut client = store.client.clone();
    assert_eq!(seqs(&lease(&mut client, 10, 0, 60).await), vec![1, 2, 3]);
    store.stop().await;
}

async fn bad_outbox_requests_name_the_field(db: &TestDatabase) {
    let store = RunningStore::start(db, TestClock::at(T0_US), None)
        .await
        .expect("start");
    let mut client = store.client.clone();
    let err = client
        .sync
        .lease_batch(ipb::LeaseBatchRequest {
            max_versions: 0,
            ..Default::default()
        })
        .await
        .expect_err("zero versions");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("invalid"), "{err:?}");
    let details = tonic_types::StatusExt::get_details_bad_request(&err).expect("field violations");
    assert_eq!(details.field_violations[0].field, "max_versions");

    let err = client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            failed: vec![ipb::FailedVersions {
                version_ids: vec![1],
                error: "x".into(),
                not_attempted: false,
                retry_at: None,
            }],
            ..Default::default()
        })
        .await
        .expect_err("no retry time");
    let details = tonic_types::StatusExt::get_details_bad_request(&err).expect("field violations");
    assert_eq!(details.field_violations[0].field, "failed[0].retry_at");

    let err = client
        .operations
        .redrive_dead_letters(pb::RedriveDeadLettersRequest::default())
        .await
        .expect_err("nothing named");
    assert_eq!(err.code(), Code::InvalidArgument);
    store.stop().await;
}

/// A site offline with its clock far ahead, then stepped back (NTP once the
/// link returns): the backlog must be due at once, not hours later.
async fn a_wall_clock_stepped_back_does_not_hide_the_backlog(db: &TestDatabase) {
    const HOUR_US: i64 = 3_600_000_000;
    let clock = TestClock::at(T0_US + 6 * HOUR_US);
    let store = RunningStore::start(db, clock.clone(), None)
        .await
        .expect("start");
    let mut client = store.client.clone();
    fill(&mut client, 3, 0).await;
    // One version failed while the clock was ahead: retry in a minute, by that clock.
    let batch = lease(&mut client, 1, 0, 60).await;
    client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: batch.lease_id.clone(),
            failed: vec![ipb::FailedVersions {
                version_ids: ids(&batch),
                error: "HTTP 503".into(),
                not_attempted: false,
                retry_at: ts(T0_US + 6 * HOUR_US + 60_000_000),
            }],
            ..Default::default()
        })
        .await
        .expect("complete");
    // Back by half an hour: never-attempted versions are due at once; the
    // failed one waits its minute (plus the half hour, by this clock).
    clock.set(T0_US + 6 * HOUR_US - HOUR_US / 2);
    let first = lease(&mut client, 10, 0, 60).await;
    assert_eq!(seqs(&first), vec![2, 3], "versions never attempted are due");
    client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: first.lease_id.clone(),
            ..Default::default()
        })
        .await
        .expect("release");
    // Back by six hours: a retry time further ahead than any retry is ever
    // scheduled means the clock moved, and the version is due too.
    clock.set(T0_US);
    assert_eq!(seqs(&lease(&mut client, 10, 0, 60).await), vec![1, 2, 3]);
    store.stop().await;
}

/// Versions a failed batch never got to are postponed, not charged an attempt.
async fn versions_never_sent_are_postponed_without_an_attempt(db: &TestDatabase) {
    let clock = TestClock::at(T0_US);
    let store = RunningStore::start(db, clock.clone(), None)
        .await
        .expect("start");
    let mut client = store.client.clone();
    fill(&mut client, 1, 0).await;
    let batch = lease(&mut client, 1, 0, 60).await;
    client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: batch.lease_id.clone(),
            failed: vec![ipb::FailedVersions {
                version_ids: ids(&batch),
                error: String::new(),
                retry_at: ts(T0_US + 60_000_000),
                not_attempted: true,
            }],
            stuck_after_attempts: 1,
            ..Default::default()
        })
        .await
        .expect("complete");
    assert!(
        lease(&mut client, 1, 0, 60).await.versions.is_empty(),
        "postponed"
    );
    clock.set(T0_US + 60_000_000);
    let again = lease(&mut client, 1, 0, 60).await;
    assert_eq!(again.versions.len(), 1);
    assert_eq!(again.versions[0].attempts, 0, "no attempt counted");
    assert_eq!(stats(&mut client).await.stuck_versions, 0);
    store.stop().await;
}

/// A long drain from both ends while readings keep arriving, with failures,
/// rejections and a restart half-way (which forgets what the leases had
/// learned about the outbox): every version is handed out until it is
/// acknowledged or dead-lettered, never again after, and the books add up.
async fn a_long_drain_hands_out_every_version_until_it_is_settled(db: &TestDatabase) {
    use std::collections::{HashMap, HashSet};
    let mut store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    fill(&mut client, 300, 5).await;
    let mut next_reading = 1_000u32;
    let mut written = 305usize;
    let mut synced: HashSet<u64> = HashSet::new();
    let mut rejected: HashSet<u64> = HashSet::new();
    let mut failed_once: HashSet<u64> = HashSet::new();
    let mut leased_times: HashMap<u64, u32> = HashMap::new();
    let mut synced_counted = 0u64;
    for round in 0..400u32 {
        if round == 20 {
            store.stop().await;
            store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
                .await
                .expect("restart");
            client = store.client.clone();
        }
        if round % 3 == 0 && round < 60 {
            let readings = (0..10)
                .map(|i| reading(next_reading + i, "s-2", T0_US))
                .collect();
            append(&mut client, readings).await;
            next_reading += 10;
            written += 10;
        }
        let batch = lease(&mut client, 37, 30, 60).await;
        if batch.versions.is_empty() {
            break;
        }
        let mut request = ipb::CompleteBatchRequest {
            lease_id: batch.lease_id.clone(),
            ..Default::default()
        };
        let mut failed = Vec::new();
        for id in ids(&batch) {
            assert!(
                !synced.contains(&id) && !rejected.contains(&id),
                "version {id} handed out again after it was settled"
            );
            *leased_times.entry(id).or_default() += 1;
            if id % 7 == 0 && failed_once.insert(id) {
                failed.push(id);
            } else if id % 23 == 0 {
                rejected.insert(id);
                request.rejected.push(ipb::RejectedVersion {
                    version_id: id,
                    reason: "refused".into(),
                });
            } else {
                synced.insert(id);
                request.synced_version_ids.push(id);
            }
        }
        if !failed.is_empty() {
            request.failed.push(ipb::FailedVersions {
                version_ids: failed,
                error: "HTTP 503".into(),
                not_attempted: round % 2 == 0,
                retry_at: ts(T0_US),
            });
        }
        let done = client
            .sync
            .complete_batch(request)
            .await
            .expect("complete")
            .into_inner();
        synced_counted += done.synced;
    }
    assert_eq!(
        synced.len() + rejected.len(),
        written,
        "every version settled"
    );
    assert_eq!(synced_counted, synced.len() as u64, "each ack counted once");
    for (id, times) in &leased_times {
        let expected = if failed_once.contains(id) { 2 } else { 1 };
        assert_eq!(*times, expected, "version {id} leased {times} times");
    }
    let s = stats(&mut client).await;
    assert_eq!(
        (s.unsynced_versions, s.dead_letters, s.synced_versions),
        (0, rejected.len() as u64, synced.len() as u64)
    );
    store.stop().await;
}

/// A reading's first version has no row of its own until something needs
/// one, and its id comes from a run of consecutive readings. Amendments
/// take ids between runs: every id must still name one version, and an
/// acknowledgement mark exactly that one, across runs, restarts and
/// failures.
async fn first_versions_keep_their_own_ids_across_amendments(db: &TestDatabase) {
    let clock = TestClock::at(T0_US);
    let store = RunningStore::start(db, clock.clone(), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    fill(&mut client, 3, 0).await;
    // Reading 2 amended: its first version gets a row, the amendment the
    // next id; the readings appended after it start a new run.
    client
        .operations
        .amend(pb::AmendRequest {
            reading_id: reading(2, "s-1", T0_US).id,
            note: Some("checked".into()),
            ..Default::default()
        })
        .await
        .expect("amend");
    let more = (4..=6)
        .map(|i| reading(i, "s-1", T0_US + i64::from(i)))
        .collect();
    append(&mut client, more).await;

    let batch = lease(&mut client, 10, 0, 60).await;
    let leased: Vec<(u64, u64)> = batch
        .versions
        .iter()
        .map(|v| (v.version_id, v.seq))
        .collect();
    assert_eq!(
        leased,
        vec![(1, 1), (2, 2), (3, 3), (4, 2), (5, 4), (6, 5), (7, 6)],
        "each version id names one version, in the order written"
    );
    assert_eq!(batch.versions[3].note, "checked");
    assert!(
        batch.versions[1].note.is_empty(),
        "the first version as written"
    );

    // Acknowledged: reading 3's first version, reading 2's amendment,
    // reading 4's first version (the first of the second run); version 1
    // failed; id 8 names nothing.
    let done = client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: batch.lease_id.clone(),
            synced_version_ids: vec![3, 4, 5, 8],
            failed: vec![ipb::FailedVersions {
                version_ids: vec![1],
                error: "HTTP 503".into(),
                not_attempted: false,
                retry_at: ts(T0_US + 60_000_000),
            }],
            ..Default::default()
        })
        .await
        .expect("complete")
        .into_inner();
    assert_eq!((done.synced, done.failed), (3, 1));
    assert_eq!(
        state_of(&mut client, pb::SyncState::Synced).await,
        vec![2, 3, 4],
        "reading 2's current version (the amendment) is acknowledged"
    );
    assert_eq!(stats(&mut client).await.unsynced_versions, 4);
    store.stop().await;

    // After a restart (the count taken again from the database) the same
    // versions wait, and no other.
    let store = RunningStore::start(db, clock.clone(), Some("site-a"))
        .await
        .expect("restart");
    let mut client = store.client.clone();
    assert_eq!(stats(&mut client).await.unsynced_versions, 4);
    let due: Vec<(u64, u64)> = lease(&mut client, 10, 0, 60)
        .await
        .versions
        .iter()
        .map(|v| (v.version_id, v.seq))
        .collect();
    assert_eq!(due, vec![(2, 2), (6, 5), (7, 6)]);
    clock.set(T0_US + 60_000_000);
    let retried = lease(&mut client, 10, 0, 60).await;
    assert_eq!(ids(&retried), vec![1]);
    assert_eq!(
        (
            retried.versions[0].attempts,
            retried.versions[0].last_error.as_str()
        ),
        (1, "HTTP 503")
    );
    store.stop().await;
}

/// Acknowledged first versions are recorded as runs of seqs, not on their
/// readings' rows. Acknowledging two separate stretches (the oldest share
/// and the newest share of one lease) must show exactly those readings
/// synced, in queries and in the sync-state filter, never hand them out
/// again, and keep an amended one's first version synced while its new
/// version waits.
async fn acknowledged_stretches_read_synced_and_stay_out_of_leases(db: &TestDatabase) {
    use std::collections::HashMap;
    let store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    fill(&mut client, 100, 0).await;
    // 30 oldest and 10 newest.
    let batch = lease(&mut client, 40, 25, 60).await;
    let id_of: HashMap<u64, u64> = batch
        .versions
        .iter()
        .map(|v| (v.seq, v.version_id))
        .collect();
    let acked: Vec<u64> = (11..=20).chain(91..=100).collect();
    let done = client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: batch.lease_id.clone(),
            synced_version_ids: acked.iter().map(|seq| id_of[seq]).collect(),
            ..Default::default()
        })
        .await
        .expect("complete")
        .into_inner();
    assert_eq!(done.synced, 20);

    let waiting: Vec<u64> = (1..=10).chain(21..=90).collect();
    assert_eq!(state_of(&mut client, pb::SyncState::Synced).await, acked);
    assert_eq!(state_of(&mut client, pb::SyncState::Pending).await, waiting);
    let s = stats(&mut client).await;
    assert_eq!((s.unsynced_versions, s.synced_versions), (80, 20));

    // Amending an acknowledged reading: its first version stays synced,
    // the amendment waits.
    client
        .operations
        .amend(pb::AmendRequest {
            reading_id: format!("01900000-0000-7000-8000-{:012}", 15),
            note: Some("recalibrated".into()),
            ..Default::default()
        })
        .await
        .expect("amend");
    let s = stats(&mut client).await;
    assert_eq!((s.unsynced_versions, s.synced_versions), (81, 20));
    assert!(
        state_of(&mut client, pb::SyncState::Pending)
            .await
            .contains(&15)
    );

    // Everything else is handed out once, nothing acknowledged is.
    let rest = lease(&mut client, 1_000, 10, 60).await;
    let mut leased = seqs(&rest);
    leased.sort_unstable();
    let mut expected = waiting.clone();
    expected.push(15);
    expected.sort_unstable();
    assert_eq!(leased, expected);
    let done = client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: rest.lease_id.clone(),
            synced_version_ids: ids(&rest),
            ..Default::default()
        })
        .await
        .expect("complete")
        .into_inner();
    assert_eq!(done.synced, 81);
    let s = stats(&mut client).await;
    assert_eq!((s.unsynced_versions, s.synced_versions), (0, 101));
    assert!(
        state_of(&mut client, pb::SyncState::Pending)
            .await
            .is_empty()
    );
    assert!(lease(&mut client, 1_000, 10, 60).await.versions.is_empty());
    store.stop().await;
}

on_both_backends!(first_versions_keep_their_own_ids_across_amendments);
on_both_backends!(acknowledged_stretches_read_synced_and_stay_out_of_leases);

/// Completes lease `lease_id` with `version_ids` synced; how many were
/// newly marked.
async fn acknowledge(client: &mut StoreClients, lease_id: &str, version_ids: Vec<u64>) -> u64 {
    client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: lease_id.to_owned(),
            synced_version_ids: version_ids,
            ..Default::default()
        })
        .await
        .expect("complete")
        .into_inner()
        .synced
}

/// One completion acknowledging what a drain's batches look like: long
/// stretches broken by critical readings (rows of their own) and by
/// readings another push holds, plus scattered seqs. Exactly the
/// acknowledged readings read synced; every other one is handed out again.
async fn one_completion_marks_only_its_own_among_critical_and_leased_readings(db: &TestDatabase) {
    use std::collections::HashMap;
    let store = RunningStore::start(db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut client = store.client.clone();
    // Readings 1–300; every tenth critical.
    let readings: Vec<ipb::NewReading> = (1..=300)
        .map(|i| {
            let mut r = reading(i, "s-1", T0_US + i64::from(i));
            if i % 10 == 0 {
                r.priority = pb::Priority::Critical as i32;
            }
            r
        })
        .collect();
    append(&mut client, readings).await;
    let batch = lease(&mut client, 1_000, 0, 60).await;
    assert_eq!(batch.versions.len(), 300);
    let id_of: HashMap<u64, u64> = batch
        .versions
        .iter()
        .map(|v| (v.seq, v.version_id))
        .collect();

    // 1–150 less 33, 34 and 57 (another push has them); every other seq
    // of 201–240 (the rest wait between them); 260, 280 (critical) and
    // 271, 295 (scattered).
    let acked: Vec<u64> = (1..=150)
        .filter(|seq| ![33, 34, 57].contains(seq))
        .chain((201..=240).step_by(2))
        .chain([260, 271, 280, 295])
        .collect();
    let synced = acknowledge(
        &mut client,
        &batch.lease_id,
        acked.iter().map(|seq| id_of[seq]).collect(),
    )
    .await;
    assert_eq!(synced, acked.len() as u64);

    let waiting: Vec<u64> = (1..=300).filter(|seq| !acked.contains(seq)).collect();
    assert_eq!(state_of(&mut client, pb::SyncState::Synced).await, acked);
    assert_eq!(state_of(&mut client, pb::SyncState::Pending).await, waiting);
    let s = stats(&mut client).await;
    assert_eq!(
        (s.unsynced_versions, s.synced_versions),
        (waiting.len() as u64, acked.len() as u64)
    );

    // The same acknowledgement again changes nothing.
    let again = lease(&mut client, 1_000, 0, 60).await;
    let mut leased = seqs(&again);
    leased.sort_unstable();
    assert_eq!(leased, waiting);
    let synced = acknowledge(
        &mut client,
        &again.lease_id,
        acked.iter().map(|seq| id_of[seq]).collect(),
    )
    .await;
    assert_eq!(synced, 0);
    assert_eq!(state_of(&mut client, pb::SyncState::Pending).await, waiting);

    // The rest, acknowledged, leave nothing behind.
    let rest = lease(&mut client, 1_000, 0, 60).await;
    let synced = acknowledge(&mut client, &rest.lease_id, ids(&rest)).await;
    assert_eq!(synced, waiting.len() as u64);
    let s = stats(&mut client).await;
    assert_eq!((s.unsynced_versions, s.synced_versions), (0, 300));
    assert!(lease(&mut client, 1_000, 0, 60).await.versions.is_empty());
    store.stop().await;
}

on_both_backends!(one_completion_marks_only_its_own_among_critical_and_leased_readings);
on_both_backends!(a_long_drain_hands_out_every_version_until_it_is_settled);
on_both_backends!(versions_never_sent_are_postponed_without_an_attempt);
on_both_backends!(a_wall_clock_stepped_back_does_not_hide_the_backlog);
on_both_backends!(leases_critical_first_then_oldest_and_never_twice);
on_both_backends!(completion_syncs_dead_letters_and_delays);
on_both_backends!(repeated_failures_flag_versions_stuck_but_keep_them);
on_both_backends!(a_lapsed_lease_or_a_restart_makes_versions_due_again);
on_both_backends!(bad_outbox_requests_name_the_field);
