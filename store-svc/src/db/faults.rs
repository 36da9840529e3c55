//! The fault seam of the store's writes (see [`edge_sql::faults`]): the
//! kinds of write a test can aim a fault at.
//!
//! A store runs with no [`WriteFaults`] unless a test hands it one through
//! `StoreConfig::write_faults`; the binaries never set it.

pub use edge_sql::faults::{Fault, FaultPoint, WriteFaults};

/// Which write a fault is aimed at; also the `op` label of
/// `store_write_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    /// A group commit of new readings.
    Append,
    /// An amendment.
    Amend,
    /// A page of the cloud's change feed.
    ApplyRemote,
    /// The cloud's answer for a batch (synced, rejected, failed).
    Complete,
    /// Re-driving dead letters, or marking them reported.
    DeadLetters,
    /// Pruning, dropping, forgetting reported drops, giving space back.
    Storage,
    /// Taking the site's clock back within the clock-skew bound at start.
    Clock,
    /// Adding or revoking an identity.
    Identities,
}

impl WriteOp {
    /// The write's name, as labels and the fault seam know it.
    pub fn label(self) -> &'static str {
        match self {
            WriteOp::Append => "append",
            WriteOp::Amend => "amend",
            WriteOp::ApplyRemote => "apply_remote",
            WriteOp::Complete => "complete",
            WriteOp::DeadLetters => "dead_letters",
            WriteOp::Storage => "storage",
            WriteOp::Clock => "clock",
            WriteOp::Identities => "identities",
        }
    }
}

impl From<WriteOp> for &'static str {
    fn from(op: WriteOp) -> &'static str {
        op.label()
    }
}
