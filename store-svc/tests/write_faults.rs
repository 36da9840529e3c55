//! Every error path of the store's writes, driven through the fault seam on
//! both backends: a write that fails at any point is answered with an error
//! that says what it means, stores nothing, and leaves nothing behind that a
//! later write could commit by accident; the next write runs on a fresh
//! connection, seqs stay gap-free, and everything acknowledged survives a
//! restart. (The real full disk and a real PostgreSQL restart are in the
//! `edge` crate's `storage_faults` tests.)

use std::sync::Arc;

use edge_proto::internal::v1 as ipb;
use edge_proto::v1 as pb;
use edge_testkit::StoreClients;
use edge_testkit::{TestDatabase, on_both_backends, query_all};
use store_svc::db::faults::{Fault, FaultPoint, WriteFaults, WriteOp};
use tonic::Code;

mod common;

use common::*;

/// The driver's code for a full disk on this backend.
fn disk_full(db: &TestDatabase) -> &'static str {
    if db.url.is_some() { "53100" } else { "13" }
}

/// The driver's code for a lost connection / failed I/O on this backend.
fn connection_lost(db: &TestDatabase) -> &'static str {
    if db.url.is_some() { "08006" } else { "10" }
}

async fn start(db: &TestDatabase, faults: &Arc<WriteFaults>) -> RunningStore {
    let faults = faults.clone();
    RunningStore::start_with(db, TestClock::at(T0_US), move |config| {
        config.site_id = Some("site-f".into());
        config.write_faults = Some(faults);
    })
    .await
    .expect("start")
}

/// Readings numbered `first..first + n`.
fn batch(first: u32, n: u32) -> Vec<ipb::NewReading> {
    (first..first + n)
        .map(|i| reading(i, "s-1", T0_US + i64::from(i)))
        .collect()
}

