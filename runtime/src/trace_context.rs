//! W3C trace context (`traceparent`, `tracestate`) across the mesh, so one
//! reading can be followed from the gateway through ingest-svc into
//! store-svc, and from sync-svc into store-svc and the cloud.
//!
//! - Servers: [`server_span`] opens every call's span as a child of the
//!   caller's context from the request headers (gRPC metadata are HTTP/2
//!   headers); [`crate::serve`] uses it.
//! - gRPC clients: [`inject_metadata`] (called by every mesh channel, see
//!   [`crate::client`]) makes each call carry the
//!   context of the span it is made in.
//! - HTTP clients: [`inject_http`] writes the current context into a header
//!   map (sync-svc's pushes to the cloud).
//!
//! Contexts exist only while spans are recorded, that is when the process
//! exports traces (see [`crate::telemetry`]); otherwise nothing is extracted
//! or injected and the cost is one header lookup per call.

use http::HeaderMap;
use opentelemetry::propagation::{Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The span of one incoming gRPC call, named after its method, with the
/// caller's trace as parent when the request carries one.
///
/// Exported (level INFO) when traces are exported and the call continues a
/// trace, or starts one on a server that records roots (`roots`: the
/// gateway-facing ingest-svc). Otherwise a DEBUG span, nearly free unless
/// debug logging is on: an idle site's lease polls, health checks and
/// reflection calls do not each become a trace.
pub fn server_span<B>(request: &http::Request<B>, roots: bool) -> tracing::Span {
    let path = request.uri().path();
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    let continues = request.headers().contains_key("traceparent");
    let infrastructure = service.starts_with("grpc.");
    let exported = crate::telemetry::tracing_enabled() && !infrastructure && (continues || roots);
    macro_rules! span {
        ($level:expr) => {
            tracing::span!(
                $level,
                "grpc",
                otel.name = %path.trim_start_matches('/'),
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
            )
        };
    }
    if !exported {
        return span!(tracing::Level::DEBUG);
    }
    let span = span!(tracing::Level::INFO);
    if continues {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        // Fails only when no OpenTelemetry layer records spans.
        let _ = span.set_parent(parent);
    }
    span
}

/// Writes the current span's trace context into `headers`.
pub fn inject_http(headers: &mut HeaderMap) {
    if let Some(cx) = current_context() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// The current span's context, when it belongs to a recorded trace.
fn current_context() -> Option<opentelemetry::Context> {
    if !crate::telemetry::tracing_enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    cx.span().span_context().is_valid().then_some(cx)
}

/// Adds the current trace context to a call's metadata (what every mesh
/// client's [`crate::client::CallCredentials`] does).
pub fn inject_metadata(metadata: &mut MetadataMap) {
    if let Some(cx) = current_context() {
        TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
    }
}

/// Writes propagation fields into gRPC metadata (ASCII values only, which
/// `traceparent` and `tracestate` are).
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}
