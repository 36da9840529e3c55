//! Bad input as a gateway, or anything else, can send it, read through a
//! client with the metadata limit of standard gRPC clients: per-reading
//! errors arrive in the reply body however many there are; request-level
//! faults are INVALID_ARGUMENT with bounded details; bytes that do not decode
//! are INVALID_ARGUMENT on every server of the mesh, never INTERNAL.

mod common;

use std::marker::PhantomData;
use std::net::SocketAddr;

use common::{Mesh, reading};
use edge_proto::internal::v1 as ipb;
use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_proto::v1::ingest_service_server::{IngestService, IngestServiceServer};
use edge_runtime::client::AuthedChannel;
use edge_runtime::status::{MAX_VIOLATIONS, field_violations, header_list_size};
use edge_testkit::StoreClients;
use edge_testkit::{Backend, TestDatabase, on_both_backends};
use prost::Message as _;
use prost::bytes::BufMut as _;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::{Code, Request, Response, Status};

/// The limit on received metadata (the HTTP/2 header list, where a status
/// and its details travel) of grpc-core clients such as grpcio, and hyper's.
const CLIENT_METADATA_LIMIT: u32 = 16 * 1024;
/// What a status from the mesh may take as sent: grpc-core starts refusing
/// metadata at 8 KiB.
const STATUS_BOUND: usize = 8 * 1024;

/// A channel configured like a standard client: 16 KiB of metadata at most.
async fn standard_client_channel(addr: SocketAddr) -> AuthedChannel {
    standard_client_channel_as(addr, &edge_testkit::security().operator()).await
}

/// [`standard_client_channel`] presenting `credentials`.
async fn standard_client_channel_as(
    addr: SocketAddr,
    credentials: &edge_runtime::client::Credentials,
) -> AuthedChannel {
    let endpoint = edge_runtime::client::endpoint(
        &format!("http://{addr}"),
        &edge_runtime::client::ClientArgs::default(),
        credentials,
    )
    .expect("endpoint")
    .http2_max_header_list_size(CLIENT_METADATA_LIMIT);
    edge_testkit::connect_endpoint(endpoint, credentials).await
}

/// A reading refused for exactly one field, which one depending on `i`; and
/// that field's name.
fn invalid_reading(i: usize) -> (pb::Reading, &'static str) {
    let mut r = reading("deck-1", 20.0);
    let field = match i % 6 {
        0 => {
            r.id = format!("not-a-uuid-{i}");
            "id"
        }
        1 => {
            r.sensor_id = format!("deck {i}!");
            "sensor_id"
        }
        2 => {
            r.temperature_celsius = Some(500.0 + i as f64);
            "temperature_celsius"
        }
        3 => {
            r.humidity_percent = None;
            "humidity_percent"
        }
        4 => {
            r.measured_at = None;
            "measured_at"
        }
        _ => {
            r.priority = 7;
            "priority"
        }
    };
    (r, field)
}

/// The old way of answering a wholly invalid batch of 200 readings (every
/// per-reading error as a status detail) does not reach a client with the
/// standard limit, while a client without it reads it: the limit the tests
/// below rely on really bites.
#[tokio::test]
async fn a_status_with_per_reading_details_is_refused_by_a_standard_client() {
    /// Answers every Ingest the old way.
    struct OldWay;

    #[tonic::async_trait]
    impl IngestService for OldWay {
        async fn ingest(
            &self,
            _: Request<pb::IngestRequest>,
        ) -> Result<Response<pb::IngestResponse>, Status> {
            Err(per_reading_details(200))
        }

        type IngestStreamStream = futures::stream::Empty<Result<pb::IngestStreamResponse, Status>>;

        async fn ingest_stream(
            &self,
            _: Request<tonic::Streaming<pb::IngestStreamRequest>>,
        ) -> Result<Response<Self::IngestStreamStream>, Status> {
            Err(Status::unimplemented("not needed here"))
        }
    }

    let size = header_list_size(&per_reading_details(200)).expect("writable");
    assert!(size > CLIENT_METADATA_LIMIT as usize, "{size} bytes");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IngestServiceServer::new(OldWay))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let batch = || pb::IngestRequest {
        readings: vec![reading("deck-1", 500.0)],
    };

    // This server is the test's own, in plaintext.
    let plaintext = edge_runtime::client::Credentials::default();
    let mut standard = IngestServiceClient::new(standard_client_channel_as(addr, &plaintext).await);
    let refused = standard.ingest(batch()).await.expect_err("refused");
    assert_ne!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(field_violations(&refused).is_empty());

    let roomy = edge_testkit::connect_endpoint(
        edge_runtime::client::endpoint(
            &format!("http://{addr}"),
            &edge_runtime::client::ClientArgs::default(),
            &plaintext,
        )
        .expect("endpoint")
        .http2_max_header_list_size(1 << 20),
        &plaintext,
    )
    .await;
    let read = IngestServiceClient::new(roomy)
        .ingest(batch())
        .await
        .expect_err("the old answer");
    assert_eq!(read.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&read).len(), 200);

    let _ = stop.send(());
    server.await.expect("server task").expect("server");
}

