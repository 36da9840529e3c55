//! The outbox's SQL: what is due, what the cloud's answer changes, dead
//! letters. Written once for both backends, like [`super::store`].
//!
//! The outbox has two parts (migration 0009 says why):
//! - the implicit outbox: every version above `site_state.outbox_floor`
//!   that is this site's own, not acknowledged, and has no `outbox` row.
//!   A reading's first version waits here at no cost beyond its own row;
//! - `outbox` rows, for what needs more than "due, never tried": critical
//!   readings' versions, amendments, and versions whose push failed or was
//!   rejected. A completion writes the row ([`Store::complete`]
//!   materialises implicit versions before recording their failure).
//!
//! The floor rises, in each completion's transaction, to just below the
//! first implicit version still waiting, so scans of the implicit outbox
//! start near its oldest version. Versions below the floor are acknowledged,
//! remote, gone, or held in an `outbox` row.
//!
//! Sets of version ids arrive mostly as one or two consecutive runs (a lease
//! draws from an end of the outbox), so statements take `BETWEEN` per run;
//! scattered ids fall back to padded `IN` lists in the fixed statement shapes.

use edge_sql::statement::{STATEMENT_ROWS, padded_shape};
use sqlx::FromRow;

use super::DbError;
use super::backend::Backend;
use super::faults::WriteOp;
use super::sql::SqlBuilder;
use super::store::Store;
use crate::model::SyncState;
use crate::outbox::{
    Completion, CompletionCounts, DeadLetterEntry, DueOrder, OutboxEntry, gaps, id_runs,
};
use edge_sql::WriteConn;

/// Columns of [`OutboxEntry`], from `outbox o`, `reading_versions v` and
/// `readings r`.
const ENTRY_COLUMNS: &str = "o.version_id, r.reading_id, COALESCE(r.origin_seq, r.seq) AS seq, \
     r.origin_site_id, r.sensor_id, \
     v.temperature, v.humidity, r.measured_at_us, r.received_at_us, r.priority, r.clock_suspect, \
     v.hlc, v.site_id AS version_site_id, o.attempts, o.enqueued_at_us, o.last_error, \
     v.quality, v.note, v.base_hlc, v.base_site_id, v.written_by";

/// The joins every entry query needs.
const ENTRY_FROM: &str = " FROM outbox o JOIN reading_versions v ON v.version_id = o.version_id \
     JOIN readings r ON r.seq = v.reading_seq";

/// Columns of [`OutboxEntry`] for a version of the implicit outbox: never
/// attempted, enqueued when it was written.
const IMPLICIT_COLUMNS: &str = "v.version_id, r.reading_id, COALESCE(r.origin_seq, r.seq) AS seq, \
     r.origin_site_id, r.sensor_id, \
     v.temperature, v.humidity, r.measured_at_us, r.received_at_us, r.priority, r.clock_suspect, \
     v.hlc, v.site_id AS version_site_id, CAST(0 AS BIGINT) AS attempts, \
     v.created_at_us AS enqueued_at_us, CAST(NULL AS TEXT) AS last_error, \
     v.quality, v.note, v.base_hlc, v.base_site_id, v.written_by";

/// The floor of the implicit outbox, as a scalar subquery.
pub(super) const OUTBOX_FLOOR: &str = "(SELECT outbox_floor FROM site_state WHERE singleton = 1)";

/// Version `v` (above the floor) waits in the implicit outbox: this site's
/// own, not acknowledged, no `outbox` row.
pub(super) const IMPLICIT: &str = "NOT v.remote AND v.synced_at_us IS NULL \
     AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.version_id = v.version_id)";

/// Version `{alias}` is in the outbox, either part (pending or
/// dead-lettered): a condition.
pub(super) fn in_outbox(alias: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM outbox po WHERE po.version_id = {alias}.version_id) \
         OR ({alias}.version_id > {OUTBOX_FLOOR} AND NOT {alias}.remote \
         AND {alias}.synced_at_us IS NULL))"
    )
}

/// Most statements one scan of the implicit outbox runs. More than this
/// (ids it may not skip scattered into many runs, or long stretches of
/// settled ids it has not learned yet) only shorten the batch: the next
/// scan goes on from what this one learned.
const MAX_SCAN_QUERIES: usize = 64;

