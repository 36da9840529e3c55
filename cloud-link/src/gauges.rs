//! The link gauges every probe exports (docs/architecture.md, Metrics):
//! `cloud_reachable` and `cloud_unreachable_seconds`, labelled `probe="sync"`
//! or `probe="health"`. sync-svc and health-svc each run their own probe and
//! register these with their own label, so neither is counted twice and a
//! dashboard can tell a sync-svc that lost the cloud from a health-svc that
//! did. Registered only when a cloud is configured: a site with no cloud is
//! offline by design and must not page anyone about it.
//!
//! Observable gauges read the probe's status at scrape time.

use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use tokio::sync::watch;

use crate::probe::LinkStatus;

/// Registers `cloud_reachable{probe}` and `cloud_unreachable_seconds{probe}`
/// on `meter`, reading `link` at every scrape.
pub fn register_link_gauges(
    meter: &Meter,
    probe: &'static str,
    link: &watch::Receiver<LinkStatus>,
) {
    let labels = [KeyValue::new("probe", probe)];
    let status = link.clone();
    let reachable_labels = labels.clone();
    meter
        .u64_observable_gauge("cloud_reachable")
        .with_description(
            "1 when the cloud answers the probe (online or degraded, after hysteresis), else 0",
        )
        .with_callback(move |gauge| {
            gauge.observe(u64::from(status.borrow().is_reachable()), &reachable_labels);
        })
        .build();
    let status = link.clone();
    meter
        .f64_observable_gauge("cloud_unreachable_seconds")
        .with_description("Seconds since the cloud became unreachable; 0 while reachable")
        .with_callback(move |gauge| {
            let seconds = status.borrow().unreachable_for(SystemTime::now());
            gauge.observe(seconds.as_secs_f64(), &labels);
        })
        .build();
}
