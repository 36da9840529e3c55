//! Who gets in: every call of the mesh needs a credential (a bearer token or
//! a client certificate) with the right scope, over TLS the caller checks;
//! revoked tokens stop working within 5 s; a rotated certificate is served
//! without a restart; mTLS refuses a gateway without a certificate; idle and
//! slow connections do not keep a gateway out; a gateway over its rate is
//! told when to come back and others are not slowed.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Mesh, reading};
use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_proto::v1::operations_service_client::OperationsServiceClient;
use edge_proto::v1::readings_service_client::ReadingsServiceClient;
use edge_proto::v1::tokens_service_client::TokensServiceClient;
use edge_runtime::client::{AuthedChannel, Credentials};
use edge_testkit::{Backend, TestDatabase, connect_with, eventually, security};
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(20);

/// A channel to `addr` presenting `credentials`.
async fn as_(addr: SocketAddr, credentials: &Credentials) -> AuthedChannel {
    connect_with(&format!("http://{addr}"), credentials).await
}

/// A token for a new identity `name` with `scopes`, made by the operator.
async fn token(
    store: SocketAddr,
    name: &str,
    scopes: &[&str],
    readings_per_second: Option<u32>,
) -> String {
    let mut tokens = TokensServiceClient::new(as_(store, &security().operator()).await);
    tokens
        .create_token(pb::CreateTokenRequest {
            name: name.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            calls_per_second: None,
            readings_per_second,
        })
        .await
        .expect("create token")
        .into_inner()
        .token
}

