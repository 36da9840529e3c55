//! The version rows' SQL that pushes and amendments share: the cloud's
//! clock in `cloud_state`, loading the histories of the readings a write
//! touches, inserting versions, and recording each reading's current
//! version and every conflict resolved.
//!
//! Every writing transaction starts by locking the `cloud_state` row (the
//! push counter's update, or [`Store::lock_clock`]). On PostgreSQL that
//! serialises writers even across cloud processes sharing the database, and
//! is what makes version row ids follow commit order: the change feed's
//! cursor is a row id, and a reader must never see id n+1 committed while
//! id n is still to come.

use std::collections::BTreeMap;

use edge_cloud_link::contract::{Hlc as WireHlc, VersionRecord, VersionStamp};
use edge_sql::statement::push_placeholders;
use edge_versioning::{Conflict, Hlc, Stamp, Version};
use sqlx::Row;

use super::DbError;
use super::backend::Backend;
use super::sql::{parse_priority, parse_quality, priority_name, quality_name, shaped_chunks};
use super::store::{Store, log_fall_back};
use crate::resolve::{HeldVersion, NewCurrent};

/// The columns of a stored version as a [`VersionRecord`], for a query
/// that names the versions table `v`; read back by [`Store::record_at`].
pub(super) const RECORD_COLUMNS: &str = "v.reading_id, v.seq, v.origin_site_id, v.sensor_id, \
     v.temperature, v.humidity, v.measured_at_us, v.received_at_us, v.priority, v.clock_suspect, \
     v.hlc_physical_ms, v.hlc_logical, v.version_site_id, v.quality, v.note, \
     v.base_physical_ms, v.base_logical, v.base_site_id, v.written_by";

/// How many columns [`RECORD_COLUMNS`] names: a query's next column is at
/// this index.
pub(super) const RECORD_COLUMN_COUNT: usize = column_count(RECORD_COLUMNS);

/// The columns a comma-separated list names.
const fn column_count(columns: &str) -> usize {
    let bytes = columns.as_bytes();
    let (mut i, mut count) = (0, 1);
    while i < bytes.len() {
        if bytes[i] == b',' {
            count += 1;
        }
        i += 1;
    }
    count
}
const _: () = assert!(RECORD_COLUMN_COUNT == 19, "record_at reads 19 columns");

/// For a query over `versions v`: joins each reading's row of
/// `current_versions c`, if it has one, so that [`IS_CURRENT`] can keep the
/// current version of every reading.
pub(super) const CURRENT_JOIN: &str = "LEFT JOIN current_versions c ON c.reading_id = v.reading_id";

/// With [`CURRENT_JOIN`]: `v` is its reading's current version, because the
/// reading has a row naming it or has no row (a single version).
pub(super) const IS_CURRENT: &str = "(c.reading_id IS NULL OR (v.hlc_physical_ms = c.hlc_physical_ms \
     AND v.hlc_logical = c.hlc_logical AND v.version_site_id = c.version_site_id))";

