//! The cloud's SQL, written once for both backends.
//!
//! Writes go through the pool of one write connection, so they run one
//! transaction at a time; reads (coverage, admin listings) use a separate
//! pool and never wait behind a commit's fsync.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read as _, Write as _};

use edge_cloud_link::contract::{
    Coverage, Hlc, MAX_COVERAGE_GAPS, PushResponse, SeqRange, SimpleReading, UnsentReport,
    UnsentStatus, VersionResult, VersionStamp, VersionStatus,
};
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Type};

use super::backend::Backend;
use super::{DbError, Page, PushOutcome};
use crate::admin::{StoredSimpleReading, StoredVersion};
use crate::batch::{CheckedBatch, bookable_seq};

/// Row counts of multi-row statements, largest first. Statements, not rows,
/// are the cost in sqlx's SQLite driver, so rows are batched; a few fixed
/// shapes (rather than one per batch size) let the drivers reuse prepared
/// statements. Every shape stays under both backends' bind limits.
const STATEMENT_ROWS: [usize; 8] = [512, 128, 64, 32, 16, 8, 4, 1];

/// Columns bound per version row.
const VERSION_COLUMNS: usize = 14;

// SQLite's bind limit is 32,766; PostgreSQL's 65,535.
const _: () = assert!(STATEMENT_ROWS[0] * VERSION_COLUMNS <= 32_766);

/// Splits `rows` into consecutive chunks whose lengths are in [`STATEMENT_ROWS`].
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

/// Appends `rows` groups of `columns` placeholders: `(?, ?), (?, ?)`.
fn push_placeholders<DB: Backend>(
    sql: &mut String,
    rows: usize,
    columns: usize,
    literal_tail: &str,
) {
    let mut n = 1;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            DB::placeholder(sql, n);
            n += 1;
        }
        sql.push_str(literal_tail);
        sql.push(')');
    }
}

/// What the deduplication key of a version is made of, borrowed.
type VersionKey<'a> = (&'a str, i64, i64, &'a str);

/// The storage name of a coverage status.
fn unsent_status(status: UnsentStatus) -> &'static str {
    match status {
        UnsentStatus::Rejected => "rejected",
        UnsentStatus::Dropped => "dropped",
    }
}

/// The cloud database on one backend.
pub(crate) struct Store<DB: sqlx::Database> {
    write: Pool<DB>,
    read: Pool<DB>,
}

impl<DB: sqlx::Database> Store<DB> {
    pub(super) fn new(write: Pool<DB>, read: Pool<DB>) -> Self {
        Store { write, read }
    }

