//! The mesh's default ports, defined once: every service's listen flag, every
//! client flag that dials a mesh service, `edge up` and the operator commands
//! take their defaults from here, and the Kubernetes manifests are checked
//! against the binaries' `--help`, which shows these.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// ingest-svc: the gateways' gRPC port.
pub const INGEST: u16 = 50051;
/// store-svc: readings, operations and the mesh's internal store contracts.
pub const STORE: u16 = 50052;
/// sync-svc: sync status and trigger.
pub const SYNC: u16 = 50053;
/// health-svc: the cloud link's and the mesh's health.
pub const HEALTH: u16 = 50054;
/// The Prometheus `/metrics` endpoint, one per process.
pub const METRICS: u16 = 9464;

/// Where a service listens by default: every interface, as a pod does.
pub const fn listen(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

/// Where a service that only its own site's services call listens by
/// default (store-svc, sync-svc): loopback, so `edge up` exposes only
/// ingest, health and the operations port. Kubernetes sets the address to
/// every interface and lets NetworkPolicies decide who reaches it.
pub const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// The URL a client dials by default: the service on this host.
pub fn local_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_read_as_the_documentation_writes_them() {
        assert_eq!(listen(INGEST).to_string(), "0.0.0.0:50051");
        assert_eq!(local_url(STORE), "http://127.0.0.1:50052");
        assert_eq!(loopback(STORE).to_string(), "127.0.0.1:50052");
    }
}
