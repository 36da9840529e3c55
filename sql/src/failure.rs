//! What a failed database operation means for its caller, read from the
//! codes both drivers report: whether nothing was stored for lack of room,
//! whether a retry may succeed (and may find the data already there), or
//! whether the same request will fail again.

/// What a failed database operation means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The disk (or the database's space) is full: nothing was stored, and
    /// retrying helps only once something frees room.
    StorageFull,
    /// The database is unreachable, busy, restarting or failed an I/O: a
    /// retry may succeed. After a failed COMMIT the outcome may be unknown
    /// (the data may be stored): a retry of an idempotent write settles it.
    Unavailable,
    /// The database refused the data itself (a value it cannot hold, a
    /// constraint): the same request fails again on every retry. A
    /// validation gap or a bug, since requests are validated first.
    Refused,
    /// Anything else: a bug, a corrupt file.
    Other,
}

impl Failure {
    /// A short label for metrics (`storage_full`, `unavailable`, `refused`,
    /// `other`).
    pub fn label(self) -> &'static str {
        match self {
            Failure::StorageFull => "storage_full",
            Failure::Unavailable => "unavailable",
            Failure::Refused => "refused",
            Failure::Other => "other",
        }
    }
}

/// A service's database error, classified the same way everywhere: it says
/// which sqlx error (if any) it carries and whether it is a failure to
/// reach the database at all, and gets [`Failure`] and the database's own
/// words from that. Implemented from the error's variants by
/// [`crate::db_error_by_variants!`].
pub trait Classify {
    /// The sqlx error of a failed statement, if this is one.
    fn query_error(&self) -> Option<&sqlx::Error>;

    /// Whether the database could not be reached or opened.
    fn is_connect(&self) -> bool;

    /// What the failure means for the caller.
    fn failure(&self) -> Failure {
        match self.query_error() {
            Some(err) => classify(err),
            None if self.is_connect() => Failure::Unavailable,
            None => Failure::Other,
        }
    }

    /// What the database itself said, for telling a caller the real cause
    /// (for example "database or disk is full").
    fn database_message(&self) -> Option<&str> {
        self.query_error().and_then(database_message)
    }
}

/// Classifies a sqlx error.
pub fn classify(err: &sqlx::Error) -> Failure {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Failure::Unavailable,
        sqlx::Error::Database(db) => classify_code(&db.code().unwrap_or_default()),
        _ => Failure::Other,
    }
}

/// Classifies a driver's error code: PostgreSQL's five-character SQLSTATE,
/// or SQLite's numeric (possibly extended) result code.
pub fn classify_code(code: &str) -> Failure {
    match sqlite_primary(code) {
        // SQLITE_FULL.
        Some(13) => Failure::StorageFull,
        // BUSY, LOCKED, READONLY (a file system remounted read-only after
        // an error; recovery), IOERR, CANTOPEN.
        Some(5 | 6 | 8 | 10 | 14) => Failure::Unavailable,
        // TOOBIG, CONSTRAINT, MISMATCH.
        Some(18..=20) => Failure::Refused,
        Some(_) => Failure::Other,
        None => match code {
            // disk_full.
            "53100" => Failure::StorageFull,
            // Connection (08), operator intervention (57: shutdown,
            // restart), insufficient resources (53: memory, connections),
            // transaction rollback (40: serialization, deadlock).
            c if c.starts_with("08")
                || c.starts_with("57")
                || c.starts_with("53")
                || c.starts_with("40") =>
            {
                Failure::Unavailable
            }
            // Read-only after a failover (25006), a lock or object busy
            // (55P03, 55006), an I/O error (58030).
            "25006" | "55P03" | "55006" | "58030" => Failure::Unavailable,
            // Data exceptions (22), integrity constraints (23).
            c if c.starts_with("22") || c.starts_with("23") => Failure::Refused,
            _ => Failure::Other,
        },
    }
}

/// What the database itself said, for telling a caller the real cause
/// (for example "database or disk is full").
pub fn database_message(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) => Some(db.message()),
        _ => None,
    }
}

/// SQLite's primary result code of a numeric (possibly extended) code;
/// `None` for PostgreSQL's SQLSTATEs, which are always five characters
/// (often all digits, like `23505`), while SQLite's extended codes have at
/// most four digits.
fn sqlite_primary(code: &str) -> Option<i32> {
    if code.len() >= 5 {
        return None;
    }
    code.parse::<i32>().ok().map(|n| n & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_both_drivers_are_told_apart() {
        assert_eq!(classify_code("13"), Failure::StorageFull); // SQLITE_FULL
        assert_eq!(classify_code("53100"), Failure::StorageFull); // disk_full
        assert_eq!(classify_code("517"), Failure::Unavailable); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(classify_code("1034"), Failure::Unavailable); // SQLITE_IOERR_FSYNC
        assert_eq!(classify_code("08006"), Failure::Unavailable);
        assert_eq!(classify_code("57P01"), Failure::Unavailable); // admin shutdown
        assert_eq!(classify_code("40001"), Failure::Unavailable);
        // All digits, yet SQLSTATEs: never read as SQLite codes.
        assert_eq!(classify_code("22021"), Failure::Refused);
        assert_eq!(classify_code("23505"), Failure::Refused);
        assert_eq!(classify_code("2067"), Failure::Refused); // SQLITE_CONSTRAINT_UNIQUE
        assert_eq!(classify_code("11"), Failure::Other); // SQLITE_CORRUPT
        assert_eq!(classify_code("25006"), Failure::Unavailable); // read-only after failover
        assert_eq!(classify_code("58030"), Failure::Unavailable); // io_error
        assert_eq!(classify_code("264"), Failure::Unavailable); // SQLITE_READONLY_RECOVERY
        assert_eq!(classify_code("XX000"), Failure::Other);
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), Failure::Unavailable);
    }
}
