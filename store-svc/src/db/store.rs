//! The store's SQL, written once for both backends.
//!
//! Writes come only from the group-commit writer ([`crate::writer`]) through
//! [`Store::append`], on a pool of one connection; queries and stats use a
//! separate read pool, so reads never wait behind a commit's fsync.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use edge_versioning::{NodeClock, SkewBound};
use sqlx::{FromRow, Pool};

use super::backend::Backend;
use super::faults::WriteOp;
use super::first_versions::sync_state_of;
use super::outbox::{IMPLICIT, OUTBOX_FLOOR, id_chunks};
use super::sensor_index::{SensorIndexer, index_range};
use super::sql::SqlBuilder;
use super::{DbConfig, DbError};
use crate::hlc::{Hlc, WallClock};
use crate::model::{
    AppendOutcome, Cursor, NewReading, Outcome, Priority, ReadingQuery, Stats, StoredReading,
    SyncState, VersionStamp,
};
use edge_sql::checkpoint::Checkpointer;
use edge_sql::statement::{
    LIST_ROWS, STATEMENT_ROWS, padded_shape_of, push_placeholders, shaped_chunks,
};
use edge_sql::{Pools, WriteConn};

/// Columns a query returns, in [`StoredReading`]'s order, but for the sync
/// state ([`reading_columns`]).
const READING_COLUMNS: &str = "seq, reading_id, origin_site_id, sensor_id, temperature, humidity, \
     measured_at_us, received_at_us, priority, clock_suspect, version_hlc, version_site_id, sync_state, \
     quality, note, origin_seq, version_clock_ahead_ms, version_written_by";

/// [`READING_COLUMNS`] of the readings table `alias`, the sync state as the
/// books see it ([`sync_state_of`]: an acknowledged run may hold it).
pub(super) fn reading_columns(alias: &str) -> String {
    READING_COLUMNS
        .split(", ")
        .map(|column| match column {
            "sync_state" => format!("{} AS sync_state", sync_state_of(alias)),
            column => format!("{alias}.{column}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// The widest multi-row statement (a foreign reading, 18 columns) stays
// within both backends' bind limits.
const _: () = assert!(edge_sql::statement::fits_bind_limit(&STATEMENT_ROWS, 18));

/// The database of one backend.
pub struct Store<DB: sqlx::Database> {
    /// The writer's pool (written only through [`Store::write_tx`] and
    /// [`Store::write_conn`]) and the read pool.
    pub(super) pools: Pools<DB>,
    /// SQLite only: WAL checkpoints off the write path.
    pub(super) checkpointer: Option<Checkpointer>,
    /// SQLite only: the database file.
    pub(super) path: Option<std::path::PathBuf>,
    site_id: String,
    pub(super) clock: Arc<dyn WallClock>,
    suspect_ahead_us: i64,
    suspect_behind_us: i64,
    /// The clock-skew bound until a cloud announced one.
    max_clock_skew: SkewBound,
    sensor_index_batch: i64,
    /// Readings above the sensor index's high mark (`sensor_indexed_seq`),
    /// as of the last commit.
    sensor_index_lag: AtomicI64,
    /// PostgreSQL only: copies the sensor index's batches beside the writer.
    sensor_indexer: Option<SensorIndexer>,
    /// Whether the last group whose ids were looked up held none already:
    /// the next group is then inserted without the lookup (see
    /// [`Store::append`]).
    ids_new: AtomicBool,
    /// Versions waiting in the implicit outbox, as of the last commit.
    pub(super) implicit: ImplicitCount,
}

/// How many versions wait in the implicit outbox, kept by the writes that
/// change it (appends, completions, drops) so stats need not count a
/// backlog of millions. Counted from the database at start, and again by
/// the next write after a commit whose outcome is unknown.
#[derive(Default)]
pub(super) struct ImplicitCount {
    value: AtomicI64,
    /// Set when a commit failed: it may or may not have happened.
    stale: AtomicBool,
}

impl ImplicitCount {
    /// The count, unless a failed commit left it unknown.
    pub(super) fn get(&self) -> Option<i64> {
        (!self.stale.load(Ordering::Acquire)).then(|| self.value.load(Ordering::Acquire))
    }

    /// Sets the count just counted.
    pub(super) fn set(&self, value: i64) {
        self.value.store(value, Ordering::Release);
        self.stale.store(false, Ordering::Release);
    }

    /// Adds what a committed write changed.
    pub(super) fn add(&self, delta: i64) {
        self.value.fetch_add(delta, Ordering::AcqRel);
    }

    /// Marks the count unknown.
    pub(super) fn forget(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// A guard that marks the count unknown when dropped, unless
    /// [`PendingChange::settle`] applied the change first: a commit whose
    /// outcome never became known (failed, or its future dropped) leaves
    /// the count to be counted again.
    pub(super) fn unknown_unless_settled(&self) -> PendingChange<'_> {
        PendingChange {
            count: self,
            settled: false,
        }
    }
}

/// See [`ImplicitCount::unknown_unless_settled`].
pub(super) struct PendingChange<'a> {
    count: &'a ImplicitCount,
    settled: bool,
}

impl PendingChange<'_> {
    /// The commit succeeded: applies its change.
    pub(super) fn settle(mut self, delta: i64) {
        self.count.add(delta);
        self.settled = true;
    }
}

impl Drop for PendingChange<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.count.forget();
        }
    }
}