/// One unary call to `path` with an empty message; the status it ends with.
async fn call_empty(channel: AuthedChannel, path: &'static str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc
        .unary(
            tonic::Request::new(()),
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            codec,
        )
        .await
    {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

/// What the site holds, to compare before and after refused calls.
async fn snapshot(mesh: &mut Mesh) -> (u64, Vec<(String, f64)>) {
    let stats = mesh
        .store_client
        .readings
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    let readings = mesh
        .all_readings()
        .await
        .into_iter()
        .map(|r| (r.id.clone(), r.temperature_celsius))
        .collect();
    (stats.total_readings, readings)
}

const STORE_WRITES: &[&str] = &[
    "/edge.v1.OperationsService/Amend",
    "/edge.v1.OperationsService/RedriveDeadLetters",
    "/edge.v1.TokensService/CreateToken",
    "/edge.v1.TokensService/RevokeToken",
    "/edge.internal.v1.StoreIngestService/Append",
    "/edge.internal.v1.StoreSyncService/LeaseBatch",
    "/edge.internal.v1.StoreSyncService/CompleteBatch",
    "/edge.internal.v1.StoreSyncService/MarkDeadLettersReported",
    "/edge.internal.v1.StoreSyncService/ForgetReportedDrops",
    "/edge.internal.v1.StoreSyncService/ApplyRemoteVersions",
];

async fn calls_without_a_credential_change_nothing(db: &TestDatabase) {
    let mut mesh = Mesh::start(db).await;
    let stored = reading("deck-1", 21.5);
    mesh.ingest_client
        .ingest(pb::IngestRequest {
            readings: vec![stored.clone()],
        })
        .await
        .expect("ingest");
    let before = snapshot(&mut mesh).await;
    assert_eq!(before.0, 1);

    let anonymous = security().with_token(None);
    for path in STORE_WRITES.iter().chain(&[
        "/edge.v1.ReadingsService/QueryReadings",
        "/edge.v1.TokensService/ListTokens",
    ]) {
        let status = call_empty(as_(mesh.store.addr, &anonymous).await, path).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{path}: {status:?}");
    }
    for path in [
        "/edge.v1.IngestService/Ingest",
        "/edge.v1.IngestService/IngestStream",
    ] {
        let status = call_empty(as_(mesh.ingest.addr, &anonymous).await, path).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{path}: {status:?}");
    }
    // Real requests too, not only empty ones: an amendment of the stored
    // reading, and an ingest of a new one.
    let refused = OperationsServiceClient::new(as_(mesh.store.addr, &anonymous).await)
        .amend(pb::AmendRequest {
            reading_id: stored.id.clone(),
            temperature_celsius: Some(99.0),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = IngestServiceClient::new(as_(mesh.ingest.addr, &anonymous).await)
        .ingest(pb::IngestRequest {
            readings: vec![reading("deck-1", 30.0)],
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
    // A token no one issued is no better than none.
    let forged = security().with_token(Some("edge_not-a-token-anyone-issued"));
    let refused = IngestServiceClient::new(as_(mesh.ingest.addr, &forged).await)
        .ingest(pb::IngestRequest {
            readings: vec![reading("deck-1", 30.0)],
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated);

    assert_eq!(
        snapshot(&mut mesh).await,
        before,
        "a refused call changed the site"
    );
    // grpc.health.v1 stays anonymous, for probes.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(as_(mesh.store.addr, &anonymous).await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("anonymous health check");
    mesh.stop().await;
}
edge_testkit::on_both_backends!(calls_without_a_credential_change_nothing);

/// A gateway's token ingests, and nothing else: not amend, query, re-drive
/// or the mesh's internal calls; the refusal names the scope needed.
#[tokio::test]
async fn an_ingest_token_ingests_and_nothing_more() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mut mesh = Mesh::start(&db).await;
    let gateway = security().with_token(Some(
        &token(mesh.store.addr, "gateway-1", &["ingest"], None).await,
    ));
    let reply = IngestServiceClient::new(as_(mesh.ingest.addr, &gateway).await)
        .ingest(pb::IngestRequest {
            readings: vec![reading("deck-1", 20.0)],
        })
        .await
        .expect("a gateway ingests")
        .into_inner();
    assert_eq!(reply.summary.expect("summary").stored, 1);
    let stored = mesh.all_readings().await;
    let before = snapshot(&mut mesh).await;

    let denied = OperationsServiceClient::new(as_(mesh.store.addr, &gateway).await)
        .amend(pb::AmendRequest {
            reading_id: stored[0].id.clone(),
            temperature_celsius: Some(99.0),
            ..Default::default()
        })
        .await
        .expect_err("denied");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("operate"), "{denied:?}");
    let denied = ReadingsServiceClient::new(as_(mesh.store.addr, &gateway).await)
        .query_readings(pb::QueryReadingsRequest::default())
        .await
        .expect_err("denied");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("read"), "{denied:?}");
    let denied = OperationsServiceClient::new(as_(mesh.store.addr, &gateway).await)
        .redrive_dead_letters(pb::RedriveDeadLettersRequest {
            all: true,
            ..Default::default()
        })
        .await
        .expect_err("denied");
    assert_eq!(denied.code(), Code::PermissionDenied);
    for path in &STORE_WRITES[4..] {
        let status = call_empty(as_(mesh.store.addr, &gateway).await, path).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{path}: {status:?}");
        assert!(status.message().contains("mesh"), "{status:?}");
    }
    assert_eq!(snapshot(&mut mesh).await, before);
    mesh.stop().await;
    db.cleanup().await;
}

/// Each stored version records who wrote it: two gateways ingesting at the
/// same time (their calls merged into shared Appends by ingest-svc) each
/// have their own readings, and an operator's amendment is the operator's.
#[tokio::test]
async fn every_version_records_the_identity_that_wrote_it() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mut mesh = Mesh::start(&db).await;
    let mut gateways = Vec::new();
    for name in ["gateway-1", "gateway-2"] {
        let credentials =
            security().with_token(Some(&token(mesh.store.addr, name, &["ingest"], None).await));
        gateways.push((name, as_(mesh.ingest.addr, &credentials).await));
    }
    let calls = gateways.iter().flat_map(|(name, channel)| {
        (0..20).map(move |n| {
            let mut client = IngestServiceClient::new(channel.clone());
            async move {
                client
                    .ingest(pb::IngestRequest {
                        readings: vec![reading(&format!("{name}.s{n}"), 20.0)],
                    })
                    .await
                    .expect("a gateway ingests")
            }
        })
    });
    futures::future::join_all(calls).await;
    // A stream's batches are its identity's too.
    let batches: Vec<pb::IngestStreamRequest> = (1..=5)
        .map(|batch_id| pb::IngestStreamRequest {
            batch_id,
            readings: vec![reading(&format!("gateway-2.stream{batch_id}"), 21.0)],
        })
        .collect();
    let mut acks = IngestServiceClient::new(gateways[1].1.clone())
        .ingest_stream(tokio_stream::iter(batches))
        .await
        .expect("a gateway streams")
        .into_inner();
    while let Some(ack) = acks.message().await.expect("ack") {
        assert_eq!(ack.summary.expect("summary").stored, 1);
    }
    let stored = mesh.all_readings().await;
    assert_eq!(stored.len(), 45);
    for r in &stored {
        let sender = r.sensor_id.split('.').next().expect("gateway prefix");
        assert_eq!(r.written_by, sender, "{r:?}");
    }

    let amended = OperationsServiceClient::new(as_(mesh.store.addr, &security().operator()).await)
        .amend(pb::AmendRequest {
            reading_id: stored[0].id.clone(),
            quality: pb::Quality::Suspect as i32,
            ..Default::default()
        })
        .await
        .expect("the operator amends")
        .into_inner()
        .reading
        .expect("the reading");
    assert_eq!(amended.written_by, "operator");
    let now = mesh.all_readings().await;
    let queried = now.iter().find(|r| r.id == stored[0].id).expect("held");
    assert_eq!(
        queried.written_by, "operator",
        "queries show the current writer"
    );
    mesh.stop().await;
    db.cleanup().await;
}

/// A revoked token is refused by store-svc and by ingest-svc (which reads
/// the identities from store-svc) within 5 s.
#[tokio::test]
async fn a_revoked_token_is_refused_everywhere_within_five_seconds() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mesh = Mesh::start(&db).await;
    let reader = security().with_token(Some(
        &token(mesh.store.addr, "dash", &["read", "ingest"], None).await,
    ));
    let mut readings = ReadingsServiceClient::new(as_(mesh.store.addr, &reader).await);
    let mut ingest = IngestServiceClient::new(as_(mesh.ingest.addr, &reader).await);
    readings
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("valid before");
    ingest
        .ingest(pb::IngestRequest {
            readings: vec![reading("deck-1", 20.0)],
        })
        .await
        .expect("valid before");

    let mut tokens = TokensServiceClient::new(as_(mesh.store.addr, &security().operator()).await);
    tokens
        .revoke_token(pb::RevokeTokenRequest {
            name: "dash".into(),
        })
        .await
        .expect("revoke");
    let revoked = Instant::now();
    eventually(
        Duration::from_secs(5),
        "store-svc to refuse the revoked token",
        || {
            let mut readings = readings.clone();
            async move {
                let err = readings.get_stats(pb::GetStatsRequest {}).await.err()?;
                (err.code() == Code::Unauthenticated).then_some(())
            }
        },
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "ingest-svc to refuse the revoked token",
        || {
            let mut ingest = ingest.clone();
            async move {
                let err = ingest
                    .ingest(pb::IngestRequest {
                        readings: vec![reading("deck-1", 20.0)],
                    })
                    .await
                    .err()?;
                (err.code() == Code::Unauthenticated).then_some(())
            }
        },
    )
    .await;
    assert!(revoked.elapsed() < Duration::from_secs(5));
    // The listing keeps it, revoked, and never shows a secret.
    let listed = tokens
        .list_tokens(pb::ListTokensRequest {
            include_revoked: true,
        })
        .await
        .expect("list")
        .into_inner();
    let dash = listed
        .tokens
        .iter()
        .find(|t| t.name == "dash")
        .expect("listed");
    assert!(dash.revoked_at.is_some());
    mesh.stop().await;
    db.cleanup().await;
}

/// A gateway over its readings rate is told to wait (RESOURCE_EXHAUSTED with
/// a retry delay a standard client reads); another gateway is not slowed.
#[tokio::test]
async fn a_gateway_over_its_rate_is_told_when_to_retry_and_others_are_not_slowed() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mesh = Mesh::start(&db).await;
    let slow = security().with_token(Some(
        &token(mesh.store.addr, "slow", &["ingest"], Some(100)).await,
    ));
    let other = security().with_token(Some(
        &token(mesh.store.addr, "other", &["ingest"], None).await,
    ));
    let mut slow = IngestServiceClient::new(as_(mesh.ingest.addr, &slow).await);
    let mut other = IngestServiceClient::new(as_(mesh.ingest.addr, &other).await);
    let batch = |n: usize| pb::IngestRequest {
        readings: (0..n)
            .map(|i| reading("deck-1", 20.0 + i as f64 / 100.0))
            .collect(),
    };
    // 100 per second with a burst of 2 s: 200 pass at once, the next are refused.
    slow.ingest(batch(200)).await.expect("within the burst");
    let refused = slow.ingest(batch(50)).await.expect_err("over the rate");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("slow"), "{refused:?}");
    use tonic_types::StatusExt as _;
    let retry = refused
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a retry delay in the details");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(2),
        "{retry:?}"
    );
    for _ in 0..5 {
        let reply = other
            .ingest(batch(500))
            .await
            .expect("another gateway is not slowed");
        assert_eq!(reply.into_inner().summary.expect("summary").stored, 500);
    }
    mesh.stop().await;
    db.cleanup().await;
}

