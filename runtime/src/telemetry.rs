//! Logs and metrics for a process.
//!
//! Logging goes through `tracing` to stderr, as text or JSON. Metrics are
//! OpenTelemetry instruments exported through `opentelemetry-prometheus` into
//! one process-wide Prometheus registry, which [`crate::metrics_http`] serves.
//! Both are set up once per process, however many services it runs (`edge up`
//! runs them all; tests start many), so every service's instruments land in the
//! same registry and nothing is counted twice.

use std::sync::OnceLock;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, RuntimeArgs};

/// Installs the global `tracing` subscriber. A second call (another service in
/// the same process, a test) keeps the first subscriber.
pub fn init_logging(args: &RuntimeArgs) {
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|err| {
        eprintln!("invalid log filter {:?} ({err}); using \"info\"", args.log);
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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
