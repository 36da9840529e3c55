//! Counters of what the security layer and the connection limits refused,
//! so every limit an operator configures shows what it did (labels are
//! bounded: the server's name and a fixed reason, never an identity or an
//! address).

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, UpDownCounter};

/// The instruments, registered once per process.
pub(crate) struct SecurityMetrics {
    /// `connections_refused_total{server,reason}`.
    pub connections_refused: Counter<u64>,
    /// `connections_open{server}`.
    pub connections_open: UpDownCounter<i64>,
    /// `auth_refused_total{server,reason}`.
    pub auth_refused: Counter<u64>,
    /// `rate_limited_total{server,kind}`.
    pub rate_limited: Counter<u64>,
    /// `tls_certificate_reloads_total{result}`.
    pub certificate_reloads: Counter<u64>,
}

/// The process's security instruments.
pub(crate) fn metrics() -> &'static SecurityMetrics {
    static METRICS: OnceLock<SecurityMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = crate::telemetry::meter("security");
        SecurityMetrics {
            connections_refused: meter
                .u64_counter("connections_refused")
                .with_description(
                    "Connections closed before serving a call: over --max-connections, a TLS \
                     handshake or first bytes not done within --handshake-timeout, a failed \
                     handshake",
                )
                .build(),
            connections_open: meter
                .i64_up_down_counter("connections_open")
                .with_description("Connections open on each gRPC server")
                .build(),
            auth_refused: meter
                .u64_counter("auth_refused")
                .with_description(
                    "Calls refused by the credential check: unauthenticated (no, unknown or \
                     revoked credential) or permission_denied (a scope missing)",
                )
                .build(),
            rate_limited: meter
                .u64_counter("rate_limited")
                .with_description(
                    "Calls or readings refused with RESOURCE_EXHAUSTED because their identity \
                     was over its rate (kind: calls or readings)",
                )
                .build(),
            certificate_reloads: meter
                .u64_counter("tls_certificate_reloads")
                .with_description(
                    "Server certificates read again after their files changed (result: ok, or \
                     failed: the previous certificate is kept)",
                )
                .build(),
        }
    })
}

/// `server` and `reason` labels.
pub(crate) fn labels(
    server: &'static str,
    key: &'static str,
    value: &'static str,
) -> [KeyValue; 2] {
    [KeyValue::new("server", server), KeyValue::new(key, value)]
}
