//! Readings by sensor: `readings_by_sensor`, filled in batches sorted by its
//! key once the newest readings are a batch past its high mark
//! (`site_state.sensor_indexed_seq`), so each of its pages is written once
//! per batch rather than once per commit (SQLite migration 0002 says why).
//!
//! Who copies a batch differs:
//! - on SQLite, the writer, in the append that reaches the batch: there is
//!   one writer anyway;
//! - on PostgreSQL, the [`SensorIndexer`], on a connection of its own beside
//!   the writer (PostgreSQL migration 0014 says why). Nothing needs the
//!   batch in the append's transaction: a query by sensor reads the table
//!   up to the mark and the readings above it in one statement (one
//!   snapshot), and a batch commits with the mark it raises, so a reading
//!   is seen exactly once whichever side of the mark it is on.
//!
//! A reading pruned while its batch is being copied may leave a row here
//! naming a seq that no longer exists. Queries join the table to the
//! readings, so such a row is never shown; pruning takes the oldest
//! readings, and the batches the newest, so it takes a retention of
//! seconds to meet one.

use std::time::Duration;

use edge_sql::task::{BackgroundTask, FailureReport, Signals};
use sqlx::{Connection, Pool};

use super::DbError;
use super::backend::Backend;
use super::outbox::IdChunk;
use super::sql::SqlBuilder;

/// Copies readings `(from, to]` into `readings_by_sensor`, sorted by its
/// key so each of its pages is written once per batch.
#[edge_sql::sql_bounds]
pub(super) async fn index_range<DB: Backend>(
    conn: &mut DB::Connection,
    from: i64,
    to: i64,
) -> Result<(), DbError> {
    let (insert, skipping) = DB::INSERT_SKIPPING;
    let mut sql = SqlBuilder::<DB>::default();
    sql.push(&format!(
        "{insert} INTO readings_by_sensor (sensor_id, measured_at_us, seq) \
         SELECT sensor_id, measured_at_us, seq"
    ));
    sql.readings_in_seq_range(from + 1, to);
    // Derived rows: one already there (a restored or repaired database) is
    // the same row, and must not stop ingest.
    sql.push(" ORDER BY sensor_id, measured_at_us, seq");
    sql.push(skipping);
    sql.query()?.execute(&mut *conn).await?;
    Ok(())
}

/// Removes the `readings_by_sensor` rows of the readings `chunk` names
/// (those that also meet `condition`, SQL on `readings` starting ` AND`, or
/// all of them when it is empty), before the readings themselves go.
#[edge_sql::sql_bounds]
pub(super) async fn unindex_readings<DB: Backend>(
    conn: &mut DB::Connection,
    chunk: &IdChunk,
    condition: &str,
) -> Result<(), DbError> {
    let mut sql = SqlBuilder::<DB>::default();
    sql.push(
        "DELETE FROM readings_by_sensor WHERE (sensor_id, measured_at_us, seq) IN \
         (SELECT sensor_id, measured_at_us, seq FROM readings WHERE ",
    );
    sql.id_filter("seq", chunk);
    sql.push(condition);
    sql.push(")");
    sql.query()?.execute(&mut *conn).await?;
    Ok(())
}

/// Copies batches into `readings_by_sensor` beside the writer, on a
/// connection of the read pool taken for each transaction, whenever the
/// writer says one is due (and again a second after a failure): see the
/// module's documentation.
pub(super) struct SensorIndexer {
    task: BackgroundTask,
}

impl SensorIndexer {
    /// How long the indexer waits after a failure before it tries again,
    /// unless the writer says another batch is due first.
    const RETRY: Duration = Duration::from_secs(1);

    /// Most batches one transaction copies: a long backlog (a store that
    /// stopped mid-copy, or an indexer that kept failing) is caught up in
    /// transactions of bounded length.
    const BATCHES_PER_TRANSACTION: i64 = 4;

    /// Starts the task: it catches up at once, then on each [`Self::due`].
    #[edge_sql::sql_bounds]
    pub(super) fn start<DB: Backend>(pool: Pool<DB>, batch: i64) -> Self {
        SensorIndexer {
            task: BackgroundTask::spawn(move |signals| run(pool, batch, signals)),
        }
    }

    /// A commit left a batch or more above the mark.
    pub(super) fn due(&self) {
        self.task.wake();
    }

    /// Stops the task, waiting for the transaction under way to end (its
    /// commit; stopping is checked between transactions).
    pub(super) async fn stop(&self) {
        self.task.stop().await;
    }
}

#[edge_sql::sql_bounds]
async fn run<DB: Backend>(pool: Pool<DB>, batch: i64, signals: Signals) {
    let mut report = FailureReport::default();
    loop {
        report.record(
            catch_up(&pool, batch, &signals).await,
            "copying readings into the sensor index failed; queries by sensor scan the \
             readings not yet copied until it works again",
            "the sensor index is copied again",
        );
        let retry = report.failing().then_some(SensorIndexer::RETRY);
        if !signals.woken(retry).await {
            break;
        }
    }
}

/// Copies batches until less than one waits above the mark, or the task
/// is stopping (checked between transactions).
#[edge_sql::sql_bounds]
async fn catch_up<DB: Backend>(
    pool: &Pool<DB>,
    batch: i64,
    signals: &Signals,
) -> Result<(), DbError> {
    while !signals.stopping() {
        let mut conn = pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let (mark, newest): (i64, i64) = sqlx::query_as(
            "SELECT sensor_indexed_seq, next_seq - 1 FROM site_state WHERE singleton = 1",
        )
        .fetch_one(&mut *tx)
        .await?;
        if newest - mark < batch {
            tx.rollback().await?;
            return Ok(());
        }
        let to = newest.min(mark.saturating_add(batch * SensorIndexer::BATCHES_PER_TRANSACTION));
        index_range::<DB>(&mut *tx, mark, to).await?;
        // Raised, never lowered. The writer holds this row from reading it
        // to its commit and writes back the mark it read, so this waits for
        // the append under way and the next append sees the new mark.
        sqlx::query(
            "UPDATE site_state SET sensor_indexed_seq = $1 \
             WHERE singleton = 1 AND sensor_indexed_seq < $1",
        )
        .bind(to)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}