/// The seqs the store holds, sorted, with their reading ids.
async fn held(client: &mut StoreClients) -> Vec<(u64, String)> {
    let mut rows: Vec<(u64, String)> = query_all(
        client,
        pb::QueryReadingsRequest {
            page_size: 1000,
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .map(|r| (r.seq, r.id))
    .collect();
    rows.sort_unstable();
    rows
}

/// Starts the store again on `db` and checks it holds exactly `acked`.
async fn assert_survives_a_restart(
    db: &TestDatabase,
    faults: &Arc<WriteFaults>,
    acked: &[(u64, String)],
) {
    let store = start(db, faults).await;
    let mut client = store.client.clone();
    assert_eq!(
        held(&mut client).await,
        acked,
        "every acknowledged reading survives a restart"
    );
    store.stop().await;
}

/// A write failing after its BEGIN, each way, with the code it is answered
/// by: a statement on a full disk, a COMMIT that loses the connection, and
/// a COMMIT rolled back underneath the driver.
fn failures_after_begin(db: &TestDatabase) -> [(FaultPoint, Fault, Code); 3] {
    [
        (
            FaultPoint::Statement,
            Fault::Error(disk_full(db)),
            Code::ResourceExhausted,
        ),
        (
            FaultPoint::Commit,
            Fault::Error(connection_lost(db)),
            Code::Unavailable,
        ),
        (
            FaultPoint::Commit,
            Fault::RolledBackUnderneath,
            Code::ResourceExhausted,
        ),
    ]
}

async fn storage(client: &mut StoreClients) -> pb::StorageStatus {
    stats(client).await.storage.expect("storage status")
}

async fn every_failure_of_an_append_stores_nothing_and_the_next_one_starts_clean(
    db: &TestDatabase,
) {
    let faults = Arc::new(WriteFaults::default());
    let store = start(db, &faults).await;
    let mut client = store.client.clone();
    let full = disk_full(db);
    let lost = connection_lost(db);
    let cases = [
        (FaultPoint::Begin, Fault::Error(lost), Code::Unavailable),
        (
            FaultPoint::Statement,
            Fault::Error(full),
            Code::ResourceExhausted,
        ),
        (
            FaultPoint::Commit,
            Fault::Error(full),
            Code::ResourceExhausted,
        ),
        (
            FaultPoint::Commit,
            Fault::RolledBackUnderneath,
            Code::ResourceExhausted,
        ),
        (FaultPoint::Commit, Fault::Error(lost), Code::Unavailable),
        (FaultPoint::Statement, Fault::Error("XX000"), Code::Internal),
    ];
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut next = 1;
    for (point, fault, code) in cases {
        let readings = batch(next, 5);
        next += 5;
        faults.arm(WriteOp::Append, point, fault, 1);
        let refused = client
            .ingest
            .append(ipb::AppendRequest {
                readings: readings.clone(),
            })
            .await
            .expect_err("the failed write is not acknowledged");
        assert_eq!(refused.code(), code, "{point:?} {fault:?}: {refused:?}");
        assert_eq!(
            held(&mut client).await,
            acked,
            "{point:?} {fault:?}: nothing of the failed write is visible"
        );
        assert_eq!(
            stats(&mut client).await.unsynced_versions,
            acked.len() as u64,
            "{point:?} {fault:?}: the outbox counted from what is stored"
        );
        if code == Code::ResourceExhausted {
            assert!(
                refused.message().contains("disk is full")
                    || refused.message().contains("No space left"),
                "the database's own words: {}",
                refused.message()
            );
            let s = storage(&mut client).await;
            assert!(s.full, "a full disk is shown in the stats");
            assert!(s.full_reason.contains("full"), "{}", s.full_reason);
            assert!(s.full_since.is_some());
        }
        // The same readings again: stored now, right after the last seq.
        let results = append(&mut client, readings.clone()).await;
        let last = acked.last().map_or(0, |(seq, _)| *seq);
        for (i, (result, reading)) in results.iter().zip(&readings).enumerate() {
            assert_eq!(result.outcome, pb::ReadingOutcome::Stored as i32);
            assert_eq!(result.seq, last + 1 + i as u64, "gap-free after {point:?}");
            acked.push((result.seq, reading.id.clone()));
        }
        let s = storage(&mut client).await;
        assert!(!s.full, "a write that commits ends the refusal");
        assert_eq!(
            stats(&mut client).await.unsynced_versions,
            acked.len() as u64
        );
    }
    assert_eq!(faults.injected(), cases.len() as u64);
    assert!(storage(&mut client).await.refused_seconds > 0.0);
    assert_eq!(held(&mut client).await, acked);
    store.stop().await;
    assert_survives_a_restart(db, &faults, &acked).await;
}
on_both_backends!(every_failure_of_an_append_stores_nothing_and_the_next_one_starts_clean);

/// A group holding an id already stored is rolled back after its first
/// try (ids not looked up) and written again with its ids looked up: a
/// failure of that second try is answered as such and leaves nothing of
/// either try; the call again then stores the new readings right after the
/// last seq and answers the held one as a duplicate.
async fn a_failure_after_a_held_id_sent_the_group_back_stores_nothing(db: &TestDatabase) {
    let faults = Arc::new(WriteFaults::default());
    let store = start(db, &faults).await;
    let mut client = store.client.clone();
    let mut acked: Vec<(u64, String)> = Vec::new();
    // Stores new readings numbered `first..first + n`: a group whose ids
    // were all new, so the next is inserted without looking its ids up.
    async fn store_new(
        client: &mut StoreClients,
        acked: &mut Vec<(u64, String)>,
        first: u32,
        n: u32,
    ) {
        let readings = batch(first, n);
        for (result, reading) in append(client, readings.clone()).await.iter().zip(&readings) {
            assert_eq!(result.outcome, pb::ReadingOutcome::Stored as i32);
            assert_eq!(result.seq, acked.len() as u64 + 1, "gap-free");
            acked.push((result.seq, reading.id.clone()));
        }
    }
    store_new(&mut client, &mut acked, 1, 5).await;
    let mut mixed = batch(100, 3);
    mixed.push(batch(1, 1).remove(0));
    // The first try fails on the held id before these points: each fault
    // strikes the second try, the one with its ids looked up.
    let cases = failures_after_begin(db);
    for (case, (point, fault, code)) in (0u32..).zip(cases) {
        store_new(&mut client, &mut acked, 10 + case, 1).await;
        faults.arm(WriteOp::Append, point, fault, 1);
        let refused = client
            .ingest
            .append(ipb::AppendRequest {
                readings: mixed.clone(),
            })
            .await
            .expect_err("the failed write is not acknowledged");
        assert_eq!(refused.code(), code, "{point:?} {fault:?}: {refused:?}");
        assert_eq!(held(&mut client).await, acked, "{point:?} {fault:?}");
        let s = stats(&mut client).await;
        let n = acked.len() as u64;
        assert_eq!(
            (s.total_readings, s.unsynced_versions, s.last_seq),
            (n, n, n),
            "{point:?} {fault:?}: the books as stored"
        );
    }
    assert_eq!(faults.injected(), cases.len() as u64);
    store_new(&mut client, &mut acked, 20, 1).await;
    let last = acked.len() as u64;
    let results = append(&mut client, mixed.clone()).await;
    let got: Vec<(i32, u64)> = results.iter().map(|r| (r.outcome, r.seq)).collect();
    let stored = pb::ReadingOutcome::Stored as i32;
    assert_eq!(
        got,
        [
            (stored, last + 1),
            (stored, last + 2),
            (stored, last + 3),
            (pb::ReadingOutcome::Duplicate as i32, 1)
        ]
    );
    acked.extend(
        (last + 1..)
            .zip(&mixed[..3])
            .map(|(seq, r)| (seq, r.id.clone())),
    );
    assert_eq!(held(&mut client).await, acked);
    store.stop().await;
    assert_survives_a_restart(db, &faults, &acked).await;
}
on_both_backends!(a_failure_after_a_held_id_sent_the_group_back_stores_nothing);

/// What SQLite does on a COMMIT that cannot write (the transaction rolled
/// back under the driver), then a second failure: a connection reused after
/// that would run every later "transaction" inside a savepoint that never
/// commits, and acknowledge readings a restart loses.
async fn failures_in_a_row_leave_no_transaction_open_behind_later_writes(db: &TestDatabase) {
    let faults = Arc::new(WriteFaults::default());
    let store = start(db, &faults).await;
    let mut client = store.client.clone();
    faults.arm(
        WriteOp::Append,
        FaultPoint::Commit,
        Fault::RolledBackUnderneath,
        1,
    );
    faults.arm(
        WriteOp::Append,
        FaultPoint::Statement,
        Fault::Error(disk_full(db)),
        1,
    );
    assert!(
        client
            .ingest
            .append(ipb::AppendRequest {
                readings: batch(1, 3)
            })
            .await
            .is_err()
    );
    assert!(
        client
            .ingest
            .append(ipb::AppendRequest {
                readings: batch(1, 3)
            })
            .await
            .is_err()
    );
    let mut acked = Vec::new();
    for round in 0..5 {
        let readings = batch(1 + round * 3, 3);
        for (result, reading) in append(&mut client, readings.clone())
            .await
            .iter()
            .zip(&readings)
        {
            assert_eq!(result.outcome, pb::ReadingOutcome::Stored as i32);
            acked.push((result.seq, reading.id.clone()));
        }
    }
    assert_eq!(
        acked.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (1..=15).collect::<Vec<u64>>()
    );
    assert_eq!(held(&mut client).await, acked, "committed, so readable");
    store.stop().await;
    assert_survives_a_restart(db, &faults, &acked).await;
}
on_both_backends!(failures_in_a_row_leave_no_transaction_open_behind_later_writes);

/// A COMMIT that succeeded but whose answer was lost (a connection that died
/// as the server committed) is never answered STORED; the caller's retry
/// with the same ids settles it: DUPLICATE, under the seqs first given.
async fn a_commit_whose_answer_was_lost_is_settled_by_the_retry(db: &TestDatabase) {
    let faults = Arc::new(WriteFaults::default());
    let store = start(db, &faults).await;
    let mut client = store.client.clone();
    faults.arm(
        WriteOp::Append,
        FaultPoint::AfterCommit,
        Fault::Error(connection_lost(db)),
        1,
    );
    let readings = batch(1, 4);
    let lost = client
        .ingest
        .append(ipb::AppendRequest {
            readings: readings.clone(),
        })
        .await
        .expect_err("an unknown outcome is not acknowledged");
    assert_eq!(lost.code(), Code::Unavailable);
    assert!(lost.message().contains("DUPLICATE"), "{}", lost.message());
    let results = append(&mut client, readings.clone()).await;
    let outcomes: Vec<(i32, u64)> = results.iter().map(|r| (r.outcome, r.seq)).collect();
    let want: Vec<(i32, u64)> = (1..=4)
        .map(|seq| (pb::ReadingOutcome::Duplicate as i32, seq))
        .collect();
    assert_eq!(outcomes, want);
    let s = stats(&mut client).await;
    assert_eq!(s.total_readings, 4, "stored once");
    assert_eq!(s.unsynced_versions, 4, "the outbox counted as stored");

    // A completion whose answer was lost: what it committed is what the
    // outbox says afterwards.
    let lease = client
        .sync
        .lease_batch(ipb::LeaseBatchRequest {
            max_versions: 10,
            ..Default::default()
        })
        .await
        .expect("lease")
        .into_inner();
    faults.arm(
        WriteOp::Complete,
        FaultPoint::AfterCommit,
        Fault::Error(connection_lost(db)),
        1,
    );
    client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: lease.lease_id.clone(),
            synced_version_ids: lease.versions.iter().map(|v| v.version_id).collect(),
            ..Default::default()
        })
        .await
        .expect_err("an unknown outcome is not reported as recorded");
    assert_eq!(stats(&mut client).await.unsynced_versions, 0);
    append(&mut client, batch(5, 2)).await;
    assert_eq!(stats(&mut client).await.unsynced_versions, 2);
    store.stop().await;
}
on_both_backends!(a_commit_whose_answer_was_lost_is_settled_by_the_retry);

