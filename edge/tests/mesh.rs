//! A gateway's view: real gRPC clients ingest through ingest-svc and read back
//! through store-svc, on SQLite and PostgreSQL.

mod common;

use edge_runtime::Service as _;
use std::time::Duration;

use common::{Mesh, reading, start_ingest, start_store};
use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_testkit::{Backend, TestDatabase, eventually, on_both_backends};
use tonic::Code;

async fn ingest_then_read_back(db: &TestDatabase) {
    let mut mesh = Mesh::start(db).await;
    let mut readings: Vec<_> = (0..3)
        .map(|i| reading("deck-1", 20.0 + f64::from(i)))
        .collect();
    readings[2].id.clear(); // the site generates this one
    let reply = mesh
        .ingest_client
        .ingest(pb::IngestRequest {
            readings: readings.clone(),
        })
        .await
        .expect("ingest")
        .into_inner();
    let summary = reply.summary.expect("summary");
    assert_eq!(
        (summary.stored, summary.rejected, summary.duplicates),
        (3, 0, 0)
    );
    let generated = &reply.results[2].id;
    assert_eq!(
        uuid::Uuid::parse_str(generated)
            .expect("generated id")
            .get_version_num(),
        7
    );

    let stored = mesh.all_readings().await;
    assert_eq!(stored.len(), 3);
    for (sent, result) in readings.iter().zip(&reply.results) {
        let got = stored
            .iter()
            .find(|r| r.id == result.id)
            .expect("stored reading");
        assert_eq!(got.sensor_id, sent.sensor_id);
        assert_eq!(Some(got.temperature_celsius), sent.temperature_celsius);
        assert_eq!(got.seq, result.seq);
        assert!(got.received_at.is_some());
    }
    mesh.stop().await;
}
on_both_backends!(ingest_then_read_back);

async fn retrying_a_batch_stores_nothing_twice(db: &TestDatabase) {
    let mut mesh = Mesh::start(db).await;
    let batch: Vec<_> = (0..50)
        .map(|i| reading("hold-2", f64::from(i % 30)))
        .collect();
    let first = mesh
        .ingest_client
        .ingest(pb::IngestRequest {
            readings: batch.clone(),
        })
        .await
        .expect("first");
    let retry = mesh
        .ingest_client
        .ingest(pb::IngestRequest {
            readings: batch.clone(),
        })
        .await
        .expect("retry");
    assert_eq!(first.into_inner().summary.expect("summary").stored, 50);
    let retry = retry.into_inner();
    assert_eq!(retry.summary.expect("summary").duplicates, 50);
    assert!(
        retry
            .results
            .iter()
            .all(|r| r.outcome == pb::ReadingOutcome::Duplicate as i32)
    );
    assert_eq!(mesh.all_readings().await.len(), 50);

    // The same id with other content is reported, not overwritten.
    let mut reused = batch[0].clone();
    reused.temperature_celsius = Some(99.0);
    let reply = mesh
        .ingest_client
        .ingest(pb::IngestRequest {
            readings: vec![reused],
        })
        .await
        .expect("reuse");
    let result = &reply.into_inner().results[0];
    assert_eq!(result.outcome, pb::ReadingOutcome::Conflict as i32);
    assert_eq!(result.errors[0].field, "id");
    let stored = mesh.all_readings().await;
    let kept = stored.iter().find(|r| r.id == batch[0].id).expect("kept");
    assert_eq!(Some(kept.temperature_celsius), batch[0].temperature_celsius);
    mesh.stop().await;
}
on_both_backends!(retrying_a_batch_stores_nothing_twice);

