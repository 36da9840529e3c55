//! The SQL of bounded storage: how much room the database takes, removing
//! synced versions (retention, and room for the budget), dropping unsynced
//! ones under the `drop-oldest-unsynced` policy, and giving space back.
//! The decisions are [`crate::storage`]'s; this module only does what it is
//! told, each call one short transaction, so the group-commit writer waits at
//! most one of them.

use sqlx::{Postgres, Sqlite};

use super::DbError;
use super::backend::{Backend, DATA_TABLES};
use super::faults::WriteOp;
use super::first_versions::{FIRST_VERSION_ID, first_waiting};
use super::outbox::{IMPLICIT, IdChunk, OUTBOX_FLOOR, id_chunks, in_outbox};
use super::sensor_index::unindex_readings;
use super::sql::SqlBuilder;
use super::store::Store;
use crate::outbox::id_runs;
use edge_sql::statement::{push_placeholders, shaped_chunks};

/// What the database occupies, measured, and the counts that go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes in use: SQLite pages in use (the file minus its free pages);
    /// PostgreSQL the size of the site's tables with their indexes.
    pub used_bytes: i64,
    /// SQLite: bytes of free pages inside the file, which new writes reuse
    /// before the file grows. PostgreSQL: 0 (its free space is not visible
    /// without extensions; see `crate::storage`).
    pub free_inside_bytes: i64,
    /// Versions ever written (the next version id minus one).
    pub versions_written: i64,
    /// Versions stored now.
    pub live_versions: i64,
}

/// Readings that retention or the budget may remove whose row says synced
/// (the current version acknowledged), with no version still in the
/// outbox; found through the partial index of synced rows. The others are
/// the readings whose implicit first version an acknowledged run holds
/// (their only version): [`Store::prune_candidates`] reads those run by run.
fn prunable() -> String {
    format!(
        "sync_state = 2 AND NOT EXISTS (SELECT 1 FROM reading_versions pv \
         WHERE pv.reading_seq = readings.seq AND {})",
        in_outbox("pv")
    )
}

