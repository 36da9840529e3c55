//! The connection every write runs on, trusted only while it is proven.
//!
//! After a failed statement or COMMIT, nobody knows what state a connection
//! is in. SQLite documents that a COMMIT failing for a full disk or an I/O
//! error may roll the transaction back or leave it open; sqlx's count of the
//! transactions it opened then disagrees with the database's. On such a
//! connection the next "transaction" can become a savepoint inside one that
//! never ends: every later COMMIT succeeds and commits nothing, and a store
//! that carried on would acknowledge readings that vanish at the next
//! restart. A PostgreSQL connection that died during COMMIT leaves the
//! outcome unknown.
//!
//! So a write never reuses a connection that saw an error. [`WriteConn`]
//! holds a writer's pooled connection and closes it, instead of handing it
//! back to the pool, unless the write ended in a COMMIT or ROLLBACK that
//! succeeded ([`WriteConn::commit`], [`WriteConn::rollback`]) or, for work
//! outside a transaction, was [`released`](WriteConn::release) after every
//! statement succeeded. Any early return (`?`) drops it unproven. The pool
//! then opens a fresh connection for the next write, which reads the real
//! state from the database; nothing the failed write did can leak into a
//! later answer. Closing is what rolls an open transaction back: SQLite
//! discards it when the connection closes, PostgreSQL when the session ends.
//!
//! The fault seam ([`crate::faults`]) strikes here, at the same points a
//! real failure would.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool, Postgres, Sqlite, TransactionManager};

use crate::faults::{Fault, FaultPoint, InjectedError, WriteFaults};

/// What the fault seam needs of a backend beyond sqlx.
pub trait FaultableBackend: Database {
    /// The code this backend's driver reports for a full disk.
    const DISK_FULL: &'static str;
    /// Ends the connection's transaction behind the driver's back, as
    /// SQLite's automatic rollback after a failed COMMIT does (the fault
    /// seam's imitation of it; any error is ignored).
    fn rollback_underneath(conn: &mut Self::Connection) -> BoxFuture<'_, ()>;
}

impl FaultableBackend for Sqlite {
    const DISK_FULL: &'static str = "13";
    fn rollback_underneath(conn: &mut Self::Connection) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        })
    }
}

impl FaultableBackend for Postgres {
    const DISK_FULL: &'static str = "53100";
    fn rollback_underneath(conn: &mut Self::Connection) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        })
    }
}

/// A writer's connection for one write; see the module docs.
pub struct WriteConn<DB: Database> {
    conn: PoolConnection<DB>,
    /// The write's name, for the fault seam and the log.
    op: &'static str,
    faults: Option<Arc<WriteFaults>>,
    /// Set only once the write ended in a state known to be clean.
    proven: bool,
}

impl<DB: FaultableBackend> WriteConn<DB> {
    // The futures are boxed: the generic store's `Send` futures cannot be
    // proven through a plain `async fn` with this higher-ranked bound.

    /// The writer's connection from `pool` (of one connection) for the
    /// write named `op`, for work outside a transaction.
    pub fn acquire<'a>(
        pool: &'a Pool<DB>,
        op: &'static str,
        faults: Option<&'a Arc<WriteFaults>>,
    ) -> BoxFuture<'a, Result<Self, sqlx::Error>> {
        Box::pin(async move {
            let conn = pool.acquire().await?;
            let mut write = WriteConn {
                conn,
                op,
                faults: faults.cloned(),
                proven: false,
            };
            write.strike(FaultPoint::Begin).await?;
            Ok(write)
        })
    }

    /// The writer's connection with a transaction begun on it.
    pub fn begin<'a>(
        pool: &'a Pool<DB>,
        op: &'static str,
        faults: Option<&'a Arc<WriteFaults>>,
    ) -> BoxFuture<'a, Result<Self, sqlx::Error>> {
        Box::pin(async move {
            let mut write = Self::acquire(pool, op, faults).await?;
            DB::TransactionManager::begin(&mut write.conn, None).await?;
            Ok(write)
        })
    }

    /// Where a test may make a statement of this write fail: called after
    /// the write's own statements, before COMMIT.
    pub fn statements_done(&mut self) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        self.strike(FaultPoint::Statement)
    }

    /// Commits. On success the connection goes back to the pool; on any
    /// error it is closed and the caller must not answer as if committed.
    pub fn commit(mut self) -> BoxFuture<'static, Result<(), sqlx::Error>> {
        Box::pin(async move {
            self.strike(FaultPoint::Commit).await?;
            DB::TransactionManager::commit(&mut self.conn).await?;
            // A lost answer to a COMMIT that did commit: the connection is
            // not trusted (not proven) and the caller is told it failed.
            self.strike(FaultPoint::AfterCommit).await?;
            self.prove();
            Ok(())
        })
    }

    /// Rolls back a transaction that decided to write nothing. A ROLLBACK
    /// that succeeded leaves the connection in autocommit, so it is reused.
    pub fn rollback(mut self) -> BoxFuture<'static, Result<(), sqlx::Error>> {
        Box::pin(async move {
            DB::TransactionManager::rollback(&mut self.conn).await?;
            self.prove();
            Ok(())
        })
    }

    /// Ends work done outside a transaction, every statement of which
    /// succeeded.
    pub fn release(mut self) {
        self.prove();
    }

    /// The write ended in a known, clean state: the pool may reuse the
    /// connection.
    fn prove(&mut self) {
        self.proven = true;
    }

    fn strike(&mut self, point: FaultPoint) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let Some(fault) = self
                .faults
                .as_ref()
                .and_then(|faults| faults.strike(self.op, point))
            else {
                return Ok(());
            };
            tracing::debug!(op = self.op, ?point, ?fault, "injecting a write fault");
            let code = match fault {
                Fault::Error(code) => code,
                Fault::RolledBackUnderneath => {
                    DB::rollback_underneath(&mut self.conn).await;
                    DB::DISK_FULL
                }
            };
            Err(InjectedError::sqlx(code))
        })
    }
}

impl<DB: Database> Deref for WriteConn<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> DerefMut for WriteConn<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Database> Drop for WriteConn<DB> {
    fn drop(&mut self) {
        if !self.proven {
            tracing::debug!(
                op = self.op,
                "a write failed: its database connection is closed, and the next write opens a fresh one"
            );
            self.conn.close_on_drop();
        }
    }
}
