//! The edge mesh's gRPC contracts, generated from `proto/edge/v1/*.proto`.
//!
//! This crate is the only home of generated code: services import message and
//! client/server types from here and turn them into validated domain types at
//! their gRPC boundary. Modules mirror the proto packages.
//!
//! Servers decode requests with [`codec::RequestCodec`], so a request that
//! does not decode is INVALID_ARGUMENT on every service; clients keep tonic's
//! prost codec (see [`codec`] for why).

/// Package `edge.v1`: readings, the ingest, store, sync and cloud-health
/// services.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    // Messages and clients.
    tonic::include_proto!("edge.v1");
    // Servers, generated with `crate::codec::RequestCodec` (see build.rs).
    include!(concat!(env!("OUT_DIR"), "/servers/edge.v1.rs"));
}

pub mod codec;

pub mod rules;

/// The encoded `FileDescriptorSet` of every edge.v1 file, for gRPC server
/// reflection (so `grpcurl` and `buf curl` work without proto files).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("edge_descriptor");

/// Fully qualified gRPC service names, as the health service reports them.
pub mod service_names {
    /// `edge.v1.IngestService`.
    pub const INGEST: &str = "edge.v1.IngestService";
    /// `edge.v1.StoreService`.
    pub const STORE: &str = "edge.v1.StoreService";
    /// `edge.v1.SyncService`.
    pub const SYNC: &str = "edge.v1.SyncService";
    /// `edge.v1.CloudHealthService`.
    pub const CLOUD_HEALTH: &str = "edge.v1.CloudHealthService";
}
