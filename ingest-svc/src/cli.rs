//! The `ingest-svc` binary's command line. It lives in the library, not in
//! `main.rs`, so that the configuration reference (`docs/configuration.md`)
//! is rendered from the very definition the binary parses.

use clap::Parser;
use edge_runtime::RuntimeArgs;

use crate::IngestConfig;

/// ingest-svc: the door for sensor gateways (edge.v1.IngestService).
#[derive(Parser)]
#[command(name = "ingest-svc", version, about)]
pub struct Cli {
    /// Flags every service takes.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// ingest-svc's own flags.
    #[command(flatten)]
    pub ingest: IngestConfig,
}