    /// Closes both pools, waiting for connections in use.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Per-version state while a push is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Rejected,
    Pending,
    Accepted,
    Duplicate,
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
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Stores a checked batch under `(site, key)`, in one transaction:
    /// takes the next push number, inserts the new versions, books their
    /// seqs, and records the answer for replays. A key seen before is a
    /// replay (same `digest`) or [`PushOutcome::KeyReused`].
    pub async fn push(
        &self,
        batch: &CheckedBatch,
        key: &str,
        digest: &[u8],
    ) -> Result<PushOutcome, DbError> {
        let site = batch.site_id.as_str();
        let mut tx = self.write.begin().await?;
        let conn: &mut DB::Connection = &mut tx;

        let mut sql =
            String::from("SELECT body_digest, response_gz FROM push_keys WHERE site_id = ");
        DB::placeholder(&mut sql, 1);
        sql.push_str(" AND idempotency_key = ");
        DB::placeholder(&mut sql, 2);
        let known: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as::<DB, (Vec<u8>, Vec<u8>)>(&sql)
            .bind(site)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some((stored_digest, response_gz)) = known {
            if stored_digest != digest {
                tx.rollback().await?;
                return Ok(PushOutcome::KeyReused);
            }
            // A replay is answered 200 too, so it takes a push number.
            next_push::<DB>(&mut *conn).await?;
            tx.commit().await?;
            return Ok(PushOutcome::Replay {
                body: gunzip(&response_gz)?,
            });
        }
        let push = next_push::<DB>(&mut *conn).await?;

        // Valid versions, each key once: a version sent twice in one batch is
        // stored by its first copy and a duplicate in the others.
        let mut fates: Vec<Fate> = Vec::with_capacity(batch.versions.len());
        let mut first_copy: HashMap<VersionKey<'_>, usize> =
            HashMap::with_capacity(batch.versions.len());
        let mut to_insert: Vec<usize> = Vec::with_capacity(batch.versions.len());
        for (i, (version, rejection)) in batch.versions.iter().zip(&batch.rejections).enumerate() {
            if rejection.is_some() {
                fates.push(Fate::Rejected);
                continue;
            }
            let key = version_key(version);
            match first_copy.entry(key) {
                Entry::Occupied(_) => fates.push(Fate::Duplicate),
                Entry::Vacant(slot) => {
                    slot.insert(i);
                    to_insert.push(i);
                    fates.push(Fate::Pending);
                }
            }
        }

        // Ids only grow and pushes are serialised (the push counter's row is
        // locked until commit), so the rows this push inserts are exactly
        // those above the largest id now.
        let (id_before,): (i64,) =
            sqlx::query_as::<DB, (i64,)>("SELECT COALESCE(MAX(id), 0) FROM versions")
                .fetch_one(&mut *conn)
                .await?;
        let mut inserted = 0u64;
        for chunk in shaped_chunks(&to_insert) {
            let mut sql = String::from(
                "INSERT INTO versions (site_id, seq, reading_id, hlc_physical_ms, hlc_logical, version_site_id, \
                 sensor_id, temperature, humidity, measured_at_us, received_at_us, priority, clock_suspect, push) \
                 VALUES ",
            );
            push_placeholders::<DB>(&mut sql, chunk.len(), VERSION_COLUMNS, "");
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut insert = sqlx::query::<DB>(&sql);
            for &i in chunk {
                let v = &batch.versions[i];
                let (reading_id, physical_ms, logical, version_site) = version_key(v);
                insert = insert
                    .bind(site)
                    .bind(v.seq as i64) // checked to fit
                    .bind(reading_id)
                    .bind(physical_ms)
                    .bind(logical)
                    .bind(version_site)
                    .bind(v.sensor_id.as_str())
                    .bind(v.temperature_celsius)
                    .bind(v.humidity_percent)
                    .bind(v.measured_at_us)
                    .bind(v.received_at_us)
                    .bind(priority_name(v.priority))
                    .bind(v.clock_suspect)
                    .bind(push);
            }
            inserted += DB::rows_affected(&insert.execute(&mut *conn).await?);
        }
        if inserted == to_insert.len() as u64 {
            // The usual case: everything was new.
            for &i in &to_insert {
                fates[i] = Fate::Accepted;
            }
        } else if inserted > 0 {
            // Some were already held: read back which rows this push added.
            let mut sql = String::from(
                "SELECT reading_id, hlc_physical_ms, hlc_logical, version_site_id FROM versions WHERE id > ",
            );
            DB::placeholder(&mut sql, 1);
            let rows: Vec<(String, i64, i64, String)> =
                sqlx::query_as::<DB, (String, i64, i64, String)>(&sql)
                    .bind(id_before)
                    .fetch_all(&mut *conn)
                    .await?;
            for (reading_id, physical_ms, logical, version_site) in &rows {
                let key = (
                    reading_id.as_str(),
                    *physical_ms,
                    *logical,
                    version_site.as_str(),
                );
                if let Some(&i) = first_copy.get(&key) {
                    fates[i] = Fate::Accepted;
                }
            }
        }
        for fate in &mut fates {
            if *fate == Fate::Pending {
                *fate = Fate::Duplicate;
            }
        }

        // Book the seqs: held for every stored version, rejected for the
        // cloud's own rejections of seqs that are not held.
        let held: BTreeSet<i64> = batch
            .versions
            .iter()
            .zip(&fates)
            .filter(|(_, fate)| **fate == Fate::Accepted)
            .map(|(v, _)| v.seq as i64)
            .collect();
        let held: Vec<i64> = held.into_iter().collect();
        for chunk in shaped_chunks(&held) {
            let mut sql = String::from("INSERT INTO seq_coverage (site_id, seq, status) VALUES ");
            push_placeholders::<DB>(&mut sql, chunk.len(), 2, ", 'held'");
            sql.push_str(
                " ON CONFLICT (site_id, seq) DO UPDATE SET status = 'held', reason = NULL \
                 WHERE seq_coverage.status <> 'held'",
            );
            let mut insert = sqlx::query::<DB>(&sql);
            for &seq in chunk {
                insert = insert.bind(site).bind(seq);
            }
            insert.execute(&mut *conn).await?;
        }
        let rejected: BTreeMap<i64, &str> = batch
            .versions
            .iter()
            .zip(&batch.rejections)
            .filter_map(|(v, reason)| Some((bookable_seq(site, v)?, reason.as_deref()?)))
            .collect();
        let rejected: Vec<(i64, &str)> = rejected.into_iter().collect();
        for chunk in shaped_chunks(&rejected) {
            let mut sql =
                String::from("INSERT INTO seq_coverage (site_id, seq, reason, status) VALUES ");
            push_placeholders::<DB>(&mut sql, chunk.len(), 3, ", 'rejected'");
            sql.push_str(" ON CONFLICT (site_id, seq) DO NOTHING");
            let mut insert = sqlx::query::<DB>(&sql);
            for &(seq, reason) in chunk {
                insert = insert.bind(site).bind(seq).bind(reason);
            }
            insert.execute(&mut *conn).await?;
        }
        advance_watermark::<DB>(&mut *conn, site).await?;

        // The answer, stored with the versions so a replay gets exactly it.
        let mut counts = [0u64; 3];
        let results = batch
            .versions
            .iter()
            .zip(&fates)
            .zip(&batch.rejections)
            .map(|((v, fate), rejection)| {
                let status = match fate {
                    Fate::Accepted => VersionStatus::Accepted,
                    Fate::Duplicate | Fate::Pending => VersionStatus::Duplicate,
                    Fate::Rejected => VersionStatus::Rejected,
                };
                counts[match status {
                    VersionStatus::Accepted => 0,
                    VersionStatus::Duplicate => 1,
                    VersionStatus::Rejected => 2,
                }] += 1;
                VersionResult {
                    reading_id: v.reading_id.clone(),
                    version: v.version.clone(),
                    status,
                    reason: rejection.clone(),
                }
            })
            .collect();
        let body = serde_json::to_vec(&PushResponse { results })?;
        let mut sql = String::from(
            "INSERT INTO push_keys (site_id, idempotency_key, body_digest, response_gz, push, created_at_ms) VALUES ",
        );
        push_placeholders::<DB>(&mut sql, 1, 6, "");
        sqlx::query::<DB>(&sql)
            .bind(site)
            .bind(key)
            .bind(digest.to_vec())
            .bind(gzip(&body)?)
            .bind(push)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        tx.commit().await?;
        let [accepted, duplicate, rejected] = counts;
        Ok(PushOutcome::Stored {
            body,
            accepted,
            duplicate,
            rejected,
        })
    }