/// Ids one statement of a scan covers at most, per version wanted (and at
/// least [`MIN_WINDOW`]). The window bounds a statement's work whatever plan
/// the database picks: PostgreSQL without statistics (after an immediate
/// shutdown reset them) believes the range nearly empty and reads all of it
/// to sort, rather than walking the primary key and stopping at the limit.
const WINDOW_PER_WANTED: i64 = 2;

/// The smallest window.
const MIN_WINDOW: i64 = 256;

/// What a scan of the implicit outbox found.
#[derive(Debug, Default)]
pub struct ImplicitDue {
    /// Due versions, in the order asked for.
    pub entries: Vec<OutboxEntry>,
    /// Runs of ids the scan read through and found nothing due in: they
    /// never will be again (an acknowledged version stays so; a version
    /// with an `outbox` row keeps it), so later scans may skip them.
    pub settled: Vec<(i64, i64)>,
    /// The floor at the time of the scan.
    pub floor: i64,
}

/// Furthest ahead a retry is scheduled (1 h, the longest `Retry-After` a
/// client honours). Later retry times are clamped to it, so an entry whose
/// retry time lies further ahead than this was scheduled by a wall clock that
/// has since stepped back, and is due.
pub const MAX_RETRY_AHEAD_US: i64 = 3_600_000_000;

/// Above this many runs a set of ids is bound as `IN` lists instead.
const MAX_RUN_STATEMENTS: usize = 16;

/// A slice of an id set that one statement covers.
pub(super) enum IdChunk {
    /// `first..=last`, all in the set.
    Run(i64, i64),
    /// Scattered ids, padded to a statement shape by repeating the last.
    List(Vec<i64>),
}

pub(super) fn id_chunks(ids: &[i64]) -> Vec<IdChunk> {
    let runs = id_runs(ids);
    if runs.len() <= MAX_RUN_STATEMENTS {
        return runs.into_iter().map(|(a, b)| IdChunk::Run(a, b)).collect();
    }
    let mut sorted: Vec<i64> = runs.iter().flat_map(|&(a, b)| a..=b).collect();
    sorted.dedup();
    sorted
        .chunks(STATEMENT_ROWS[0])
        .map(|chunk| {
            let shape = padded_shape(chunk.len());
            let mut padded = chunk.to_vec();
            let last = chunk[chunk.len() - 1];
            padded.resize(shape, last);
            IdChunk::List(padded)
        })
        .collect()
}

