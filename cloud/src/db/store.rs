//! The cloud's SQL for pushes and the books, written once for both backends.
//!
//! Writes go through the pool of one write connection, so they run one
//! transaction at a time; reads (coverage, admin listings, the change feed)
//! use a separate pool and never wait behind a commit's fsync. The version
//! rows' shared SQL is in [`super::versions`], amendments and the feed in
//! [`super::readings`], the admin listings in [`super::listings`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use edge_cloud_link::contract::{
    Coverage, PushResponse, SimpleReading, UnsentReport, UnsentStatus, VersionRecord,
    VersionResult, VersionStatus,
};
use edge_versioning::{Hlc, Policy, SkewBound, WallClock};
use sqlx::Pool;

use super::backend::Backend;
use super::books;
use super::sql::shaped_chunks;
use super::{DbError, PushOutcome, Skew};
use crate::batch::{CheckedBatch, bookable_seq};
use crate::resolve::{CloudClock, Offered, Readings, hlc_of};
use edge_sql::checkpoint::Checkpointer;
use edge_sql::statement::push_placeholders;
use edge_sql::{Pools, WriteConn, WriteFaults};

/// What the deduplication key of a version is made of, borrowed.
type VersionKey<'a> = (&'a str, u64, u32, &'a str);

/// The storage name of a coverage status.
fn unsent_status(status: UnsentStatus) -> &'static str {
    match status {
        UnsentStatus::Rejected => "rejected",
        UnsentStatus::Dropped => "dropped",
    }
}

/// How the cloud resolves and stamps versions: one setting each for the
/// whole cloud.
#[derive(Clone)]
pub(crate) struct Versioning {
    /// The deployment's conflict rule, which the change feed announces.
    pub policy: Policy,
    /// The cloud's wall clock (injectable so tests can skew it).
    pub clock: Arc<dyn WallClock>,
    /// How far ahead of the wall clock a received stamp may move the
    /// cloud's clock; a version stamped further ahead is still taken, but
    /// flagged, counted and logged. Announced to sites with the change feed.
    pub max_clock_skew: SkewBound,
}

impl Versioning {
    /// The wall clock now, in µs and in ms.
    pub(super) fn now(&self) -> (i64, u64) {
        let now_us = self.clock.now_us();
        (now_us, Hlc::ms_from_us(now_us))
    }

    /// The cloud's clock as persisted, loaded at the wall clock `now_ms`
    /// under the bound: fallen back to it if it was further ahead.
    pub(super) fn clock(&self, persisted: Hlc, now_ms: u64) -> CloudClock {
        CloudClock::new(persisted, now_ms, self.max_clock_skew)
    }
}

/// Says, once it is committed, that the cloud's clock was beyond the bound
/// and fell back (its wall clock stepped back, or an older build let a
/// far-ahead stamp drag it). Versions keep their stamps.
pub(super) fn log_fall_back(clock: &CloudClock, persisted: Hlc, bound: SkewBound) {
    if let Some(ms) = clock.fell_back_ms() {
        tracing::warn!(
            was = %persisted,
            now = %clock.hlc(),
            ahead = %humantime::format_duration(Duration::from_millis(ms)),
            bound = %humantime::format_duration(bound.as_duration()),
            "the cloud's clock was further ahead of its wall clock than --max-clock-skew; it falls \
             back to the bound (stored versions keep their stamps)"
        );
    }
}

/// The cloud database on one backend.
pub(crate) struct Store<DB: sqlx::Database> {
    /// Writes only ever run through [`Store::write_tx`] and
    /// [`Store::write_conn`]: a connection that saw a failure is closed,
    /// never reused (see [`edge_sql::write`]).
    pub(super) pools: Pools<DB>,
    pub(super) versioning: Versioning,
    /// SQLite's WAL checkpoints, off the pushes' commits; `None` on
    /// PostgreSQL.
    checkpointer: Option<Checkpointer>,
}