/// store-svc alone with `runtime`'s security.
async fn store_with(db: &TestDatabase, runtime: edge_runtime::RuntimeArgs) -> common::Running {
    use edge_runtime::Service as _;
    let mut config = store_svc::StoreConfig::new(db.data_dir.clone());
    config.store_addr = "127.0.0.1:0".parse().expect("address");
    config.database_url = db.url.clone();
    let app = store_svc::StoreApp::build(
        &config,
        &runtime,
        std::sync::Arc::new(store_svc::hlc::SystemClock),
    )
    .await
    .expect("store-svc starts");
    common::Running::spawn(app.local_addr(), |stop| tokio::spawn(app.run(stop)))
}

/// Credentials trusting the CA in `ca`, presenting the operator's token.
fn trusting(ca: &std::path::Path) -> Credentials {
    Credentials {
        tls: Some(edge_runtime::tls::client::grpc_client_tls(Some(ca), "ca").expect("CA")),
        token: Some(security().operator_token.clone()),
    }
}

/// One GetStats over a fresh connection with `credentials`.
async fn stats_with(
    addr: SocketAddr,
    credentials: &Credentials,
) -> Result<pb::GetStatsResponse, String> {
    let endpoint = edge_runtime::client::endpoint(
        &format!("http://{addr}"),
        &edge_runtime::client::ClientArgs {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        },
        credentials,
    )
    .map_err(|e| e.to_string())?;
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    let channel = edge_runtime::client::authed(channel, credentials).map_err(|e| e.to_string())?;
    ReadingsServiceClient::new(channel)
        .get_stats(pb::GetStatsRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| format!("{s:?}"))
}

