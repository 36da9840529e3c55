//! What an operator's tools see of a real `edge up` beside a real reference
//! cloud: the Prometheus text on `/metrics` after a known workload, and the
//! OpenTelemetry traces it exports over OTLP to a collector (a small OTLP/HTTP
//! receiver in this test).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::reading;
use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_testkit::{EdgeUp, eventually, spawn_edge_cloud, spawn_edge_up_with_env};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

const TOKEN: &str = "observability-token";
const DEADLINE: Duration = Duration::from_secs(60);

fn exe() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_edge"))
}

/// A site syncing quickly to a cloud, with `env` for the process.
async fn site(dir: &std::path::Path, cloud_url: &str, env: &[(&str, &str)]) -> EdgeUp {
    let token = edge_testkit::site_token(TOKEN, edge_testkit::TEST_SITE_ID);
    let args: Vec<String> = [
        "--cloud-url",
        cloud_url,
        "--cloud-token",
        &token,
        "--site-id",
        edge_testkit::TEST_SITE_ID,
        "--probe-interval",
        "100ms",
        "--gauge-interval",
        "100ms",
        "--idle-poll",
        "100ms",
    ]
    .map(str::to_owned)
    .into();
    spawn_edge_up_with_env(exe(), dir, None, &args, env)
        .await
        .expect("edge up")
}

/// One family's samples from a parsed scrape, by their labels.
fn samples<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
) -> Vec<(&'a prometheus_parse::Labels, f64)> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some((&s.labels, v)),
            _ => None,
        })
        .collect()
}

/// The value of `name` whose labels include every pair in `labels`, summed
/// over the rest (`None` when no sample matches).
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples(scrape, name)
        .into_iter()
        .filter(|(l, _)| labels.iter().all(|(k, v)| l.get(k) == Some(*v)))
        .map(|(_, v)| v)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as the Prometheus text format")
}

