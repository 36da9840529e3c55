//! store-svc's gRPC services, one file per service, split by caller and
//! right (docs/contracts.md, Contracts by caller and right):
//! - [`readings`]: `edge.v1.ReadingsService`, reading, for dashboards;
//! - [`operations`]: `edge.v1.OperationsService`, operating, for people;
//! - [`ingest`]: `edge.internal.v1.StoreIngestService`, ingest-svc's appends;
//! - [`sync`]: `edge.internal.v1.StoreSyncService`, sync-svc's outbox and
//!   change-feed calls.
//!
//! All four are thin: proto in, validated domain types to the writer and the
//! database, proto out. They share one [`Store`] (the writer, the database,
//! the leases, the budget, the clock), the request checks below, and
//! [`StoreError`], the one place where failures become gRPC statuses.

pub mod ingest;
pub mod operations;
pub mod readings;
mod status;
pub mod sync;
pub mod tokens;

use std::sync::Arc;

use tonic::Status;

use crate::db::Database;
use crate::hlc::WallClock;
use crate::lease::Leases;
use crate::model::MAX_APPEND_READINGS;
use crate::storage::Budget;
use crate::writer::Writer;

pub use ingest::IngestGrpc;
pub use operations::OperationsGrpc;
pub use readings::ReadingsGrpc;
pub use status::StoreError;
pub use sync::SyncGrpc;
pub use tokens::TokensGrpc;

use status::violation;

/// What every service of store-svc works on; one per process, shared by the
/// four handlers.
struct Store {
    writer: Writer,
    db: Arc<Database>,
    leases: Arc<Leases>,
    budget: Arc<Budget>,
    clock: Arc<dyn WallClock>,
}

impl Store {
    /// Refuses a write that would grow a site over its budget. (A full disk
    /// is not checked here: the write itself finds out, and a write that
    /// commits is what ends such a refusal.)
    fn check_room(&self) -> Result<(), Status> {
        if self.budget.over_budget() {
            return Err(Status::resource_exhausted(
                "the site's storage is full; nothing of this call was stored",
            ));
        }
        Ok(())
    }
}

/// store-svc's handlers, built once over the shared state and handed out one
/// service at a time (each is served under its own gRPC name).
pub struct StoreGrpc {
    store: Arc<Store>,
}

impl StoreGrpc {
    /// Handlers over `db`, appending through `writer`, leasing from
    /// `leases`, reporting `budget`; `clock` decides which outbox entries are
    /// due.
    pub fn new(
        writer: Writer,
        db: Arc<Database>,
        leases: Arc<Leases>,
        budget: Arc<Budget>,
        clock: Arc<dyn WallClock>,
    ) -> Self {
        Self {
            store: Arc::new(Store {
                writer,
                db,
                leases,
                budget,
                clock,
            }),
        }
    }

    /// `edge.v1.ReadingsService`.
    pub fn readings(&self) -> ReadingsGrpc {
        ReadingsGrpc::new(self.store.clone())
    }

    /// `edge.v1.OperationsService`.
    pub fn operations(&self) -> OperationsGrpc {
        OperationsGrpc::new(self.store.clone())
    }

    /// `edge.internal.v1.StoreIngestService`.
    pub fn ingest(&self) -> IngestGrpc {
        IngestGrpc::new(self.store.clone())
    }

    /// `edge.internal.v1.StoreSyncService`.
    pub fn sync(&self) -> SyncGrpc {
        SyncGrpc::new(self.store.clone())
    }

    /// `edge.v1.TokensService` and `edge.internal.v1.IdentityService`.
    pub fn tokens(&self) -> TokensGrpc {
        TokensGrpc::new(self.store.clone())
    }
}

/// Largest page of dead letters, conflicts and unreported drops.
const MAX_PAGE: u32 = 1_000;

/// A page size from the wire: 0 means 100; at most [`MAX_PAGE`].
fn page_size(requested: u32) -> Result<u32, StoreError> {
    match requested {
        0 => Ok(100),
        n if n <= MAX_PAGE => Ok(n),
        _ => Err(violation(
            "page_size",
            format!("must be at most {MAX_PAGE}"),
        )),
    }
}

/// Version ids from the wire: 1 to [`MAX_APPEND_READINGS`] of them, each a
/// valid id.
fn version_ids(field: &str, ids: &[u64]) -> Result<Vec<i64>, StoreError> {
    if ids.len() > MAX_APPEND_READINGS {
        return Err(violation(
            field,
            format!(
                "at most {MAX_APPEND_READINGS} version ids, got {}",
                ids.len()
            ),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            i64::try_from(*id)
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| violation(&format!("{field}[{i}]"), "is not a version id"))
        })
        .collect()
}

/// A database count for the wire (never negative; 0 if it were).
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
