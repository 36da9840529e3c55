//! The `sync-svc` binary's command line. It lives in the library, not in
//! `main.rs`, so that the configuration reference (`docs/configuration.md`)
//! is rendered from the very definition the binary parses.

use clap::Parser;
use edge_runtime::RuntimeArgs;
use edge_runtime::client::ClientArgs;

use crate::SyncConfig;

/// sync-svc: forwards the site's outbox to the cloud (edge.v1.SyncService).
#[derive(Parser)]
#[command(name = "sync-svc", version, about)]
pub struct Cli {
    /// Flags every service takes.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// sync-svc's own flags, the cloud link's included.
    #[command(flatten)]
    pub sync: SyncConfig,
    /// Deadlines for calls to store-svc.
    #[command(flatten)]
    pub client: ClientArgs,
    /// store-svc's gRPC address.
    #[arg(long, env = "EDGE_STORE_URL", default_value_t = edge_runtime::ports::local_url(edge_runtime::ports::STORE))]
    pub store_url: String,
}
