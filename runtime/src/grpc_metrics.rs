//! Request metrics for every gRPC server, as a tower layer, so no handler
//! counts its own calls (docs/architecture.md, Metrics):
//!
//! - `grpc_server_requests_total{service,method,code}`: finished calls;
//! - `grpc_server_duration_seconds{service,method,code}`: from the request's
//!   arrival to its status, which for a stream is its end.
//!
//! A gRPC status travels in the response headers when the call fails before
//! any message (a "trailers-only" response) and in the trailers otherwise, so
//! the layer reads the headers first and else watches the body for its
//! trailers. A call dropped before its status (the client went away or its
//! deadline passed, the server drained) counts as `CANCELLED`.
//!
//! Labels stay bounded: `service` and `method` come from the server's own
//! descriptors; any other path is `unknown`/`unknown`.
//! Hand-written rather than taken from a crate: the crates that exist use
//! other metric names (`grpc_server_handled_total`) and read the status from
//! the headers only, which misses every streamed or successful call's code.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::{KeyValue, StringValue};
use prost::Message as _;
use tonic::Code;
use tower::{Layer, Service};

/// Buckets of `grpc_server_duration_seconds`: from a cached read (~100 µs)
/// to a long stream.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The two instruments, registered once per process.
struct Instruments {
    requests: Counter<u64>,
    duration: Histogram<f64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = crate::telemetry::meter("grpc-server");
        Instruments {
            requests: meter
                .u64_counter("grpc_server_requests")
                .with_description("gRPC calls finished, by service, method and status code")
                .build(),
            duration: meter
                .f64_histogram("grpc_server_duration")
                .with_unit("s")
                .with_description("Time from a gRPC call's arrival to its status")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
        }
    })
}

/// The `service` and `method` labels of every path a server answers.
type KnownPaths = Arc<HashMap<String, [KeyValue; 2]>>;

/// Adds [`GrpcMetrics`] around a server's routes.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    known: KnownPaths,
}

impl GrpcMetricsLayer {
    /// A layer that labels the methods of `services` (fully qualified
    /// names), as `descriptor_sets` (encoded `FileDescriptorSet`s) declare
    /// them, and every other path `unknown`.
    pub fn new<'a>(services: impl IntoIterator<Item = &'a str>, descriptor_sets: &[&[u8]]) -> Self {
        let services: Vec<&str> = services.into_iter().collect();
        let mut known = HashMap::new();
        for set in descriptor_sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let name = match service.name {
                        Some(name) if package.is_empty() => name,
                        Some(name) => format!("{package}.{name}"),
                        None => continue,
                    };
                    if !services.contains(&name.as_str()) {
                        continue;
                    }
                    let service_label = StringValue::from(name.clone());
                    for method in service.method.into_iter().filter_map(|m| m.name) {
                        known.insert(
                            format!("/{name}/{method}"),
                            [
                                KeyValue::new("service", service_label.clone()),
                                KeyValue::new("method", method),
                            ],
                        );
                    }
                }
            }
        }
        GrpcMetricsLayer {
            known: Arc::new(known),
        }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            known: self.known.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] makes.
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    known: KnownPaths,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let labels = labels_for(&self.known, request.uri().path());
        MeteredFuture {
            inner: self.inner.call(request),
            call: Some(Recorder {
                labels,
                started: Instant::now(),
            }),
        }
    }
}

/// The labels of a call to `path`.
fn labels_for(known: &HashMap<String, [KeyValue; 2]>, path: &str) -> [KeyValue; 2] {
    known.get(path).cloned().unwrap_or_else(|| {
        [
            KeyValue::new("service", "unknown"),
            KeyValue::new("method", "unknown"),
        ]
    })
}

/// Records one call once, with the code it ended with.
struct Recorder {
    labels: [KeyValue; 2],
    started: Instant,
}

impl Recorder {
    fn record(self, code: Code) {
        let [service, method] = self.labels;
        let attributes = [service, method, KeyValue::new("code", code_name(code))];
        let m = instruments();
        m.requests.add(1, &attributes);
        m.duration
            .record(self.started.elapsed().as_secs_f64(), &attributes);
    }
}

/// The status in `headers`, if they carry one.
fn status_in(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

pin_project_lite::pin_project! {
    /// The response future of [`GrpcMetrics`]; a call dropped before its
    /// response (a client deadline, a reset stream, the grace period over)
    /// is recorded as `CANCELLED`.
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        call: Option<Recorder>,
    }

    impl<F> PinnedDrop for MeteredFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.record(Code::Cancelled);
            }
        }
    }
}

