//! The store's SQL, written once for both backends.
//!
//! Writes come only from the group-commit writer ([`crate::writer`]) through
//! [`Store::append`], on a pool of one connection; queries and stats use a
//! separate read pool, so reads never wait behind a commit's fsync.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use std::fmt::Write as _;

use sqlx::{ColumnIndex, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::backend::Backend;
use super::{DbConfig, DbError};
use crate::hlc::{Hlc, WallClock};
use crate::model::{
    AppendOutcome, Cursor, NewReading, Outcome, ReadingQuery, Stats, StoredReading, SyncState,
    VersionStamp,
};

/// Columns a query returns, in [`StoredReading`]'s order.
const READING_COLUMNS: &str = "seq, reading_id, origin_site_id, sensor_id, temperature, humidity, \
     measured_at_us, received_at_us, priority, clock_suspect, version_hlc, version_site_id, sync_state";

/// The row counts multi-row statements come in, largest first. Statements,
/// not rows, are the cost in sqlx's SQLite driver, so rows are batched; and a
/// few fixed shapes (rather than one per group size) let both drivers reuse
/// their prepared statements. Every shape stays under both backends' bind
/// limits (512 rows × 14 columns).
const STATEMENT_ROWS: [usize; 5] = [512, 128, 32, 8, 1];

// The widest statement (readings, 14 columns) stays within SQLite's bind limit
// (32,766; PostgreSQL allows 65,535).
const _: () = assert!(STATEMENT_ROWS[0] * 14 <= 32_766);

/// Splits `rows` into consecutive chunks whose lengths are in
/// [`STATEMENT_ROWS`].
fn shaped_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = STATEMENT_ROWS
            .into_iter()
            .find(|size| *size <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

/// The database of one backend.
pub struct Store<DB: sqlx::Database> {
    write: Pool<DB>,
    read: Pool<DB>,
    site_id: String,
    clock: Arc<dyn WallClock>,
    suspect_ahead_us: i64,
    suspect_behind_us: i64,
}

/// What the database already holds under a reading id.
struct Existing {
    seq: i64,
    digest: Vec<u8>,
    clock_suspect: bool,
    version: VersionStamp,
}

/// A reading the current group stores, with what the commit assigns it.
struct NewRow<'a> {
    reading: &'a NewReading,
    seq: i64,
    version_id: i64,
    hlc: Hlc,
    digest: Vec<u8>,
    clock_suspect: bool,
}

impl<DB> Store<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'r> StoredReading: FromRow<'r, DB::Row>,
{
    /// Settles the site id and builds the store. A database keeps one site's
    /// sequence numbers for its whole life, so a configured id that differs
    /// from the stored one is refused rather than silently adopted.
    pub(super) async fn init(
        write: Pool<DB>,
        read: Pool<DB>,
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
        let as_us = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Ok(Store {
            write,
            read,
            site_id,
            clock,
            suspect_ahead_us: as_us(config.suspect_ahead),
            suspect_behind_us: as_us(config.suspect_behind),
        })
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
    pub async fn append(&self, readings: &[&NewReading]) -> Result<Vec<AppendOutcome>, DbError> {
        let now_us = self.clock.now_us();
        let now_ms = u64::try_from(now_us / 1_000).unwrap_or(0);
        let mut tx = self.write.begin().await?;

        let state_sql = format!(
            "SELECT next_seq, next_version_id, hlc FROM site_state WHERE singleton = 1{}",
            DB::LOCK_STATE
        );
        let (mut next_seq, mut next_version_id, hlc): (i64, i64, i64) =
            sqlx::query_as(&state_sql).fetch_one(&mut *tx).await?;
        let mut hlc = Hlc::unpack(hlc);
        // The site's best idea of now: its wall clock, or its HLC if the wall
        // clock is behind what the site has already seen.
        let site_now_us = now_us.max(i64::try_from(hlc.physical_ms).unwrap_or(0) * 1_000);

        let mut known = self.existing(&mut tx, readings).await?;
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
            hlc = hlc.tick(now_ms);
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

        if !rows.is_empty() {
            self.insert_rows(&mut tx, &rows, now_us).await?;
            sqlx::query(
                "UPDATE site_state SET next_seq = $1, next_version_id = $2, hlc = $3 WHERE singleton = 1",
            )
            .bind(next_seq)
            .bind(next_version_id)
            .bind(hlc.pack())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
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
        for chunk in ids.chunks(STATEMENT_ROWS[0]) {
            // Padded to a fixed shape by repeating the last id (harmless in IN).
            let shape = STATEMENT_ROWS
                .into_iter()
                .rev()
                .find(|size| *size >= chunk.len())
                .unwrap_or(chunk.len());
            let mut sql = String::from(
                "SELECT reading_id, seq, content_digest, clock_suspect, version_hlc, version_site_id \
                 FROM readings WHERE reading_id IN ",
            );
            push_placeholders::<DB>(&mut sql, 1, 1, shape);
            let mut query = sqlx::query_as::<DB, (String, i64, Vec<u8>, bool, i64, String)>(&sql);
            for id in chunk.iter().chain(std::iter::repeat_n(
                &chunk[chunk.len() - 1],
                shape - chunk.len(),
            )) {
                query = query.bind(*id);
            }
            let found = query.fetch_all(&mut *conn).await?;
            for (id, seq, digest, clock_suspect, hlc, site_id) in found {
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
        }
        Ok(known)
    }

    /// Inserts the readings, their first versions and their outbox entries
    /// with multi-row INSERTs.
    async fn insert_rows(
        &self,
        conn: &mut DB::Connection,
        rows: &[NewRow<'_>],
        now_us: i64,
    ) -> Result<(), DbError> {
        let pending = SyncState::Pending as i64;
        for chunk in shaped_chunks(rows) {
            let mut sql = String::from(
                "INSERT INTO readings (seq, reading_id, origin_site_id, sensor_id, temperature, humidity, \
                 measured_at_us, received_at_us, priority, clock_suspect, content_digest, version_hlc, \
                 version_site_id, sync_state) VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 14);
            let mut insert = sqlx::query::<DB>(&sql);
            for row in chunk {
                let r = row.reading;
                insert = insert
                    .bind(row.seq)
                    .bind(r.id.as_str())
                    .bind(self.site_id.as_str())
                    .bind(r.sensor_id.as_str())
                    .bind(r.temperature)
                    .bind(r.humidity)
                    .bind(r.measured_at_us)
                    .bind(r.received_at_us)
                    .bind(r.priority as i64)
                    .bind(row.clock_suspect)
                    .bind(row.digest.clone())
                    .bind(row.hlc.pack())
                    .bind(self.site_id.as_str())
                    .bind(pending);
            }
            insert.execute(&mut *conn).await?;
        }
        for chunk in shaped_chunks(rows) {
            let mut sql = String::from(
                "INSERT INTO reading_versions (version_id, reading_seq, hlc, site_id, temperature, \
                 humidity, created_at_us) VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 7);
            let mut insert = sqlx::query::<DB>(&sql);
            for row in chunk {
                insert = insert
                    .bind(row.version_id)
                    .bind(row.seq)
                    .bind(row.hlc.pack())
                    .bind(self.site_id.as_str())
                    .bind(row.reading.temperature)
                    .bind(row.reading.humidity)
                    .bind(now_us);
            }
            insert.execute(&mut *conn).await?;
        }
        for chunk in shaped_chunks(rows) {
            let mut sql = String::from(
                "INSERT INTO outbox (version_id, priority, enqueued_at_us, next_attempt_at_us) VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 4);
            let mut insert = sqlx::query::<DB>(&sql);
            for row in chunk {
                insert = insert
                    .bind(row.version_id)
                    .bind(row.reading.priority as i64)
                    .bind(now_us)
                    .bind(now_us);
            }
            insert.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// One page of readings ordered by (measured_at, seq), and the cursor to
    /// continue from when more rows follow.
    pub async fn query(
        &self,
        query: &ReadingQuery,
    ) -> Result<(Vec<StoredReading>, Option<Cursor>), DbError> {
        // Placeholders are numbered in the order the filters bind below.
        let mut sql = format!("SELECT {READING_COLUMNS} FROM readings WHERE 1 = 1");
        let mut n = 0;
        let mut arg = || {
            n += 1;
            let mut p = String::new();
            DB::placeholder(&mut p, n);
            p
        };
        if query.sensor_id.is_some() {
            let _ = write!(sql, " AND sensor_id = {}", arg());
        }
        if query.from_us.is_some() {
            let _ = write!(sql, " AND measured_at_us >= {}", arg());
        }
        if query.to_us.is_some() {
            let _ = write!(sql, " AND measured_at_us < {}", arg());
        }
        if query.sync_state.is_some() {
            let _ = write!(sql, " AND sync_state = {}", arg());
        }
        if query.after.is_some() {
            let (a, b, c) = (arg(), arg(), arg());
            let _ = write!(
                sql,
                " AND (measured_at_us > {a} OR (measured_at_us = {b} AND seq > {c}))"
            );
        }
        let _ = write!(sql, " ORDER BY measured_at_us, seq LIMIT {}", arg());

        let mut select = sqlx::query_as::<DB, StoredReading>(&sql);
        if let Some(sensor_id) = &query.sensor_id {
            select = select.bind(sensor_id.as_str());
        }
        if let Some(from) = query.from_us {
            select = select.bind(from);
        }
        if let Some(to) = query.to_us {
            select = select.bind(to);
        }
        if let Some(state) = query.sync_state {
            select = select.bind(state as i64);
        }
        if let Some(after) = query.after {
            select = select
                .bind(after.measured_at_us)
                .bind(after.measured_at_us)
                .bind(after.seq);
        }
        let page = query.page_size as usize;
        let mut rows = select
            .bind(page as i64 + 1)
            .fetch_all(&mut *self.read.acquire().await?)
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
    /// a restart would reset), all from one snapshot so the books add up.
    pub async fn stats(&self) -> Result<Stats, DbError> {
        let mut conn = self.read.begin().await?;
        let (next_seq, hlc): (i64, i64) =
            sqlx::query_as("SELECT next_seq, hlc FROM site_state WHERE singleton = 1")
                .fetch_one(&mut *conn)
                .await?;
        let count = |sql: &'static str| sqlx::query_scalar::<DB, i64>(sql);
        let total_readings = count("SELECT COUNT(*) FROM readings")
            .fetch_one(&mut *conn)
            .await?;
        let total_versions = count("SELECT COUNT(*) FROM reading_versions")
            .fetch_one(&mut *conn)
            .await?;
        let unsynced_versions =
            count("SELECT COUNT(*) FROM outbox WHERE dead_lettered_at_us IS NULL")
                .fetch_one(&mut *conn)
                .await?;
        let dead_letters =
            count("SELECT COUNT(*) FROM outbox WHERE dead_lettered_at_us IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?;
        // The first pending entry by key was enqueued first, found through the
        // primary key without a scan. (Its enqueue time comes from the wall
        // clock, which may have stepped back since; the age is indicative.)
        let oldest_unsynced_us: Option<i64> = sqlx::query_scalar(
            "SELECT enqueued_at_us FROM outbox WHERE dead_lettered_at_us IS NULL \
             ORDER BY version_id LIMIT 1",
        )
        .fetch_optional(&mut *conn)
        .await?;
        let database_bytes = count(DB::SIZE_SQL).fetch_one(&mut *conn).await?;
        Ok(Stats {
            site_id: self.site_id.clone(),
            backend: DB::LABEL,
            total_readings,
            total_versions,
            unsynced_versions,
            dead_letters,
            oldest_unsynced_us,
            database_bytes,
            last_seq: next_seq - 1,
            hlc: Hlc::unpack(hlc),
        })
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Appends `rows` groups of `cols` placeholders, `(…), (…)`, numbered from
/// `first` in the backend's syntax.
fn push_placeholders<DB: Backend>(sql: &mut String, first: usize, rows: usize, cols: usize) {
    let mut n = first;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..cols {
            if col > 0 {
                sql.push_str(", ");
            }
            DB::placeholder(sql, n);
            n += 1;
        }
        sql.push(')');
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Postgres, Sqlite};

    use super::{STATEMENT_ROWS, push_placeholders, shaped_chunks};

    #[test]
    fn placeholders_follow_the_backend() {
        let mut pg = String::new();
        push_placeholders::<Postgres>(&mut pg, 1, 2, 3);
        assert_eq!(pg, "($1, $2, $3), ($4, $5, $6)");
        let mut lite = String::new();
        push_placeholders::<Sqlite>(&mut lite, 1, 2, 2);
        assert_eq!(lite, "(?, ?), (?, ?)");
    }

    #[test]
    fn chunks_cover_every_row_in_order_with_fixed_shapes() {
        for total in [0, 1, 7, 8, 9, 511, 512, 1000, 8000] {
            let rows: Vec<usize> = (0..total).collect();
            let chunks: Vec<&[usize]> = shaped_chunks(&rows).collect();
            assert!(chunks.iter().all(|c| STATEMENT_ROWS.contains(&c.len())));
            assert_eq!(chunks.concat(), rows);
        }
    }
}