#[tokio::test]
async fn metrics_after_a_known_workload_count_what_was_ingested_and_synced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = spawn_edge_cloud(exe(), &dir.path().join("cloud"), "127.0.0.1:0", TOKEN)
        .await
        .expect("edge cloud");
    let site = site(&dir.path().join("site"), &cloud.url, &[]).await;
    let ingest = IngestServiceClient::new(site.channel(&site.ingest_url).await);

    // 20 calls of 10 good readings, then one with 2 good and 3 out of range.
    let calls = 20;
    for call in 0..calls {
        let readings = (0..10)
            .map(|i| reading(&format!("mast-{call}"), f64::from(i)))
            .collect();
        ingest
            .clone()
            .ingest(pb::IngestRequest { readings })
            .await
            .expect("ingest");
    }
    let mut mixed: Vec<_> = (0..2).map(|i| reading("deck", f64::from(i))).collect();
    mixed.extend((0..3).map(|_| reading("deck", 1_000.0)));
    let summary = ingest
        .clone()
        .ingest(pb::IngestRequest { readings: mixed })
        .await
        .expect("ingest")
        .into_inner()
        .summary
        .expect("summary");
    assert_eq!((summary.stored, summary.rejected), (2, 3));
    let stored = f64::from(calls * 10 + 2);

    // Synced and counted: the gauges refresh every 100 ms.
    let scrape = eventually(DEADLINE, "everything synced and counted", || async {
        let text = edge_testkit::scrape(&site.metrics_addr).await.ok()?;
        let scrape = parse(&text);
        let synced = value(&scrape, "readings_synced_total", &[("result", "accepted")]);
        let unsynced = value(&scrape, "unsynced_readings", &[]);
        (synced == Some(stored) && unsynced == Some(0.0)).then_some(scrape)
    })
    .await;
    let v = |name: &str, labels: &[(&str, &str)]| {
        value(&scrape, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} is exported"))
    };

    // ingest-svc: per reading, rejections by their first offending field.
    assert_eq!(v("readings_ingested_total", &[]), stored);
    assert_eq!(
        v(
            "readings_rejected_total",
            &[("reason", "temperature_celsius")]
        ),
        3.0
    );
    // The gRPC layer: every call, by service, method and code.
    let ingest_calls = [
        ("service", "edge.v1.IngestService"),
        ("method", "Ingest"),
        ("code", "OK"),
    ];
    assert_eq!(
        v("grpc_server_requests_total", &ingest_calls),
        f64::from(calls + 1)
    );
    assert_eq!(
        v("grpc_server_duration_seconds_count", &ingest_calls),
        f64::from(calls + 1)
    );
    let appends = v(
        "grpc_server_requests_total",
        &[
            ("service", "edge.internal.v1.StoreIngestService"),
            ("method", "Append"),
        ],
    );
    assert!(
        (1.0..=f64::from(calls + 1)).contains(&appends),
        "ingest's calls reach store-svc as at most one Append each: {appends}"
    );
    // sync-svc: a clean link, every push a success.
    assert!(v("sync_success_total", &[]) >= 1.0);
    assert_eq!(v("sync_attempts_total", &[]), v("sync_success_total", &[]));
    assert_eq!(v("cloud_reachable", &[("probe", "sync")]), 1.0);
    // store-svc: the books and the forecasts.
    assert_eq!(v("dead_letters", &[]), 0.0);
    assert_eq!(
        v("backlog_drain_eta_seconds", &[]),
        0.0,
        "nothing left to drain"
    );
    assert!(v("storage_bytes", &[]) > 0.0);
    assert_eq!(
        v("sensor_index_lag_readings", &[]),
        stored,
        "fewer readings than a batch: none copied into the by-sensor index yet"
    );
    // The process.
    assert!(v("process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(v("process_open_fds", &[]) > 3.0);

    // Labels stay bounded: no reading or sensor id anywhere.
    for sample in &scrape.samples {
        for (key, label) in sample.labels.iter() {
            assert!(
                !label.contains("mast-") && uuid::Uuid::parse_str(label).is_err(),
                "{}: label {key}={label} is unbounded",
                sample.metric
            );
        }
    }
}

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

/// A minimal OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf).
async fn collector() -> (String, Arc<Mutex<Vec<ReceivedSpan>>>) {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::routing::post;

    type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;
    async fn receive(State(spans): State<Spans>, body: Bytes) -> impl axum::response::IntoResponse {
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
        };
        let mut received = spans.lock().expect("spans");
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                });
            }
        }
        (
            axum::http::StatusCode::OK,
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
    }

    let spans: Spans = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let addr = listener.local_addr().expect("collector address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

#[tokio::test]
async fn one_trace_follows_a_reading_from_the_gateway_through_ingest_into_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (endpoint, spans) = collector().await;
    let cloud = spawn_edge_cloud(exe(), &dir.path().join("cloud"), "127.0.0.1:0", TOKEN)
        .await
        .expect("edge cloud");
    let site = site(
        &dir.path().join("site"),
        &cloud.url,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;

    // The gateway's own trace, as its SDK would send it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let gateway_span = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(pb::IngestRequest {
        readings: vec![reading("traced", 21.5)],
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{gateway_span}-01")
            .parse()
            .expect("traceparent"),
    );
    IngestServiceClient::new(site.channel(&site.ingest_url).await)
        .ingest(request)
        .await
        .expect("ingest");

    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let in_trace = eventually(DEADLINE, "the ingest and store spans exported", || async {
        let received = spans.lock().ok()?.clone();
        let in_trace: Vec<ReceivedSpan> = received
            .into_iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .collect();
        let has = |name: &str| in_trace.iter().any(|s| s.name == name);
        (has("edge.v1.IngestService/Ingest") && has("edge.internal.v1.StoreIngestService/Append"))
            .then_some(in_trace)
    })
    .await;
    let by_id: HashMap<String, &ReceivedSpan> =
        in_trace.iter().map(|s| (hex(&s.span_id), s)).collect();
    let ingest = in_trace
        .iter()
        .find(|s| s.name == "edge.v1.IngestService/Ingest")
        .expect("ingest span");
    assert_eq!(
        hex(&ingest.parent_span_id),
        gateway_span,
        "ingest-svc's span is the gateway's child"
    );
    // The store's span descends from ingest's, through the Append call.
    let store = in_trace
        .iter()
        .find(|s| s.name == "edge.internal.v1.StoreIngestService/Append")
        .expect("store span");
    let mut ancestor = hex(&store.parent_span_id);
    let mut hops = 0;
    while ancestor != hex(&ingest.span_id) {
        let parent = by_id
            .get(&ancestor)
            .unwrap_or_else(|| panic!("span {ancestor} of the store's ancestry was exported"));
        ancestor = hex(&parent.parent_span_id);
        hops += 1;
        assert!(hops < 10, "the store's span descends from ingest's");
    }
    assert!(
        ingest.service.contains("edge"),
        "the resource names the service: {}",
        ingest.service
    );

    // sync-svc: a batch's completion in store-svc is a child of the batch's
    // span (the same context went into the push's traceparent header).
    eventually(DEADLINE, "a sync batch traced into store-svc", || async {
        let received = spans.lock().ok()?.clone();
        received
            .iter()
            .filter(|s| s.name == "sync batch")
            .find(|batch| {
                received.iter().any(|s| {
                    s.name == "edge.internal.v1.StoreSyncService/CompleteBatch"
                        && s.trace_id == batch.trace_id
                        && s.parent_span_id == batch.span_id
                })
            })
            .map(|_| ())
    })
    .await;
    drop(site);
    drop(cloud);
}
