//! Injected write faults: the seam through which tests drive every error
//! path of a service's writes without root, a full disk or a dying server.
//!
//! A service runs with no [`WriteFaults`] unless a test (or a drill) hands it
//! one through its configuration; the binaries never set it, and an unarmed
//! seam costs one `Option` check per write. A fault is armed for one kind of
//! write (an operation name the service chooses, like `"append"`) at one
//! point of its transaction ([`FaultPoint`]) for a number of hits, and then
//! makes that write fail the way a real database does: with the error codes
//! the drivers report (so the service classifies it as it would the real
//! thing, see [`crate::failure`]), and, for [`Fault::RolledBackUnderneath`],
//! with the connection's transaction gone while the driver still counts it
//! open, as SQLite leaves it after a COMMIT that failed for a full disk.

use std::borrow::Cow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::error::{DatabaseError, ErrorKind};

/// Where in a write's transaction a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// Before the transaction begins (the connection cannot be used).
    Begin,
    /// After the write's statements ran, before COMMIT: a statement fails.
    Statement,
    /// The COMMIT itself fails; nothing is committed.
    Commit,
    /// The COMMIT succeeded but its answer is lost (a connection that died
    /// while the server committed): the caller sees an error although the
    /// data is stored. The outcome is unknown to the service.
    AfterCommit,
}

/// What an armed fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The statement fails with this database error code, as the driver
    /// reports it: SQLite's `"13"` (disk full), `"10"` (I/O error);
    /// PostgreSQL's `"53100"` (disk full), `"08006"` (connection failure),
    /// `"XX000"` (internal error), …
    Error(&'static str),
    /// The transaction is rolled back under the driver, which still counts
    /// it open, and the statement fails with the backend's disk-full code:
    /// what SQLite does on a COMMIT that cannot write.
    RolledBackUnderneath,
}

#[derive(Debug)]
struct Armed {
    op: &'static str,
    point: FaultPoint,
    fault: Fault,
    hits_left: u32,
}

/// Faults armed by a test; shared with the service it configures.
#[derive(Debug, Default)]
pub struct WriteFaults {
    armed: Mutex<Vec<Armed>>,
    injected: AtomicU64,
}

impl WriteFaults {
    /// Makes the next `hits` writes of kind `op` fail at `point` with `fault`.
    pub fn arm(&self, op: impl Into<&'static str>, point: FaultPoint, fault: Fault, hits: u32) {
        if let Ok(mut armed) = self.armed.lock() {
            armed.push(Armed {
                op: op.into(),
                point,
                fault,
                hits_left: hits,
            });
        }
    }

    /// Disarms every fault not yet spent.
    pub fn disarm(&self) {
        if let Ok(mut armed) = self.armed.lock() {
            armed.clear();
        }
    }

    /// How many faults have struck so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// The fault armed for `op` at `point`, spending one of its hits.
    pub(crate) fn strike(&self, op: &str, point: FaultPoint) -> Option<Fault> {
        let mut armed = self.armed.lock().ok()?;
        let index = armed
            .iter()
            .position(|a| a.op == op && a.point == point && a.hits_left > 0)?;
        let fault = armed[index].fault;
        armed[index].hits_left -= 1;
        if armed[index].hits_left == 0 {
            armed.remove(index);
        }
        self.injected.fetch_add(1, Ordering::SeqCst);
        Some(fault)
    }
}

/// The error an injected fault reports: a database error carrying the code
/// the real driver would, so it is classified like the real one.
#[derive(Debug)]
pub(crate) struct InjectedError {
    code: &'static str,
    message: String,
}

/// A database error carrying `code` as the driver would report it, with a
/// message saying it was injected: what an armed fault returns, and what a
/// unit test of an error mapping can build without a database.
pub fn database_error(code: &'static str) -> sqlx::Error {
    InjectedError::sqlx(code)
}

impl InjectedError {
    /// An injected error with `code`, described as the database would.
    pub(crate) fn sqlx(code: &'static str) -> sqlx::Error {
        let what = match code {
            "13" => "database or disk is full",
            "10" => "disk I/O error",
            "53100" => "could not extend file: No space left on device",
            c if c.starts_with("08") => "connection to the server was lost",
            _ => "the database failed",
        };
        sqlx::Error::Database(Box::new(InjectedError {
            code,
            message: format!("{what} (injected fault)"),
        }))
    }
}

impl std::fmt::Display for InjectedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InjectedError {}

impl DatabaseError for InjectedError {
    fn message(&self) -> &str {
        &self.message
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.code))
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_strikes_its_op_and_point_for_its_hits_only() {
        let faults = WriteFaults::default();
        faults.arm("append", FaultPoint::Commit, Fault::Error("13"), 2);
        assert_eq!(faults.strike("amend", FaultPoint::Commit), None);
        assert_eq!(faults.strike("append", FaultPoint::Begin), None);
        assert_eq!(
            faults.strike("append", FaultPoint::Commit),
            Some(Fault::Error("13"))
        );
        assert!(faults.strike("append", FaultPoint::Commit).is_some());
        assert_eq!(faults.strike("append", FaultPoint::Commit), None);
        assert_eq!(faults.injected(), 2);
    }
}
