//! A push carries the W3C trace context of the span it is made in, so the
//! cloud can continue the site's trace (its own test binary: it installs
//! the process-wide subscriber with spans recorded).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::post;
use edge_cloud_link::contract::PushBatch;
use edge_cloud_link::{ClientConfig, CloudClient};
use opentelemetry::trace::TraceContextExt as _;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// Records each push's `traceparent` and accepts an empty batch.
async fn batches(State(seen): State<Seen>, headers: HeaderMap) -> impl IntoResponse {
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.lock().expect("seen").push(traceparent);
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"results":[]}"#,
    )
}

#[tokio::test]
async fn a_push_carries_the_trace_context_of_its_span() {
    // Spans recorded (no exporter needed to have trace ids).
    edge_runtime::telemetry::init_logging_with_tracer(
        &edge_runtime::RuntimeArgs {
            log: "warn".into(),
            ..edge_runtime::RuntimeArgs::default()
        },
        opentelemetry_sdk::trace::SdkTracerProvider::builder().build(),
    );
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = Router::new()
        .route("/v1/sites/{site}/batches", post(batches))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = CloudClient::new(ClientConfig {
        base_url: format!("http://{addr}"),
        token: None,
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        gzip: false,
        max_response_bytes: 64 * 1024,
        trust: None,
    })
    .expect("client");
    let batch = PushBatch { versions: vec![] };

    let span = tracing::info_span!("sync batch");
    let trace_id = span.context().span().span_context().trace_id().to_string();
    let span_id = span.context().span().span_context().span_id().to_string();
    client
        .push("site", "key-1", &batch)
        .instrument(span)
        .await
        .expect("push");
    // Outside any span: nothing to continue, nothing sent.
    client.push("site", "key-2", &batch).await.expect("push");

    let seen = seen.lock().expect("seen").clone();
    assert_eq!(
        seen,
        vec![Some(format!("00-{trace_id}-{span_id}-01")), None],
        "the first push continues the span's trace, the second has none"
    );
}
