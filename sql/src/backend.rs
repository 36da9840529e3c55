//! What SQL generic over the backend needs, whichever service runs it: the
//! backend core ([`SqlDatabase`]: sqlx's database plus the few things that
//! differ between SQLite and PostgreSQL for every service), the one set of
//! sqlx bounds ([`crate::sql_bounds`]), a service's two pools with the only
//! way to write through them ([`Pools`]), and the choice of backend from a
//! URL with the value that holds either ([`BackendKind`], [`OnBackend`]).
//!
//! What differs per service (its locking, its size query, its SQL for one
//! backend) stays in the service, in a trait of its own on top of
//! [`SqlDatabase`].

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::{Pool, Postgres, Sqlite};

use crate::faults::WriteFaults;
use crate::write::{FaultableBackend, WriteConn};

/// A backend generic SQL runs on: sqlx's database, the fault seam, and what
/// differs between SQLite and PostgreSQL for every service.
///
/// Generic code names the backend `DB: SqlDatabase` (or a service's trait
/// on top of it) and takes the sqlx bounds it needs to run queries from
/// [`crate::sql_bounds`], written once for every item:
///
/// - `&mut DB::Connection` is an `Executor`, `DB::Arguments` are
///   `IntoArguments`, and rows are indexed by position (`usize`);
/// - `i64`, `f64`, `bool`, `String`, `Vec<u8>`, `Option<i64>` and
///   `Option<String>` bind and decode; `&str` and `Option<&str>` bind.
///
/// Both SQLite and PostgreSQL meet the set (the tests of this module prove
/// it for both).
pub trait SqlDatabase: FaultableBackend {
    /// Name shown in stats, logs and errors (`sqlite`, `postgres`).
    const LABEL: &'static str;
    /// Run first in a read transaction that must see one snapshot. SQLite's
    /// transactions already do (WAL: from their first read on); PostgreSQL's
    /// default, READ COMMITTED, takes a new one per statement.
    const SNAPSHOT: Option<&'static str>;
    /// `INSERT …` that skips rows conflicting with a unique key, as a
    /// prefix (before `INTO`) and a suffix (after the rows).
    ///
    /// SQLite: `INSERT OR IGNORE`, not `ON CONFLICT DO NOTHING`. A
    /// multi-row statement that may abort half-way keeps a statement
    /// journal, a copy of every page it changes, to undo its own rows; an
    /// upsert clause covers only unique keys, so a NOT NULL or CHECK failure
    /// could still abort, while `OR IGNORE` covers every constraint and the
    /// statement never aborts (a 5,000-row insert with three indexes: about
    /// a third faster). It also skips a row that breaks NOT NULL or CHECK:
    /// where every row must land, compare the rows inserted with the rows
    /// given.
    const INSERT_SKIPPING: (&'static str, &'static str);
    /// Writes the placeholder for the `n`th bind parameter (from 1).
    fn placeholder(sql: &mut String, n: usize);
    /// Rows a statement inserted or changed (an inherent method of each
    /// driver's result, so it is reached through here).
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

impl SqlDatabase for Sqlite {
    const LABEL: &'static str = "sqlite";
    const SNAPSHOT: Option<&'static str> = None;
    const INSERT_SKIPPING: (&'static str, &'static str) = ("INSERT OR IGNORE", "");
    // Plain `?`: SQLite resolves named and numbered parameters (`$1`, `?1`) by
    // a linear scan per parameter, which makes a 10,000-parameter INSERT
    // quadratic; anonymous ones are bound by position for free.
    fn placeholder(sql: &mut String, _n: usize) {
        sql.push('?');
    }
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

impl SqlDatabase for Postgres {
    const LABEL: &'static str = "postgres";
    const SNAPSHOT: Option<&'static str> =
        Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    const INSERT_SKIPPING: (&'static str, &'static str) = ("INSERT", " ON CONFLICT DO NOTHING");
    fn placeholder(sql: &mut String, n: usize) {
        use std::fmt::Write as _;
        let _ = write!(sql, "${n}");
    }
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// A service's database connections: one pool of a single write
/// connection, reached only through [`Pools::write_tx`] and
/// [`Pools::write_conn`] (so a connection that saw a failure is closed,
/// never reused: see [`crate::write`]), and a pool of read connections, so
/// reads never wait behind a commit's fsync.
pub struct Pools<DB: sqlx::Database> {
    /// Private: every write goes through a [`WriteConn`].
    write: Pool<DB>,
    read: Pool<DB>,
    /// Faults a test injects into writes; `None` outside tests.
    faults: Option<Arc<WriteFaults>>,
}

impl<DB: sqlx::Database> Pools<DB> {
    /// The pools of a service, and the faults a test injects into its
    /// writes (`None` outside tests).
    pub fn new(write: Pool<DB>, read: Pool<DB>, faults: Option<Arc<WriteFaults>>) -> Self {
        Pools {
            write,
            read,
            faults,
        }
    }