/// A client that trusts the site's CA connects; one that trusts another CA
/// is refused in the handshake; after the certificate files are replaced
/// (a rotation, here to a certificate of another CA), new connections get
/// the new certificate without a restart.
#[tokio::test]
async fn tls_is_checked_by_clients_and_a_rotated_certificate_is_served_without_restart() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let names = edge_runtime::tls::site_ca::server_names(&[]);
    let old = edge_runtime::tls::site_ca::ensure(&dir.path().join("old"), &names).expect("old PKI");
    let new = edge_runtime::tls::site_ca::ensure(&dir.path().join("new"), &names).expect("new PKI");
    let (cert, key) = (
        dir.path().join("server.pem"),
        dir.path().join("server-key.pem"),
    );
    std::fs::copy(&old.cert, &cert).expect("copy");
    std::fs::copy(&old.key, &key).expect("copy");
    let mut runtime = edge_testkit::runtime_args();
    runtime.security.tls_cert = Some(cert.clone());
    runtime.security.tls_key = Some(key.clone());
    let store = store_with(&db, runtime).await;

    stats_with(store.addr, &trusting(&old.ca))
        .await
        .expect("a client trusting the site CA");
    let refused = stats_with(store.addr, &trusting(&new.ca))
        .await
        .expect_err("another CA");
    assert!(
        refused.to_lowercase().contains("certificate") || refused.contains("Unavailable"),
        "{refused}"
    );

    // Rotate: key first, then certificate, as a copy tool would.
    std::fs::copy(&new.key, &key).expect("rotate key");
    std::fs::copy(&new.cert, &cert).expect("rotate cert");
    eventually(DEADLINE, "the rotated certificate to be served", || async {
        stats_with(store.addr, &trusting(&new.ca)).await.ok()
    })
    .await;
    assert!(
        stats_with(store.addr, &trusting(&old.ca)).await.is_err(),
        "the old certificate is gone"
    );
    store.stop().await;
    db.cleanup().await;
}

/// Credentials of a client certificate named `name`, signed by the test CA
/// (in `ca_dir`), with no token.
fn certificate_named(ca_dir: &std::path::Path, name: &str) -> Credentials {
    let (cert, key) =
        edge_runtime::tls::site_ca::issue_client_cert(ca_dir, name).expect("client cert");
    let tls = edge_runtime::tls::client::grpc_client_tls(Some(&security().ca), "ca")
        .expect("CA")
        .identity(tonic::transport::Identity::from_pem(cert, key));
    Credentials {
        tls: Some(tls),
        token: None,
    }
}