/// A completion made to fail once at `point` with `fault`: its error.
async fn failed_completion(
    client: &mut StoreClients,
    faults: &WriteFaults,
    point: FaultPoint,
    fault: Fault,
    request: ipb::CompleteBatchRequest,
) -> tonic::Status {
    faults.arm(WriteOp::Complete, point, fault, 1);
    client
        .sync
        .complete_batch(request)
        .await
        .expect_err("not recorded")
}

/// The outbox, an amendment and a page of the change feed: a failed write
/// changes nothing (the state read back afterwards is the state before), and
/// the same request again applies once.
async fn failed_outbox_amend_and_pull_writes_change_nothing(db: &TestDatabase) {
    let faults = Arc::new(WriteFaults::default());
    let store = start(db, &faults).await;
    let mut client = store.client.clone();
    let readings = batch(1, 10);
    append(&mut client, readings.clone()).await;

    // The cloud's answer for a batch.
    let lease = client
        .sync
        .lease_batch(ipb::LeaseBatchRequest {
            max_versions: 10,
            ..Default::default()
        })
        .await
        .expect("lease")
        .into_inner();
    let complete = ipb::CompleteBatchRequest {
        lease_id: lease.lease_id.clone(),
        synced_version_ids: lease.versions.iter().map(|v| v.version_id).collect(),
        ..Default::default()
    };
    // A statement that fails, then a COMMIT whose connection is lost.
    let failed = failed_completion(
        &mut client,
        &faults,
        FaultPoint::Statement,
        Fault::Error("XX000"),
        complete.clone(),
    )
    .await;
    assert_eq!(failed.code(), Code::Internal);
    assert_eq!(stats(&mut client).await.unsynced_versions, 10);
    let failed = failed_completion(
        &mut client,
        &faults,
        FaultPoint::Commit,
        Fault::Error(connection_lost(db)),
        complete.clone(),
    )
    .await;
    assert_eq!(failed.code(), Code::Unavailable);
    assert_eq!(stats(&mut client).await.unsynced_versions, 10);
    // A completion reporting failed pushes gives those first versions rows
    // of their own before recording the attempt: a failed statement undoes
    // that too, so no attempt is counted below.
    let failed = failed_completion(
        &mut client,
        &faults,
        FaultPoint::Statement,
        Fault::Error("XX000"),
        ipb::CompleteBatchRequest {
            lease_id: String::new(),
            synced_version_ids: Vec::new(),
            failed: vec![ipb::FailedVersions {
                version_ids: complete.synced_version_ids[..3].to_vec(),
                error: "HTTP 503".into(),
                not_attempted: false,
                retry_at: ts(T0_US + 60_000_000),
            }],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(failed.code(), Code::Internal);
    assert_eq!(stats(&mut client).await.unsynced_versions, 10);
    // Nothing is assumed about the failed completions: their lease is gone
    // and the outbox, read again, hands the same versions out at once, none
    // of them attempted.
    let again = client
        .sync
        .lease_batch(ipb::LeaseBatchRequest {
            max_versions: 10,
            ..Default::default()
        })
        .await
        .expect("lease again")
        .into_inner();
    assert_eq!(
        again
            .versions
            .iter()
            .map(|v| v.version_id)
            .collect::<Vec<_>>(),
        complete.synced_version_ids
    );
    assert!(again.versions.iter().all(|v| v.attempts == 0), "{again:?}");
    let done = client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: again.lease_id,
            ..complete
        })
        .await
        .expect("recorded on the retry")
        .into_inner();
    assert_eq!(done.synced, 10);
    assert_eq!(stats(&mut client).await.unsynced_versions, 0);

    // An amendment.
    let amend = pb::AmendRequest {
        reading_id: readings[0].id.clone(),
        temperature_celsius: Some(99.5),
        ..Default::default()
    };
    faults.arm(
        WriteOp::Amend,
        FaultPoint::Statement,
        Fault::Error(disk_full(db)),
        1,
    );
    let failed = client
        .operations
        .amend(amend.clone())
        .await
        .expect_err("not amended");
    assert_eq!(failed.code(), Code::ResourceExhausted);
    let before = stats(&mut client).await;
    assert_eq!(before.total_versions, 10, "no version was added");
    let amended = client
        .operations
        .amend(amend)
        .await
        .expect("amended on the retry")
        .into_inner()
        .reading
        .expect("reading");
    assert_eq!(amended.temperature_celsius, 99.5);
    assert_eq!(stats(&mut client).await.total_versions, 11);

    // A page of the change feed: the cursor moves only with the page.
    let page = ipb::ApplyRemoteVersionsRequest {
        policy: "lww".into(),
        next_cursor: 42,
        ..Default::default()
    };
    faults.arm(
        WriteOp::ApplyRemote,
        FaultPoint::Commit,
        Fault::RolledBackUnderneath,
        1,
    );
    let failed = client
        .sync
        .apply_remote_versions(page.clone())
        .await
        .expect_err("not applied");
    assert_eq!(failed.code(), Code::ResourceExhausted);
    let cursor = |client: &mut StoreClients| {
        let mut client = client.clone();
        async move {
            client
                .sync
                .get_pull_cursor(ipb::GetPullCursorRequest {})
                .await
                .expect("cursor")
                .into_inner()
                .cursor
        }
    };
    assert_eq!(cursor(&mut client).await, 0, "the cursor did not move");
    client
        .sync
        .apply_remote_versions(page)
        .await
        .expect("applied on the retry");
    assert_eq!(cursor(&mut client).await, 42);
    assert_eq!(faults.injected(), 5);
    store.stop().await;
}
on_both_backends!(failed_outbox_amend_and_pull_writes_change_nothing);

