//! store-svc through its real gRPC API, on a real database: every test runs
//! once on SQLite and once on PostgreSQL.

use edge_proto::internal::v1 as ipb;
use edge_proto::v1 as pb;
use edge_testkit::{TestDatabase, on_both_backends, query_all};
use store_svc::{StoreApp, StoreConfig};
use tonic::Code;

mod common;

use common::*;

async fn appended_readings_read_back_with_site_seq_and_version(db: &TestDatabase) {
    {
        let store = RunningStore::start(db, TestClock::at(T0_US), Some("ship-7"))
            .await
            .expect("start");
        let mut client = store.client.clone();
        let results = append(
            &mut client,
            (1..=3)
                .map(|n| reading(n, "s-1", T0_US + i64::from(n)))
                .collect(),
        )
        .await;
        let seqs: Vec<u64> = results.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert!(
            results
                .iter()
                .all(|r| r.outcome == pb::ReadingOutcome::Stored as i32)
        );

        let got = query_all(
            &mut client,
            pb::QueryReadingsRequest {
                sensor_id: "s-1".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(got.len(), 3);
        for (i, r) in got.iter().enumerate() {
            let n = i as u32 + 1;
            assert_eq!(r.id, reading(n, "s-1", 0).id);
            assert_eq!(r.seq, u64::from(n));
            assert_eq!(r.site_id, "ship-7");
            assert_eq!(r.temperature_celsius, 20.0 + f64::from(n % 10));
            assert_eq!(r.sync_state, pb::SyncState::Pending as i32);
            assert_eq!(r.measured_at, ts(T0_US + i64::from(n)));
            let version = r.version.as_ref().expect("version");
            assert_eq!(version.site_id, "ship-7");
            assert_eq!(
                version.hlc.as_ref().expect("hlc").physical_ms,
                (T0_US / 1000) as u64
            );
        }
        store.stop().await;
    }
}

async fn a_retry_stores_nothing_twice_and_a_reused_id_is_a_conflict(db: &TestDatabase) {
    {
        let store = RunningStore::start(db, TestClock::at(T0_US), None)
            .await
            .expect("start");
        let mut client = store.client.clone();
        let batch: Vec<_> = (1..=5).map(|n| reading(n, "s-1", T0_US)).collect();
        let first = append(&mut client, batch.clone()).await;
        let again = append(&mut client, batch.clone()).await;
        for (a, b) in first.iter().zip(&again) {
            assert_eq!(b.outcome, pb::ReadingOutcome::Duplicate as i32);
            assert_eq!(a.seq, b.seq, "a duplicate reports the stored reading's seq");
        }
        let mut changed = batch[0].clone();
        changed.temperature_celsius = 99.0;
        let conflict = append(&mut client, vec![changed]).await;
        assert_eq!(conflict[0].outcome, pb::ReadingOutcome::Conflict as i32);
        assert_eq!(conflict[0].seq, first[0].seq);

        let s = stats(&mut client).await;
        assert_eq!(
            (
                s.total_readings,
                s.total_versions,
                s.unsynced_versions,
                s.last_seq
            ),
            (5, 5, 5, 5)
        );
        let got = query_all(&mut client, pb::QueryReadingsRequest::default()).await;
        assert_eq!(
            got[0].temperature_celsius, batch[0].temperature_celsius,
            "the stored reading is unchanged"
        );

        // Duplicates inside one call are resolved too.
        let twice = vec![reading(9, "s-1", T0_US), reading(9, "s-1", T0_US)];
        let r = append(&mut client, twice).await;
        assert_eq!(r[0].outcome, pb::ReadingOutcome::Stored as i32);
        assert_eq!(r[1].outcome, pb::ReadingOutcome::Duplicate as i32);
        assert_eq!(r[0].seq, r[1].seq);
        store.stop().await;
    }
}

/// Once a group held none of its ids, the next is inserted without looking
/// them up: one that holds a stored id is written again, looked up, with
/// nothing of the first try left behind (no seq skipped, nothing twice).
async fn a_held_id_among_new_ones_is_answered_and_leaves_no_gap(db: &TestDatabase) {
    let store = RunningStore::start(db, TestClock::at(T0_US), None)
        .await
        .expect("start");
    let mut client = store.client.clone();
    let outcome = |r: &ipb::AppendResult| (pb::ReadingOutcome::try_from(r.outcome), r.seq);
    let stored = |seq| (Ok(pb::ReadingOutcome::Stored), seq);
    let duplicate = |seq| (Ok(pb::ReadingOutcome::Duplicate), seq);
    for (first, last) in [(1, 3), (4, 5)] {
        let fresh: Vec<_> = (first..=last).map(|n| reading(n, "s-1", T0_US)).collect();
        let results = append(&mut client, fresh).await;
        let got: Vec<_> = results.iter().map(outcome).collect();
        let want: Vec<_> = (first..=last).map(|n| stored(u64::from(n))).collect();
        assert_eq!(got, want);
    }
    let mut changed = reading(3, "s-1", T0_US);
    changed.temperature_celsius = 99.0;
    let mixed = vec![
        reading(6, "s-1", T0_US),
        reading(2, "s-1", T0_US),
        changed,
        reading(7, "s-1", T0_US),
        reading(6, "s-1", T0_US),
    ];
    let got: Vec<_> = append(&mut client, mixed)
        .await
        .iter()
        .map(outcome)
        .collect();
    assert_eq!(
        got,
        [
            stored(6),
            duplicate(2),
            (Ok(pb::ReadingOutcome::Conflict), 3),
            stored(7),
            duplicate(6),
        ]
    );
    for n in [8, 9] {
        let got: Vec<_> = append(&mut client, vec![reading(n, "s-1", T0_US)])
            .await
            .iter()
            .map(outcome)
            .collect();
        assert_eq!(got, [stored(u64::from(n))], "no seq skipped");
    }
    let s = stats(&mut client).await;
    assert_eq!(
        (s.total_readings, s.unsynced_versions, s.last_seq),
        (9, 9, 9)
    );
    let all = query_all(&mut client, pb::QueryReadingsRequest::default()).await;
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    assert_eq!(
        all[2].temperature_celsius,
        reading(3, "s-1", T0_US).temperature_celsius,
        "the conflicting write changed nothing"
    );
    store.stop().await;
}

async fn concurrent_appends_share_commits_and_seq_stays_gap_free(db: &TestDatabase) {
    {
        let store = RunningStore::start(db, TestClock::at(T0_US), None)
            .await
            .expect("start");
        let mut callers = tokio::task::JoinSet::new();
        for caller in 0..16u32 {
            let mut client = store.client.clone();
            callers.spawn(async move {
                // Overlapping id ranges: callers race to store the same readings.
                let batch = (caller * 25..caller * 25 + 50)
                    .map(|n| reading(n, "s-1", T0_US))
                    .collect();
                append(&mut client, batch).await
            });
        }
        let mut stored = Vec::new();
        while let Some(results) = callers.join_next().await {
            for r in results.expect("caller") {
                if r.outcome == pb::ReadingOutcome::Stored as i32 {
                    stored.push(r.seq);
                }
            }
        }
        stored.sort_unstable();
        let distinct = 15 * 25 + 50;
        assert_eq!(
            stored,
            (1..=distinct as u64).collect::<Vec<_>>(),
            "every id stored once, seq 1..=N without gaps"
        );
        let mut client = store.client.clone();
        let s = stats(&mut client).await;
        assert_eq!(
            (s.total_readings, s.last_seq),
            (distinct as u64, distinct as u64)
        );
        store.stop().await;
    }
}

async fn queries_page_through_everything_with_filters(db: &TestDatabase) {
    {
        let store = RunningStore::start(db, TestClock::at(T0_US), None)
            .await
            .expect("start");
        let mut client = store.client.clone();
        // 300 readings over 3 sensors; measured_at not in insertion order.
        let readings: Vec<_> = (0..300u32)
            .map(|n| {
                reading(
                    n,
                    &format!("s-{}", n % 3),
                    T0_US + i64::from((n * 7919) % 300) * 1_000_000,
                )
            })
            .collect();
        append(&mut client, readings.clone()).await;

        let all = query_all(
            &mut client,
            pb::QueryReadingsRequest {
                page_size: 7,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(all.len(), 300, "pagination reaches every reading");
        assert!(
            all.windows(2)
                .all(|w| (w[0].measured_at.map(|t| t.seconds), w[0].seq)
                    <= (w[1].measured_at.map(|t| t.seconds), w[1].seq))
        );

        let from = T0_US + 100 * 1_000_000;
        let to = T0_US + 200 * 1_000_000;
        let window = query_all(
            &mut client,
            pb::QueryReadingsRequest {
                sensor_id: "s-1".into(),
                measured_from: ts(from),
                measured_to: ts(to),
                page_size: 5,
                ..Default::default()
            },
        )
        .await;
        let expected: Vec<String> = readings
            .iter()
            .filter(|r| r.sensor_id == "s-1")
            .filter(|r| {
                let t = r.measured_at.expect("time");
                let us = t.seconds * 1_000_000;
                us >= from && us < to
            })
            .map(|r| r.id.clone())
            .collect();
        let mut got: Vec<String> = window.iter().map(|r| r.id.clone()).collect();
        let mut want = expected.clone();
        got.sort();
        want.sort();
        assert!(!want.is_empty());
        assert_eq!(got, want);

        let pending = query_all(
            &mut client,
            pb::QueryReadingsRequest {
                sync_state: pb::SyncState::Pending as i32,
                page_size: 1000,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(pending.len(), 300);
        let synced = query_all(
            &mut client,
            pb::QueryReadingsRequest {
                sync_state: pb::SyncState::Synced as i32,
                ..Default::default()
            },
        )
        .await;
        assert!(
            synced.is_empty(),
            "nothing is synced before the sync service exists"
        );

        // A token only continues the query it came from.
        let first = client
            .readings
            .query_readings(pb::QueryReadingsRequest {
                sensor_id: "s-1".into(),
                page_size: 2,
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        let err = client
            .readings
            .query_readings(pb::QueryReadingsRequest {
                sensor_id: "s-2".into(),
                page_size: 2,
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await
            .expect_err("token with other filters");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(
            edge_runtime::status::field_violations(&err)[0].0,
            "page_token"
        );
        store.stop().await;
    }
}

/// The by-sensor index trails the newest readings by up to a batch; a query
/// by sensor must return exactly what a full scan would, in order, wherever
/// the boundary between indexed rows and the unindexed tail falls, and across
/// a restart.
async fn sensor_queries_cover_indexed_rows_and_the_unindexed_tail(db: &TestDatabase) {
    let small_batches = |config: &mut StoreConfig| config.sensor_index_batch = 50;
    let mut stored: Vec<ipb::NewReading> = Vec::new();
    let from = T0_US + 50 * 1_000_000;
    let to = T0_US + 250 * 1_000_000;
    for run in 0..2u32 {
        let store = RunningStore::start_with(db, TestClock::at(T0_US), small_batches)
            .await
            .expect("start");
        let mut client = store.client.clone();
        for batch in 0..6u32 {
            let first = (run * 6 + batch) * 37;
            let readings: Vec<_> = (first..first + 37)
                .map(|n| {
                    reading(
                        n,
                        &format!("s-{}", n % 4),
                        T0_US + i64::from((n * 7919) % 300) * 1_000_000,
                    )
                })
                .collect();
            append(&mut client, readings.clone()).await;
            stored.extend(readings);
            if batch % 2 == 1 {
                // Every other time, with the batches copied: on SQLite the
                // append did it; on PostgreSQL a task beside the writer does.
                sensor_index_caught_up(db, 50).await;
            }

            for sensor in ["s-0", "s-1", "s-2", "s-3"] {
                let all = query_all(
                    &mut client,
                    pb::QueryReadingsRequest {
                        sensor_id: sensor.into(),
                        page_size: 6,
                        ..Default::default()
                    },
                )
                .await;
                let got: Vec<(i64, String)> = all
                    .iter()
                    .map(|r| (r.measured_at.expect("time").seconds, r.id.clone()))
                    .collect();
                let mut want: Vec<(i64, String)> = stored
                    .iter()
                    .filter(|r| r.sensor_id == sensor)
                    .map(|r| (r.measured_at.expect("time").seconds, r.id.clone()))
                    .collect();
                // Ids are numbered in insertion (so seq) order: (time, id) is
                // the store's (measured_at, seq) order.
                want.sort();
                assert_eq!(got, want, "{sensor} after {} readings", stored.len());
                assert!(all.iter().all(|r| r.sensor_id == sensor));

                let window = query_all(
                    &mut client,
                    pb::QueryReadingsRequest {
                        sensor_id: sensor.into(),
                        measured_from: ts(from),
                        measured_to: ts(to),
                        sync_state: pb::SyncState::Pending as i32,
                        page_size: 4,
                        ..Default::default()
                    },
                )
                .await;
                let want_window: Vec<(i64, String)> = want
                    .iter()
                    .filter(|(secs, _)| (from / 1_000_000..to / 1_000_000).contains(secs))
                    .cloned()
                    .collect();
                let got_window: Vec<(i64, String)> = window
                    .iter()
                    .map(|r| (r.measured_at.expect("time").seconds, r.id.clone()))
                    .collect();
                assert_eq!(got_window, want_window);
            }
        }
        store.stop().await;
    }
}

async fn stats_report_backlog_and_size(db: &TestDatabase) {
    {
        let clock = TestClock::at(T0_US);
        let store = RunningStore::start(db, clock.clone(), None)
            .await
            .expect("start");
        let mut client = store.client.clone();
        let empty = stats(&mut client).await;
        assert_eq!(
            (
                empty.total_readings,
                empty.unsynced_versions,
                empty.last_seq
            ),
            (0, 0, 0)
        );
        assert!(empty.oldest_unsynced_at.is_none());
        append(&mut client, vec![reading(1, "s", T0_US)]).await;
        clock.set(T0_US + 5_000_000);
        append(&mut client, vec![reading(2, "s", T0_US)]).await;
        let s = stats(&mut client).await;
        assert_eq!(
            (
                s.total_readings,
                s.unsynced_versions,
                s.dead_letters,
                s.last_seq
            ),
            (2, 2, 0, 2)
        );
        // A first version waits since its reading was received here.
        assert_eq!(
            s.oldest_unsynced_at,
            ts(T0_US + 1_000),
            "the first write is the oldest unsynced"
        );
        assert!(s.database_bytes > 0);
        assert_eq!(
            s.backend,
            if db.url.is_some() {
                "postgres"
            } else {
                "sqlite"
            }
        );
        store.stop().await;
    }
}

async fn seq_and_hlc_survive_a_restart_even_when_the_wall_clock_jumps_back(db: &TestDatabase) {
    {
        let clock = TestClock::at(T0_US);
        let store = RunningStore::start(db, clock.clone(), Some("mine-2"))
            .await
            .expect("start");
        let mut client = store.client.clone();
        let before = append(
            &mut client,
            vec![reading(1, "s", T0_US), reading(2, "s", T0_US)],
        )
        .await;
        store.stop().await;

        // The node reboots with no RTC: its clock is an hour behind.
        clock.set(T0_US - 3_600_000_000);
        let store = RunningStore::start(db, clock.clone(), None)
            .await
            .expect("restart");
        let mut client = store.client.clone();
        let after = append(&mut client, vec![reading(3, "s", T0_US)]).await;
        assert_eq!(after[0].seq, 3, "seq continues without a gap");
        let hlc = |r: &ipb::AppendResult| {
            let h = r
                .version
                .as_ref()
                .and_then(|v| v.hlc.as_ref())
                .expect("hlc");
            (h.physical_ms, h.logical)
        };
        assert!(
            hlc(&after[0]) > hlc(&before[1]),
            "the HLC never goes backwards"
        );
        assert_eq!(
            after[0].version.as_ref().map(|v| v.site_id.as_str()),
            Some("mine-2"),
            "site id kept"
        );
        store.stop().await;

        // A different configured site id is refused, not adopted.
        let err = match RunningStore::start(db, clock, Some("other-site")).await {
            Err(err) => err,
            Ok(_) => panic!("a mismatched site id must be refused"),
        };
        assert!(err.to_string().contains("mine-2"), "{err}");
    }
}

async fn far_off_timestamps_are_kept_and_flagged(db: &TestDatabase) {
    {
        let store = RunningStore::start(db, TestClock::at(T0_US), None)
            .await
            .expect("start");
        let mut client = store.client.clone();
        let day = 86_400_000_000;
        let results = append(
            &mut client,
            vec![
                reading(1, "s", T0_US + day),      // gateway clock a day ahead
                reading(2, "s", T0_US - 60 * day), // two months behind
                reading(3, "s", T0_US - 2 * day),  // buffered for two days: normal
            ],
        )
        .await;
        let flags: Vec<bool> = results.iter().map(|r| r.clock_suspect).collect();
        assert_eq!(flags, [true, true, false]);
        assert!(
            results
                .iter()
                .all(|r| r.outcome == pb::ReadingOutcome::Stored as i32)
        );
        let got = query_all(&mut client, pb::QueryReadingsRequest::default()).await;
        assert_eq!(got.iter().filter(|r| r.clock_suspect).count(), 2);
        store.stop().await;
    }
}

async fn a_malformed_append_is_refused_whole_with_field_violations(db: &TestDatabase) {
    {
        let store = RunningStore::start(db, TestClock::at(T0_US), None)
            .await
            .expect("start");
        let mut client = store.client.clone();
        let mut bad = reading(2, "s", T0_US);
        bad.id = "nope".into();
        bad.humidity_percent = f64::INFINITY;
        let err = client
            .ingest
            .append(ipb::AppendRequest {
                readings: vec![reading(1, "s", T0_US), bad],
            })
            .await
            .expect_err("malformed");
        assert_eq!(err.code(), Code::InvalidArgument);
        let fields: Vec<String> = edge_runtime::status::field_violations(&err)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, ["readings[1].id", "readings[1].humidity_percent"]);
        assert_eq!(
            stats(&mut client).await.total_readings,
            0,
            "nothing of a refused call is stored"
        );
        store.stop().await;
    }
}

/// Text the database could not hold (PostgreSQL's text refuses NUL) is
/// refused at validation, naming the field, never by the database on every
/// retry (which would stall a pull on the same page for good).
async fn text_the_database_cannot_hold_is_refused_by_name(db: &TestDatabase) {
    let store = RunningStore::start(db, TestClock::at(T0_US), None)
        .await
        .expect("start");
    let mut client = store.client.clone();
    let first = append(&mut client, vec![reading(1, "s", T0_US)]).await;
    assert_eq!(first[0].outcome, pb::ReadingOutcome::Stored as i32);
    let fields = |err: &tonic::Status| -> Vec<String> {
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        edge_runtime::status::field_violations(err)
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    };

    let err = client
        .operations
        .amend(pb::AmendRequest {
            reading_id: reading(1, "s", T0_US).id,
            note: Some("valve\0stuck".into()),
            ..Default::default()
        })
        .await
        .expect_err("a NUL in a note");
    assert_eq!(fields(&err), ["note"]);

    let version = ipb::RemoteVersion {
        reading_id: "not-a-uuid".into(),
        origin_site_id: "site\0b".into(),
        origin_seq: 1,
        sensor_id: "s\u{7}".into(),
        temperature_celsius: 20.0,
        humidity_percent: 50.0,
        measured_at: ts(T0_US),
        received_at: ts(T0_US),
        priority: pb::Priority::Normal as i32,
        version: Some(pb::VersionStamp {
            hlc: Some(pb::Hlc {
                physical_ms: 1,
                logical: 0,
            }),
            site_id: "cloud\0".into(),
        }),
        note: "a\0b".into(),
        ..Default::default()
    };
    let err = client
        .sync
        .apply_remote_versions(ipb::ApplyRemoteVersionsRequest {
            versions: vec![version],
            policy: "lww".into(),
            ..Default::default()
        })
        .await
        .expect_err("malformed text in a pulled version");
    let mut named = fields(&err);
    named.sort();
    assert_eq!(
        named,
        [
            "versions[0].note",
            "versions[0].origin_site_id",
            "versions[0].reading_id",
            "versions[0].sensor_id",
            "versions[0].version.site_id",
        ]
    );
    assert_eq!(
        stats(&mut client).await.total_versions,
        1,
        "nothing applied"
    );
    store.stop().await;
}

on_both_backends!(text_the_database_cannot_hold_is_refused_by_name);
on_both_backends!(appended_readings_read_back_with_site_seq_and_version);
on_both_backends!(a_retry_stores_nothing_twice_and_a_reused_id_is_a_conflict);
on_both_backends!(a_held_id_among_new_ones_is_answered_and_leaves_no_gap);
on_both_backends!(concurrent_appends_share_commits_and_seq_stays_gap_free);
on_both_backends!(queries_page_through_everything_with_filters);
on_both_backends!(sensor_queries_cover_indexed_rows_and_the_unindexed_tail);
on_both_backends!(stats_report_backlog_and_size);
on_both_backends!(seq_and_hlc_survive_a_restart_even_when_the_wall_clock_jumps_back);
on_both_backends!(far_off_timestamps_are_kept_and_flagged);
on_both_backends!(a_malformed_append_is_refused_whole_with_field_violations);

#[tokio::test]
async fn a_mistyped_database_url_is_refused_not_turned_into_a_sqlite_file() {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("fixture");
    let mut config = StoreConfig::new(db.data_dir.clone());
    config.store_addr = "127.0.0.1:0".parse().expect("address");
    config.database_url = Some("postgress://edge:secret@db/edge".into());
    let err =
        match StoreApp::build(&config, &edge_testkit::runtime_args(), TestClock::at(T0_US)).await {
            Err(err) => err.to_string(),
            Ok(_) => panic!("a mistyped URL must be refused"),
        };
    assert!(err.contains("postgress"), "{err}");
    assert!(
        !err.contains("secret"),
        "the password must not be echoed: {err}"
    );
    let cwd_file = std::path::Path::new("postgress://edge:secret@db/edge");
    assert!(!cwd_file.exists());
    // Only the test's operator token, which the fixture put there.
    let created: Vec<_> = std::fs::read_dir(&db.data_dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|name| name != "operator.token")
        .collect();
    assert!(created.is_empty(), "nothing created: {created:?}");
    db.cleanup().await;
}
