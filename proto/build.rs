//! Compiles `edge/v1/*.proto` with tonic-prost-build. `protoc` comes from the
//! `protoc-bin-vendored` build dependency, so no manual install is needed. The
//! file descriptor set is written to OUT_DIR for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "edge/v1/reading.proto",
        "edge/v1/ingest.proto",
        "edge/v1/store.proto",
        "edge/v1/sync.proto",
        "edge/v1/cloud_health.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("edge_descriptor.bin"))
        .compile_with_config(
            config,
            &protos,
            &[
                ".",
                protoc_bin_vendored::include_path()?
                    .to_str()
                    .ok_or("include path")?,
            ],
        )?;
    Ok(())
}