/// What ingest-svc used to answer for `n` readings each refused for its
/// temperature.
fn per_reading_details(n: usize) -> Status {
    use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};
    let violations = (0..n)
        .map(|i| {
            FieldViolation::new(
                format!("readings[{i}].temperature_celsius"),
                "must be between -100 and 150, got 500",
            )
        })
        .collect::<Vec<_>>();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("all {n} readings are invalid"),
        ErrorDetails::with_bad_request(violations),
    )
}

/// 5,000 readings, every one invalid: the call succeeds and the reply names
/// each reading's field, read by a client with the standard limit.
#[tokio::test]
async fn a_wholly_invalid_batch_of_5000_is_answered_with_every_error_in_the_body() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mut mesh = Mesh::start(&db).await;
    let mut client = IngestServiceClient::new(standard_client_channel(mesh.ingest.addr).await);
    let (readings, fields): (Vec<_>, Vec<_>) = (0..5_000).map(invalid_reading).unzip();

    let reply = client
        .ingest(pb::IngestRequest { readings })
        .await
        .expect("a batch judged reading by reading is answered OK")
        .into_inner();

    let summary = reply.summary.expect("summary");
    assert_eq!((summary.stored, summary.rejected), (0, 5_000));
    assert_eq!(reply.results.len(), 5_000);
    for (i, (result, field)) in reply.results.iter().zip(&fields).enumerate() {
        assert_eq!(result.index as usize, i);
        assert_eq!(result.outcome, pb::ReadingOutcome::Rejected as i32);
        let named: Vec<&str> = result.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, [*field], "reading {i}");
        assert!(!result.errors[0].reason.is_empty());
    }
    assert!(mesh.all_readings().await.is_empty());
    mesh.stop().await;
    db.cleanup().await;
}

/// A large batch, one reading in three invalid: the valid ones are stored,
/// each bad one is named, through a client with the standard limit.
async fn a_mixed_batch_stores_the_valid_and_names_each_bad_one(db: &TestDatabase) {
    let mut mesh = Mesh::start(db).await;
    let mut client = IngestServiceClient::new(standard_client_channel(mesh.ingest.addr).await);
    let mut readings = Vec::new();
    let mut bad = Vec::new();
    for i in 0..3_000 {
        if i % 3 == 1 {
            let (r, field) = invalid_reading(i / 3);
            bad.push((i, field));
            readings.push(r);
        } else {
            readings.push(reading(&format!("deck-{}", i % 7), 20.0));
        }
    }

    let reply = client
        .ingest(pb::IngestRequest {
            readings: readings.clone(),
        })
        .await
        .expect("ingest")
        .into_inner();

    let summary = reply.summary.expect("summary");
    assert_eq!((summary.stored, summary.rejected), (2_000, 1_000));
    for (i, field) in &bad {
        let result = &reply.results[*i];
        assert_eq!(result.outcome, pb::ReadingOutcome::Rejected as i32);
        assert_eq!(result.errors[0].field, *field, "reading {i}");
    }
    let mut stored: Vec<String> = mesh
        .all_readings()
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut valid: Vec<String> = readings
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .map(|(_, r)| r.id.clone())
        .collect();
    stored.sort();
    valid.sort();
    assert_eq!(stored, valid);
    mesh.stop().await;
}
on_both_backends!(a_mixed_batch_stores_the_valid_and_names_each_bad_one);

/// An empty batch and one over the limit (5,001 readings with long sensor
/// ids, as large as a message may be) are refused whole, with a violation
/// on `readings` a standard client reads.
#[tokio::test]
async fn empty_and_over_limit_batches_are_invalid_argument_with_small_details() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mut mesh = Mesh::start(&db).await;
    let mut client = IngestServiceClient::new(standard_client_channel(mesh.ingest.addr).await);

    let empty = client
        .ingest(pb::IngestRequest { readings: vec![] })
        .await
        .expect_err("empty");
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert_eq!(
        field_violations(&empty),
        [(
            "readings".to_owned(),
            "must hold at least one reading".to_owned()
        )]
    );

    let long = "x".repeat(600);
    let oversized: Vec<_> = (0..5_001).map(|_| reading(&long, 1.0)).collect();
    let too_many = client
        .ingest(pb::IngestRequest {
            readings: oversized,
        })
        .await
        .expect_err("too many");
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert_eq!(
        field_violations(&too_many),
        [(
            "readings".to_owned(),
            "at most 5000 readings per batch".to_owned()
        )]
    );
    assert!(header_list_size(&too_many).expect("writable") < STATUS_BOUND);
    assert!(mesh.all_readings().await.is_empty());
    mesh.stop().await;
    db.cleanup().await;
}