    /// Records each reported seq as rejected or dropped unless it is held.
    /// Reporting a seq again changes nothing but its reason or status.
    pub async fn record_unsent(&self, site: &str, report: &UnsentReport) -> Result<u64, DbError> {
        // One row per seq (the last report wins): PostgreSQL refuses an
        // upsert that touches a row twice in one statement.
        let entries: BTreeMap<i64, (&'static str, Option<&str>)> = report
            .entries
            .iter()
            .filter_map(|e| {
                Some((
                    i64::try_from(e.seq).ok()?,
                    (unsent_status(e.status), e.reason.as_deref()),
                ))
            })
            .collect();
        let entries: Vec<_> = entries.into_iter().collect();
        let mut tx = self.write.begin().await?;
        let conn: &mut DB::Connection = &mut tx;
        for chunk in shaped_chunks(&entries) {
            let mut sql =
                String::from("INSERT INTO seq_coverage (site_id, seq, status, reason) VALUES ");
            push_placeholders::<DB>(&mut sql, chunk.len(), 4, "");
            sql.push_str(
                " ON CONFLICT (site_id, seq) DO UPDATE SET status = excluded.status, reason = excluded.reason \
                 WHERE seq_coverage.status <> 'held'",
            );
            let mut insert = sqlx::query::<DB>(&sql);
            for &(seq, (status, reason)) in chunk {
                insert = insert
                    .bind(site)
                    .bind(seq)
                    .bind(status)
                    .bind(reason.map(str::to_owned));
            }
            insert.execute(&mut *conn).await?;
        }
        advance_watermark::<DB>(&mut *conn, site).await?;
        tx.commit().await?;
        Ok(report.entries.len() as u64)
    }

    /// The site's books, from one snapshot.
    pub async fn coverage(&self, site: &str) -> Result<Coverage, DbError> {
        let mut tx = self.read.begin().await?;
        let conn: &mut DB::Connection = &mut tx;
        if let Some(snapshot) = DB::SNAPSHOT {
            sqlx::query::<DB>(snapshot).execute(&mut *conn).await?;
        }
        let mut sql = String::from("SELECT contiguous_upto FROM site_books WHERE site_id = ");
        DB::placeholder(&mut sql, 1);
        let watermark: i64 = sqlx::query_as::<DB, (i64,)>(&sql)
            .bind(site)
            .fetch_optional(&mut *conn)
            .await?
            .map_or(0, |(w,)| w);
        // One pass, no sort.
        let mut sql = String::from(
            "SELECT COALESCE(SUM(CASE WHEN status = 'held' THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN status = 'dropped' THEN 1 ELSE 0 END), 0), \
             COALESCE(MAX(seq), 0) FROM seq_coverage WHERE site_id = ",
        );
        DB::placeholder(&mut sql, 1);
        let (held, rejected, dropped, max_seq): (i64, i64, i64, i64) =
            sqlx::query_as::<DB, (i64, i64, i64, i64)>(&sql)
                .bind(site)
                .fetch_one(&mut *conn)
                .await?;
        let mut sql = String::from("SELECT COUNT(*) FROM versions WHERE site_id = ");
        DB::placeholder(&mut sql, 1);
        let (versions,): (i64,) = sqlx::query_as::<DB, (i64,)>(&sql)
            .bind(site)
            .fetch_one(&mut *conn)
            .await?;
        // Gaps: wherever a seq above the watermark does not follow the
        // previous accounted one (the first follows the watermark itself).
        let mut sql = String::from(
            "SELECT prev + 1, seq - 1 FROM (SELECT seq, COALESCE(LAG(seq) OVER (ORDER BY seq), ",
        );
        DB::placeholder(&mut sql, 1);
        sql.push_str(") AS prev FROM seq_coverage WHERE site_id = ");
        DB::placeholder(&mut sql, 2);
        sql.push_str(" AND seq > ");
        DB::placeholder(&mut sql, 3);
        sql.push_str(") AS accounted WHERE seq > prev + 1 ORDER BY seq LIMIT ");
        DB::placeholder(&mut sql, 4);
        let gap_rows: Vec<(i64, i64)> = sqlx::query_as::<DB, (i64, i64)>(&sql)
            .bind(watermark)
            .bind(site)
            .bind(watermark)
            .bind(MAX_COVERAGE_GAPS as i64 + 1)
            .fetch_all(&mut *conn)
            .await?;
        tx.commit().await?;

        let max_seq = max_seq as u64;
        let gaps_truncated = gap_rows.len() > MAX_COVERAGE_GAPS;
        let gaps: Vec<SeqRange> = gap_rows
            .into_iter()
            .take(MAX_COVERAGE_GAPS)
            .map(|(first, last)| SeqRange {
                first: first as u64,
                last: last as u64,
            })
            .collect();
        let highest_contiguous_seq = gaps.first().map_or(max_seq, |gap| gap.first - 1);
        Ok(Coverage {
            site_id: site.to_owned(),
            highest_contiguous_seq,
            max_seq,
            held_seqs: held as u64,
            versions: versions as u64,
            rejected_seqs: rejected as u64,
            dropped_seqs: dropped as u64,
            gaps,
            gaps_truncated,
        })
    }

    /// Stores one simple-API reading and returns its id.
    pub async fn insert_simple(&self, reading: &SimpleReading) -> Result<i64, DbError> {
        let mut sql = String::from(
            "INSERT INTO simple_readings (sensor_id, temperature, humidity, timestamp, received_at_ms) VALUES ",
        );
        push_placeholders::<DB>(&mut sql, 1, 5, "");
        sql.push_str(" RETURNING id");
        let mut conn = self.write.acquire().await?;
        let (id,): (i64,) = sqlx::query_as::<DB, (i64,)>(&sql)
            .bind(reading.sensor_id.as_str())
            .bind(reading.temperature)
            .bind(reading.humidity)
            .bind(reading.timestamp.as_str())
            .bind(now_ms())
            .fetch_one(&mut *conn)
            .await?;
        Ok(id)
    }

    /// Up to `limit` versions of `site` stored after cursor `after`.
    pub async fn versions_page(
        &self,
        site: &str,
        after: i64,
        limit: u32,
    ) -> Result<Page<StoredVersion>, DbError> {
        type Row = (
            i64,
            i64,
            String,
            i64,
            i64,
            String,
            String,
            f64,
            f64,
            i64,
            i64,
            String,
            bool,
            i64,
        );
        let mut sql = String::from(
            "SELECT id, seq, reading_id, hlc_physical_ms, hlc_logical, version_site_id, sensor_id, temperature, \
             humidity, measured_at_us, received_at_us, priority, clock_suspect, push FROM versions \
             WHERE site_id = ",
        );
        DB::placeholder(&mut sql, 1);
        sql.push_str(" AND id > ");
        DB::placeholder(&mut sql, 2);
        sql.push_str(" ORDER BY id LIMIT ");
        DB::placeholder(&mut sql, 3);
        let mut conn = self.read.acquire().await?;
        let rows: Vec<Row> = sqlx::query_as::<DB, Row>(&sql)
            .bind(site)
            .bind(after)
            .bind(i64::from(limit) + 1)
            .fetch_all(&mut *conn)
            .await?;
        let more = rows.len() > limit as usize;
        let rows: Vec<(i64, StoredVersion)> = rows
            .into_iter()
            .take(limit as usize)
            .map(|r| {
                (
                    r.0,
                    StoredVersion {
                        seq: r.1 as u64,
                        reading_id: r.2,
                        version: VersionStamp {
                            hlc: Hlc {
                                physical_ms: r.3 as u64,
                                logical: r.4 as u32,
                            },
                            site_id: r.5,
                        },
                        sensor_id: r.6,
                        temperature_celsius: r.7,
                        humidity_percent: r.8,
                        measured_at_us: r.9,
                        received_at_us: r.10,
                        priority: parse_priority(&r.11),
                        clock_suspect: r.12,
                        push: r.13 as u64,
                    },
                )
            })
            .collect();
        let next = if more {
            rows.last().map(|(id, _)| *id)
        } else {
            None
        };
        Ok(Page {
            rows: rows.into_iter().map(|(_, v)| v).collect(),
            next,
        })
    }

    /// Up to `limit` simple-API readings with ids above `after`.
    pub async fn simple_page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Page<StoredSimpleReading>, DbError> {
        let mut sql = String::from(
            "SELECT id, sensor_id, temperature, humidity, timestamp FROM simple_readings WHERE id > ",
        );
        DB::placeholder(&mut sql, 1);
        sql.push_str(" ORDER BY id LIMIT ");
        DB::placeholder(&mut sql, 2);
        let mut conn = self.read.acquire().await?;
        let rows: Vec<(i64, String, f64, f64, String)> =
            sqlx::query_as::<DB, (i64, String, f64, f64, String)>(&sql)
                .bind(after)
                .bind(i64::from(limit) + 1)
                .fetch_all(&mut *conn)
                .await?;
        let more = rows.len() > limit as usize;
        let rows: Vec<StoredSimpleReading> = rows
            .into_iter()
            .take(limit as usize)
            .map(
                |(id, sensor_id, temperature, humidity, timestamp)| StoredSimpleReading {
                    id,
                    sensor_id,
                    temperature,
                    humidity,
                    timestamp,
                },
            )
            .collect();
        let next = if more {
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Page { rows, next })
    }
}

/// Moves the site's contiguous watermark up past every accounted seq that
/// follows it. Reads only from the watermark up to the first gap, in pages
/// that start small, so a push behind a long-standing gap costs one short
/// read; over a site's life every seq is passed once.
async fn advance_watermark<DB>(conn: &mut DB::Connection, site: &str) -> Result<(), DbError>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let mut sql = String::from("SELECT contiguous_upto FROM site_books WHERE site_id = ");
    DB::placeholder(&mut sql, 1);
    let stored: Option<i64> = sqlx::query_as::<DB, (i64,)>(&sql)
        .bind(site)
        .fetch_optional(&mut *conn)
        .await?
        .map(|(w,)| w);
    let mut watermark = stored.unwrap_or(0);
    let mut sql = String::from("SELECT seq FROM seq_coverage WHERE site_id = ");
    DB::placeholder(&mut sql, 1);
    sql.push_str(" AND seq > ");
    DB::placeholder(&mut sql, 2);
    sql.push_str(" ORDER BY seq LIMIT ");
    DB::placeholder(&mut sql, 3);
    let mut page: i64 = 16;
    loop {
        let seqs: Vec<(i64,)> = sqlx::query_as::<DB, (i64,)>(&sql)
            .bind(site)
            .bind(watermark)
            .bind(page)
            .fetch_all(&mut *conn)
            .await?;
        let mut followed = 0;
        for (seq,) in &seqs {
            if *seq != watermark + 1 {
                break;
            }
            watermark = *seq;
            followed += 1;
        }
        if followed < seqs.len() || (seqs.len() as i64) < page {
            break;
        }
        page = (page * 4).min(16_384);
    }
    if stored != Some(watermark) {
        let mut sql = String::from("INSERT INTO site_books (site_id, contiguous_upto) VALUES ");
        push_placeholders::<DB>(&mut sql, 1, 2, "");
        sql.push_str(
            " ON CONFLICT (site_id) DO UPDATE SET contiguous_upto = excluded.contiguous_upto",
        );
        sqlx::query::<DB>(&sql)
            .bind(site)
            .bind(watermark)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Takes the next cloud-wide push number.
async fn next_push<DB>(conn: &mut DB::Connection) -> Result<i64, DbError>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let (push,): (i64,) = sqlx::query_as::<DB, (i64,)>(
        "UPDATE cloud_state SET last_push = last_push + 1 WHERE singleton = 1 RETURNING last_push",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(push)
}

/// The deduplication key of a version. Its numbers are checked to fit
/// before a version gets here.
fn version_key(v: &edge_cloud_link::contract::VersionRecord) -> VersionKey<'_> {
    (
        v.reading_id.as_str(),
        v.version.hlc.physical_ms as i64,
        i64::from(v.version.hlc.logical),
        v.version.site_id.as_str(),
    )
}

fn priority_name(priority: edge_cloud_link::contract::Priority) -> &'static str {
    match priority {
        edge_cloud_link::contract::Priority::Normal => "normal",
        edge_cloud_link::contract::Priority::Critical => "critical",
    }
}

