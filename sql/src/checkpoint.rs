//! SQLite WAL checkpoints on their own connection, off the write path, for
//! the site's store and the reference cloud alike.
//!
//! By default SQLite checkpoints inside the commit that pushes the WAL past
//! 1,000 pages, on the committing connection: the writer would stop taking
//! appends while it copies pages into the database file and fsyncs it. Here a
//! background task on a separate connection runs `PASSIVE` checkpoints after
//! commits (at most every `Checkpointer::INTERVAL`), so the copying runs in
//! parallel with the next group commit. `PASSIVE` never blocks the writer.
//!
//! A WAL only rewinds when a write transaction starts while every frame is
//! already copied; under sustained load the writer starts its next group at
//! once, so the WAL could grow without bound. The writer therefore keeps its
//! own automatic checkpoint at `WRITER_AUTOCHECKPOINT_PAGES` as a ceiling:
//! when reached, it copies the few frames the background task has not (the
//! rest are done) and the WAL rewinds. `journal_size_limit` then trims the
//! file back.

use std::time::Duration;

use crate::task::{BackgroundTask, FailureReport, Signals};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

/// WAL pages (4 KiB each) at which the writer checkpoints itself. 16,384
/// pages bounds the WAL at about 64 MiB.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// Bytes the WAL file is trimmed to after it rewinds.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// The writer's connection options: its own checkpoint only as the
/// ceiling of about 64 MiB of WAL, and the WAL trimmed back to that size
/// after it rewinds.
pub fn writer_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .pragma(
            "wal_autocheckpoint",
            WRITER_AUTOCHECKPOINT_PAGES.to_string(),
        )
        .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string())
}

/// The background checkpoint task. Dropping it (a store that failed to
/// finish opening) stops the task too; [`Checkpointer::stop`] also waits for
/// it.
pub struct Checkpointer {
    task: BackgroundTask,
}

impl Checkpointer {
    /// Shortest pause between two checkpoints. Pages rewritten by several
    /// commits in the meantime are copied once.
    const INTERVAL: Duration = Duration::from_millis(200);

    /// Opens the checkpoint connection and starts the task.
    pub async fn start(options: &SqliteConnectOptions) -> Result<Checkpointer, sqlx::Error> {
        let conn = options.connect().await?;
        Ok(Checkpointer {
            task: BackgroundTask::spawn(|signals| run(conn, signals)),
        })
    }

    /// Tells the task a commit added frames to the WAL.
    pub fn committed(&self) {
        self.task.wake();
    }

    /// Stops the task and closes its connection.
    pub async fn stop(&self) {
        self.task.stop().await;
    }
}

async fn run(mut conn: SqliteConnection, signals: Signals) {
    let mut report = FailureReport::default();
    while signals.woken(None).await {
        report.record(
            checkpoint(&mut conn).await,
            "WAL checkpoint failed; the writer's own checkpoint still bounds the WAL",
            "WAL checkpoints work again",
        );
        if !signals.paused(Checkpointer::INTERVAL).await {
            break;
        }
    }
    let _ = conn.close().await;
}

/// Copies what it can of the WAL into the database, never waiting for the
/// writer.
async fn checkpoint(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let (_busy, wal_frames, copied) =
        sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(conn)
            .await?;
    tracing::trace!(wal_frames, copied, "WAL checkpoint");
    Ok(())
}