/// What the database already holds under a reading id.
struct Existing {
    seq: i64,
    digest: Vec<u8>,
    clock_suspect: bool,
    version: VersionStamp,
}

/// A reading the current group stores, with what the commit assigns it.
pub struct NewRow<'a> {
    pub(super) reading: &'a NewReading,
    pub(super) seq: i64,
    pub(super) version_id: i64,
    pub(super) hlc: Hlc,
    pub(super) digest: Vec<u8>,
    pub(super) clock_suspect: bool,
}

impl<DB: sqlx::Database> Store<DB> {
    /// The SQLite database file; `None` on PostgreSQL.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// The writer's connection with a transaction begun on it for `op`;
    /// closed rather than reused unless the write ends in a clean COMMIT or
    /// ROLLBACK (see [`WriteConn`]).
    pub(super) async fn write_tx(&self, op: WriteOp) -> Result<WriteConn<DB>, DbError>
    where
        DB: Backend,
    {
        Ok(self.pools.write_tx(op.label()).await?)
    }

    /// The writer's connection for `op`'s work outside a transaction.
    pub(super) async fn write_conn(&self, op: WriteOp) -> Result<WriteConn<DB>, DbError>
    where
        DB: Backend,
    {
        Ok(self.pools.write_conn(op.label()).await?)
    }

    /// After a commit: lets the SQLite checkpointer copy the new WAL frames.
    pub(super) fn after_write(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
    }

    /// The clock-skew bound in force: the one a cloud announced (kept in
    /// `site_state.max_clock_skew_ms`), else `--max-clock-skew`.
    pub(super) fn bound(&self, announced_ms: Option<i64>) -> SkewBound {
        announced_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(self.max_clock_skew, SkewBound::from_ms)
    }

    /// The site's clock as persisted (`packed`), loaded at the wall clock
    /// now under the bound in force: fallen back to the bound if it was
    /// further ahead (logged by [`Self::log_fall_back`] once persisted).
    pub(super) fn load_clock(
        &self,
        packed: i64,
        announced_ms: Option<i64>,
        now_us: i64,
    ) -> NodeClock {
        NodeClock::load(
            Hlc::unpack(packed),
            Hlc::ms_from_us(now_us),
            self.bound(announced_ms),
        )
    }