/// store-svc refusing a hostile Append (10,000 readings, every field of each
/// wrong) answers a standard client with at most [`MAX_VIOLATIONS`]
/// violations, says how many it left off, and stays small.
#[tokio::test]
async fn a_hostile_append_gets_bounded_details_that_a_standard_client_reads() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mut mesh = Mesh::start(&db).await;
    let mut store = StoreClients::new(
        standard_client_channel(mesh.store.addr).await,
        standard_client_channel_as(mesh.store.addr, &edge_testkit::security().mesh()).await,
    );
    let bad = ipb::NewReading {
        id: "not-a-uuid".into(),
        sensor_id: "no spaces allowed".into(),
        temperature_celsius: f64::NAN,
        humidity_percent: f64::INFINITY,
        measured_at: None,
        received_at: None,
        priority: 9,
        written_by: "gate\u{7}way".repeat(40),
    };

    let err = store
        .ingest
        .append(ipb::AppendRequest {
            readings: vec![bad; 10_000],
        })
        .await
        .expect_err("refused");

    assert_eq!(err.code(), Code::InvalidArgument);
    let violations = field_violations(&err);
    assert_eq!(violations.len(), MAX_VIOLATIONS);
    assert_eq!(violations[0].0, "readings[0].id");
    // Eight fields wrong in each of 10,000 readings.
    let left_off = 80_000 - MAX_VIOLATIONS;
    assert!(
        err.message()
            .ends_with(&format!("({left_off} more field violations left off)")),
        "{}",
        err.message()
    );
    assert!(header_list_size(&err).expect("writable") < STATUS_BOUND);
    assert!(mesh.all_readings().await.is_empty());
    mesh.stop().await;
    db.cleanup().await;
}

/// Sends each message's bytes as they are (whatever no well-behaved client
/// would send) and decodes replies as `U`.
struct RawCodec<U>(PhantomData<U>);

impl<U> Default for RawCodec<U> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

/// The encoder of [`RawCodec`]: the bytes, verbatim.
struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl<U: prost::Message + Default + Send + 'static> Codec for RawCodec<U> {
    type Encode = Vec<u8>;
    type Decode = U;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(BufferSettings::default())
    }
}

/// Sends `messages` (raw bytes, each in its own gRPC frame) to `path` at
/// `url` as a stream, and returns the replies until the first error.
async fn call_raw<U: prost::Message + Default + Send + 'static>(
    url: &str,
    path: &'static str,
    messages: Vec<Vec<u8>>,
) -> (Vec<U>, Result<(), Status>) {
    call_raw_as(url, &edge_testkit::security().operator(), path, messages).await
}

/// [`call_raw`] presenting `credentials`.
async fn call_raw_as<U: prost::Message + Default + Send + 'static>(
    url: &str,
    credentials: &edge_runtime::client::Credentials,
    path: &'static str,
    messages: Vec<Vec<u8>>,
) -> (Vec<U>, Result<(), Status>) {
    let mut grpc = tonic::client::Grpc::new(edge_testkit::connect_with(url, credentials).await);
    grpc.ready().await.expect("ready");
    let call = grpc
        .streaming(
            Request::new(tokio_stream::iter(messages)),
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            RawCodec::<U>::default(),
        )
        .await;
    let mut replies = Vec::new();
    let mut stream = match call {
        Ok(response) => response.into_inner(),
        Err(status) => return (replies, Err(status)),
    };
    loop {
        match stream.message().await {
            Ok(Some(reply)) => replies.push(reply),
            Ok(None) => return (replies, Ok(())),
            Err(status) => return (replies, Err(status)),
        }
    }
}

/// The bytes of a message holding, as field `tag`, one `Reading` like
/// `reading` whose `sensor_id` is `sensor_id`, UTF-8 or not: a bytes field
/// at the string field's tag (2), which prost's encoders write as they are.
fn with_raw_sensor_id(tag: u32, reading: &pb::Reading, sensor_id: &[u8]) -> Vec<u8> {
    let mut without = reading.clone();
    without.sensor_id.clear();
    let mut reading_bytes = without.encode_to_vec();
    prost::encoding::bytes::encode(2, &sensor_id.to_vec(), &mut reading_bytes);
    let mut message = Vec::new();
    prost::encoding::bytes::encode(tag, &reading_bytes, &mut message);
    message
}