async fn a_mixed_batch_stores_the_good_and_names_the_bad(db: &TestDatabase) {
    let mut mesh = Mesh::start(db).await;
    let mut too_hot = reading("engine-1", 500.0);
    too_hot.humidity_percent = None;
    let mut nameless = reading("", 20.0);
    nameless.id = "not-a-uuid".into();
    let good = [reading("engine-1", 80.0), reading("engine-2", 81.0)];
    // A timestamp past year 9999 must be refused here, not poison the batch in the store.
    let mut far_future = reading("engine-3", 20.0);
    far_future.measured_at = Some(prost_types::Timestamp {
        seconds: 9_223_372_036_854,
        nanos: 999_999_999,
    });
    let readings = vec![
        good[0].clone(),
        too_hot,
        nameless,
        good[1].clone(),
        far_future,
    ];
    let reply = mesh
        .ingest_client
        .ingest(pb::IngestRequest { readings })
        .await
        .expect("ingest")
        .into_inner();

    let summary = reply.summary.expect("summary");
    assert_eq!((summary.stored, summary.rejected), (2, 3));
    assert_eq!(reply.results[4].errors[0].field, "measured_at");
    let outcome =
        |i: usize| pb::ReadingOutcome::try_from(reply.results[i].outcome).expect("outcome");
    assert_eq!(outcome(0), pb::ReadingOutcome::Stored);
    assert_eq!(outcome(3), pb::ReadingOutcome::Stored);
    assert_eq!(outcome(1), pb::ReadingOutcome::Rejected);
    let errors = |i: usize| -> Vec<(String, String)> {
        reply.results[i]
            .errors
            .iter()
            .map(|e| (e.field.clone(), e.reason.clone()))
            .collect()
    };
    assert_eq!(
        errors(1),
        [
            (
                "temperature_celsius".to_owned(),
                "must be between -100 and 150, got 500".to_owned()
            ),
            ("humidity_percent".to_owned(), "is required".to_owned()),
        ]
    );
    let fields: Vec<String> = errors(2).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["id", "sensor_id"]);
    assert_eq!(reply.results[2].index, 2);

    let stored: Vec<String> = mesh
        .all_readings()
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(good.iter().all(|g| stored.contains(&g.id)));
    mesh.stop().await;
}
on_both_backends!(a_mixed_batch_stores_the_good_and_names_the_bad);

/// Concurrent calls share Append requests to store-svc (ingest-svc merges
/// them); each caller must still get exactly its own results, in its own
/// order, including its duplicates and rejections.
async fn concurrent_callers_each_get_their_own_results(db: &TestDatabase) {
    let mut mesh = Mesh::start(db).await;
    let callers: Vec<_> = (0..48u32)
        .map(|caller| {
            let mut client = mesh.ingest_client.clone();
            tokio::spawn(async move {
                let sensor = format!("gw-{caller}");
                let mut readings: Vec<_> = (0..1 + caller % 5)
                    .map(|i| reading(&sensor, f64::from(caller) + f64::from(i) / 10.0))
                    .collect();
                let mut bad = reading(&sensor, 20.0);
                bad.humidity_percent = Some(-1.0);
                if caller % 3 == 0 {
                    readings.insert(0, bad);
                }
                let reply = client
                    .ingest(pb::IngestRequest {
                        readings: readings.clone(),
                    })
                    .await
                    .expect("ingest")
                    .into_inner();
                // The same batch again: all duplicates of this caller's own.
                let retry = client
                    .ingest(pb::IngestRequest {
                        readings: readings.clone(),
                    })
                    .await
                    .expect("retry")
                    .into_inner();
                (readings, reply, retry)
            })
        })
        .collect();
    let mut stored_ids = Vec::new();
    for caller in callers {
        let (sent, reply, retry) = caller.await.expect("caller");
        assert_eq!(reply.results.len(), sent.len());
        for (i, (reading, result)) in sent.iter().zip(&reply.results).enumerate() {
            assert_eq!(result.index as usize, i);
            assert_eq!(result.id, reading.id);
            let outcome = pb::ReadingOutcome::try_from(result.outcome).expect("outcome");
            let retried = pb::ReadingOutcome::try_from(retry.results[i].outcome).expect("outcome");
            if reading.humidity_percent == Some(-1.0) {
                assert_eq!(outcome, pb::ReadingOutcome::Rejected);
                assert_eq!(result.errors[0].field, "humidity_percent");
            } else {
                assert_eq!(outcome, pb::ReadingOutcome::Stored);
                assert_eq!(retried, pb::ReadingOutcome::Duplicate);
                assert_eq!(retry.results[i].seq, result.seq);
                stored_ids.push((result.id.clone(), result.seq, reading.sensor_id.clone()));
            }
        }
    }
    let stored = mesh.all_readings().await;
    assert_eq!(stored.len(), stored_ids.len());
    for (id, seq, sensor) in &stored_ids {
        let got = stored.iter().find(|r| &r.id == id).expect("stored");
        assert_eq!((&got.seq, &got.sensor_id), (seq, sensor));
    }
    let mut seqs: Vec<u64> = stored.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>());
    mesh.stop().await;
}
on_both_backends!(concurrent_callers_each_get_their_own_results);

