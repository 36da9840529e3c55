//! health-svc's gauges (docs/architecture.md, Metrics; owner health-svc), read
//! from the board at scrape time:
//!
//! - `cloud_reachable{probe="health"}`, `cloud_unreachable_seconds{probe="health"}`:
//!   the shared link gauges of `edge_cloud_link::gauges` (sync-svc exports
//!   the same with `probe="sync"`); only when a cloud is configured;
//! - `cloud_probe_success_ratio{probe="health"}`: successful share of the
//!   probes in the window;
//! - `cloud_probe_latency_seconds{probe="health"}`: latency of the last
//!   successful probe;
//! - `cloud_link_state{probe="health",state}`: 1 for the current state, 0
//!   for the others (`not_configured`, `unknown`, `online`, `degraded`,
//!   `offline`), so an alert can say "degraded for 10 minutes";
//! - `mesh_service_serving{service}`: 1 while `ingest`, `store`, `sync`
//!   answers SERVING, 0 otherwise (absent until first checked).
//!
//! Every label set is bounded: fixed probe, state and service names.

use edge_cloud_link::LinkState;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use tokio::sync::watch;

use crate::board::{Health, Link, Serving};

/// The `probe` label of everything health-svc's probe exports.
pub const PROBE_LABEL: &str = "health";

/// Registers health-svc's gauges on `meter`, reading `health` at every
/// scrape.
pub fn register(meter: &Meter, health: &watch::Receiver<Health>) {
    let probe = KeyValue::new("probe", PROBE_LABEL);

    let board = health.clone();
    let labels = [probe.clone()];
    meter
        .f64_observable_gauge("cloud_probe_success_ratio")
        .with_description("Share of successful cloud probes (0 to 1) over the probe window")
        .with_callback(move |gauge| {
            if let Link::Probed { status, .. } = &board.borrow().link
                && let Some(ratio) = status.success_ratio
            {
                gauge.observe(ratio, &labels);
            }
        })
        .build();

    let board = health.clone();
    let labels = [probe.clone()];
    meter
        .f64_observable_gauge("cloud_probe_latency_seconds")
        .with_description("Latency of the last successful cloud probe, in seconds")
        .with_callback(move |gauge| {
            if let Link::Probed { status, .. } = &board.borrow().link
                && let Some(latency) = status.last_latency
            {
                gauge.observe(latency.as_secs_f64(), &labels);
            }
        })
        .build();

    let board = health.clone();
    let states: Vec<(Option<LinkState>, [KeyValue; 2])> = std::iter::once(None)
        .chain(LinkState::ALL.into_iter().map(Some))
        .map(|state| {
            let name = state.map_or("not_configured", LinkState::as_str);
            (state, [probe.clone(), KeyValue::new("state", name)])
        })
        .collect();
    meter
        .u64_observable_gauge("cloud_link_state")
        .with_description(
            "1 for the cloud link's current state (not_configured, unknown, online, degraded, offline), 0 for the others",
        )
        .with_callback(move |gauge| {
            let current = board.borrow().link.state();
            for (state, labels) in &states {
                gauge.observe(u64::from(*state == current), labels);
            }
        })
        .build();

    let board = health.clone();
    meter
        .u64_observable_gauge("mesh_service_serving")
        .with_description("1 while the mesh service answers SERVING to grpc.health.v1, else 0")
        .with_callback(move |gauge| {
            for service in &board.borrow().services {
                if service.state == Serving::Unknown {
                    continue;
                }
                gauge.observe(
                    u64::from(service.state == Serving::Serving),
                    &[KeyValue::new("service", service.name)],
                );
            }
        })
        .build();
}
