//! The `store-svc` binary's command line. It lives in the library, not in
//! `main.rs`, so that the configuration reference (`docs/configuration.md`)
//! is rendered from the very definition the binary parses.

use clap::Parser;
use edge_runtime::RuntimeArgs;

use crate::StoreConfig;

/// store-svc: the edge site's database behind edge.v1.ReadingsService and
/// edge.v1.OperationsService (and the mesh's internal store calls).
#[derive(Parser)]
#[command(name = "store-svc", version, about)]
pub struct Cli {
    /// Flags every service takes.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// store-svc's own flags.
    #[command(flatten)]
    pub store: StoreConfig,
}