async fn streams_ack_every_batch_in_order(db: &TestDatabase) {
    let mut mesh = Mesh::start(db).await;
    let mut batches: Vec<pb::IngestStreamRequest> = (1..=20)
        .map(|batch_id| pb::IngestStreamRequest {
            batch_id,
            readings: (0..25).map(|_| reading("mast-1", 12.5)).collect(),
        })
        .collect();
    // One wholly invalid batch and one over the limit: acknowledged, and the stream goes on.
    batches[5].readings = vec![reading("", 1.0)];
    batches[9].readings = (0..5001).map(|_| reading("mast-1", 1.0)).collect();
    let stored_expected = 18 * 25;
    let mut acks = mesh
        .ingest_client
        .ingest_stream(tokio_stream::iter(batches))
        .await
        .expect("stream")
        .into_inner();
    let mut ids = Vec::new();
    let mut stored = 0;
    while let Some(ack) = acks.message().await.expect("ack") {
        ids.push(ack.batch_id);
        match ack.batch_id {
            6 => assert_eq!(ack.results[0].outcome, pb::ReadingOutcome::Rejected as i32),
            10 => {
                assert!(ack.results.is_empty());
                assert_eq!(ack.batch_error.expect("batch error").field, "readings");
            }
            _ => stored += ack.summary.expect("summary").stored,
        }
    }
    assert_eq!(
        ids,
        (1..=20).collect::<Vec<_>>(),
        "one ack per batch, in order"
    );
    assert_eq!(stored, stored_expected);
    assert_eq!(mesh.all_readings().await.len(), stored_expected as usize);
    mesh.stop().await;
}
on_both_backends!(streams_ack_every_batch_in_order);

