//! Logs, traces and metrics for a process.
//!
//! Logging goes through `tracing` to stderr, as text or JSON. When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set, the same spans are exported as OpenTelemetry traces over OTLP
//! (HTTP/protobuf, the standard `OTEL_*` variables apply: headers, timeout,
//! sampler, `OTEL_SERVICE_NAME`, batch delay); when it is not, nothing is
//! recorded beyond the logs, no trace context is propagated, and nothing is
//! said about it. Metrics are OpenTelemetry instruments exported through
//! `opentelemetry-prometheus` into one process-wide Prometheus registry,
//! which [`crate::metrics_http`] serves, beside the standard process
//! collector (`process_resident_memory_bytes`, `process_open_fds`, CPU).
//! All of it is set up once per process, however many services it runs
//! (`edge up` runs them all; tests start many), so every service's
//! instruments land in the same registry and nothing is counted twice.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, RuntimeArgs};

/// Spans are exported (an OTLP endpoint is configured and the exporter
/// started).
static TRACING: AtomicBool = AtomicBool::new(false);
/// Per-call metrics and spans on gRPC servers (`--rpc-telemetry`).
static RPC_TELEMETRY: AtomicBool = AtomicBool::new(true);
static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are recorded for export, so trace context is worth
/// extracting and propagating.
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Whether gRPC servers record per-call metrics and spans.
pub fn rpc_telemetry_enabled() -> bool {
    RPC_TELEMETRY.load(Ordering::Relaxed)
}

/// Turns the per-call gRPC metrics and spans on or off for servers started
/// afterwards (`--rpc-telemetry`; benchmarks measure their cost with it).
pub fn set_rpc_telemetry(enabled: bool) {
    RPC_TELEMETRY.store(enabled, Ordering::Relaxed);
}

/// Installs the global `tracing` subscriber: logs, and trace export when
/// configured. A second call (another service in the same process, a test)
/// keeps the first subscriber.
pub fn init_logging(args: &RuntimeArgs) {
    let traces = TRACER_PROVIDER
        .get()
        .is_none()
        .then(otlp_tracer_provider)
        .flatten();
    install(args, traces);
}

/// [`init_logging`] with spans recorded by `provider` instead of the OTLP
/// exporter the environment configures (an embedding application's own
/// provider, or a test's).
pub fn init_logging_with_tracer(args: &RuntimeArgs, provider: SdkTracerProvider) {
    install(args, Some(provider));
}

fn install(args: &RuntimeArgs, traces: Option<SdkTracerProvider>) {
    set_rpc_telemetry(args.rpc_telemetry);
    let mut filter = EnvFilter::try_new(&args.log).unwrap_or_else(|err| {
        eprintln!("invalid log filter {:?} ({err}); using \"info\"", args.log);
        EnvFilter::new("info")
    });
    // The OpenTelemetry SDK logs every failed export as an error: a site
    // whose collector is out of reach would log one every few seconds for
    // the whole outage. Silent unless the filter asks for them by name.
    if !args.log.contains("opentelemetry") {
        for quiet in [
            "opentelemetry=off",
            "opentelemetry_sdk=off",
            "opentelemetry_otlp=off",
        ] {
            if let Ok(directive) = quiet.parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let logs = match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // Traces get every span at INFO (one per call, the sync batches) and
    // warnings as span events, whatever the log filter keeps.
    let otel = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service_name()))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                let level = *meta.level();
                level <= tracing::Level::WARN || (meta.is_span() && level <= tracing::Level::INFO)
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .try_init()
        .is_ok();
    if installed && let Some(provider) = traces {
        let _ = TRACER_PROVIDER.set(provider);
        TRACING.store(true, Ordering::Relaxed);
        if let Some(endpoint) = otlp_endpoint() {
            tracing::info!(%endpoint, "exporting traces over OTLP");
        }
    }
}

/// Sends the spans still buffered; call before the process exits.
pub fn shutdown() {
    // Once: the process body and `main` may both end with it.
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    if let Some(provider) = TRACER_PROVIDER.get()
        && let Err(err) = provider.shutdown()
    {
        tracing::warn!(%err, "could not flush the last traces");
    }
}

/// The OTLP endpoint from the environment, if one is configured.
fn otlp_endpoint() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .filter_map(|name| std::env::var(name).ok())
    .find(|value| !value.trim().is_empty())
}

/// `OTEL_SERVICE_NAME`, else the executable's name (`store-svc`, `edge`).
fn service_name() -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "edge".to_owned())
}

/// A tracer provider exporting over OTLP/HTTP when an endpoint is set.
/// Runs before logging exists, so problems go to stderr.
fn otlp_tracer_provider() -> Option<SdkTracerProvider> {
    otlp_endpoint()?;
    if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
        && !protocol.is_empty()
        && protocol != "http/protobuf"
    {
        // Sending HTTP to a gRPC port would fail on every export, forever.
        eprintln!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported (only http/protobuf, the \
             collector's port 4318); traces are not exported"
        );
        return None;
    }
    crate::tls::install_provider();
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("cannot start the OTLP trace exporter ({err}); traces are not exported");
            return None;
        }
    };
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name())
                    .build(),
            )
            .build(),
    )
}

/// The process-wide metric pipeline.
pub struct Metrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metric pipeline, created on first use.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let registry = prometheus::Registry::new();
        let provider = match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
        {
            Ok(exporter) => SdkMeterProvider::builder().with_reader(exporter).build(),
            Err(err) => {
                // Only fails when the registry rejects the exporter's collector;
                // the services keep running, metrics are then empty.
                tracing::error!(%err, "cannot build the Prometheus exporter; /metrics will be empty");
                SdkMeterProvider::builder().build()
            }
        };
        // RSS, open file descriptors, CPU seconds: what an operator checks
        // first when a pod is evicted or throttled.
        if let Err(err) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(%err, "cannot register the process metrics");
        }
        Metrics { registry, provider }
    })
}

impl Metrics {
    /// A meter for one component (e.g. `"ingest-svc"`).
    pub fn meter(&self, name: &'static str) -> Meter {
        self.provider.meter(name)
    }

    /// The Prometheus registry the exporter writes into.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    /// The registry's current contents in the Prometheus text format.
    pub fn render(&self) -> String {
        use prometheus::Encoder as _;
        let mut buf = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(err) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(%err, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Shorthand for `metrics().meter(name)`.
pub fn meter(name: &'static str) -> Meter {
    metrics().meter(name)
}