/// Bytes that are no protobuf message: field number 0 does not exist.
const GARBAGE: &[u8] = b"\x00\x01 garbage \xff\xfe";

fn assert_undecodable(status: &Status, naming: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("request could not be decoded: ")
            && status.message().contains(naming),
        "{}",
        status.message()
    );
}

/// Unary Ingest: a sensor id that is not UTF-8, and garbage, are
/// INVALID_ARGUMENT with the reason; the same bytes with a UTF-8 sensor id
/// are stored.
#[tokio::test]
async fn undecodable_ingest_requests_are_invalid_argument() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mut mesh = Mesh::start(&db).await;
    let url = format!("http://{}", mesh.ingest.addr);
    const INGEST: &str = "/edge.v1.IngestService/Ingest";
    let sent = reading("unused", 21.0);

    let (replies, end) =
        call_raw::<pb::IngestResponse>(&url, INGEST, vec![with_raw_sensor_id(1, &sent, b"deck-1")])
            .await;
    end.expect("valid UTF-8 is stored");
    assert_eq!(replies[0].summary.expect("summary").stored, 1);

    let mut other = reading("unused", 22.0);
    other.id = uuid::Uuid::now_v7().to_string();
    let (_, end) = call_raw::<pb::IngestResponse>(
        &url,
        INGEST,
        vec![with_raw_sensor_id(1, &other, b"deck-\xff\xfe")],
    )
    .await;
    assert_undecodable(&end.expect_err("not UTF-8"), "Reading.sensor_id");

    let (_, end) = call_raw::<pb::IngestResponse>(&url, INGEST, vec![GARBAGE.to_vec()]).await;
    assert_undecodable(&end.expect_err("garbage"), "invalid tag value: 0");

    let stored = mesh.all_readings().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].sensor_id, "deck-1");
    mesh.stop().await;
    db.cleanup().await;
}

/// IngestStream: batches before one that does not decode are acknowledged,
/// then the stream ends with INVALID_ARGUMENT naming the field.
#[tokio::test]
async fn an_undecodable_stream_batch_ends_the_stream_with_invalid_argument() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let mut mesh = Mesh::start(&db).await;
    let url = format!("http://{}", mesh.ingest.addr);
    let first = pb::IngestStreamRequest {
        batch_id: 1,
        readings: vec![reading("mast-1", 3.5)],
    };
    let mut poison = Vec::new();
    prost::encoding::uint64::encode(1, &2, &mut poison);
    poison.extend(with_raw_sensor_id(
        2,
        &reading("unused", 4.0),
        b"mast-\xc3\x28",
    ));
    let after = pb::IngestStreamRequest {
        batch_id: 3,
        readings: vec![reading("mast-1", 5.0)],
    };

    let (acks, end) = call_raw::<pb::IngestStreamResponse>(
        &url,
        "/edge.v1.IngestService/IngestStream",
        vec![first.encode_to_vec(), poison, after.encode_to_vec()],
    )
    .await;

    let acked: Vec<u64> = acks.iter().map(|ack| ack.batch_id).collect();
    assert_eq!(acked, [1]);
    assert_eq!(acks[0].summary.expect("summary").stored, 1);
    assert_undecodable(&end.expect_err("poison batch"), "Reading.sensor_id");
    let stored = mesh.all_readings().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, first.readings[0].id);
    mesh.stop().await;
    db.cleanup().await;
}