    /// Says, once it is committed, that the site's clock was beyond the
    /// bound and fell back: its wall clock stepped back, or an older build
    /// let a far-ahead stamp drag it. Versions keep their stamps; each
    /// reading's next version is still stamped above its versions.
    pub(super) fn log_fall_back(&self, clock: &NodeClock, persisted: i64, during: &'static str) {
        if let Some(ms) = clock.fell_back_ms() {
            tracing::warn!(
                was = %Hlc::unpack(persisted),
                now = %clock.hlc(),
                ahead = %humantime::format_duration(std::time::Duration::from_millis(ms)),
                bound = %humantime::format_duration(clock.bound().as_duration()),
                during,
                "the site's clock was further ahead of its wall clock than the clock-skew bound; \
                 it falls back to the bound (stored versions keep their stamps)"
            );
        }
    }
}

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB>
where
    for<'r> StoredReading: FromRow<'r, DB::Row>,
{
    /// Settles the site id and builds the store. A database keeps one site's
    /// sequence numbers for its whole life, so a configured id that differs
    /// from the stored one is refused rather than silently adopted.
    pub(super) async fn init(
        write: Pool<DB>,
        read: Pool<DB>,
        checkpointer: Option<Checkpointer>,
        config: &DbConfig,
        clock: Arc<dyn WallClock>,
    ) -> Result<Self, DbError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT site_id FROM site_state WHERE singleton = 1")
                .fetch_optional(&mut *write.acquire().await?)
                .await?;
        let site_id = match (stored, &config.site_id) {
            (Some(stored), Some(configured)) if &stored != configured => {
                return Err(DbError::SiteMismatch {
                    configured: configured.clone(),
                    stored,
                });
            }
            (Some(stored), _) => stored,
            (None, configured) => {
                let site_id = configured.clone().unwrap_or_else(|| {
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    format!("site-{}", &id[..8])
                });
                sqlx::query(
                    "INSERT INTO site_state (singleton, site_id, next_seq, next_version_id, hlc) \
                     VALUES (1, $1, 1, 1, 0)",
                )
                .bind(site_id.clone())
                .execute(&mut *write.acquire().await?)
                .await?;
                tracing::info!(%site_id, "new site database initialised");
                site_id
            }
        };
        let (sensor_index_lag,): (i64,) = sqlx::query_as(
            "SELECT next_seq - 1 - sensor_indexed_seq FROM site_state WHERE singleton = 1",
        )
        .fetch_one(&mut *write.acquire().await?)
        .await?;
        let as_us = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let sensor_index_batch = i64::from(config.sensor_index_batch.max(1));
        let sensor_indexer = DB::SENSOR_INDEX_BESIDE_WRITER
            .then(|| SensorIndexer::start(read.clone(), sensor_index_batch));
        let store = Store {
            pools: Pools::new(write, read, config.write_faults.clone()),
            checkpointer,
            path: None,
            site_id,
            clock,
            suspect_ahead_us: as_us(config.suspect_ahead),
            suspect_behind_us: as_us(config.suspect_behind),
            max_clock_skew: config.max_clock_skew,
            sensor_index_batch,
            sensor_index_lag: AtomicI64::new(sensor_index_lag),
            ids_new: AtomicBool::new(false),
            sensor_indexer,
            implicit: ImplicitCount::default(),
        };
        store.recover_clock().await?;
        let counted = store
            .count_implicit(&mut *store.pools.read().acquire().await?)
            .await?;
        store.implicit.set(counted);
        Ok(store)
    }

    /// At start: a clock persisted further ahead of the wall clock than the
    /// bound in force falls back to it, said once. Every write applies the
    /// same rule, so a wall clock stepped back while running recovers too.
    async fn recover_clock(&self) -> Result<(), DbError> {
        let now_us = self.clock.now_us();
        let mut tx = self.write_tx(WriteOp::Clock).await?;
        let state_sql = format!(
            "SELECT hlc, max_clock_skew_ms FROM site_state WHERE singleton = 1{}",
            DB::LOCK_STATE
        );
        let (hlc, announced): (i64, Option<i64>) =
            sqlx::query_as(&state_sql).fetch_one(&mut *tx).await?;
        let clock = self.load_clock(hlc, announced, now_us);
        if clock.fell_back_ms().is_none() {
            tx.rollback().await?;
            return Ok(());
        }
        sqlx::query("UPDATE site_state SET hlc = $1 WHERE singleton = 1")
            .bind(clock.hlc().pack()?)
            .execute(&mut *tx)
            .await?;
        tx.statements_done().await?;
        tx.commit().await?;
        self.after_write();
        self.log_fall_back(&clock, hlc, "start");
        Ok(())
    }

    /// Rows of the sensor index that committing `rows` more readings writes:
    /// every reading not yet indexed when the group reaches the batch size,
    /// else none (a guess between commits: the next commit may be a retry).
    /// None where the batches are copied beside the writer: they are
    /// measured once written, like any other growth.
    pub fn index_rows_due(&self, rows: usize) -> i64 {
        if self.sensor_indexer.is_some() {
            return 0;
        }
        let due =
            self.sensor_index_lag.load(Ordering::Relaxed) + i64::try_from(rows).unwrap_or(i64::MAX);
        if due >= self.sensor_index_batch {
            due
        } else {
            0
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        DB::LABEL
    }

    /// This site's id.
    pub fn site_id(&self) -> &str {
        &self.site_id
    }

    /// Appends readings in one transaction and returns one outcome per reading,
    /// in order. Returns only after the commit is durable.
    ///
    /// Gateways send new ids almost always; a retry is the exception. So
    /// once a group's lookup found none of its ids held, the next groups are
    /// inserted without looking theirs up (a tenth of the writer's time on
    /// SQLite, more on PostgreSQL). The unique id refuses any that is held
    /// after all: that transaction is rolled back, nothing of it stays, and
    /// the group is written again from the database's state with its ids
    /// looked up, answering duplicates and conflicts as always; lookups go
    /// on until a group holds none again. The store starts with lookups (a
    /// restart is when gateways retry), so a burst of retries costs one
    /// wasted try, which PostgreSQL logs as a refused INSERT.
    pub async fn append(&self, readings: &[&NewReading]) -> Result<Vec<AppendOutcome>, DbError> {
        if self.ids_new.load(Ordering::Relaxed) {
            if let Some(outcomes) = self.append_group(readings, Ids::AssumedNew).await? {
                return Ok(outcomes);
            }
            tracing::debug!(
                readings = readings.len(),
                "a group held an id already; written again with its ids looked up"
            );
            self.ids_new.store(false, Ordering::Relaxed);
        }
        self.append_group(readings, Ids::LookedUp)
            .await?
            .ok_or(DbError::Inconsistent(
                "a new reading's row was not inserted (its id or seq is taken)",
            ))
    }

    /// One attempt at [`Store::append`]: `None` when a new reading's id or
    /// seq was taken after all. With [`Ids::AssumedNew`] the transaction is
    /// then rolled back; with [`Ids::LookedUp`] that cannot be (one writer)
    /// and the connection, not proven, is closed.
    async fn append_group(
        &self,
        readings: &[&NewReading],
        ids: Ids,
    ) -> Result<Option<Vec<AppendOutcome>>, DbError> {
        let now_us = self.clock.now_us();
        let mut tx = self.write_tx(WriteOp::Append).await?;

        let state_sql = format!(
            "SELECT next_seq, next_version_id, hlc, sensor_indexed_seq, max_clock_skew_ms \
             FROM site_state WHERE singleton = 1{}",
            DB::LOCK_STATE
        );
        let (mut next_seq, mut next_version_id, persisted, mut sensor_indexed_seq, announced): (
            i64,
            i64,
            i64,
            i64,
            Option<i64>,
        ) = sqlx::query_as(&state_sql).fetch_one(&mut *tx).await?;
        let mut clock = self.load_clock(persisted, announced, now_us);
        // The site's best idea of now: its wall clock, or its HLC if the wall
        // clock is behind what the site has already seen (within the bound).
        let site_now_us = now_us.max(
            i64::try_from(clock.hlc().physical_ms)
                .unwrap_or(i64::MAX / 1_000)
                .saturating_mul(1_000),
        );

        self.recount_implicit_if_stale(&mut tx).await?;
        let mut known = match ids {
            Ids::AssumedNew => HashMap::with_capacity(readings.len()),
            Ids::LookedUp => {
                let known = self.existing(&mut tx, readings).await?;
                self.ids_new.store(known.is_empty(), Ordering::Relaxed);
                known
            }
        };
        let mut outcomes = Vec::with_capacity(readings.len());
        let mut rows: Vec<NewRow<'_>> = Vec::new();
        for reading in readings {
            let digest = reading.content_digest();
            if let Some(existing) = known.get(reading.id.as_str()) {
                outcomes.push(AppendOutcome {
                    outcome: if existing.digest == digest {
                        Outcome::Duplicate
                    } else {
                        Outcome::Conflict
                    },
                    seq: existing.seq,
                    clock_suspect: existing.clock_suspect,
                    version: existing.version.clone(),
                });
                continue;
            }
            // A new reading: no version of it is held, so the clock alone
            // stamps it.
            let hlc = clock.tick();
            let clock_suspect = reading.measured_at_us
                > site_now_us.saturating_add(self.suspect_ahead_us)
                || reading.measured_at_us < site_now_us.saturating_sub(self.suspect_behind_us);
            let version = VersionStamp {
                hlc,
                site_id: self.site_id.clone(),
            };
            outcomes.push(AppendOutcome {
                outcome: Outcome::Stored,
                seq: next_seq,
                clock_suspect,
                version: version.clone(),
            });
            known.insert(
                reading.id.as_str(),
                Existing {
                    seq: next_seq,
                    digest: digest.clone(),
                    clock_suspect,
                    version,
                },
            );
            rows.push(NewRow {
                reading,
                seq: next_seq,
                version_id: next_version_id,
                hlc,
                digest,
                clock_suspect,
            });
            next_seq += 1;
            next_version_id += 1;
        }

        let mut index_due = false;
        if !rows.is_empty() {
            if !self.insert_rows(&mut tx, &rows, now_us).await? {
                return match ids {
                    Ids::AssumedNew => {
                        tx.rollback().await?;
                        Ok(None)
                    }
                    Ids::LookedUp => Ok(None),
                };
            }
            let last_seq = next_seq - 1;
            if last_seq - sensor_indexed_seq >= self.sensor_index_batch {
                if self.sensor_indexer.is_some() {
                    // Copied beside the writer once this commits; the mark
                    // is written back as read.
                    index_due = true;
                } else {
                    index_range::<DB>(&mut tx, sensor_indexed_seq, last_seq).await?;
                    sensor_indexed_seq = last_seq;
                }
            }
            sqlx::query(
                "UPDATE site_state SET next_seq = $1, next_version_id = $2, hlc = $3, \
                 sensor_indexed_seq = $4, readings_held = readings_held + $5 \
                 WHERE singleton = 1",
            )
            .bind(next_seq)
            .bind(next_version_id)
            .bind(clock.hlc().pack()?)
            .bind(sensor_indexed_seq)
            .bind(i64::try_from(rows.len()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }

        tx.statements_done().await?;
        // Critical readings' first versions have outbox rows; the rest wait
        // in the implicit outbox.
        let implicit = rows
            .iter()
            .filter(|row| row.reading.priority != Priority::Critical)
            .count();
        self.commit_changing_implicit(tx, i64::try_from(implicit).unwrap_or(i64::MAX))
            .await?;
        if !rows.is_empty() {
            self.log_fall_back(&clock, persisted, "append");
        }
        self.sensor_index_lag
            .store(next_seq - 1 - sensor_indexed_seq, Ordering::Relaxed);
        if index_due && let Some(indexer) = &self.sensor_indexer {
            indexer.due();
        }
        self.after_write();
        Ok(Some(outcomes))
    }

    /// What the database already holds for the ids in `readings`.
    async fn existing<'a>(
        &self,
        conn: &mut DB::Connection,
        readings: &[&'a NewReading],
    ) -> Result<HashMap<&'a str, Existing>, DbError> {
        let mut known = HashMap::with_capacity(readings.len());
        let ids: Vec<&'a str> = readings.iter().map(|r| r.id.as_str()).collect();
        let wanted: HashSet<&'a str> = ids.iter().copied().collect();
        for (id, seq, digest, clock_suspect, hlc, site_id) in DB::held_readings(conn, &ids).await? {
            if let Some(key) = wanted.get(id.as_str()) {
                known.insert(
                    *key,
                    Existing {
                        seq,
                        digest,
                        clock_suspect,
                        version: VersionStamp {
                            hlc: Hlc::unpack(hlc),
                            site_id,
                        },
                    },
                );
            }
        }
        Ok(known)
    }

    /// Inserts the readings (the backend's way: [`Backend::insert_readings`])
    /// with their first versions implicit (see [`super::first_versions`]),
    /// then gives the critical ones' first versions their rows and outbox
    /// rows. False, having written nothing more, when a reading's id or seq
    /// was taken: the transaction must be rolled back.
    async fn insert_rows(
        &self,
        conn: &mut DB::Connection,
        rows: &[NewRow<'_>],
        now_us: i64,
    ) -> Result<bool, DbError> {
        if !DB::insert_readings(conn, &self.site_id, rows).await? {
            return Ok(false);
        }
        // Every new row got the next seq and the next version id, so within
        // one group the version id is the seq plus a constant: one run.
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(true);
        };
        let version_offset = first.version_id - first.seq;
        debug_assert!(rows.iter().all(|r| r.version_id - r.seq == version_offset));
        self.extend_first_runs(conn, first.seq, last.seq, first.version_id)
            .await?;

        // Critical readings' first versions get an outbox row, so they are
        // found first without a scan, and so a row of their own: an outbox
        // row names a version that has one. Written from the readings just
        // inserted: one statement each, nothing bound per row.
        let critical = first_critical_seqs(rows);
        if !critical.is_empty() {
            for chunk in id_chunks(&critical) {
                self.materialise_firsts(conn, &chunk, now_us, true).await?;
            }
            let mut outbox = SqlBuilder::<DB>::default();
            outbox.push(
                "INSERT INTO outbox (version_id, priority, enqueued_at_us, next_attempt_at_us) \
                 SELECT seq + ",
            );
            outbox.arg(version_offset);
            // Due at once (time 0), not "at now": a wall clock stepped back
            // later (NTP after a long offline stretch) must not hide them.
            outbox.push(", priority, ");
            outbox.arg(now_us);
            outbox.push(", 0");
            outbox.readings_in_seq_range(first.seq, last.seq);
            outbox.push(" AND priority = ");
            outbox.arg(Priority::Critical as i64);
            outbox.query()?.execute(&mut *conn).await?;
        }
        Ok(true)
    }

    /// One page of readings ordered by (measured_at, seq), and the cursor to
    /// continue from when more rows follow.
    ///
    /// Without a sensor, the time index serves every filter. With one, the
    /// rows come from two places merged in order: `readings_by_sensor` for
    /// the rows it already covers, and a scan of the short tail of newer
    /// rows (seq above `sensor_indexed_seq`) it does not cover yet; both are
    /// read in one statement, so one snapshot.
    pub async fn query(
        &self,
        query: &ReadingQuery,
    ) -> Result<(Vec<StoredReading>, Option<Cursor>), DbError> {
        let page = query.page_size as usize;
        let limit = page as i64 + 1;
        let mut sql = SqlBuilder::<DB>::default();
        match &query.sensor_id {
            None => {
                sql.push(&format!(
                    "SELECT {} FROM readings WHERE 1 = 1",
                    reading_columns("readings")
                ));
                sql.filters(query, "", "measured_at_us");
                sql.push(" ORDER BY measured_at_us, seq LIMIT ");
                sql.arg(limit);
            }
            Some(sensor_id) => {
                // The tail is materialised and its time filters are written
                // `+measured_at_us`, so the planner scans it by seq (at most a
                // couple of batches) rather than walking the time index. Its
                // seqs are bounded on both sides: PostgreSQL takes a range of
                // two unknown bounds for a narrow one and reads it through
                // the primary key, where `seq >` one bound alone is guessed
                // at a third of the table and read by a full scan.
                sql.push(&format!(
                    "WITH tail AS MATERIALIZED (SELECT {} FROM readings \
                     WHERE seq > (SELECT sensor_indexed_seq FROM site_state WHERE singleton = 1) \
                     AND seq < (SELECT next_seq FROM site_state WHERE singleton = 1) \
                     AND sensor_id = ",
                    reading_columns("readings")
                ));
                sql.arg(sensor_id.as_str());
                sql.filters(query, "", "+measured_at_us");
                sql.push(&format!(
                    ") SELECT * FROM (SELECT {} FROM readings_by_sensor s \
                     JOIN readings r ON r.seq = s.seq WHERE s.sensor_id = ",
                    reading_columns("r")
                ));
                sql.arg(sensor_id.as_str());
                sql.filters(query, "s.", "s.measured_at_us");
                sql.push(" ORDER BY s.measured_at_us, s.seq LIMIT ");
                sql.arg(limit);
                // Result columns by position: 7 is measured_at_us, 1 is seq.
                sql.push(") covered UNION ALL SELECT * FROM tail ORDER BY 7, 1 LIMIT ");
                sql.arg(limit);
            }
        }
        let mut rows = sql
            .query_as::<StoredReading>()?
            .fetch_all(&mut *self.pools.read().acquire().await?)
            .await?;
        let next = if rows.len() > page {
            rows.truncate(page);
            rows.last().map(|r| Cursor {
                measured_at_us: r.measured_at_us,
                seq: r.seq,
            })
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Counts and sizes, computed from the database (never from counters that
    /// a restart would reset), from one snapshot so the books add up; only
    /// the implicit outbox's size comes from the count its writes keep
    /// (counted at start), which a commit racing this read can leave one
    /// group apart from the rest for an instant.
    pub async fn stats(&self) -> Result<Stats, DbError> {
        let mut conn = self.pools.read().begin().await?;
        if let Some(snapshot) = DB::SNAPSHOT {
            sqlx::query(snapshot).execute(&mut *conn).await?;
        }
        let (
            next_seq,
            hlc,
            pruned_versions,
            dropped_versions,
            remote_versions,
            announced,
            sensor_indexed_seq,
            total_readings,
        ): (i64, i64, i64, i64, i64, Option<i64>, i64, i64) = sqlx::query_as(
            "SELECT next_seq, hlc, pruned_versions, dropped_versions, remote_versions, \
                 max_clock_skew_ms, sensor_indexed_seq, readings_held \
                 FROM site_state WHERE singleton = 1",
        )
        .fetch_one(&mut *conn)
        .await?;
        let count = |sql: &'static str| sqlx::query_scalar::<DB, i64>(sql);
        // The readings are counted by the writes that add and remove them
        // (`readings_held`), not row by row: a full count grows with the
        // table and runs at every refresh of the gauges. Implicit first
        // versions are counted with their readings: every reading but those
        // whose first version has a row (a partial index), so no row is
        // read for its flag.
        let materialised = count("SELECT COUNT(*) FROM readings WHERE NOT first_implicit")
            .fetch_one(&mut *conn)
            .await?;
        let total_versions = count("SELECT COUNT(*) FROM reading_versions")
            .fetch_one(&mut *conn)
            .await?
            + (total_readings - materialised);
        let implicit = match self.implicit.get() {
            Some(implicit) => implicit,
            None => self.count_implicit(&mut conn).await?,
        };
        let unsynced_versions =
            count("SELECT COUNT(*) FROM outbox WHERE dead_lettered_at_us IS NULL")
                .fetch_one(&mut *conn)
                .await?
                + implicit;
        let dead_letters =
            count("SELECT COUNT(*) FROM outbox WHERE dead_lettered_at_us IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?;
        let unreported_drops = count("SELECT COUNT(*) FROM unreported_drops")
            .fetch_one(&mut *conn)
            .await?;
        let stuck_versions =
            count("SELECT COUNT(*) FROM outbox WHERE stuck AND dead_lettered_at_us IS NULL")
                .fetch_one(&mut *conn)
                .await?;
        // Through the partial index of flagged versions: no scan.
        let clock_ahead_versions =
            count("SELECT COUNT(*) FROM reading_versions WHERE clock_ahead_ms IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?;
        // The first pending entry by key of either part was enqueued first,
        // found through its primary key without a scan. (Its enqueue time
        // comes from the wall clock, which may have stepped back since; the
        // age is indicative.)
        let oldest_row: Option<i64> = sqlx::query_scalar(
            "SELECT enqueued_at_us FROM outbox WHERE dead_lettered_at_us IS NULL \
             ORDER BY version_id LIMIT 1",
        )
        .fetch_optional(&mut *conn)
        .await?;
        let oldest_implicit: Option<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT v.version_id, v.created_at_us FROM reading_versions v \
             WHERE v.version_id > {OUTBOX_FLOOR} AND {IMPLICIT} ORDER BY v.version_id LIMIT 1"
        ))
        .fetch_optional(&mut *conn)
        .await?;
        let (floor, _) = self.outbox_bounds(&mut conn).await?;
        let oldest_first = self
            .first_waiting_first(&mut conn, floor, oldest_implicit.map(|(id, _)| id))
            .await?
            .map(|(_, received_at_us)| received_at_us);
        let oldest_implicit = oldest_implicit.map(|(_, created_at_us)| created_at_us);
        let oldest_unsynced_us = [oldest_row, oldest_implicit, oldest_first]
            .into_iter()
            .flatten()
            .min();
        let (database_bytes, _free_inside): (i64, i64) =
            sqlx::query_as(DB::USAGE_SQL).fetch_one(&mut *conn).await?;
        Ok(Stats {
            site_id: self.site_id.clone(),
            backend: DB::LABEL,
            total_readings,
            sensor_index_lag: next_seq - 1 - sensor_indexed_seq,
            total_versions,
            unsynced_versions,
            dead_letters,
            stuck_versions,
            // Every version gets an outbox entry, which leaves only when the
            // cloud acknowledges it (or the drop policy drops it); only
            // synced versions are pruned. Versions pulled from the cloud
            // are not this site's to count.
            synced_versions: total_versions - remote_versions - unsynced_versions - dead_letters
                + pruned_versions,
            remote_versions,
            pruned_versions,
            dropped_versions,
            unreported_drops,
            oldest_unsynced_us,
            database_bytes,
            last_seq: next_seq - 1,
            hlc: Hlc::unpack(hlc),
            clock_ahead_versions,
            max_clock_skew: self.bound(announced),
            max_clock_skew_announced: announced.is_some(),
        })
    }

    /// Stops the background tasks and closes both pools.
    pub async fn close(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.stop().await;
        }
        if let Some(indexer) = &self.sensor_indexer {
            indexer.stop().await;
        }
        self.pools.close().await;
    }
}

/// The seqs of the critical readings among `rows`.
fn first_critical_seqs(rows: &[NewRow<'_>]) -> Vec<i64> {
    rows.iter()
        .filter(|row| row.reading.priority == Priority::Critical)
        .map(|row| row.seq)
        .collect()
}

/// The columns a new reading of this site is inserted with, in the order
/// both backends' inserts bind them; the last, `first_implicit`, is always
/// TRUE, written as a literal (see [`super::first_versions`]).
pub(super) const NEW_READING_COLUMNS: &str = "seq, reading_id, origin_site_id, sensor_id, \
     temperature, humidity, measured_at_us, received_at_us, priority, clock_suspect, \
     content_digest, version_hlc, version_site_id, sync_state, version_written_by, first_implicit";

/// What a group's id lookup returns of a reading already held: its id, seq,
/// content digest, clock flag and current version (packed HLC, site).
pub type HeldRow = (String, i64, Vec<u8>, bool, i64, String);

/// The columns of [`HeldRow`], from `readings`.
pub(super) const HELD_COLUMNS: &str =
    "reading_id, seq, content_digest, clock_suspect, version_hlc, version_site_id";

/// The readings held under `ids`, looked up with `IN` lists in the fixed
/// statement shapes for lists (padded by repeating the last id, harmless in
/// `IN`).
#[edge_sql::sql_bounds]
pub(super) async fn held_readings_in_lists<DB: Backend>(
    conn: &mut DB::Connection,
    ids: &[&str],
) -> Result<Vec<HeldRow>, DbError>
where
    for<'r> HeldRow: FromRow<'r, DB::Row>,
{
    let mut held = Vec::new();
    for chunk in ids.chunks(LIST_ROWS[0]) {
        let shape = padded_shape_of(chunk.len(), &LIST_ROWS);
        let mut sql = format!("SELECT {HELD_COLUMNS} FROM readings WHERE reading_id IN ");
        push_placeholders::<DB>(&mut sql, 1, 1, shape, "");
        let mut query = sqlx::query_as::<DB, HeldRow>(&sql);
        for id in chunk.iter().chain(std::iter::repeat_n(
            &chunk[chunk.len() - 1],
            shape - chunk.len(),
        )) {
            query = query.bind(*id);
        }
        held.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(held)
}

/// Inserts new readings of this site (pending) with multi-row INSERTs in
/// the fixed statement shapes: how SQLite takes them fastest. False when a
/// row was skipped (its id or seq taken), the others inserted: the caller
/// rolls back.
#[edge_sql::sql_bounds]
pub(super) async fn insert_readings_multi_row<DB: Backend>(
    conn: &mut DB::Connection,
    site_id: &str,
    rows: &[NewRow<'_>],
) -> Result<bool, DbError> {
    let pending = SyncState::Pending as i64;
    let (insert, skipping) = DB::INSERT_SKIPPING;
    for chunk in shaped_chunks(rows) {
        // Skipping, not failing, on a conflict: a statement that cannot
        // abort needs no journal of its own on SQLite (see
        // `INSERT_SKIPPING`). Every row must land, so a row skipped (an id
        // stored meanwhile, which the writer rules out) fails the group.
        let mut sql = format!("{insert} INTO readings ({NEW_READING_COLUMNS}) VALUES ");
        push_placeholders::<DB>(&mut sql, 1, chunk.len(), 15, ", TRUE");
        sql.push_str(skipping);
        let mut insert = sqlx::query::<DB>(&sql);
        for row in chunk {
            let r = row.reading;
            insert = insert
                .bind(row.seq)
                .bind(r.id.as_str())
                .bind(site_id)
                .bind(r.sensor_id.as_str())
                .bind(r.temperature)
                .bind(r.humidity)
                .bind(r.measured_at_us)
                .bind(r.received_at_us)
                .bind(r.priority as i64)
                .bind(row.clock_suspect)
                .bind(row.digest.clone())
                .bind(row.hlc.pack()?)
                .bind(site_id)
                .bind(pending)
                .bind(r.written_by.as_str());
        }
        let inserted = DB::rows_affected(&insert.execute(&mut *conn).await?);
        if inserted != chunk.len() as u64 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether an append looked its ids up before inserting them.
#[derive(Debug, Clone, Copy)]
enum Ids {
    /// Not looked up: the group is rolled back if one was held.
    AssumedNew,
    /// Looked up: duplicates and conflicts are answered, only new ids
    /// inserted.
    LookedUp,
}