/// Columns bound per inserted version row.
const VERSION_COLUMNS: usize = 22;
const _: () = assert!(VERSION_COLUMNS <= super::sql::MAX_ROW_COLUMNS);

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB> {
    /// Locks the `cloud_state` row (see the module docs) and reads the
    /// cloud's clock.
    pub(super) async fn lock_clock(conn: &mut DB::Connection) -> Result<Hlc, DbError> {
        let (packed,): (i64,) = sqlx::query_as::<DB, (i64,)>(
            "UPDATE cloud_state SET hlc = hlc WHERE singleton = 1 RETURNING hlc",
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(Hlc::unpack(packed))
    }

    /// Persists the cloud's clock, in the transaction of the versions that
    /// moved it, so it goes back across restarts only as far as the bound
    /// takes it.
    pub(super) async fn store_clock(conn: &mut DB::Connection, hlc: Hlc) -> Result<(), DbError> {
        let mut sql = String::from("UPDATE cloud_state SET hlc = ");
        DB::placeholder(&mut sql, 1);
        sql.push_str(" WHERE singleton = 1");
        sqlx::query::<DB>(&sql)
            .bind(hlc.pack()?)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// At start: a clock persisted further ahead of the wall clock than
    /// `--max-clock-skew` falls back to it, said once. Every write applies
    /// the same rule, so a wall clock stepped back while running recovers
    /// too; versions keep their stamps.
    pub(super) async fn recover_clock(&self) -> Result<(), DbError> {
        let mut tx = self.write_tx("clock").await?;
        let conn: &mut DB::Connection = &mut tx;
        let persisted = Self::lock_clock(&mut *conn).await?;
        let (_, now_ms) = self.versioning.now();
        let clock = self.versioning.clock(persisted, now_ms);
        if clock.fell_back_ms().is_none() {
            tx.rollback().await?;
            return Ok(());
        }
        Self::store_clock(&mut *conn, clock.hlc()).await?;
        tx.commit().await?;
        log_fall_back(&clock, persisted, self.versioning.max_clock_skew);
        Ok(())
    }

    /// Every held version of the readings `reading_ids` (distinct), one
    /// query per chunk of ids: a push of 10,000 new readings costs about
    /// twenty index probes' worth of statements, not 10,000.
    pub(super) async fn load_held(
        conn: &mut DB::Connection,
        reading_ids: &[&str],
    ) -> Result<Vec<HeldVersion>, DbError> {
        type Row = (
            String,
            i64,
            i64,
            String,
            Option<i64>,
            Option<i64>,
            Option<String>,
        );
        let mut held = Vec::new();
        for chunk in shaped_chunks(reading_ids) {
            let sql = DB::versions_of_readings(
                "v.reading_id, v.hlc_physical_ms, v.hlc_logical, v.version_site_id, \
                 v.base_physical_ms, v.base_logical, v.base_site_id",
                chunk.len(),
            );
            let mut query = sqlx::query_as::<DB, Row>(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *conn).await? {
                let (reading_id, physical, logical, site, bp, bl, bs) = row;
                held.push(HeldVersion {
                    reading_id,
                    version: Version {
                        stamp: Stamp::new(unpack_hlc(physical, logical), site),
                        base: base_stamp(bp, bl, bs),
                    },
                });
            }
        }
        Ok(held)
    }

    /// Inserts `records`, pushed by `pusher` (`cloud` for the cloud's own
    /// amendments) in push number `push`, each with how far beyond the
    /// clock-skew bound it was stamped (flagged) if it was; returns how many
    /// rows were new. Callers insert only versions resolution found new, so
    /// anything else means the table changed under the lock.
    pub(super) async fn insert_versions(
        conn: &mut DB::Connection,
        pusher: &str,
        push: i64,
        records: &[(&VersionRecord, Option<u64>)],
    ) -> Result<u64, DbError> {
        let mut inserted = 0;
        for chunk in shaped_chunks(records) {
            let (insert, skipping) = DB::INSERT_SKIPPING;
            let mut sql = format!(
                "{insert} INTO versions (site_id, origin_site_id, seq, reading_id, hlc_physical_ms, \
                 hlc_logical, version_site_id, sensor_id, temperature, humidity, measured_at_us, \
                 received_at_us, priority, clock_suspect, push, quality, note, base_physical_ms, \
                 base_logical, base_site_id, clock_ahead_ms, written_by) VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), VERSION_COLUMNS, "");
            // The caller checks that every row landed.
            sql.push_str(skipping);
            let mut insert = sqlx::query::<DB>(&sql);
            for (v, ahead_ms) in chunk {
                let (base_physical, base_logical, base_site) = match &v.base {
                    Some(base) => (
                        Some(base.hlc.physical_ms as i64), // checked to fit
                        Some(i64::from(base.hlc.logical)),
                        Some(base.site_id.as_str()),
                    ),
                    None => (None, None, None),
                };
                insert = insert
                    .bind(pusher)
                    .bind(v.origin_site_id.as_str())
                    .bind(v.seq as i64) // checked to fit
                    .bind(v.reading_id.as_str())
                    .bind(v.version.hlc.physical_ms as i64) // checked to fit
                    .bind(i64::from(v.version.hlc.logical))
                    .bind(v.version.site_id.as_str())
                    .bind(v.sensor_id.as_str())
                    .bind(v.temperature_celsius)
                    .bind(v.humidity_percent)
                    .bind(v.measured_at_us)
                    .bind(v.received_at_us)
                    .bind(priority_name(v.priority))
                    .bind(v.clock_suspect)
                    .bind(push)
                    .bind(quality_name(v.quality))
                    .bind(v.note.clone())
                    .bind(base_physical)
                    .bind(base_logical)
                    .bind(base_site)
                    .bind(ahead_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)))
                    // An empty writer is none: served back absent.
                    .bind(v.written_by.as_deref().filter(|w| !w.is_empty()));
            }
            inserted += DB::rows_affected(&insert.execute(&mut *conn).await?);
        }
        Ok(inserted)
    }

    /// Records the current version of each reading in `changed` (see
    /// [`crate::resolve::Readings::changed`] for which readings have a row).
    pub(super) async fn upsert_currents(
        conn: &mut DB::Connection,
        changed: &[NewCurrent<'_>],
    ) -> Result<(), DbError> {
        for chunk in shaped_chunks(changed) {
            let mut sql = String::from(
                "INSERT INTO current_versions (reading_id, hlc_physical_ms, hlc_logical, \
                 version_site_id) VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 4, "");
            sql.push_str(
                " ON CONFLICT (reading_id) DO UPDATE SET hlc_physical_ms = excluded.hlc_physical_ms, \
                 hlc_logical = excluded.hlc_logical, version_site_id = excluded.version_site_id",
            );
            let mut upsert = sqlx::query::<DB>(&sql);
            for current in chunk {
                upsert = upsert
                    .bind(current.reading_id)
                    .bind(current.stamp.hlc.physical_ms as i64) // checked to fit
                    .bind(i64::from(current.stamp.hlc.logical))
                    .bind(current.stamp.site_id.as_str());
            }
            upsert.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Adds `conflicts` (reading id, conflict) to the audit log.
    pub(super) async fn insert_conflicts(
        conn: &mut DB::Connection,
        conflicts: &[(&str, Conflict)],
        resolved_at_us: i64,
    ) -> Result<(), DbError> {
        for chunk in shaped_chunks(conflicts) {
            let mut sql = String::from(
                "INSERT INTO conflicts (reading_id, local_physical_ms, local_logical, local_site_id, \
                 remote_physical_ms, remote_logical, remote_site_id, winner, policy, resolved_at_us) \
                 VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 10, "");
            let mut insert = sqlx::query::<DB>(&sql);
            for (reading_id, c) in chunk {
                insert = insert
                    .bind(*reading_id)
                    .bind(c.local.hlc.physical_ms as i64)
                    .bind(i64::from(c.local.hlc.logical))
                    .bind(c.local.site_id.as_str())
                    .bind(c.remote.hlc.physical_ms as i64)
                    .bind(i64::from(c.remote.hlc.logical))
                    .bind(c.remote.site_id.as_str())
                    .bind(c.winner.as_str())
                    .bind(c.policy.as_str())
                    .bind(resolved_at_us);
            }
            insert.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Adds each site's newly stored versions to the count of versions it
    /// wrote (coverage's `versions`).
    pub(super) async fn count_written(
        conn: &mut DB::Connection,
        written: &BTreeMap<&str, i64>,
    ) -> Result<(), DbError> {
        let rows: Vec<(&str, i64)> = written.iter().map(|(s, n)| (*s, *n)).collect();
        for chunk in shaped_chunks(&rows) {
            let mut sql = String::from(
                "INSERT INTO site_books (site_id, versions_written, contiguous_upto) VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 2, ", 0");
            sql.push_str(
                " ON CONFLICT (site_id) DO UPDATE \
                 SET versions_written = site_books.versions_written + excluded.versions_written",
            );
            let mut upsert = sqlx::query::<DB>(&sql);
            for &(site, n) in chunk {
                upsert = upsert.bind(site).bind(n);
            }
            upsert.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Reads a [`VersionRecord`] from `row`, whose columns from `at` on are
    /// [`RECORD_COLUMNS`].
    pub(super) fn record_at(row: &DB::Row, at: usize) -> Result<VersionRecord, DbError> {
        let physical: i64 = row.try_get(at + 10)?;
        let logical: i64 = row.try_get(at + 11)?;
        let base = base_stamp(
            row.try_get(at + 15)?,
            row.try_get(at + 16)?,
            row.try_get(at + 17)?,
        );
        let priority: String = row.try_get(at + 8)?;
        let quality: String = row.try_get(at + 13)?;
        Ok(VersionRecord {
            reading_id: row.try_get(at)?,
            seq: row.try_get::<i64, _>(at + 1)? as u64,
            origin_site_id: row.try_get(at + 2)?,
            sensor_id: row.try_get(at + 3)?,
            temperature_celsius: row.try_get(at + 4)?,
            humidity_percent: row.try_get(at + 5)?,
            measured_at_us: row.try_get(at + 6)?,
            received_at_us: row.try_get(at + 7)?,
            priority: parse_priority(&priority),
            clock_suspect: row.try_get(at + 9)?,
            version: VersionStamp {
                hlc: wire_hlc(physical, logical),
                site_id: row.try_get(at + 12)?,
            },
            quality: parse_quality(&quality),
            note: row.try_get(at + 14)?,
            base: base.map(|b| crate::resolve::wire_stamp(&b)),
            written_by: row.try_get(at + 18)?,
        })
    }
}

/// A stored HLC (its parts were checked to fit before they were stored).
fn unpack_hlc(physical_ms: i64, logical: i64) -> Hlc {
    Hlc {
        physical_ms: physical_ms as u64,
        logical: u16::try_from(logical).unwrap_or(u16::MAX),
    }
}

/// A stored HLC as the contract shows it.
pub(super) fn wire_hlc(physical_ms: i64, logical: i64) -> WireHlc {
    WireHlc {
        physical_ms: physical_ms as u64,
        logical: logical as u32,
    }
}

/// A stored base: all three columns, or none.
fn base_stamp(physical: Option<i64>, logical: Option<i64>, site: Option<String>) -> Option<Stamp> {
    Some(Stamp::new(unpack_hlc(physical?, logical?), site?))
}