/// Every server of the mesh, as `edge up` runs them, unary and streaming
/// methods alike, answers garbage with INVALID_ARGUMENT, not INTERNAL.
#[tokio::test]
async fn every_server_answers_undecodable_requests_with_invalid_argument() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let edge = edge_testkit::spawn_edge_up(
        std::path::Path::new(env!("CARGO_BIN_EXE_edge")),
        &db.data_dir,
        None,
    )
    .await
    .expect("edge up");
    let calls = [
        (&edge.ingest_url, "/edge.v1.IngestService/Ingest"),
        (&edge.ingest_url, "/edge.v1.IngestService/IngestStream"),
        (
            &edge.store_url,
            "/edge.internal.v1.StoreIngestService/Append",
        ),
        (&edge.store_url, "/edge.v1.ReadingsService/QueryReadings"),
        (&edge.store_url, "/edge.v1.OperationsService/Amend"),
        (
            &edge.store_url,
            "/edge.internal.v1.StoreSyncService/LeaseBatch",
        ),
        (&edge.sync_url, "/edge.v1.SyncService/GetStatus"),
        (&edge.sync_url, "/edge.v1.SyncService/WatchStatus"),
        (
            &edge.health_url,
            "/edge.v1.CloudHealthService/GetCloudHealth",
        ),
        (
            &edge.health_url,
            "/edge.v1.CloudHealthService/WatchCloudHealth",
        ),
    ];
    for (url, path) in calls {
        // Replies are never read: `()` decodes any message.
        // Each caller with its own right: the mesh's for internal calls.
        let credentials = if path.starts_with("/edge.internal.") {
            &edge.mesh_credentials
        } else {
            &edge.credentials
        };
        let (replies, end) =
            call_raw_as::<()>(url, credentials, path, vec![GARBAGE.to_vec()]).await;
        assert!(replies.is_empty(), "{path}");
        let status = end.expect_err(path);
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert!(
            status.message().starts_with("request could not be decoded"),
            "{path}: {}",
            status.message()
        );
    }
    drop(edge);
    db.cleanup().await;
}

/// ingest-svc merges concurrent calls into one Append. If store-svc refuses
/// such a merged Append as invalid (data that passed ingest-svc's rules but
/// not the database's), the calls are sent again one by one, so one
/// gateway's batch cannot fail the gateways merged with it on every retry.
async fn a_merged_append_refused_as_invalid_is_sent_again_call_by_call(db: &TestDatabase) {
    use std::sync::Arc;

    use ingest_svc::coalesce::StoreAppender;
    use store_svc::db::faults::{Fault, FaultPoint, WriteFaults, WriteOp};

    let faults = Arc::new(WriteFaults::default());
    let store = common::start_store_with(db, "127.0.0.1:0".parse().expect("address"), {
        let faults = faults.clone();
        move |config| config.write_faults = Some(faults)
    })
    .await;
    let client =
        edge_proto::internal::v1::store_ingest_service_client::StoreIngestServiceClient::new(
            edge_testkit::connect_with(
                &format!("http://{}", store.addr),
                &edge_testkit::security().mesh(),
            )
            .await,
        );
    let appender = StoreAppender::spawn(client, 1, 4 << 20);
    // The database refuses the first Append's data, as PostgreSQL refuses a
    // value its text cannot hold (SQLSTATE 22021).
    faults.arm(
        WriteOp::Append,
        FaultPoint::Statement,
        Fault::Error("22021"),
        1,
    );
    let call = |sensor: &str| {
        let mut r = reading(sensor, 20.0);
        ipb::NewReading {
            id: std::mem::take(&mut r.id),
            sensor_id: r.sensor_id,
            temperature_celsius: 20.0,
            humidity_percent: 50.0,
            measured_at: r.measured_at,
            received_at: r.measured_at,
            priority: pb::Priority::Normal as i32,
            written_by: format!("gateway-{sensor}"),
        }
    };
    // One call per sensor. One poll each queues them before the merging
    // task runs (this test's runtime has one thread), so they leave as one
    // Append.
    let merged = |sensors: [&str; 3]| {
        let mut calls: Vec<_> = sensors
            .iter()
            .map(|sensor| Box::pin(appender.append(vec![call(sensor)])))
            .collect();
        async move {
            for pending in &mut calls {
                assert!(futures::poll!(pending.as_mut()).is_pending());
            }
            futures::future::join_all(calls).await
        }
    };
    let results = merged(["a", "b", "c"]).await;
    assert_eq!(faults.injected(), 1, "the merged Append was refused once");
    let mut seqs: Vec<u64> = results
        .into_iter()
        .map(|result| {
            let results = result.expect("each call stored alone");
            assert_eq!(results[0].outcome, pb::ReadingOutcome::Stored as i32);
            results[0].seq
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3]);

    // Merged again, with nothing refused: one Append carries three
    // gateways' readings, and each keeps its own writer.
    for result in merged(["d", "e", "f"]).await {
        assert_eq!(
            result.expect("stored")[0].outcome,
            pb::ReadingOutcome::Stored as i32
        );
    }
    let mut clients = edge_testkit::StoreClients::connect(format!("http://{}", store.addr)).await;
    let stored = edge_testkit::query_all(&mut clients, pb::QueryReadingsRequest::default()).await;
    assert_eq!(stored.len(), 6);
    for r in &stored {
        assert_eq!(r.written_by, format!("gateway-{}", r.sensor_id), "{r:?}");
    }
    store.stop().await;
}
on_both_backends!(a_merged_append_refused_as_invalid_is_sent_again_call_by_call);