fn parse_priority(name: &str) -> edge_cloud_link::contract::Priority {
    if name == "critical" {
        edge_cloud_link::contract::Priority::Critical
    } else {
        edge_cloud_link::contract::Priority::Normal
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Stored answers are gzipped: a 5,000-version answer is ~700 KB of JSON
/// that compresses about tenfold, and it is written on every push.
fn gzip(body: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

fn gunzip(stored: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(stored).read_to_end(&mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_use_the_fixed_shapes() {
        let rows: Vec<u32> = (0..1_000).collect();
        let sizes: Vec<usize> = shaped_chunks(&rows).map(<[u32]>::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 1_000);
        assert_eq!(&sizes[..2], &[512, 128]);
        assert!(sizes.iter().all(|s| STATEMENT_ROWS.contains(s)));
    }

    #[test]
    fn placeholders_number_from_one() {
        let mut sql = String::new();
        push_placeholders::<sqlx::Postgres>(&mut sql, 2, 2, ", 'held'");
        assert_eq!(sql, "($1, $2, 'held'), ($3, $4, 'held')");
    }

    #[test]
    fn stored_answers_round_trip() {
        let body = br#"{"results":[]}"#;
        let stored = gzip(body).expect("gzip");
        assert_eq!(gunzip(&stored).expect("gunzip"), body);
    }
}
