//! The edge mesh's gRPC contracts, generated from `proto/edge/v1/*.proto`
//! (public: gateways, dashboards, operators) and
//! `proto/edge/internal/v1/*.proto` (only the mesh's own services call them).
//!
//! This crate is the only home of generated code: services import message and
//! client/server types from here and turn them into validated domain types at
//! their gRPC boundary. Modules mirror the proto packages.
//!
//! Servers decode requests with [`codec::RequestCodec`], so a request that
//! does not decode is INVALID_ARGUMENT on every service; clients keep tonic's
//! prost codec (see [`codec`] for why).

/// Package `edge.v1`, the public contracts: readings, and the ingest,
/// readings, operations, sync and cloud-health services.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    // Messages and clients.
    tonic::include_proto!("edge.v1");
    // Servers, generated with `crate::codec::RequestCodec` (see build.rs).
    include!(concat!(env!("OUT_DIR"), "/servers/edge.v1.rs"));
}

/// Packages only the mesh's own services call. They change with the mesh
/// (all services of a site ship together), so `buf breaking` leaves them out.
pub mod internal {
    /// Package `edge.internal.v1`: store-svc's calls for ingest-svc
    /// (`StoreIngestService`) and for sync-svc (`StoreSyncService`).
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        // Messages and clients.
        tonic::include_proto!("edge.internal.v1");
        // Servers, generated with `crate::codec::RequestCodec` (see build.rs).
        include!(concat!(env!("OUT_DIR"), "/servers/edge.internal.v1.rs"));
    }
}

pub mod codec;

pub mod rules;

/// The encoded `FileDescriptorSet` of every file, public and internal, for
/// gRPC server reflection (so `grpcurl` and `buf curl` work without proto
/// files). Each server lists only the services it serves; the set is whole so
/// that every message those services use can be described.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("edge_descriptor");

/// Fully qualified gRPC service names, as the health service reports them.
pub mod service_names {
    /// `edge.v1.IngestService`.
    pub const INGEST: &str = "edge.v1.IngestService";
    /// `edge.v1.ReadingsService` (store-svc): reading, for dashboards. The
    /// name the mesh's health checks ask store-svc about.
    pub const READINGS: &str = "edge.v1.ReadingsService";
    /// `edge.v1.OperationsService` (store-svc): operating, for people.
    pub const OPERATIONS: &str = "edge.v1.OperationsService";
    /// `edge.internal.v1.StoreIngestService` (store-svc): ingest-svc's appends.
    pub const STORE_INGEST: &str = "edge.internal.v1.StoreIngestService";
    /// `edge.internal.v1.StoreSyncService` (store-svc): sync-svc's outbox and
    /// change-feed calls.
    pub const STORE_SYNC: &str = "edge.internal.v1.StoreSyncService";
    /// `edge.v1.TokensService` (store-svc): the site's identities, for
    /// operators.
    pub const TOKENS: &str = "edge.v1.TokensService";
    /// `edge.internal.v1.IdentityService` (store-svc): the identities every
    /// service checks its callers against.
    pub const IDENTITIES: &str = "edge.internal.v1.IdentityService";
    /// `edge.v1.SyncService`.
    pub const SYNC: &str = "edge.v1.SyncService";
    /// `edge.v1.CloudHealthService`.
    pub const CLOUD_HEALTH: &str = "edge.v1.CloudHealthService";
}