impl<F, ResBody, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<MeteredBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                let call = match (call, status_in(response.headers())) {
                    (Some(call), Some(code)) => {
                        call.record(code);
                        None
                    }
                    (call, _) => call,
                };
                Ok(response.map(|inner| MeteredBody { inner, call }))
            }
            Err(err) => {
                if let Some(call) = call {
                    call.record(Code::Internal);
                }
                Err(err)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when the trailers pass (or
    /// when it is dropped without them).
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: Option<Recorder>,
    }

    impl<B> PinnedDrop for MeteredBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.record(Code::Cancelled);
            }
        }
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(call) = this.call.take()
                {
                    call.record(status_in(trailers).unwrap_or(Code::Unknown));
                }
            }
            Some(Err(_)) => {
                if let Some(call) = this.call.take() {
                    call.record(Code::Internal);
                }
            }
            None => {
                // The end without trailers: gRPC requires a status.
                if let Some(call) = this.call.take() {
                    call.record(Code::Unknown);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The status code's name as gRPC spells it (`OK`, `INVALID_ARGUMENT`, …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt as _;

    use super::*;

    fn layer() -> GrpcMetricsLayer {
        GrpcMetricsLayer::new(
            ["grpc.health.v1.Health"],
            &[tonic_health::pb::FILE_DESCRIPTOR_SET],
        )
    }

    fn label(labels: &[KeyValue; 2], key: &str) -> String {
        labels
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn methods_of_known_services_are_labelled_by_name() {
        let known = layer().known;
        let labels = labels_for(&known, "/grpc.health.v1.Health/Check");
        assert_eq!(label(&labels, "service"), "grpc.health.v1.Health");
        assert_eq!(label(&labels, "method"), "Check");
    }

    #[test]
    fn any_other_path_is_unknown() {
        let known = layer().known;
        for path in [
            "/grpc.health.v1.Health/Nope",
            "/evil.Service/Check",
            "/grpc.health.v1.Health",
            "/grpc.health.v1.Health/Check/x",
            "",
        ] {
            let labels = labels_for(&known, path);
            assert_eq!(
                (label(&labels, "service"), label(&labels, "method")),
                ("unknown".into(), "unknown".into()),
                "{path}"
            );
        }
    }

    #[test]
    fn code_names_are_the_grpc_spelling() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(Code::from_i32(3)), "INVALID_ARGUMENT");
    }

    /// Calls of `service` recorded with `code` so far.
    fn count(method: &str, code: &str) -> f64 {
        let text = crate::telemetry::metrics().render();
        text.lines()
            .filter(|l| l.starts_with("grpc_server_requests_total{"))
            .filter(|l| l.contains(&format!("method=\"{method}\"")))
            .filter(|l| l.contains(&format!("code=\"{code}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    type Frames =
        futures::stream::Iter<std::vec::IntoIter<Result<Frame<bytes::Bytes>, Infallible>>>;

    /// A response with one message, then the trailers if given.
    fn response(
        headers_status: Option<&'static str>,
        trailers_status: Option<&'static str>,
    ) -> Response<http_body_util::StreamBody<Frames>> {
        let mut frames = vec![Ok::<_, Infallible>(Frame::data(bytes::Bytes::from_static(
            b"x",
        )))];
        if let Some(code) = trailers_status {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static(code));
            frames.push(Ok(Frame::trailers(trailers)));
        }
        let mut response = Response::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )));
        if let Some(code) = headers_status {
            response
                .headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static(code));
        }
        response
    }

    async fn drain<B: http_body::Body + Unpin>(mut body: B) {
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            if frame.is_err() {
                break;
            }
        }
    }

    #[tokio::test]
    async fn each_call_is_recorded_once_with_the_status_it_ended_with() {
        let call = |path: &'static str, headers, trailers| {
            let svc = layer().layer(tower::service_fn(move |_req: Request<()>| async move {
                Ok::<_, Infallible>(response(headers, trailers))
            }));
            svc.oneshot(Request::builder().uri(path).body(()).expect("request"))
        };
        // Trailers-only: the status is in the headers.
        let before = count("Check", "NOT_FOUND");
        let reply = call("/grpc.health.v1.Health/Check", Some("5"), None)
            .await
            .expect("reply");
        drain(reply.into_body()).await;
        assert_eq!(count("Check", "NOT_FOUND"), before + 1.0);
        // A message, then the status in the trailers.
        let before = count("Watch", "OK");
        let reply = call("/grpc.health.v1.Health/Watch", None, Some("0"))
            .await
            .expect("reply");
        assert_eq!(count("Watch", "OK"), before, "not before the trailers");
        drain(reply.into_body()).await;
        assert_eq!(count("Watch", "OK"), before + 1.0);
        // The body dropped before its trailers: the client went away.
        let before = count("Watch", "CANCELLED");
        let reply = call("/grpc.health.v1.Health/Watch", None, Some("0"))
            .await
            .expect("reply");
        drop(reply);
        assert_eq!(count("Watch", "CANCELLED"), before + 1.0);
    }

    #[tokio::test]
    async fn a_call_dropped_before_its_response_is_cancelled() {
        let svc = layer().layer(tower::service_fn(|_req: Request<()>| async {
            std::future::pending::<
                    Result<Response<http_body_util::Empty<bytes::Bytes>>, Infallible>,
                >()
                .await
        }));
        let before = count("Check", "CANCELLED");
        let pending = svc.oneshot(
            Request::builder()
                .uri("/grpc.health.v1.Health/Check")
                .body(())
                .expect("request"),
        );
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(10), pending).await;
        assert!(timed_out.is_err());
        assert_eq!(count("Check", "CANCELLED"), before + 1.0);
    }
}