    /// The read pool.
    pub fn read(&self) -> &Pool<DB> {
        &self.read
    }

    /// Closes both pools, waiting for connections in use.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

impl<DB: FaultableBackend> Pools<DB> {
    /// The write connection with a transaction begun on it for the write
    /// named `op`; closed rather than reused unless the write ends in a
    /// clean COMMIT or ROLLBACK (see [`WriteConn`]).
    pub fn write_tx(&self, op: &'static str) -> BoxFuture<'_, Result<WriteConn<DB>, sqlx::Error>> {
        WriteConn::begin(&self.write, op, self.faults.as_ref())
    }

    /// The write connection for `op`'s work outside a transaction; closed
    /// rather than reused unless released after every statement succeeded.
    pub fn write_conn(
        &self,
        op: &'static str,
    ) -> BoxFuture<'_, Result<WriteConn<DB>, sqlx::Error>> {
        WriteConn::acquire(&self.write, op, self.faults.as_ref())
    }
}

/// Which backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// `sqlite:…`, or no URL at all (the embedded default).
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl BackendKind {
    /// The backend `url` names; an empty URL is the embedded SQLite.
    ///
    /// Anything else is refused with what the URL started with (up to its
    /// first `:`, at most 20 characters; never the URL itself, which may hold
    /// a password): a mistyped PostgreSQL URL must not quietly become a
    /// SQLite file, inside a container, where what was acknowledged would
    /// not survive it.
    pub fn of_url(url: &str) -> Result<BackendKind, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(BackendKind::Postgres)
        } else if url.is_empty() || url.starts_with("sqlite:") {
            Ok(BackendKind::Sqlite)
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            Err(scheme.chars().take(20).collect())
        }
    }
}

/// A value for one of the two backends: a service's store on SQLite or on
/// PostgreSQL. [`crate::on_backend!`] runs the same code on either.
pub enum OnBackend<L, P> {
    /// On SQLite.
    Sqlite(L),
    /// On PostgreSQL.
    Postgres(P),
}

impl<L, P> OnBackend<L, P> {
    /// `sqlite` or `postgres`.
    pub fn label(&self) -> &'static str {
        match self {
            OnBackend::Sqlite(_) => Sqlite::LABEL,
            OnBackend::Postgres(_) => Postgres::LABEL,
        }
    }

    /// The SQLite value; `None` on PostgreSQL.
    pub fn sqlite(&self) -> Option<&L> {
        match self {
            OnBackend::Sqlite(value) => Some(value),
            OnBackend::Postgres(_) => None,
        }
    }
}

/// Runs `$body` with `$value` (an [`OnBackend`], or a reference to one) on
/// whichever backend it holds, bound to `$name`: the one match every method
/// of a service's two-backend database dispatches through.
///
/// As store-svc's `Database` uses it:
///
/// ```text
/// pub async fn stats(&self) -> Result<Stats, DbError> {
///     edge_sql::on_backend!(&self.store, s => s.stats().await)
/// }
/// ```
#[macro_export]
macro_rules! on_backend {
    ($value:expr, $name:ident => $body:expr) => {
        match $value {
            $crate::OnBackend::Sqlite($name) => $body,
            $crate::OnBackend::Postgres($name) => $body,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles only if `DB` meets every bound of the set.
    #[crate::sql_bounds]
    fn meets_the_bounds<DB>() {}

    #[test]
    fn both_backends_meet_the_bounds() {
        meets_the_bounds::<Sqlite>();
        meets_the_bounds::<Postgres>();
    }

    #[test]
    fn urls_name_their_backend_and_others_are_refused_without_the_url() {
        assert_eq!(BackendKind::of_url(""), Ok(BackendKind::Sqlite));
        assert_eq!(
            BackendKind::of_url("sqlite:/data/edge.db"),
            Ok(BackendKind::Sqlite)
        );
        assert_eq!(
            BackendKind::of_url("postgres://u:p@h/db"),
            Ok(BackendKind::Postgres)
        );
        assert_eq!(
            BackendKind::of_url("postgresql://h/db"),
            Ok(BackendKind::Postgres)
        );
        assert_eq!(
            BackendKind::of_url("postgress://user:secret@h/db"),
            Err("postgress".to_string())
        );
        assert_eq!(BackendKind::of_url("mysql"), Err("mysql".to_string()));
    }
}