impl<DB: Backend> SqlBuilder<'_, DB> {
    /// `column BETWEEN ? AND ?` or `column IN (…)` for one chunk.
    pub(super) fn id_filter(&mut self, column: &str, chunk: &IdChunk) {
        match chunk {
            IdChunk::Run(first, last) => {
                self.push(&format!("{column} BETWEEN "));
                self.arg(*first);
                self.push(" AND ");
                self.arg(*last);
            }
            IdChunk::List(ids) => {
                self.push(&format!("{column} IN ("));
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        self.push(", ");
                    }
                    self.arg(*id);
                }
                self.push(")");
            }
        }
    }
}

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB> {
    /// Counts the versions waiting in the implicit outbox (a scan of every
    /// version above the floor, and of the readings above it).
    pub(super) async fn count_implicit(&self, conn: &mut DB::Connection) -> Result<i64, DbError> {
        let with_rows: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM reading_versions v WHERE v.version_id > {OUTBOX_FLOOR} AND {IMPLICIT}"
        ))
        .fetch_one(&mut *conn)
        .await?;
        let (floor, _) = self.outbox_bounds(conn).await?;
        Ok(with_rows + self.count_waiting_firsts(conn, floor).await?)
    }

    /// Counts the implicit outbox again, inside the writer's transaction,
    /// if a failed commit left the count unknown.
    pub(super) async fn recount_implicit_if_stale(
        &self,
        conn: &mut DB::Connection,
    ) -> Result<(), DbError> {
        if self.implicit.get().is_none() {
            let counted = self.count_implicit(conn).await?;
            self.implicit.set(counted);
        }
        Ok(())
    }

    /// Commits a write that changed the implicit outbox by `delta`
    /// versions. A commit that failed, or whose caller went away while it
    /// ran (a cancelled gRPC call drops this future), may have happened or
    /// not: the count is then unknown until the next write counts again.
    pub(super) async fn commit_changing_implicit(
        &self,
        tx: WriteConn<DB>,
        delta: i64,
    ) -> Result<(), DbError> {
        let unknown = self.implicit.unknown_unless_settled();
        tx.commit().await?;
        unknown.settle(delta);
        Ok(())
    }

    /// The outbox floor and the next version id: the implicit outbox is
    /// what waits between them.
    pub(super) async fn outbox_bounds(
        &self,
        conn: &mut DB::Connection,
    ) -> Result<(i64, i64), DbError> {
        Ok(sqlx::query_as(
            "SELECT outbox_floor, next_version_id FROM site_state WHERE singleton = 1",
        )
        .fetch_one(&mut *conn)
        .await?)
    }

    /// Raises the floor of the implicit outbox to just below its first
    /// version still waiting (or to the newest version when none waits).
    /// Reads only what lies between the old floor and that version, each
    /// version once over the floor's life.
    pub(super) async fn raise_outbox_floor(
        &self,
        conn: &mut DB::Connection,
    ) -> Result<(), DbError> {
        let (floor, next_version_id): (i64, i64) = self.outbox_bounds(conn).await?;
        let first_waiting: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT v.version_id FROM reading_versions v WHERE v.version_id > $1 AND {IMPLICIT} \
             ORDER BY v.version_id LIMIT 1"
        ))
        .bind(floor)
        .fetch_optional(&mut *conn)
        .await?;
        // Implicit first versions: only below the version found waiting.
        let first_waiting = self
            .first_waiting_first(conn, floor, first_waiting)
            .await?
            .map(|(id, _)| id)
            .or(first_waiting);
        let raised = first_waiting.map_or(next_version_id - 1, |id| id - 1);
        if raised > floor {
            sqlx::query("UPDATE site_state SET outbox_floor = $1 WHERE singleton = 1")
                .bind(raised)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB>
where
    for<'r> OutboxEntry: FromRow<'r, DB::Row>,
    for<'r> DeadLetterEntry: FromRow<'r, DB::Row>,
{
    /// Up to `limit` entries due at `now_us` (not dead-lettered, retry time
    /// reached), from the end of the outbox `order` names, leaving out the
    /// version ids in the `exclude` runs (leased or already picked). The
    /// runs are filtered in SQL, so no row is read only to be dropped.
    pub async fn due(
        &self,
        order: DueOrder,
        now_us: i64,
        limit: i64,
        exclude: &[(i64, i64)],
    ) -> Result<Vec<OutboxEntry>, DbError> {
        let mut sql = SqlBuilder::<DB>::default();
        // A retry time further ahead than any retry is ever set can only
        // come from a wall clock that has since stepped back: due now.
        sql.push(&format!(
            "SELECT {ENTRY_COLUMNS}{ENTRY_FROM} WHERE o.dead_lettered_at_us IS NULL \
             AND (o.next_attempt_at_us <= "
        ));
        sql.arg(now_us);
        sql.push(" OR o.next_attempt_at_us > ");
        sql.arg(now_us.saturating_add(MAX_RETRY_AHEAD_US));
        sql.push(")");
        for (first, last) in exclude {
            sql.push(" AND o.version_id NOT BETWEEN ");
            sql.arg(*first);
            sql.push(" AND ");
            sql.arg(*last);
        }
        match order {
            // Written to match the partial index `outbox_critical`.
            DueOrder::Critical => sql.push(" AND o.priority = 2 ORDER BY o.version_id"),
            DueOrder::Oldest => sql.push(" ORDER BY o.version_id"),
            DueOrder::Newest => sql.push(" ORDER BY o.version_id DESC"),
        }
        sql.push(" LIMIT ");
        sql.arg(limit);
        Ok(sql
            .query_as::<OutboxEntry>()?
            .fetch_all(&mut *self.pools.read().acquire().await?)
            .await?)
    }

    /// Up to `limit` versions of the implicit outbox, from the end `order`
    /// names (`Oldest` or `Newest`), leaving out the ids in the `skip` runs
    /// (sorted and merged: leased, already picked, or known settled). Reads
    /// only the runs between them, each through the primary key.
    pub async fn due_implicit(
        &self,
        order: DueOrder,
        limit: usize,
        skip: &[(i64, i64)],
    ) -> Result<ImplicitDue, DbError> {
        // One snapshot for the whole scan: a version that moves from the
        // readings' rows to a row of its own (an amendment committing
        // between two statements) is then seen in exactly one part.
        let mut conn = self.pools.read().begin().await?;
        if let Some(snapshot) = DB::SNAPSHOT {
            sqlx::query(snapshot).execute(&mut *conn).await?;
        }
        // Every id up to the newest one read here was committed before the
        // scans below start, so what they find missing there stays missing.
        let (floor, next_version_id): (i64, i64) = self.outbox_bounds(&mut conn).await?;
        let mut found = ImplicitDue {
            floor,
            ..ImplicitDue::default()
        };
        let mut runs = gaps(floor + 1, next_version_id - 1, skip);
        let newest = order == DueOrder::Newest;
        if newest {
            runs.reverse();
        }
        let mut statements = 0;
        'runs: for (run_first, run_last) in runs {
            let mut window_first = run_first;
            let mut window_last = run_last;
            loop {
                let want = limit.saturating_sub(found.entries.len());
                if want == 0 || statements == MAX_SCAN_QUERIES {
                    break 'runs;
                }
                statements += 1;
                let window = i64::try_from(want)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(WINDOW_PER_WANTED)
                    .max(MIN_WINDOW);
                let (first, last) = if newest {
                    (
                        window_first.max(window_last.saturating_sub(window - 1)),
                        window_last,
                    )
                } else {
                    (
                        window_first,
                        window_last.min(window_first.saturating_add(window - 1)),
                    )
                };
                let mut sql = SqlBuilder::<DB>::default();
                sql.push(&format!(
                    "SELECT {IMPLICIT_COLUMNS} FROM reading_versions v \
                     JOIN readings r ON r.seq = v.reading_seq WHERE v.version_id BETWEEN "
                ));
                sql.arg(first);
                sql.push(" AND ");
                sql.arg(last);
                sql.push(&format!(" AND {IMPLICIT} ORDER BY v.version_id"));
                if newest {
                    sql.push(" DESC");
                }
                sql.push(" LIMIT ");
                sql.arg(i64::try_from(want).unwrap_or(i64::MAX));
                let mut rows = sql.query_as::<OutboxEntry>()?.fetch_all(&mut *conn).await?;
                // The implicit first versions in the window: the first
                // `want` of both parts are the window's first `want`.
                rows.extend(
                    self.due_firsts(&mut conn, first, last, want, newest)
                        .await?,
                );
                rows.sort_by_key(|row| row.version_id);
                if newest {
                    rows.reverse();
                }
                rows.truncate(want);
                // What the statement read through (all of the window when
                // it ran out) holds nothing due but the rows it returned.
                let read = match rows.last() {
                    Some(row) if rows.len() == want && newest => (row.version_id, last),
                    Some(row) if rows.len() == want => (first, row.version_id),
                    _ => (first, last),
                };
                let returned: Vec<i64> = rows.iter().map(|row| row.version_id).collect();
                found
                    .settled
                    .extend(gaps(read.0, read.1, &id_runs(&returned)));
                found.entries.extend(rows);
                // The rest of the run, past this window.
                if newest {
                    if first <= window_first {
                        break;
                    }
                    window_last = first - 1;
                } else {
                    if last >= window_last {
                        break;
                    }
                    window_first = last + 1;
                }
            }
        }
        conn.commit().await?;
        Ok(found)
    }

    /// Applies the cloud's answer for a batch in one transaction.
    pub async fn complete(&self, completion: &Completion) -> Result<CompletionCounts, DbError> {
        let now_us = self.clock.now_us();
        let mut counts = CompletionCounts::default();
        let mut tx = self.write_tx(WriteOp::Complete).await?;
        self.recount_implicit_if_stale(&mut tx).await?;
        // Versions that leave the implicit outbox: acknowledged, or given
        // an outbox row.
        let mut left_implicit = 0u64;

        // Implicit first versions: the readings the ids map to. An id
        // maps to one reading only, so nothing else is marked.
        let runs = self.first_runs_of(&mut tx, &completion.synced).await?;
        let seqs = runs.seqs_of(&completion.synced);
        let acknowledged = self.acknowledge_firsts(&mut tx, &seqs).await?;
        let synced = acknowledged.len() as u64;
        counts.synced += synced;
        left_implicit += synced;
        // The rest have rows to mark: the versions just acknowledged had
        // none (usually the whole batch).
        let mut implicit: Vec<i64> = acknowledged
            .iter()
            .filter_map(|seq| runs.version_of(*seq))
            .collect();
        implicit.sort_unstable();
        let with_rows: Vec<i64> = completion
            .synced
            .iter()
            .copied()
            .filter(|id| implicit.binary_search(id).is_err())
            .collect();

        for chunk in id_chunks(&with_rows) {
            // The reading shows synced only if this is its current version.
            self.set_reading_state(&mut tx, &chunk, SyncState::Synced)
                .await?;

            // Every version in the outbox, either part, is unacknowledged:
            // what this marks is what leaves it.
            let mut versions = SqlBuilder::<DB>::default();
            versions.push("UPDATE reading_versions SET synced_at_us = ");
            versions.arg(now_us);
            versions.push(" WHERE ");
            versions.id_filter("version_id", &chunk);
            versions.push(" AND synced_at_us IS NULL AND NOT remote");
            let synced = DB::rows_affected(&versions.query()?.execute(&mut *tx).await?);
            counts.synced += synced;

            // A version with an outbox row is never acknowledged while it
            // has it: those synced without a row waited implicitly.
            let mut outbox = SqlBuilder::<DB>::default();
            outbox.push("DELETE FROM outbox WHERE ");
            outbox.id_filter("version_id", &chunk);
            let had_rows = DB::rows_affected(&outbox.query()?.execute(&mut *tx).await?);
            left_implicit += synced.saturating_sub(had_rows);
        }

        let rejected: Vec<i64> = completion.rejected.iter().map(|(id, _)| *id).collect();
        self.materialise_firsts_of(&mut tx, &rejected, now_us)
            .await?;
        for (version_id, reason) in &completion.rejected {
            let chunk = IdChunk::Run(*version_id, *version_id);
            left_implicit += self.materialise(&mut tx, &chunk).await?;
            let mut outbox = SqlBuilder::<DB>::default();
            outbox.push("UPDATE outbox SET dead_lettered_at_us = ");
            outbox.arg(now_us);
            outbox.push(", last_error = ");
            outbox.arg(reason.as_str());
            outbox.push(", attempts = attempts + 1, dead_letter_reported = FALSE WHERE ");
            outbox.id_filter("version_id", &chunk);
            outbox.push(" AND dead_lettered_at_us IS NULL");
            let changed = DB::rows_affected(&outbox.query()?.execute(&mut *tx).await?);
            counts.dead_lettered += changed;
            if changed > 0 {
                self.set_reading_state(&mut tx, &chunk, SyncState::DeadLettered)
                    .await?;
            }
        }

        let stuck_after = completion.stuck_after_attempts.max(1);
        for group in &completion.failed {
            let retry_at_us = group
                .retry_at_us
                .min(now_us.saturating_add(MAX_RETRY_AHEAD_US));
            self.materialise_firsts_of(&mut tx, &group.version_ids, now_us)
                .await?;
            for chunk in id_chunks(&group.version_ids) {
                left_implicit += self.materialise(&mut tx, &chunk).await?;
            }
            if !group.attempted {
                // Never sent: only postponed.
                for chunk in id_chunks(&group.version_ids) {
                    let mut later = SqlBuilder::<DB>::default();
                    later.push("UPDATE outbox SET next_attempt_at_us = ");
                    later.arg(retry_at_us);
                    later.push(" WHERE ");
                    later.id_filter("version_id", &chunk);
                    later.push(" AND dead_lettered_at_us IS NULL");
                    later.query()?.execute(&mut *tx).await?;
                }
                continue;
            }
            for chunk in id_chunks(&group.version_ids) {
                let mut stuck = SqlBuilder::<DB>::default();
                stuck.push("SELECT COUNT(*) FROM outbox WHERE ");
                stuck.id_filter("version_id", &chunk);
                stuck.push(" AND dead_lettered_at_us IS NULL AND NOT stuck AND attempts + 1 >= ");
                stuck.arg(stuck_after);
                let (newly_stuck,): (i64,) = stuck.query_as()?.fetch_one(&mut *tx).await?;
                counts.newly_stuck += u64::try_from(newly_stuck).unwrap_or(0);

                let mut failed = SqlBuilder::<DB>::default();
                failed.push("UPDATE outbox SET attempts = attempts + 1, last_error = ");
                failed.arg(group.error.as_str());
                failed.push(", next_attempt_at_us = ");
                failed.arg(retry_at_us);
                failed.push(", stuck = (stuck OR attempts + 1 >= ");
                failed.arg(stuck_after);
                failed.push(") WHERE ");
                failed.id_filter("version_id", &chunk);
                failed.push(" AND dead_lettered_at_us IS NULL");
                counts.failed += DB::rows_affected(&failed.query()?.execute(&mut *tx).await?);
            }
        }

        self.raise_outbox_floor(&mut tx).await?;
        tx.statements_done().await?;
        self.commit_changing_implicit(tx, -i64::try_from(left_implicit).unwrap_or(i64::MAX))
            .await?;
        self.after_write();
        Ok(counts)
    }

    /// The seqs of the readings whose implicit first versions are among
    /// `ids` (acknowledged or not).
    async fn seqs_of_firsts(
        &self,
        conn: &mut DB::Connection,
        ids: &[i64],
    ) -> Result<Vec<i64>, DbError> {
        Ok(self.first_runs_of(conn, ids).await?.seqs_of(ids))
    }

    /// Gives those of `ids` that are implicit first versions still waiting
    /// their rows (a late failure of one acknowledged meanwhile changes
    /// nothing).
    async fn materialise_firsts_of(
        &self,
        conn: &mut DB::Connection,
        ids: &[i64],
        now_us: i64,
    ) -> Result<(), DbError> {
        for chunk in id_chunks(&self.seqs_of_firsts(conn, ids).await?) {
            self.materialise_firsts(conn, &chunk, now_us, true).await?;
        }
        Ok(())
    }

    /// Gives the versions in `chunk` that wait in the implicit outbox an
    /// `outbox` row, so their failure or rejection can be recorded on it.
    /// Returns how many.
    async fn materialise(
        &self,
        conn: &mut DB::Connection,
        chunk: &IdChunk,
    ) -> Result<u64, DbError> {
        let mut sql = SqlBuilder::<DB>::default();
        sql.push(
            "INSERT INTO outbox (version_id, priority, enqueued_at_us, next_attempt_at_us) \
             SELECT v.version_id, r.priority, v.created_at_us, 0 FROM reading_versions v \
             JOIN readings r ON r.seq = v.reading_seq WHERE ",
        );
        sql.id_filter("v.version_id", chunk);
        sql.push(&format!(
            " AND v.version_id > {OUTBOX_FLOOR} AND {IMPLICIT}"
        ));
        Ok(DB::rows_affected(&sql.query()?.execute(&mut *conn).await?))
    }

    /// Sets the sync state of the readings whose current version is in `chunk`.
    async fn set_reading_state(
        &self,
        conn: &mut DB::Connection,
        chunk: &IdChunk,
        state: SyncState,
    ) -> Result<(), DbError> {
        let mut sql = SqlBuilder::<DB>::default();
        sql.push("UPDATE readings SET sync_state = ");
        sql.arg(state as i64);
        sql.push(" FROM reading_versions v WHERE ");
        sql.id_filter("v.version_id", chunk);
        sql.push(
            " AND readings.seq = v.reading_seq AND readings.version_hlc = v.hlc \
             AND readings.version_site_id = v.site_id",
        );
        sql.query()?.execute(&mut *conn).await?;
        Ok(())
    }

    /// Dead letters with a version id above `after`, oldest first.
    pub async fn dead_letters(
        &self,
        after: i64,
        limit: i64,
        unreported_only: bool,
    ) -> Result<Vec<DeadLetterEntry>, DbError> {
        let mut sql = SqlBuilder::<DB>::default();
        sql.push(&format!(
            "SELECT {ENTRY_COLUMNS}, o.dead_lettered_at_us, o.dead_letter_reported{ENTRY_FROM} \
             WHERE o.dead_lettered_at_us IS NOT NULL AND o.version_id > "
        ));
        sql.arg(after);
        if unreported_only {
            sql.push(" AND NOT o.dead_letter_reported");
        }
        sql.push(" ORDER BY o.version_id LIMIT ");
        sql.arg(limit);
        Ok(sql
            .query_as::<DeadLetterEntry>()?
            .fetch_all(&mut *self.pools.read().acquire().await?)
            .await?)
    }

    /// Puts dead letters back in the outbox, due now: the given ones, or all
    /// of them when `ids` is `None`. Returns how many were re-driven.
    pub async fn redrive(&self, ids: Option<&[i64]>) -> Result<u64, DbError> {
        let now_us = self.clock.now_us();
        let mut tx = self.write_tx(WriteOp::DeadLetters).await?;
        let chunks = match ids {
            Some(ids) => id_chunks(ids),
            None => vec![IdChunk::Run(0, i64::MAX)],
        };
        let mut redriven = 0;
        for chunk in chunks {
            // Readings first, while the dead-letter flag still says which.
            let mut readings = SqlBuilder::<DB>::default();
            readings.push("UPDATE readings SET sync_state = ");
            readings.arg(SyncState::Pending as i64);
            readings.push(
                " FROM reading_versions v JOIN outbox o ON o.version_id = v.version_id WHERE ",
            );
            readings.id_filter("o.version_id", &chunk);
            readings.push(
                " AND o.dead_lettered_at_us IS NOT NULL AND readings.seq = v.reading_seq \
                 AND readings.version_hlc = v.hlc AND readings.version_site_id = v.site_id",
            );
            readings.query()?.execute(&mut *tx).await?;

            let mut outbox = SqlBuilder::<DB>::default();
            outbox.push(
                "UPDATE outbox SET dead_lettered_at_us = NULL, dead_letter_reported = FALSE, \
                 attempts = 0, stuck = FALSE, next_attempt_at_us = ",
            );
            outbox.arg(now_us);
            outbox.push(" WHERE ");
            outbox.id_filter("version_id", &chunk);
            outbox.push(" AND dead_lettered_at_us IS NOT NULL");
            redriven += DB::rows_affected(&outbox.query()?.execute(&mut *tx).await?);
        }
        tx.statements_done().await?;
        tx.commit().await?;
        self.after_write();
        Ok(redriven)
    }

    /// Records that the cloud was told about these dead letters.
    pub async fn mark_reported(&self, ids: &[i64]) -> Result<u64, DbError> {
        let mut tx = self.write_tx(WriteOp::DeadLetters).await?;
        let mut marked = 0;
        for chunk in id_chunks(ids) {
            let mut sql = SqlBuilder::<DB>::default();
            sql.push("UPDATE outbox SET dead_letter_reported = TRUE WHERE ");
            sql.id_filter("version_id", &chunk);
            sql.push(" AND dead_lettered_at_us IS NOT NULL");
            marked += DB::rows_affected(&sql.query()?.execute(&mut *tx).await?);
        }
        tx.statements_done().await?;
        tx.commit().await?;
        self.after_write();
        Ok(marked)
    }
}

#[cfg(test)]
mod tests {
    use super::{IdChunk, MAX_RUN_STATEMENTS, id_chunks};

    #[test]
    fn few_runs_become_ranges_and_many_become_padded_lists() {
        let chunks = id_chunks(&[3, 1, 2, 10]);
        assert!(matches!(
            chunks[..],
            [IdChunk::Run(1, 3), IdChunk::Run(10, 10)]
        ));

        let scattered: Vec<i64> = (0..=MAX_RUN_STATEMENTS as i64).map(|i| i * 2).collect();
        let chunks = id_chunks(&scattered);
        let listed: Vec<i64> = chunks
            .iter()
            .flat_map(|c| match c {
                IdChunk::List(ids) => ids.clone(),
                IdChunk::Run(..) => Vec::new(),
            })
            .collect();
        let mut distinct = listed.clone();
        distinct.dedup();
        assert_eq!(distinct, scattered);
        assert!(listed.len().is_power_of_two());
    }
}