/// A version dropped unsynced, as the cloud's coverage will be told.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DroppedRow {
    /// Its site-local version id.
    pub version_id: i64,
    /// Its reading's seq.
    pub seq: i64,
    /// Its reading id.
    pub reading_id: String,
    /// Packed HLC of the version.
    pub hlc: i64,
    /// Site that wrote the version.
    pub site_id: String,
    /// When it was dropped, µs.
    pub dropped_at_us: i64,
}

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB>
where
    for<'r> DroppedRow: sqlx::FromRow<'r, DB::Row>,
{
    /// Measures the database (one snapshot on the read pool).
    pub async fn usage(&self) -> Result<Usage, DbError> {
        let mut conn = self.pools.read().acquire().await?;
        let (used_bytes, free_inside_bytes): (i64, i64) =
            sqlx::query_as(DB::USAGE_SQL).fetch_one(&mut *conn).await?;
        let (next_version_id, pruned, dropped): (i64, i64, i64) = sqlx::query_as(
            "SELECT next_version_id, pruned_versions, dropped_versions FROM site_state \
             WHERE singleton = 1",
        )
        .fetch_one(&mut *conn)
        .await?;
        let versions_written = next_version_id - 1;
        Ok(Usage {
            used_bytes,
            free_inside_bytes,
            versions_written,
            live_versions: (versions_written - pruned - dropped).max(0),
        })
    }

    /// Removes up to `limit` of the oldest synced readings with all their
    /// versions, only those received before `received_before_us` when given
    /// (retention), in one transaction. Returns the versions removed.
    pub async fn prune_synced(
        &self,
        received_before_us: Option<i64>,
        limit: i64,
    ) -> Result<u64, DbError> {
        let mut tx = self.write_tx(WriteOp::Storage).await?;
        let seqs = self
            .prune_candidates(&mut tx, received_before_us, limit)
            .await?;
        if seqs.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let chunks = id_chunks(&seqs);
        let mut removed = 0;
        let mut remote = 0;
        let mut firsts = 0;
        let mut readings_removed = 0;
        for chunk in &chunks {
            // Versions pulled from the cloud are not on this site's books.
            let mut pulled = SqlBuilder::<DB>::default();
            pulled.push("SELECT COUNT(*) FROM reading_versions WHERE remote AND ");
            pulled.id_filter("reading_seq", chunk);
            let (pulled,): (i64,) = pulled.query_as()?.fetch_one(&mut *tx).await?;
            remote += pulled;

            let mut versions = SqlBuilder::<DB>::default();
            versions.push("DELETE FROM reading_versions WHERE ");
            versions.id_filter("reading_seq", chunk);
            removed += DB::rows_affected(&versions.query()?.execute(&mut *tx).await?);

            // Implicit first versions go with their readings.
            let mut implicit = SqlBuilder::<DB>::default();
            implicit.push("SELECT COUNT(*) FROM readings WHERE first_implicit AND ");
            implicit.id_filter("seq", chunk);
            let (implicit,): (i64,) = implicit.query_as()?.fetch_one(&mut *tx).await?;
            firsts += implicit;

            readings_removed += remove_readings::<DB>(&mut tx, chunk, "").await?;
        }
        removed += u64::try_from(firsts).unwrap_or(0);
        self.forget_first_runs(&mut tx).await?;

        let removed_i64 = i64::try_from(removed).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE site_state SET pruned_versions = pruned_versions + $1, \
             remote_versions = remote_versions - $2, readings_held = readings_held - $3 \
             WHERE singleton = 1",
        )
        .bind(removed_i64 - remote)
        .bind(remote)
        .bind(i64::try_from(readings_removed).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tx.statements_done().await?;
        tx.commit().await?;
        self.after_write();
        Ok(removed)
    }

    /// The seqs of the `limit` oldest prunable readings, in seq order: the
    /// oldest whose row says synced (through the partial index of them),
    /// merged with the oldest whose implicit first version an acknowledged
    /// run holds (read run by run, oldest run first, each a range of the
    /// primary key).
    ///
    /// With `received_before_us` (retention) only readings older than the
    /// first one, in seq order, received at or after it: seqs follow
    /// arrival, so that is where the young readings start
    /// ([`Store::young_from`]). A reading stamped old by a wall clock that
    /// stepped back waits until those before it age too.
    /// Without that bound a retention pass over a site whose readings are
    /// all young would read every synced reading, in the writer's
    /// transaction, every few seconds.
    async fn prune_candidates(
        &self,
        conn: &mut DB::Connection,
        received_before_us: Option<i64>,
        limit: i64,
    ) -> Result<Vec<i64>, DbError> {
        let young_from = match received_before_us {
            None => None,
            Some(before) => Some(self.young_from(conn, before).await?),
        };
        let received_before = |sql: &mut SqlBuilder<'_, DB>| {
            if let (Some(before), Some(young)) = (received_before_us, young_from) {
                sql.push(" AND received_at_us < ");
                sql.arg(before);
                sql.push(" AND seq < ");
                sql.arg(young);
            }
        };
        let mut synced = SqlBuilder::<DB>::default();
        synced.push("SELECT seq FROM readings WHERE ");
        synced.push(&prunable());
        received_before(&mut synced);
        synced.push(" ORDER BY seq LIMIT ");
        synced.arg(limit);
        let mut seqs: Vec<i64> = synced
            .query_as::<(i64,)>()?
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(seq,)| seq)
            .collect();
        let wanted = usize::try_from(limit).unwrap_or(0);
        let mut acknowledged: Vec<i64> = Vec::new();
        let mut after = i64::MIN;
        'runs: loop {
            let runs: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT seq_from, seq_to FROM acknowledged_first_runs WHERE seq_from > $1 \
                 ORDER BY seq_from LIMIT 16",
            )
            .bind(after)
            .fetch_all(&mut *conn)
            .await?;
            if runs.is_empty() {
                break;
            }
            for (from, to) in runs {
                after = from;
                let left = wanted.saturating_sub(acknowledged.len());
                // Enough found, or every reading of this run and the later
                // ones is newer than `limit` readings found already.
                let beyond = seqs.len() >= wanted && seqs.last().is_some_and(|last| *last < from);
                let too_young = young_from.is_some_and(|young| from >= young);
                if left == 0 || beyond || too_young {
                    break 'runs;
                }
                let mut held = SqlBuilder::<DB>::default();
                held.push("SELECT seq FROM readings WHERE seq BETWEEN ");
                held.arg(from);
                held.push(" AND ");
                held.arg(to);
                held.push(" AND first_implicit");
                received_before(&mut held);
                held.push(" ORDER BY seq LIMIT ");
                held.arg(i64::try_from(left).unwrap_or(i64::MAX));
                acknowledged.extend(
                    held.query_as::<(i64,)>()?
                        .fetch_all(&mut *conn)
                        .await?
                        .into_iter()
                        .map(|(seq,)| seq),
                );
            }
        }
        seqs.extend(acknowledged);
        seqs.sort_unstable();
        seqs.dedup();
        seqs.truncate(wanted);
        Ok(seqs)
    }

    /// A seq below which this site's readings were received before
    /// `before_us`, found by bisecting the primary key (a point lookup per
    /// step, about twenty for a million readings) on the order in which
    /// readings arrive; `i64::MAX` when every reading is that old.
    async fn young_from(&self, conn: &mut DB::Connection, before_us: i64) -> Result<i64, DbError> {
        // Two subqueries, not `SELECT MIN(seq), MAX(seq)`: SQLite finds a
        // lone MIN or MAX at one end of the index, but reads every row for
        // both at once (150 ms for a million readings, every pass).
        let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT MIN(seq) FROM readings WHERE seq > 0), \
             (SELECT MAX(seq) FROM readings WHERE seq > 0)",
        )
        .fetch_one(&mut *conn)
        .await?;
        let (Some(mut old_below), Some(last)) = (first, last) else {
            return Ok(i64::MAX);
        };
        // Readings below `old_below` are old; the first young one, if any,
        // lies below `young_below`.
        let mut young_below = last.saturating_add(1);
        while old_below < young_below {
            let mid = old_below + (young_below - old_below) / 2;
            let at: Option<(i64, i64)> = sqlx::query_as(
                "SELECT seq, received_at_us FROM readings WHERE seq >= $1 ORDER BY seq LIMIT 1",
            )
            .bind(mid)
            .fetch_optional(&mut *conn)
            .await?;
            match at {
                Some((seq, received_at_us)) if received_at_us < before_us => old_below = seq + 1,
                // Young, or no reading from `mid` on: none of `mid..seq`
                // exists, so `mid` bounds the old ones as well as `seq`.
                _ => young_below = mid,
            }
        }
        Ok(if old_below > last {
            i64::MAX
        } else {
            old_below
        })
    }

    /// Forgets the runs of first versions, and the acknowledged runs,
    /// whose readings are all gone (pruning goes oldest first), so the runs
    /// stay as few as the readings kept need. An id of a forgotten run maps
    /// to no reading, as it would anyway: none is left.
    async fn forget_first_runs(&self, conn: &mut DB::Connection) -> Result<(), DbError> {
        for table in ["first_version_runs", "acknowledged_first_runs"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE seq_to < COALESCE(\
                 (SELECT MIN(seq) FROM readings WHERE seq > 0), \
                 (SELECT next_seq FROM site_state WHERE singleton = 1))"
            ))
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Drops up to `limit` of the oldest versions still in the outbox
    /// (pending or dead-lettered), except those in the `exclude` runs (leased:
    /// possibly in flight), in one transaction. Each is recorded for the
    /// cloud's coverage; a reading left with no version goes too. Returns the
    /// dropped versions, oldest first.
    pub async fn drop_unsynced(
        &self,
        limit: i64,
        exclude: &[(i64, i64)],
    ) -> Result<Vec<DroppedRow>, DbError> {
        let now_us = self.clock.now_us();
        let mut tx = self.write_tx(WriteOp::Storage).await?;
        self.recount_implicit_if_stale(&mut tx).await?;
        // The oldest of either part of the outbox: each part's oldest,
        // merged.
        let mut dropped: Vec<DroppedRow> = Vec::new();
        let (floor, _) = self.outbox_bounds(&mut tx).await?;
        let firsts_from = self.first_seq_above(&mut tx, floor).await?;
        for from in [
            "FROM outbox o JOIN reading_versions v ON v.version_id = o.version_id \
             JOIN readings r ON r.seq = v.reading_seq WHERE 1 = 1"
                .to_owned(),
            format!(
                "FROM reading_versions v JOIN readings r ON r.seq = v.reading_seq \
                 WHERE v.version_id > {OUTBOX_FLOOR} AND {IMPLICIT}"
            ),
        ] {
            let mut pick = SqlBuilder::<DB>::default();
            pick.push("SELECT v.version_id, r.seq, r.reading_id, v.hlc, v.site_id, ");
            pick.arg(now_us);
            pick.push(" AS dropped_at_us ");
            pick.push(&from);
            for (first, last) in exclude {
                pick.push(" AND v.version_id NOT BETWEEN ");
                pick.arg(*first);
                pick.push(" AND ");
                pick.arg(*last);
            }
            pick.push(" ORDER BY v.version_id LIMIT ");
            pick.arg(limit);
            dropped.extend(pick.query_as::<DroppedRow>()?.fetch_all(&mut *tx).await?);
        }
        // Implicit first versions, in seq order, which is their id order.
        let mut pick = SqlBuilder::<DB>::default();
        pick.push(&format!(
            "SELECT {FIRST_VERSION_ID} AS version_id, r.seq, r.reading_id, \
             r.version_hlc AS hlc, r.version_site_id AS site_id, "
        ));
        pick.arg(now_us);
        pick.push(" AS dropped_at_us FROM readings r WHERE r.seq >= ");
        pick.arg(firsts_from);
        pick.push(&format!(" AND {}", first_waiting("r")));
        for (first, last) in exclude {
            let runs = self.first_runs(&mut tx, *first, *last).await?;
            if let Some((seq_from, seq_to)) = runs.seq_span(*first, *last) {
                pick.push(" AND r.seq NOT BETWEEN ");
                pick.arg(seq_from);
                pick.push(" AND ");
                pick.arg(seq_to);
            }
        }
        pick.push(" ORDER BY r.seq LIMIT ");
        pick.arg(limit);
        dropped.extend(pick.query_as::<DroppedRow>()?.fetch_all(&mut *tx).await?);
        dropped.sort_by_key(|d| d.version_id);
        dropped.truncate(usize::try_from(limit).unwrap_or(0));
        if dropped.is_empty() {
            tx.rollback().await?;
            return Ok(dropped);
        }

        // Only this site's own readings are on its books at the cloud; an
        // amendment of another site's reading (a negative key) is not.
        let reportable: Vec<&DroppedRow> = dropped.iter().filter(|d| d.seq > 0).collect();
        for chunk in shaped_chunks(&reportable) {
            let mut sql = String::from(
                "INSERT INTO unreported_drops (version_id, seq, reading_id, hlc, site_id, dropped_at_us) VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 6, "");
            let mut insert = sqlx::query::<DB>(&sql);
            for row in chunk {
                insert = insert
                    .bind(row.version_id)
                    .bind(row.seq)
                    .bind(row.reading_id.as_str())
                    .bind(row.hlc)
                    .bind(row.site_id.as_str())
                    .bind(row.dropped_at_us);
            }
            insert.execute(&mut *tx).await?;
        }
        let version_ids: Vec<i64> = dropped.iter().map(|d| d.version_id).collect();
        // The dropped versions without an outbox row waited implicitly.
        let mut had_rows = 0;
        for table in ["outbox", "reading_versions"] {
            for chunk in id_chunks(&version_ids) {
                let mut sql = SqlBuilder::<DB>::default();
                sql.push(&format!("DELETE FROM {table} WHERE "));
                sql.id_filter("version_id", &chunk);
                let deleted = DB::rows_affected(&sql.query()?.execute(&mut *tx).await?);
                if table == "outbox" {
                    had_rows += deleted;
                }
            }
        }
        let implicit_dropped = u64::try_from(dropped.len())
            .unwrap_or(u64::MAX)
            .saturating_sub(had_rows);
        // Readings left without any version: every reading has one until
        // it is pruned (with all of them) or dropped.
        let seqs: Vec<i64> = dropped.iter().map(|d| d.seq).collect();
        let orphan =
            " AND NOT EXISTS (SELECT 1 FROM reading_versions v WHERE v.reading_seq = readings.seq)";
        let mut readings_removed = 0;
        for (first, last) in id_runs(&seqs) {
            let chunk = IdChunk::Run(first, last);
            readings_removed += remove_readings::<DB>(&mut tx, &chunk, orphan).await?;
        }
        sqlx::query(
            "UPDATE site_state SET dropped_versions = dropped_versions + $1, \
             readings_held = readings_held - $2 WHERE singleton = 1",
        )
        .bind(i64::try_from(dropped.len()).unwrap_or(i64::MAX))
        .bind(i64::try_from(readings_removed).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        self.raise_outbox_floor(&mut tx).await?;
        tx.statements_done().await?;
        self.commit_changing_implicit(tx, -i64::try_from(implicit_dropped).unwrap_or(i64::MAX))
            .await?;
        self.after_write();
        Ok(dropped)
    }

    /// Up to `limit` dropped versions the cloud was not told about, oldest first.
    pub async fn unreported_drops(&self, limit: i64) -> Result<Vec<DroppedRow>, DbError> {
        let mut sql = SqlBuilder::<DB>::default();
        sql.push(
            "SELECT version_id, seq, reading_id, hlc, site_id, dropped_at_us FROM unreported_drops \
             ORDER BY version_id LIMIT ",
        );
        sql.arg(limit);
        Ok(sql
            .query_as()?
            .fetch_all(&mut *self.pools.read().acquire().await?)
            .await?)
    }

    /// Forgets drops the cloud's coverage now records. Returns how many.
    pub async fn forget_drops(&self, version_ids: &[i64]) -> Result<u64, DbError> {
        let mut tx = self.write_tx(WriteOp::Storage).await?;
        let mut forgotten = 0;
        for chunk in id_chunks(version_ids) {
            let mut sql = SqlBuilder::<DB>::default();
            sql.push("DELETE FROM unreported_drops WHERE ");
            sql.id_filter("version_id", &chunk);
            forgotten += DB::rows_affected(&sql.query()?.execute(&mut *tx).await?);
        }
        tx.statements_done().await?;
        tx.commit().await?;
        self.after_write();
        Ok(forgotten)
    }
}

/// SQLite pages handed back to the file system per statement: 4 MiB at the
/// default page size, a few milliseconds of the writer's time.
const VACUUM_STEP_PAGES: i64 = 1_024;

impl Store<Sqlite> {
    /// Gives free pages beyond `keep_bytes` back to the file system
    /// (incremental vacuum), a step at a time so the writer waits at most one
    /// step. Returns the bytes given back.
    pub async fn give_back_space(&self, keep_bytes: i64) -> Result<i64, DbError> {
        let (page_size,): (i64,) = sqlx::query_as("SELECT page_size FROM pragma_page_size()")
            .fetch_one(self.pools.read())
            .await?;
        let mut given = 0;
        loop {
            // A step at a time, each on the writer's connection taken anew,
            // so ingest waits at most one step.
            let mut conn = self.write_conn(WriteOp::Storage).await?;
            let (free_pages,): (i64,) =
                sqlx::query_as("SELECT freelist_count FROM pragma_freelist_count()")
                    .fetch_one(&mut *conn)
                    .await?;
            let excess = free_pages - keep_bytes / page_size.max(1);
            if excess <= 0 {
                conn.release();
                return Ok(given);
            }
            let step = excess.min(VACUUM_STEP_PAGES);
            sqlx::query(&format!("PRAGMA incremental_vacuum({step})"))
                .execute(&mut *conn)
                .await?;
            conn.release();
            given += step * page_size;
            tokio::task::yield_now().await;
        }
    }
}

impl Store<Postgres> {
    /// Makes the space of removed rows reusable (PostgreSQL does not shrink
    /// its files without `VACUUM FULL`, which locks the tables; a plain
    /// `VACUUM` lets new rows fill the holes, so the tables stop growing),
    /// and refreshes the planner's statistics after the large change
    /// pruning made. On a read connection: the writer's connection stays
    /// free for ingest.
    pub async fn give_back_space(&self, _keep_bytes: i64) -> Result<i64, DbError> {
        // The simple protocol: VACUUM refuses to run in the implicit
        // transaction of a prepared statement.
        sqlx::raw_sql(&format!("VACUUM (ANALYZE) {}", DATA_TABLES.join(", ")))
            .execute(self.pools.read())
            .await?;
        Ok(0)
    }
}

/// Deletes the readings `chunk` names (those that also meet `condition`,
/// SQL on `readings` starting ` AND`, or all of them when it is empty) with
/// their rows in the by-sensor index; returns how many readings went, for
/// `site_state.readings_held`.
#[edge_sql::sql_bounds]
async fn remove_readings<DB: Backend>(
    conn: &mut DB::Connection,
    chunk: &IdChunk,
    condition: &str,
) -> Result<u64, DbError> {
    unindex_readings::<DB>(conn, chunk, condition).await?;
    let mut readings = SqlBuilder::<DB>::default();
    readings.push("DELETE FROM readings WHERE ");
    readings.id_filter("seq", chunk);
    readings.push(condition);
    Ok(DB::rows_affected(
        &readings.query()?.execute(&mut *conn).await?,
    ))
}