#[tokio::test]
async fn with_store_down_ingest_is_unavailable_and_recovers_without_a_restart() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let store = start_store(&db, "127.0.0.1:0".parse().expect("address")).await;
    let store_addr = store.addr;
    let ingest = start_ingest(store_addr).await;
    let mut client = IngestServiceClient::new(common::channel(ingest.addr).await);
    let before = reading("s-1", 1.0);
    client
        .ingest(pb::IngestRequest {
            readings: vec![before.clone()],
        })
        .await
        .expect("store up");

    store.stop().await;
    let lost = reading("s-1", 2.0);
    let err = client
        .ingest(pb::IngestRequest {
            readings: vec![lost.clone()],
        })
        .await
        .expect_err("store down");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains("store-svc is unreachable"),
        "{}",
        err.message()
    );

    // store-svc comes back on the same address; ingest-svc reconnects by itself.
    let store = start_store(&db, store_addr).await;
    let reply = eventually(Duration::from_secs(20), "ingest to work again", || {
        let mut client = client.clone();
        let lost = lost.clone();
        async move {
            client
                .ingest(pb::IngestRequest {
                    readings: vec![lost],
                })
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(
        reply.into_inner().summary.expect("summary").stored,
        1,
        "the refused reading was not stored before"
    );
    let mut store_client =
        edge_testkit::StoreClients::connect(format!("http://{store_addr}")).await;
    assert_eq!(common::query_all(&mut store_client).await.len(), 2);
    ingest.stop().await;
    store.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn health_and_reflection_answer_on_every_service() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1 as reflection_v1;
    use tonic_reflection::pb::v1alpha as reflection_v1alpha;

    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mesh = Mesh::start(&db).await;
    for (addr, service) in [
        (mesh.ingest.addr, edge_proto::service_names::INGEST),
        (mesh.store.addr, edge_proto::service_names::READINGS),
    ] {
        let channel = common::channel(addr).await;
        let mut health = HealthClient::new(channel.clone());
        for name in ["", service] {
            let status = health
                .check(HealthCheckRequest {
                    service: name.into(),
                })
                .await
                .expect("health check")
                .into_inner()
                .status;
            assert_eq!(
                status,
                ServingStatus::Serving as i32,
                "{service} health for {name:?}"
            );
        }

        let request = reflection_v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                reflection_v1::server_reflection_request::MessageRequest::ListServices(
                    String::new(),
                ),
            ),
        };
        let mut v1 =
            reflection_v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
        let mut replies = v1
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1")
            .into_inner();
        let reply = replies.message().await.expect("reply").expect("one reply");
        let Some(reflection_v1::server_reflection_response::MessageResponse::ListServicesResponse(
            list,
        )) = reply.message_response
        else {
            panic!("unexpected reflection reply")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&service.to_owned()), "{names:?}");
        assert!(
            names.contains(&"grpc.health.v1.Health".to_owned()),
            "{names:?}"
        );

        let request = reflection_v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                reflection_v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    service.into(),
                ),
            ),
        };
        let mut v1alpha =
            reflection_v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
        let mut replies = v1alpha
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        let reply = replies.message().await.expect("reply").expect("one reply");
        assert!(
            matches!(
                reply.message_response,
                Some(reflection_v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
            ),
            "v1alpha describes {service}"
        );
    }
    mesh.stop().await;
    db.cleanup().await;
}

/// `edge amend` corrects a reading an operator names: the new version is
/// current at once and queued for the cloud; a bad value is refused naming
/// the field; `edge conflicts` lists the (empty) audit log.
#[tokio::test]
async fn edge_amend_corrects_a_reading_and_edge_conflicts_lists_the_log() {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("sqlite");
    let mut mesh = Mesh::start(&db).await;
    let reply = mesh
        .ingest_client
        .ingest(pb::IngestRequest {
            readings: vec![reading("deck-1", 21.5)],
        })
        .await
        .expect("ingest")
        .into_inner();
    let id = reply.results[0].id.clone();
    let store_url = format!("http://{}", mesh.store.addr);
    // Async: the store runs on this test's runtime.
    let edge = |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_edge"))
            .args(args)
            .args(["--store-url", &store_url])
            .envs(edge_testkit::security().cli_env())
            .output()
    };

    let out = edge(&[
        "amend",
        &id,
        "--quality",
        "bad",
        "--note",
        "iced over",
        "--temperature",
        "-3.5",
        "--format",
        "json",
    ])
    .await
    .expect("edge runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let amended: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(amended["quality"], "bad");
    assert_eq!(amended["note"], "iced over");
    assert_eq!(amended["temperature_celsius"], -3.5);
    assert_eq!(amended["sync_state"], "pending");
    let stored = mesh.all_readings().await;
    assert_eq!(stored[0].quality, pb::Quality::Bad as i32);
    let stats = mesh
        .store_client
        .readings
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.unsynced_versions, 2, "the reading and its amendment");

    let out = edge(&["amend", &id, "--humidity", "140"])
        .await
        .expect("edge runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("humidity_percent"), "{stderr}");

    let out = edge(&["conflicts"]).await.expect("edge runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 of 0 conflicts"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    mesh.stop().await;
    db.cleanup().await;
}

/// `edge up --check-config` says whether a site's settings would be
/// accepted, and starts nothing: no data directory is created, nothing binds.
#[tokio::test]
async fn check_config_accepts_or_names_the_bad_value_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let check = |batch: &'static str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_edge"))
            .args(["up", "--check-config"])
            .env("EDGE_DATA_DIR", &data_dir)
            .env("EDGE_SYNC_BATCH_SIZE", batch)
            .env("EDGE_RETENTION", "90days")
            .output()
    };

    let good = check("500").await.expect("edge runs");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&good.stdout).trim(),
        "edge up: configuration accepted"
    );
    assert!(
        !data_dir.exists(),
        "a configuration check created the data directory"
    );

    let bad = check("0").await.expect("edge runs");
    assert_eq!(bad.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--sync-batch-size"), "{stderr}");
}

