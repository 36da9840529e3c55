//! Compiles `edge/v1/*.proto` (the public contracts) and
//! `edge/internal/v1/*.proto` (the calls between the mesh's services) with
//! tonic-prost-build. `protoc` comes from the
//! `protoc-bin-vendored` build dependency, so no manual install is needed. The
//! file descriptor set of every file is written to OUT_DIR for server
//! reflection (each server lists only its own services, but describes every
//! message they use, wherever it is declared).
//!
//! Two passes over the same files:
//! - the messages and the clients, with tonic's prost codec (`edge.v1.rs`,
//!   `edge.internal.v1.rs`); the internal package names the public one's
//!   messages by relative path, so `lib.rs` nests the modules like the
//!   packages (`crate::v1`, `crate::internal::v1`);
//! - the servers alone (`servers/edge.v1.rs`, `servers/edge.internal.v1.rs`),
//!   with `crate::codec::RequestCodec`, which answers a request that does not
//!   decode with INVALID_ARGUMENT. The messages are declared external there
//!   (`crate::v1`, `crate::internal::v1`), so they are generated once and
//!   both passes name the same types.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "edge/v1/reading.proto",
        "edge/v1/ingest.proto",
        "edge/v1/outbox.proto",
        "edge/v1/readings.proto",
        "edge/v1/operations.proto",
        "edge/v1/sync.proto",
        "edge/v1/cloud_health.proto",
        "edge/v1/tokens.proto",
        "edge/internal/v1/store_ingest.proto",
        "edge/internal/v1/store_sync.proto",
        "edge/internal/v1/identities.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let vendored_include = protoc_bin_vendored::include_path()?;
    let includes = [
        Path::new("."),
        vendored_include.to_str().ok_or("include path")?.as_ref(),
    ];
    let config = || -> Result<prost_build::Config, Box<dyn std::error::Error>> {
        let mut config = prost_build::Config::new();
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
        Ok(config)
    };

    tonic_prost_build::configure()
        .build_server(false)
        .file_descriptor_set_path(out_dir.join("edge_descriptor.bin"))
        .compile_with_config(config()?, &protos.map(Path::new), &includes)?;

    let servers = out_dir.join("servers");
    std::fs::create_dir_all(&servers)?;
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(&servers)
        .extern_path(".edge.v1", "crate::v1")
        .extern_path(".edge.internal.v1", "crate::internal::v1")
        .codec_path("crate::codec::RequestCodec")
        .compile_with_config(config()?, &protos.map(Path::new), &includes)?;
    Ok(())
}
