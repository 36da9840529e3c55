//! Counters since start, read through `GET /admin/stats`. Tests and demos use
//! them to see what the cloud was asked and what it answered; they are not
//! persisted (the stored data is the durable record).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Live counters, shared by the handlers.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub pushes_received: AtomicU64,
    pub pushes: AtomicU64,
    pub versions_accepted: AtomicU64,
    pub versions_duplicate: AtomicU64,
    pub versions_rejected: AtomicU64,
    pub batch_replays: AtomicU64,
    pub simple_received: AtomicU64,
    pub unsent_reports: AtomicU64,
    pub amendments: AtomicU64,
    pub conflicts_resolved: AtomicU64,
    pub clock_skew_versions: AtomicU64,
    pub unauthorized: AtomicU64,
    pub forbidden: AtomicU64,
    pub admin_unauthorized: AtomicU64,
    pub too_large: AtomicU64,
    pub body_timeouts: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// A consistent-enough copy for the admin API.
    pub fn snapshot(&self) -> CloudStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CloudStats {
            pushes_received: get(&self.pushes_received),
            pushes: get(&self.pushes),
            versions_accepted: get(&self.versions_accepted),
            versions_duplicate: get(&self.versions_duplicate),
            versions_rejected: get(&self.versions_rejected),
            batch_replays: get(&self.batch_replays),
            simple_received: get(&self.simple_received),
            unsent_reports: get(&self.unsent_reports),
            amendments: get(&self.amendments),
            conflicts_resolved: get(&self.conflicts_resolved),
            clock_skew_versions: get(&self.clock_skew_versions),
            unauthorized: get(&self.unauthorized),
            forbidden: get(&self.forbidden),
            admin_unauthorized: get(&self.admin_unauthorized),
            too_large: get(&self.too_large),
            body_timeouts: get(&self.body_timeouts),
            header_timeouts: get(&self.header_timeouts),
            tls_handshake_failures: get(&self.tls_handshake_failures),
        }
    }
}

/// `GET /admin/stats`: counters since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudStats {
    /// Batch POSTs that reached the handler, fault answers included.
    pub pushes_received: u64,
    /// Batch pushes answered `200` (replays included).
    pub pushes: u64,
    /// Versions newly stored.
    pub versions_accepted: u64,
    /// Versions already held when pushed again.
    pub versions_duplicate: u64,
    /// Versions rejected as permanently invalid.
    pub versions_rejected: u64,
    /// Pushes answered from the idempotency record (same key, same body).
    pub batch_replays: u64,
    /// Simple-API readings answered `201`.
    pub simple_received: u64,
    /// Unsent reports answered `200`.
    pub unsent_reports: u64,
    /// Amendments the cloud made (`POST /v1/readings/{id}/amendments`).
    #[serde(default)]
    pub amendments: u64,
    /// Conflicts resolved (pushes and amendments); each is in the audit log.
    #[serde(default)]
    pub conflicts_resolved: u64,
    /// Versions accepted although their HLC was more than
    /// `--max-clock-skew` ahead of the cloud's wall clock: stored flagged
    /// (`GET /admin/clock-ahead` lists them), and the cloud's clock stopped
    /// at the bound.
    #[serde(default)]
    pub clock_skew_versions: u64,
    /// Public requests refused `401`: no, an unknown or a revoked site
    /// token.
    #[serde(default)]
    pub unauthorized: u64,
    /// Public requests refused `403`: a valid site token used for another
    /// site's path.
    #[serde(default)]
    pub forbidden: u64,
    /// Admin requests refused `401`: no or a wrong admin token.
    #[serde(default)]
    pub admin_unauthorized: u64,
    /// Public requests refused `413`: a body (after decompression) or a
    /// batch beyond its limit.
    #[serde(default)]
    pub too_large: u64,
    /// Requests answered `408`: the body did not arrive within
    /// `--body-timeout` (both ports).
    #[serde(default)]
    pub body_timeouts: u64,
    /// Connections closed because a request's headers did not arrive within
    /// `--header-timeout` (both ports).
    #[serde(default)]
    pub header_timeouts: u64,
    /// Connections closed because their TLS handshake failed (a client that
    /// does not trust the certificate, a plain HTTP client) or did not
    /// finish within `--header-timeout` (both ports).
    #[serde(default)]
    pub tls_handshake_failures: u64,
}