/// With mTLS required, a gateway without a client certificate is refused;
/// one with a certificate the site CA signed gets in as the identity its
/// certificate names, with the `ingest` scope only.
#[tokio::test]
async fn mtls_refuses_a_gateway_without_a_certificate() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let ca_dir = security().dir();
    let mut runtime = edge_testkit::runtime_args();
    runtime.security.tls_client_ca = Some(security().ca.clone());
    runtime.security.tls_client_auth = Some(edge_runtime::tls::ClientAuth::Required);
    let store = store_with(&db, runtime).await;

    let without = stats_with(store.addr, &trusting(&security().ca)).await;
    assert!(without.is_err(), "no client certificate: {without:?}");

    let with_cert = certificate_named(ca_dir, "gateway-7");
    let denied = stats_with(store.addr, &with_cert)
        .await
        .expect_err("ingest scope only");
    assert!(
        denied.contains("PermissionDenied") && denied.contains("gateway-7"),
        "{denied}"
    );

    // A certificate cannot stand for the services' own identity.
    let as_mesh = certificate_named(ca_dir, "mesh");
    let refused = call_empty(
        as_(store.addr, &as_mesh).await,
        "/edge.internal.v1.IdentityService/ListIdentities",
    )
    .await;
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // Nor can one whose name the site could not record as a writer.
    let unnamed = certificate_named(ca_dir, "gate\u{1b}[2Jway");
    let refused = stats_with(store.addr, &unnamed)
        .await
        .expect_err("a control character in the name");
    assert!(
        refused.contains("Unauthenticated") && refused.contains("control characters"),
        "{refused}"
    );

    // Revoking the name stops the certificate too: an identity of that
    // name, made then revoked, is refused however it presents itself.
    let operator = Credentials {
        tls: with_cert.tls.clone(),
        token: Some(security().operator_token.clone()),
    };
    let mut tokens = TokensServiceClient::new(as_(store.addr, &operator).await);
    tokens
        .create_token(pb::CreateTokenRequest {
            name: "gateway-7".into(),
            scopes: vec!["ingest".into()],
            ..Default::default()
        })
        .await
        .expect("create");
    tokens
        .revoke_token(pb::RevokeTokenRequest {
            name: "gateway-7".into(),
        })
        .await
        .expect("revoke");
    eventually(
        Duration::from_secs(5),
        "the revoked certificate to be refused",
        || async {
            let refused = stats_with(store.addr, &with_cert).await.err()?;
            (refused.contains("Unauthenticated") && refused.contains("revoked")).then_some(())
        },
    )
    .await;
    store.stop().await;
    db.cleanup().await;
}

/// 500 idle TCP connections and 50 clients stalled half-way through their
/// TLS handshake do not keep a gateway out; a port at its connection limit
/// closes one more at once, and handshakes that do not finish in time are
/// closed so the port has room again.
#[tokio::test]
async fn idle_and_slow_connections_do_not_keep_a_gateway_out() {
    use tokio::io::AsyncWriteExt as _;
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mut mesh = Mesh::start(&db).await;
    let mut held = Vec::new();
    for _ in 0..500 {
        held.push(
            tokio::net::TcpStream::connect(mesh.ingest.addr)
                .await
                .expect("idle connection"),
        );
    }
    for _ in 0..50 {
        let mut slow = tokio::net::TcpStream::connect(mesh.ingest.addr)
            .await
            .expect("slow connection");
        // The first bytes of a TLS record header, then nothing.
        slow.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
        held.push(slow);
    }
    let started = Instant::now();
    let reply = mesh
        .ingest_client
        .ingest(pb::IngestRequest {
            readings: vec![reading("deck-1", 20.0)],
        })
        .await
        .expect("a gateway ingests beside 550 idle and slow connections");
    assert_eq!(reply.into_inner().summary.expect("summary").stored, 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    mesh.stop().await;

    // A port of 20 connections with a 300 ms handshake timeout.
    let mut runtime = edge_testkit::runtime_args();
    runtime.security.max_connections = 20;
    runtime.security.handshake_timeout = Duration::from_millis(300);
    let store = store_with(&db, runtime).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(
            tokio::net::TcpStream::connect(store.addr)
                .await
                .expect("idle"),
        );
    }
    // The 21st is closed at once (EOF on read), counted in the metrics.
    let mut extra = tokio::net::TcpStream::connect(store.addr)
        .await
        .expect("tcp accept");
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut extra, &mut buf),
    )
    .await
    .expect("closed promptly");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The idle ones time out, and an operator gets in again.
    eventually(DEADLINE, "room on the port again", || async {
        stats_with(store.addr, &security().operator()).await.ok()
    })
    .await;
    drop(idle);
    store.stop().await;
    db.cleanup().await;
}