/// `edge up` on a database a newer edge migrated refuses to start: it says
/// what the database is at and what to do, exits with code 65 (restarting
/// will not help), and writes nothing.
#[tokio::test]
async fn edge_up_refuses_a_database_from_a_newer_edge() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("sqlite");
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_edge"));
    let site = edge_testkit::spawn_edge_up(exe, &db.data_dir, None)
        .await
        .expect("edge up starts on a fresh database");
    let pid = nix::unistd::Pid::from_raw(site.child.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let mut child = site.child;
    let stopped = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("edge up stops")
        .expect("reaped");
    assert!(stopped.success());

    let file = db.data_dir.join("edge.db");
    let open = || {
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&file))
    };
    // The bookkeeping, the schema and the readings: what a start that
    // wrote would change.
    let state = |pool: sqlx::SqlitePool| async move {
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .expect("bookkeeping");
        let schema: Vec<Option<String>> =
            sqlx::query_scalar("SELECT sql FROM sqlite_master ORDER BY name")
                .fetch_all(&pool)
                .await
                .expect("schema");
        let readings: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
            .fetch_one(&pool)
            .await
            .expect("readings");
        pool.close().await;
        (rows, schema, readings)
    };
    let pool = open().await.expect("the site database");
    let known: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("schema version");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer edge', TRUE, X'07', 1)",
    )
    .bind(known + 1)
    .execute(&pool)
    .await
    .expect("a newer edge's migration");
    let before = state(pool).await;

    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(exe)
            .args([
                "up",
                "--store-addr",
                "127.0.0.1:0",
                "--ingest-addr",
                "127.0.0.1:0",
            ])
            .args(["--sync-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&db.data_dir)
            .env("EDGE_LOG", "warn")
            .output(),
    )
    .await
    .expect("edge up exits")
    .expect("edge runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    let message = format!(
        "the site database is at schema {}, written by a newer edge; this binary knows schemas \
         up to {known}",
        known + 1
    );
    assert!(stderr.contains(&message), "{stderr}");
    assert_eq!(
        state(open().await.expect("the site database")).await,
        before
    );
    assert!(!db.data_dir.join("backups").exists());
    db.cleanup().await;
}

/// One reflection request on `channel` (v1), its one reply.
async fn reflect(
    channel: &edge_runtime::client::AuthedChannel,
    request: tonic_reflection::pb::v1::server_reflection_request::MessageRequest,
) -> tonic_reflection::pb::v1::server_reflection_response::MessageResponse {
    use tonic_reflection::pb::v1 as reflection;
    let mut client =
        reflection::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([reflection::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        }]))
        .await
        .expect("reflection v1")
        .into_inner();
    replies
        .message()
        .await
        .expect("reflection reply")
        .expect("one reply")
        .message_response
        .expect("a reply with content")
}

/// The files reflection returns for a request, decoded.
fn files(
    reply: tonic_reflection::pb::v1::server_reflection_response::MessageResponse,
    what: &str,
) -> Vec<prost_types::FileDescriptorProto> {
    use prost::Message as _;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let MessageResponse::FileDescriptorResponse(found) = reply else {
        panic!("reflection cannot describe {what}: {reply:?}")
    };
    found
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("a file"))
        .collect()
}