/// A group whose transaction fails for a reason that may be one call's
/// fault (data the database refuses, a bug) is retried call by call, so the
/// unrelated calls grouped with it are stored: two calls queued before the
/// writer runs share one group, its first attempt fails, and both are then
/// stored alone.
async fn a_failed_group_is_retried_call_by_call(db: &TestDatabase) {
    use store_svc::db::Database;
    use store_svc::lease::Leases;
    use store_svc::model::NewReading;
    use store_svc::storage::Budget;
    use store_svc::writer::Writer;

    let faults = Arc::new(WriteFaults::default());
    let mut config = store_svc::StoreConfig::new(db.data_dir.clone());
    config.database_url = db.url.clone();
    config.write_faults = Some(faults.clone());
    let clock = TestClock::at(T0_US);
    let database = Arc::new(
        Database::open(&config.db_config(), clock.clone())
            .await
            .expect("database"),
    );
    let budget = Arc::new(Budget::new(
        database.clone(),
        Arc::new(Leases::default()),
        clock,
        config.storage.clone(),
        None,
    ));
    let (writer, task) = Writer::spawn(database.clone(), budget, 10_000);
    let call = |first: u32| -> Vec<NewReading> {
        batch(first, 3)
            .into_iter()
            .map(|r| NewReading::from_proto(r, "reading", "mesh").expect("valid"))
            .collect()
    };
    faults.arm(
        WriteOp::Append,
        FaultPoint::Statement,
        Fault::Error("XX000"),
        1,
    );
    // Both calls are queued before the writer task runs (this test's
    // runtime has one thread), so they form one group.
    let (a, b) = tokio::join!(writer.append(call(1)), writer.append(call(4)));
    assert_eq!(faults.injected(), 1, "the group's transaction failed once");
    let seqs = |outcomes: Vec<store_svc::model::AppendOutcome>| -> Vec<i64> {
        outcomes.into_iter().map(|o| o.seq).collect()
    };
    assert_eq!(seqs(a.expect("first call stored alone")), [1, 2, 3]);
    assert_eq!(seqs(b.expect("second call stored alone")), [4, 5, 6]);
    drop(writer);
    task.await.expect("writer stops");
    assert_eq!(
        database.stats().await.expect("stats").total_readings,
        6,
        "both calls stored, once"
    );
    database.close().await;
}
on_both_backends!(a_failed_group_is_retried_call_by_call);