/// The README's flow: `edge up` on a fresh directory makes its CA and the
/// operator's token; `edge simulate`, `edge status` and `edge query` run in
/// that directory find them with no credential flag. A client that trusts
/// `data/tls/ca.pem` but sends no token is refused with UNAUTHENTICATED; a
/// gateway token that tries to amend gets PERMISSION_DENIED.
#[tokio::test]
async fn edge_up_then_the_cli_works_with_no_credential_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_edge"));
    let site = edge_testkit::spawn_edge_up(exe, &data_dir, None)
        .await
        .expect("edge up");
    let ca = data_dir.join("tls").join("ca.pem");
    assert!(ca.exists(), "edge up made the site CA");
    let token_file = data_dir.join("operator.token");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file)
            .expect("operator token")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the operator token is private");
    }
    let cli = |args: &[&str]| {
        tokio::process::Command::new(exe)
            .args(args)
            .current_dir(dir.path())
            .env_remove("EDGE_TOKEN")
            .env_remove("EDGE_CA")
            .env_remove("EDGE_DATA_DIR")
            .output()
    };
    let simulate = cli(&[
        "simulate",
        "--ingest-url",
        &site.ingest_url,
        "--duration",
        "1s",
        "--concurrency",
        "2",
    ])
    .await
    .expect("edge simulate runs");
    assert!(
        simulate.status.success(),
        "{}",
        String::from_utf8_lossy(&simulate.stderr)
    );
    let status = cli(&[
        "status",
        "--ingest-url",
        &site.ingest_url,
        "--store-url",
        &site.store_url,
        "--sync-url",
        &site.sync_url,
        "--health-url",
        &site.health_url,
    ])
    .await
    .expect("edge status runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let query = cli(&["query", "--store-url", &site.store_url, "--format", "json"])
        .await
        .expect("edge query runs");
    assert!(
        query.status.success(),
        "{}",
        String::from_utf8_lossy(&query.stderr)
    );
    assert!(
        String::from_utf8_lossy(&query.stdout).contains("\"sensor_id\""),
        "readings listed"
    );

    // Trusting the CA but presenting nothing: refused.
    let anonymous = Credentials {
        tls: Some(edge_runtime::tls::client::grpc_client_tls(Some(&ca), "ca").expect("CA")),
        token: None,
    };
    let refused = IngestServiceClient::new(connect_with(&site.ingest_url, &anonymous).await)
        .ingest(pb::IngestRequest {
            readings: vec![reading("deck-1", 20.0)],
        })
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // A gateway token made with `edge tokens add` ingests but cannot amend.
    let added = cli(&[
        "tokens",
        "add",
        "gw-1",
        "--scope",
        "ingest",
        "--store-url",
        &site.store_url,
    ])
    .await
    .expect("edge tokens add runs");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let gateway = Credentials {
        token: Some(String::from_utf8_lossy(&added.stdout).trim().to_owned()),
        ..anonymous
    };
    let reply = IngestServiceClient::new(connect_with(&site.ingest_url, &gateway).await)
        .ingest(pb::IngestRequest {
            readings: vec![reading("deck-1", 20.0)],
        })
        .await
        .expect("a gateway ingests");
    let id = reply.into_inner().results[0].id.clone();
    let denied = OperationsServiceClient::new(connect_with(&site.store_url, &gateway).await)
        .amend(pb::AmendRequest {
            reading_id: id,
            temperature_celsius: Some(99.0),
            ..Default::default()
        })
        .await
        .expect_err("no operate scope");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("operate"), "{denied:?}");
}

/// A revoked operator token never comes back by a restart: store-svc refuses
/// to start with it, naming the file to replace.
#[tokio::test]
async fn a_revoked_operator_token_is_not_revived_by_a_restart() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let store = store_with(&db, edge_testkit::runtime_args()).await;
    TokensServiceClient::new(as_(store.addr, &security().operator()).await)
        .revoke_token(pb::RevokeTokenRequest {
            name: "operator".into(),
        })
        .await
        .expect("revoke");
    store.stop().await;
    let mut config = store_svc::StoreConfig::new(db.data_dir.clone());
    config.store_addr = "127.0.0.1:0".parse().expect("address");
    let refused = store_svc::StoreApp::build(
        &config,
        &edge_testkit::runtime_args(),
        std::sync::Arc::new(store_svc::hlc::SystemClock),
    )
    .await
    .err()
    .expect("refused to start");
    assert!(refused.to_string().contains("operator.token"), "{refused}");
    db.cleanup().await;
}