/// Each port's reflection lists exactly the services that port serves (plus
/// health and reflection), never another port's: a client that lists a
/// service can call it. And each listed service can be described the way
/// `grpcurl describe` does: its file by symbol, then every file it imports by
/// name, until every method's request and response message is declared.
#[tokio::test]
async fn each_port_lists_and_describes_exactly_the_services_it_serves() {
    use std::collections::{BTreeMap, BTreeSet};

    use edge_proto::service_names as names;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mesh = Mesh::start(&db).await;
    let store_url = format!("http://{}", mesh.store.addr);
    let sync_config = sync_svc::SyncConfig {
        sync_addr: "127.0.0.1:0".parse().expect("address"),
        ..sync_svc::SyncConfig::new()
    };
    let sync_app = sync_svc::SyncApp::build(
        &sync_config,
        &store_url,
        &common::runtime_args(),
        &edge_runtime::client::ClientArgs::default(),
    )
    .await
    .expect("sync-svc starts");
    let sync = common::Running::spawn(sync_app.local_addr(), |stop| {
        tokio::spawn(sync_app.run(stop))
    });
    let health_config = health_svc::HealthConfig {
        health_addr: "127.0.0.1:0".parse().expect("address"),
        ..health_svc::HealthConfig::new()
    };
    let targets = health_svc::MeshTargets {
        ingest_url: format!("http://{}", mesh.ingest.addr),
        store_url,
        sync_url: format!("http://{}", sync.addr),
    };
    let health_app = health_svc::HealthApp::build(
        &health_config,
        &edge_cloud_link::CloudLinkArgs::new(),
        &targets,
        &common::runtime_args(),
    )
    .await
    .expect("health-svc starts");
    let health = common::Running::spawn(health_app.local_addr(), |stop| {
        tokio::spawn(health_app.run(stop))
    });

    let ports = [
        ("ingest-svc", mesh.ingest.addr, vec![names::INGEST]),
        (
            "store-svc",
            mesh.store.addr,
            vec![
                names::READINGS,
                names::OPERATIONS,
                names::STORE_INGEST,
                names::STORE_SYNC,
                names::TOKENS,
                names::IDENTITIES,
            ],
        ),
        ("sync-svc", sync.addr, vec![names::SYNC]),
        ("health-svc", health.addr, vec![names::CLOUD_HEALTH]),
    ];
    for (service, addr, own) in ports {
        let channel = common::channel(addr).await;
        let MessageResponse::ListServicesResponse(list) =
            reflect(&channel, MessageRequest::ListServices(String::new())).await
        else {
            panic!("{service}: unexpected reply to a list")
        };
        let listed: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
        let expected: BTreeSet<String> = own
            .iter()
            .copied()
            .chain([
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ])
            .map(str::to_owned)
            .collect();
        assert_eq!(listed, expected, "{service} lists");

        for name in &listed {
            let mut known: BTreeMap<String, prost_types::FileDescriptorProto> = BTreeMap::new();
            let mut pending = files(
                reflect(&channel, MessageRequest::FileContainingSymbol(name.clone())).await,
                name,
            );
            while let Some(file) = pending.pop() {
                for import in &file.dependency {
                    if !known.contains_key(import) && !pending.iter().any(|f| f.name() == import) {
                        pending.extend(files(
                            reflect(&channel, MessageRequest::FileByFilename(import.clone())).await,
                            import,
                        ));
                    }
                }
                known.insert(file.name().to_owned(), file);
            }
            let declared: BTreeSet<String> = known
                .values()
                .flat_map(|f| {
                    f.message_type
                        .iter()
                        .map(move |m| format!(".{}.{}", f.package(), m.name()))
                })
                .collect();
            let described = known
                .values()
                .flat_map(|f| {
                    f.service
                        .iter()
                        .map(move |s| (format!("{}.{}", f.package(), s.name()), s))
                })
                .find(|(full, _)| full == name)
                .map(|(_, s)| s)
                .unwrap_or_else(|| panic!("{service}: {name} is not in the file describing it"));
            assert!(
                !described.method.is_empty(),
                "{service}: {name} has methods"
            );
            for method in &described.method {
                for message in [method.input_type(), method.output_type()] {
                    assert!(
                        declared.contains(message),
                        "{service}: {name}/{} uses {message}, which reflection cannot describe",
                        method.name()
                    );
                }
            }
        }
    }
    health.stop().await;
    sync.stop().await;
    mesh.stop().await;
    db.cleanup().await;
}