/// The identity writes (a token made, a token revoked) on every failure
/// point: the call answers an error that says what it means, the table read
/// again is as before, and the next call runs on a fresh connection. A
/// commit whose answer was lost is found by reading back: the name is
/// taken, and the operator revokes it and makes another (the secret was
/// shown to no one).
async fn failed_token_writes_change_nothing(db: &TestDatabase) {
    use edge_proto::v1::tokens_service_client::TokensServiceClient;
    let faults = Arc::new(WriteFaults::default());
    let store = start(db, &faults).await;
    let url = format!("http://{}", store.addr);
    let mut tokens = TokensServiceClient::new(edge_testkit::connect(&url).await);
    let create = |name: &str| pb::CreateTokenRequest {
        name: name.into(),
        scopes: vec!["ingest".into()],
        ..Default::default()
    };
    async fn names(
        tokens: &mut TokensServiceClient<edge_runtime::client::AuthedChannel>,
    ) -> Vec<(String, bool)> {
        let mut listed: Vec<(String, bool)> = tokens
            .list_tokens(pb::ListTokensRequest {
                include_revoked: true,
            })
            .await
            .expect("list")
            .into_inner()
            .tokens
            .into_iter()
            .map(|t| (t.name, t.revoked_at.is_some()))
            .collect();
        listed.sort();
        listed
    }
    let before = names(&mut tokens).await;
    let begin = (
        FaultPoint::Begin,
        Fault::Error(connection_lost(db)),
        Code::Unavailable,
    );
    for (point, fault, code) in std::iter::once(begin).chain(failures_after_begin(db)) {
        faults.arm(WriteOp::Identities, point, fault, 1);
        let failed = tokens
            .create_token(create("gw-f"))
            .await
            .expect_err("not made");
        assert_eq!(failed.code(), code, "{point:?} {fault:?}: {failed:?}");
        assert_eq!(names(&mut tokens).await, before, "{point:?}: nothing made");
    }
    // The next write runs clean, and a revocation that fails leaves the
    // token valid.
    let made = tokens.create_token(create("gw-f")).await.expect("made");
    assert!(!made.into_inner().token.is_empty());
    let valid = names(&mut tokens).await;
    faults.arm(
        WriteOp::Identities,
        FaultPoint::Commit,
        Fault::Error(disk_full(db)),
        1,
    );
    let failed = tokens
        .revoke_token(pb::RevokeTokenRequest {
            name: "gw-f".into(),
        })
        .await
        .expect_err("not revoked");
    assert_eq!(failed.code(), Code::ResourceExhausted);
    assert_eq!(names(&mut tokens).await, valid, "still valid");

    // A commit whose answer was lost: the error says nothing of the
    // outcome; the table, read again, holds the identity, and a second
    // attempt is told the name is taken.
    faults.arm(
        WriteOp::Identities,
        FaultPoint::AfterCommit,
        Fault::Error(connection_lost(db)),
        1,
    );
    tokens
        .create_token(create("gw-g"))
        .await
        .expect_err("answer lost");
    assert!(
        names(&mut tokens)
            .await
            .contains(&("gw-g".to_owned(), false))
    );
    let taken = tokens
        .create_token(create("gw-g"))
        .await
        .expect_err("taken");
    assert_eq!(taken.code(), Code::AlreadyExists);
    store.stop().await;
}
on_both_backends!(failed_token_writes_change_nothing);