impl<DB: sqlx::Database> Store<DB> {
    pub(super) fn new(
        write: Pool<DB>,
        read: Pool<DB>,
        versioning: Versioning,
        faults: Option<Arc<WriteFaults>>,
        checkpointer: Option<Checkpointer>,
    ) -> Self {
        Store {
            pools: Pools::new(write, read, faults),
            versioning,
            checkpointer,
        }
    }

    /// After a commit that wrote much (a push): lets the SQLite
    /// checkpointer copy the new WAL frames. Smaller writes leave theirs to
    /// the next push's, or to the writer's own checkpoint.
    fn after_write(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
    }

    /// The write connection with a transaction begun on it for the write
    /// named `op` (`push`, `amend`, …); closed rather than reused unless the
    /// write ends in a clean COMMIT or ROLLBACK.
    pub(super) async fn write_tx(&self, op: &'static str) -> Result<WriteConn<DB>, DbError>
    where
        DB: edge_sql::FaultableBackend,
    {
        Ok(self.pools.write_tx(op).await?)
    }

    /// The write connection for `op`'s work outside a transaction.
    pub(super) async fn write_conn(&self, op: &'static str) -> Result<WriteConn<DB>, DbError>
    where
        DB: edge_sql::FaultableBackend,
    {
        Ok(self.pools.write_conn(op).await?)
    }

    /// The deployment's conflict rule.
    pub fn policy(&self) -> Policy {
        self.versioning.policy
    }

    /// The deployment's clock-skew bound.
    pub fn max_clock_skew(&self) -> SkewBound {
        self.versioning.max_clock_skew
    }

    /// Closes both pools, waiting for connections in use, then stops the
    /// checkpointer.
    pub async fn close(&self) {
        self.pools.close().await;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.stop().await;
        }
    }
}

/// Per-version state while a push is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Rejected,
    Accepted,
    Duplicate,
}

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB> {
    /// Stores a checked batch under `(site, key)`, in one transaction:
    /// takes the next push number (locking `cloud_state` first, see
    /// [`super::versions`]), offers the new versions to their readings'
    /// histories, inserts them, records current versions, conflicts and the
    /// cloud's clock, books their seqs, and records the answer for replays.
    /// A key seen before is a replay (same `digest`) or
    /// [`PushOutcome::KeyReused`].
    pub async fn push(
        &self,
        batch: &CheckedBatch,
        key: &str,
        digest: &[u8],
    ) -> Result<PushOutcome, DbError> {
        let site = batch.site_id.as_str();
        let mut tx = self.write_tx("push").await?;
        let conn: &mut DB::Connection = &mut tx;
        let (push, persisted_clock) = next_push::<DB>(&mut *conn).await?;

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
                // Also gives the push number back.
                tx.rollback().await?;
                return Ok(PushOutcome::KeyReused);
            }
            // A replay is answered 200 too, so it takes a push number.
            tx.commit().await?;
            return Ok(PushOutcome::Replay {
                body: gunzip(&response_gz)?,
            });
        }

        // Valid versions, each key once: a version sent twice in one batch is
        // stored by its first copy and a duplicate in the others.
        let mut fates: Vec<Fate> = Vec::with_capacity(batch.versions.len());
        let mut first_copy: HashMap<VersionKey<'_>, usize> =
            HashMap::with_capacity(batch.versions.len());
        let mut to_offer: Vec<usize> = Vec::with_capacity(batch.versions.len());
        for (i, (version, rejection)) in batch.versions.iter().zip(&batch.rejections).enumerate() {
            if rejection.is_some() {
                fates.push(Fate::Rejected);
                continue;
            }
            fates.push(Fate::Duplicate);
            if let Entry::Vacant(slot) = first_copy.entry(version_key(version)) {
                slot.insert(i);
                to_offer.push(i);
            }
        }

        // Offer each to its reading's history, loaded in one go: the
        // histories say which versions are held already (duplicates) and
        // which version of each reading is current now. The lock taken
        // above keeps them true until commit.
        let reading_ids: Vec<&str> = to_offer
            .iter()
            .map(|&i| batch.versions[i].reading_id.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let held = Self::load_held(&mut *conn, &reading_ids).await?;
        let mut readings = Readings::new(self.versioning.policy, held);
        let (now_us, clock_ms) = self.versioning.now();
        let persisted_clock = Hlc::unpack(persisted_clock);
        let mut clock = self.versioning.clock(persisted_clock, clock_ms);
        let mut accepted: Vec<(&VersionRecord, Option<u64>)> = Vec::with_capacity(to_offer.len());
        let mut conflicts = Vec::new();
        for &i in &to_offer {
            let v = &batch.versions[i];
            if let Offered::Added { conflict } = readings.offer(v) {
                fates[i] = Fate::Accepted;
                let ahead = clock.receive(&v.reading_id, hlc_of(v.version.hlc));
                conflicts.extend(conflict.map(|c| (v.reading_id.as_str(), c)));
                accepted.push((v, ahead));
            }
        }
        let inserted = Self::insert_versions(&mut *conn, site, push, &accepted).await?;
        if inserted != accepted.len() as u64 {
            return Err(DbError::Inconsistent(format!(
                "{} of {} new versions were already stored",
                accepted.len() as u64 - inserted,
                accepted.len()
            )));
        }
        Self::upsert_currents(&mut *conn, &readings.changed()).await?;
        Self::insert_conflicts(&mut *conn, &conflicts, now_us).await?;
        let mut written: BTreeMap<&str, i64> = BTreeMap::new();
        for (v, _) in &accepted {
            *written.entry(v.version.site_id.as_str()).or_default() += 1;
        }
        Self::count_written(&mut *conn, &written).await?;
        if !accepted.is_empty() {
            Self::store_clock(&mut *conn, clock.hlc()).await?;
        }

        // Book the seqs, per origin site: held for every stored version,
        // rejected for the cloud's own rejections of the pusher's seqs that
        // are not held.
        let held: BTreeSet<(&str, i64)> = accepted
            .iter()
            .map(|(v, _)| (v.origin_site_id.as_str(), v.seq as i64))
            .collect();
        let mut held_by_origin: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for &(origin, seq) in &held {
            held_by_origin.entry(origin).or_default().push(seq);
        }
        for (origin, seqs) in &held_by_origin {
            books::book_held::<DB>(&mut *conn, origin, seqs).await?;
        }
        let mut rejected: BTreeMap<i64, &str> = batch
            .versions
            .iter()
            .zip(&batch.rejections)
            .filter_map(|(v, reason)| Some((bookable_seq(site, v)?, reason.as_deref()?)))
            .collect();
        // A seq held already (by another version) stays held.
        let seqs: Vec<i64> = rejected.keys().copied().collect();
        for seq in books::held_among::<DB>(&mut *conn, site, &seqs).await? {
            rejected.remove(&seq);
        }
        let rejected: Vec<(i64, &str)> = rejected.into_iter().collect();
        for chunk in shaped_chunks(&rejected) {
            let mut sql =
                String::from("INSERT INTO seq_coverage (site_id, seq, reason, status) VALUES ");
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 3, ", 'rejected'");
            sql.push_str(" ON CONFLICT (site_id, seq) DO NOTHING");
            let mut insert = sqlx::query::<DB>(&sql);
            for &(seq, reason) in chunk {
                insert = insert.bind(site).bind(seq).bind(reason);
            }
            insert.execute(&mut *conn).await?;
        }
        let origins: BTreeSet<&str> = held_by_origin.keys().copied().chain([site]).collect();
        for origin in origins {
            books::advance_watermark::<DB>(&mut *conn, origin).await?;
        }

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
                    Fate::Duplicate => VersionStatus::Duplicate,
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
        push_placeholders::<DB>(&mut sql, 1, 1, 6, "");
        sqlx::query::<DB>(&sql)
            .bind(site)
            .bind(key)
            .bind(digest.to_vec())
            .bind(gzip(&body)?)
            .bind(push)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        tx.statements_done().await?;
        tx.commit().await?;
        self.after_write();
        if !accepted.is_empty() {
            log_fall_back(&clock, persisted_clock, self.versioning.max_clock_skew);
        }
        let [accepted, duplicate, rejected] = counts;
        Ok(PushOutcome::Stored {
            body,
            accepted,
            duplicate,
            rejected,
            conflicts: conflicts.len() as u64,
            skew: clock.furthest_ahead.map(|(ahead_ms, reading_id)| Skew {
                versions: clock.skewed,
                furthest_ahead_ms: ahead_ms,
                reading_id,
            }),
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
        let mut tx = self.write_tx("unsent").await?;
        let conn: &mut DB::Connection = &mut tx;
        // A held seq stays held, whatever is reported about it.
        let mut entries = entries;
        let seqs: Vec<i64> = entries.keys().copied().collect();
        for seq in books::held_among::<DB>(&mut *conn, site, &seqs).await? {
            entries.remove(&seq);
        }
        let entries: Vec<_> = entries.into_iter().collect();
        for chunk in shaped_chunks(&entries) {
            let mut sql =
                String::from("INSERT INTO seq_coverage (site_id, seq, status, reason) VALUES ");
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 4, "");
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
        books::advance_watermark::<DB>(&mut *conn, site).await?;
        tx.statements_done().await?;
        tx.commit().await?;
        Ok(report.entries.len() as u64)
    }

    /// The site's books, from one snapshot.
    pub async fn coverage(&self, site: &str) -> Result<Coverage, DbError> {
        let mut tx = self.pools.read().begin().await?;
        let conn: &mut DB::Connection = &mut tx;
        if let Some(snapshot) = DB::SNAPSHOT {
            sqlx::query::<DB>(snapshot).execute(&mut *conn).await?;
        }
        let coverage = books::coverage::<DB>(&mut *conn, site).await?;
        tx.commit().await?;
        Ok(coverage)
    }

    /// Stores one simple-API reading and returns its id.
    pub async fn insert_simple(&self, reading: &SimpleReading) -> Result<i64, DbError> {
        let mut sql = String::from(
            "INSERT INTO simple_readings (sensor_id, temperature, humidity, timestamp, received_at_ms) VALUES ",
        );
        push_placeholders::<DB>(&mut sql, 1, 1, 5, "");
        sql.push_str(" RETURNING id");
        let mut conn = self.write_conn("simple").await?;
        let (id,): (i64,) = sqlx::query_as::<DB, (i64,)>(&sql)
            .bind(reading.sensor_id.as_str())
            .bind(reading.temperature)
            .bind(reading.humidity)
            .bind(reading.timestamp.as_str())
            .bind(now_ms())
            .fetch_one(&mut *conn)
            .await?;
        conn.release();
        Ok(id)
    }
}

/// Takes the next cloud-wide push number; locks the `cloud_state` row, and
/// reads the cloud's clock (packed) under that lock.
#[edge_sql::sql_bounds]
async fn next_push<DB: Backend>(conn: &mut DB::Connection) -> Result<(i64, i64), DbError> {
    let row: (i64, i64) = sqlx::query_as::<DB, (i64, i64)>(
        "UPDATE cloud_state SET last_push = last_push + 1 WHERE singleton = 1 RETURNING last_push, hlc",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(row)
}

/// The deduplication key of a version.
fn version_key(v: &VersionRecord) -> VersionKey<'_> {
    (
        v.reading_id.as_str(),
        v.version.hlc.physical_ms,
        v.version.hlc.logical,
        v.version.site_id.as_str(),
    )
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
    fn stored_answers_round_trip() {
        let body = br#"{"results":[]}"#;
        let stored = gzip(body).expect("gzip");
        assert_eq!(gunzip(&stored).expect("gunzip"), body);
    }
}
