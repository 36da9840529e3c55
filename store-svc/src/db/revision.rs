//! Versions after the first, written once for both backends: amendments made
//! at this site, pages of the cloud's change feed, and the audit log of the
//! conflicts between them.
//!
//! Which version of a reading is current is never decided here: the
//! reading's versions are loaded into an [`edge_versioning::History`] and the
//! rule every replica shares decides. This module only keeps the readings
//! row (the current version's values, for queries) in step with it.
//!
//! Nor how stamps are made: the site's clock is an
//! [`edge_versioning::NodeClock`], loaded from `site_state` in each write
//! under the clock-skew bound in force. An amendment is stamped above every
//! version of its reading the site holds; a pulled version moves the clock
//! only up to the bound, and one stamped beyond it is stored with how far
//! ahead it was (`clock_ahead_ms`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use edge_versioning::{
    Applied, Conflict, History, Policy, ReadingExhausted, SkewBound, Stamp, Version,
};
use sqlx::FromRow;

use super::DbError;
use super::backend::Backend;
use super::faults::WriteOp;
use super::outbox::{IdChunk, id_chunks, in_outbox};
use super::store::{Store, reading_columns};
use crate::hlc::Hlc;
use crate::model::Quality;
use crate::model::{StoredReading, SyncState};
use crate::revision::{Amendment, ApplyOutcome, ConflictRow, RemoteVersion, Skew, Values};
use edge_sql::statement::{push_placeholders, shaped_chunks};

/// Reading ids or seqs per lookup statement.
const LOOKUP_CHUNK: usize = 500;

/// seq, temperature, humidity, quality, note, version HLC and site, priority.
type CurrentRow = (i64, f64, f64, i64, Option<String>, i64, String, i64);

/// What a page needs to know of a reading the site holds.
struct Held {
    seq: i64,
    history: History,
}

/// A version of the page to store: its id, its reading's seq, the version,
/// and how far beyond the bound it was stamped (flagged), if it was.
type NewVersion<'p> = (i64, i64, &'p RemoteVersion, Option<u64>);

/// Where a reading's current values come from after a page.
enum CurrentFrom<'p> {
    /// A version of the page, and its flag.
    Arrived(&'p RemoteVersion, Option<u64>),
    /// A version stored before.
    Stored(Stamp),
}

/// What applying one page writes, gathered while the rule decides, then
/// written table by table in multi-row statements.
#[derive(Default)]
struct PageWrites<'p> {
    /// Other sites' readings first seen, by their new (negative) seq.
    foreign: Vec<(i64, &'p RemoteVersion)>,
    /// New versions.
    versions: Vec<NewVersion<'p>>,
    /// Conflicts for the audit log, with the version that arrived.
    conflicts: Vec<(&'p RemoteVersion, Conflict)>,
    /// Readings whose current version changed, by seq: the last word.
    current: HashMap<i64, CurrentFrom<'p>>,
}

/// A readings row's current values, as [`Store::set_currents`] writes them.
struct CurrentRowValues {
    seq: i64,
    hlc: i64,
    site_id: String,
    values: Values,
    state: SyncState,
    clock_ahead_ms: Option<i64>,
    written_by: Option<String>,
}

/// A version as the database holds its identity.
#[derive(FromRow)]
pub struct VersionKey {
    reading_seq: i64,
    hlc: i64,
    site_id: String,
    base_hlc: Option<i64>,
    base_site_id: Option<String>,
}

impl VersionKey {
    fn version(self) -> Version {
        Version {
            stamp: Stamp::new(Hlc::unpack(self.hlc), self.site_id),
            base: self
                .base_hlc
                .zip(self.base_site_id)
                .map(|(hlc, site)| Stamp::new(Hlc::unpack(hlc), site)),
        }
    }
}

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB>
where
    for<'r> StoredReading: FromRow<'r, DB::Row>,
    for<'r> ConflictRow: FromRow<'r, DB::Row>,
    for<'r> VersionKey: FromRow<'r, DB::Row>,
{
    /// Writes an amendment as a new version on top of the reading's current
    /// one, puts it in the outbox, and returns the reading as stored now.
    ///
    /// The new version is always current: its HLC is above every version of
    /// the reading this site holds (the current one need not be the highest:
    /// under `cloud-wins` a higher site version may have lost), however far
    /// ahead they are stamped, and it descends from the current one, so no
    /// rule can prefer another.
    pub async fn amend(&self, amendment: &Amendment) -> Result<StoredReading, DbError> {
        let now_us = self.clock.now_us();
        let mut tx = self.write_tx(WriteOp::Amend).await?;
        let state_sql = format!(
            "SELECT next_version_id, hlc, max_clock_skew_ms FROM site_state WHERE singleton = 1{}",
            DB::LOCK_STATE
        );
        let (version_id, persisted, announced): (i64, i64, Option<i64>) =
            sqlx::query_as(&state_sql).fetch_one(&mut *tx).await?;
        let current: Option<CurrentRow> = sqlx::query_as(
            "SELECT seq, temperature, humidity, quality, note, version_hlc, version_site_id, \
                 priority FROM readings WHERE reading_id = $1",
        )
        .bind(amendment.reading_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((seq, temperature, humidity, quality, note, base_hlc, base_site, priority)) =
            current
        else {
            tx.rollback().await?;
            return Err(DbError::UnknownReading(amendment.reading_id.clone()));
        };
        // The row is about to hold the amendment: the first version it may
        // still hold gets its own row.
        self.materialise_firsts(&mut tx, &IdChunk::Run(seq, seq), now_us, false)
            .await?;
        // The highest stamp of the reading: its versions held, and the one
        // its row names as current (a version the storage policy dropped
        // unsynced is gone from the versions but still current).
        let highest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(hlc) FROM reading_versions WHERE reading_seq = $1")
                .bind(seq)
                .fetch_one(&mut *tx)
                .await?;
        let floor = Hlc::unpack(highest.unwrap_or(base_hlc).max(base_hlc));
        let mut clock = self.load_clock(persisted, announced, now_us);
        let hlc = match clock.stamp_above(Some(floor)) {
            Ok(hlc) => hlc,
            Err(source) => {
                tx.rollback().await?;
                return Err(DbError::ClockExhausted(ReadingExhausted {
                    reading_id: amendment.reading_id.clone(),
                    source,
                }));
            }
        };
        let values = Values {
            temperature: amendment.temperature.unwrap_or(temperature),
            humidity: amendment.humidity.unwrap_or(humidity),
            quality: amendment.quality.unwrap_or(Quality::from_db(quality)),
            note: match &amendment.note {
                Some(n) if n.is_empty() => None,
                Some(n) => Some(n.clone()),
                None => note,
            },
        };
        let base = Some((base_hlc, base_site));
        self.insert_version(
            &mut tx,
            version_id,
            seq,
            hlc.pack()?,
            &values,
            base,
            &amendment.written_by,
            now_us,
        )
        .await?;
        sqlx::query(
            "INSERT INTO outbox (version_id, priority, enqueued_at_us, next_attempt_at_us) \
             VALUES ($1, $2, $3, 0)",
        )
        .bind(version_id)
        .bind(priority)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        self.set_current(&mut tx, seq, hlc.pack()?, &values, &amendment.written_by)
            .await?;
        sqlx::query("UPDATE site_state SET next_version_id = $1, hlc = $2 WHERE singleton = 1")
            .bind(version_id + 1)
            .bind(clock.hlc().pack()?)
            .execute(&mut *tx)
            .await?;
        let reading: StoredReading = sqlx::query_as(&format!(
            "SELECT {} FROM readings WHERE seq = $1",
            reading_columns("readings")
        ))
        .bind(seq)
        .fetch_one(&mut *tx)
        .await?;
        tx.statements_done().await?;
        tx.commit().await?;
        self.after_write();
        self.log_fall_back(&clock, persisted, "amend");
        Ok(reading)
    }

    /// Applies one page of the change feed under `policy` and stores
    /// `next_cursor`, all in one transaction. `announced`: the clock-skew
    /// bound the cloud announced with the page, stored with it and used from
    /// now on (`None`: the one in force stays). A remote stamp further ahead
    /// of the wall clock than the bound is still applied, flagged and
    /// reported, and moves the site's clock only up to the bound.
    pub async fn apply_remote(
        &self,
        versions: &[RemoteVersion],
        policy: Policy,
        next_cursor: i64,
        announced: Option<SkewBound>,
    ) -> Result<ApplyOutcome, DbError> {
        let now_us = self.clock.now_us();
        let mut tx = self.write_tx(WriteOp::ApplyRemote).await?;
        let state_sql = format!(
            "SELECT next_version_id, hlc, next_foreign_seq, pull_cursor, max_clock_skew_ms \
             FROM site_state WHERE singleton = 1{}",
            DB::LOCK_STATE
        );
        let (mut version_id, persisted, mut foreign_seq, stored_cursor, stored_bound): (
            i64,
            i64,
            i64,
            i64,
            Option<i64>,
        ) = sqlx::query_as(&state_sql).fetch_one(&mut *tx).await?;
        let announced_ms = announced.map(|b| i64::try_from(b.as_ms()).unwrap_or(i64::MAX));
        let bound_ms = announced_ms.or(stored_bound);
        let mut clock = self.load_clock(persisted, bound_ms, now_us);
        let mut held = self.histories(&mut tx, versions, policy, now_us).await?;
        let mut outcome = ApplyOutcome {
            bound: clock.bound(),
            bound_changed: announced.is_some() && announced_ms != stored_bound,
            ..ApplyOutcome::default()
        };
        let mut writes = PageWrites::default();

        for remote in versions {
            let ahead_ms = clock.receive(remote.stamp.hlc);
            let version = Version {
                stamp: remote.stamp.clone(),
                base: remote.base.clone(),
            };
            let reading = match held.entry(remote.reading_id.clone()) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(_) if remote.origin_site_id == self.site_id() => {
                    // Pruned or dropped here: not brought back.
                    outcome.skipped += 1;
                    continue;
                }
                Entry::Vacant(entry) => {
                    // A shared sensor's reading from another site: stored
                    // under the next negative key, so this site's seqs stay
                    // gap-free. Its first version is applied below.
                    let seq = foreign_seq;
                    foreign_seq -= 1;
                    writes.foreign.push((seq, remote));
                    entry.insert(Held {
                        seq,
                        history: History::default(),
                    })
                }
            };
            match reading.history.apply(version, policy) {
                Applied::AlreadyHeld => outcome.already_held += 1,
                Applied::Added {
                    winner_changed,
                    conflict,
                } => {
                    let seq = reading.seq;
                    writes.versions.push((version_id, seq, remote, ahead_ms));
                    version_id += 1;
                    outcome.applied += 1;
                    if let Some(ahead_ms) = ahead_ms {
                        outcome.skewed.push(Skew {
                            reading_id: remote.reading_id.clone(),
                            stamp: remote.stamp.clone(),
                            ahead_ms,
                        });
                    }
                    if winner_changed {
                        let current = match reading.history.winner() {
                            Some(w) if w.stamp != remote.stamp => {
                                CurrentFrom::Stored(w.stamp.clone())
                            }
                            _ => CurrentFrom::Arrived(remote, ahead_ms),
                        };
                        if writes.current.insert(seq, current).is_none() {
                            outcome.readings_changed += 1;
                        }
                    }
                    if let Some(conflict) = conflict {
                        writes.conflicts.push((remote, conflict.clone()));
                        outcome.conflicts.push(conflict);
                    }
                }
            }
        }
        self.write_page(&mut tx, &writes, now_us).await?;

        outcome.cursor = stored_cursor.max(next_cursor);
        sqlx::query(
            "UPDATE site_state SET next_version_id = $1, hlc = $2, next_foreign_seq = $3, \
             pull_cursor = $4, remote_versions = remote_versions + $5, max_clock_skew_ms = $6, \
             readings_held = readings_held + $7 WHERE singleton = 1",
        )
        .bind(version_id)
        .bind(clock.hlc().pack()?)
        .bind(foreign_seq)
        .bind(outcome.cursor)
        .bind(i64::try_from(outcome.applied).unwrap_or(i64::MAX))
        .bind(bound_ms)
        .bind(i64::try_from(writes.foreign.len()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        // Remote versions take version ids too: a site that only pulls
        // would otherwise leave them all above the floor, to be read
        // through by every scan of the implicit outbox.
        self.raise_outbox_floor(&mut tx).await?;
        tx.statements_done().await?;
        tx.commit().await?;
        self.after_write();
        self.log_fall_back(&clock, persisted, "apply_remote");
        Ok(outcome)
    }

    /// Where the change feed was applied up to.
    pub async fn pull_cursor(&self) -> Result<i64, DbError> {
        Ok(
            sqlx::query_scalar("SELECT pull_cursor FROM site_state WHERE singleton = 1")
                .fetch_one(&mut *self.pools.read().acquire().await?)
                .await?,
        )
    }

    /// Up to `limit` audit-log entries after `after_id`, and the log's size.
    pub async fn conflicts(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<(Vec<ConflictRow>, i64), DbError> {
        let mut conn = self.pools.read().acquire().await?;
        let rows = sqlx::query_as(
            "SELECT id, reading_id, local_hlc, local_site_id, remote_hlc, remote_site_id, \
             current_hlc, current_site_id, winner, policy, resolved_at_us, local_written_by, \
             remote_written_by FROM conflicts \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM conflicts")
            .fetch_one(&mut *conn)
            .await?;
        Ok((rows, total))
    }

    /// The histories of the readings a page names that the site holds: two
    /// statements per chunk of readings, never one per version. Their
    /// implicit first versions get their rows first: what the page applies
    /// may change the readings' rows, which hold them.
    async fn histories(
        &self,
        conn: &mut DB::Connection,
        versions: &[RemoteVersion],
        policy: Policy,
        now_us: i64,
    ) -> Result<HashMap<String, Held>, DbError> {
        let mut ids: Vec<&str> = versions.iter().map(|v| v.reading_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut seqs: HashMap<i64, String> = HashMap::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let mut sql = String::from("SELECT seq, reading_id FROM readings WHERE reading_id IN ");
            push_placeholders::<DB>(&mut sql, 1, 1, chunk.len(), "");
            let mut query = sqlx::query_as::<DB, (i64, String)>(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            seqs.extend(query.fetch_all(&mut *conn).await?);
        }
        let mut versions_of: HashMap<i64, Vec<Version>> = HashMap::new();
        let mut keys: Vec<i64> = seqs.keys().copied().collect();
        keys.sort_unstable();
        let own: Vec<i64> = keys.iter().copied().filter(|seq| *seq > 0).collect();
        for chunk in id_chunks(&own) {
            self.materialise_firsts(conn, &chunk, now_us, false).await?;
        }
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let mut sql = String::from(
                "SELECT reading_seq, hlc, site_id, base_hlc, base_site_id FROM reading_versions \
                 WHERE reading_seq IN ",
            );
            push_placeholders::<DB>(&mut sql, 1, 1, chunk.len(), "");
            let mut query = sqlx::query_as::<DB, VersionKey>(&sql);
            for seq in chunk {
                query = query.bind(*seq);
            }
            for key in query.fetch_all(&mut *conn).await? {
                versions_of
                    .entry(key.reading_seq)
                    .or_default()
                    .push(key.version());
            }
        }
        Ok(seqs
            .into_iter()
            .map(|(seq, reading_id)| {
                let versions = versions_of.remove(&seq).unwrap_or_default();
                (
                    reading_id,
                    Held {
                        seq,
                        history: History::new(versions, policy),
                    },
                )
            })
            .collect())
    }

    /// Makes this site's new amendment `seq`'s current version: pending
    /// (just entered the outbox) and never flagged (stamped here).
    async fn set_current(
        &self,
        conn: &mut DB::Connection,
        seq: i64,
        hlc: i64,
        values: &Values,
        written_by: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE readings SET temperature = $1, humidity = $2, quality = $3, note = $4, \
             version_hlc = $5, version_site_id = $6, sync_state = $7, \
             version_clock_ahead_ms = NULL, version_written_by = $8 WHERE seq = $9",
        )
        .bind(values.temperature)
        .bind(values.humidity)
        .bind(values.quality as i64)
        .bind(values.note.clone())
        .bind(hlc)
        .bind(self.site_id())
        .bind(SyncState::Pending as i64)
        .bind(written_by)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Stores this site's amendment of `seq` as a new version.
    #[allow(clippy::too_many_arguments)]
    async fn insert_version(
        &self,
        conn: &mut DB::Connection,
        version_id: i64,
        seq: i64,
        hlc: i64,
        values: &Values,
        base: Option<(i64, String)>,
        written_by: &str,
        now_us: i64,
    ) -> Result<(), DbError> {
        let (base_hlc, base_site_id) = base.unzip();
        sqlx::query(
            "INSERT INTO reading_versions (version_id, reading_seq, hlc, site_id, temperature, \
             humidity, created_at_us, quality, note, base_hlc, base_site_id, written_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(version_id)
        .bind(seq)
        .bind(hlc)
        .bind(self.site_id())
        .bind(values.temperature)
        .bind(values.humidity)
        .bind(now_us)
        .bind(values.quality as i64)
        .bind(values.note.clone())
        .bind(base_hlc)
        .bind(base_site_id)
        .bind(written_by)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Writes what applying a page decided: a few multi-row statements per
    /// table (statements, not rows, are what costs, above all on
    /// PostgreSQL, where each is a round trip), in the order the foreign
    /// keys need.
    async fn write_page(
        &self,
        conn: &mut DB::Connection,
        writes: &PageWrites<'_>,
        now_us: i64,
    ) -> Result<(), DbError> {
        self.insert_foreign_readings(conn, &writes.foreign).await?;
        self.insert_remote_versions(conn, &writes.versions, now_us)
            .await?;
        self.log_conflicts(conn, &writes.conflicts, now_us).await?;
        let mut current = Vec::with_capacity(writes.current.len());
        for (seq, from) in &writes.current {
            current.push(match from {
                CurrentFrom::Arrived(remote, ahead_ms) => CurrentRowValues {
                    seq: *seq,
                    hlc: remote.stamp.hlc.pack()?,
                    site_id: remote.stamp.site_id.clone(),
                    values: remote.values.clone(),
                    state: SyncState::Synced,
                    clock_ahead_ms: ahead_ms.map(ms_i64),
                    written_by: remote.written_by.clone(),
                },
                CurrentFrom::Stored(stamp) => self.stored_current(conn, *seq, stamp).await?,
            });
        }
        self.set_currents(conn, &current).await
    }

    /// A stored version's values, to make it current again: rare, when an
    /// arriving version changed which head wins without winning itself.
    async fn stored_current(
        &self,
        conn: &mut DB::Connection,
        seq: i64,
        stamp: &Stamp,
    ) -> Result<CurrentRowValues, DbError> {
        type Row = (
            f64,
            f64,
            i64,
            Option<String>,
            i64,
            Option<i64>,
            Option<String>,
        );
        let (temperature, humidity, quality, note, unsynced, clock_ahead_ms, written_by): Row =
            sqlx::query_as(&format!(
                "SELECT v.temperature, v.humidity, v.quality, v.note, \
                 CAST(CASE WHEN {} THEN 1 ELSE 0 END AS BIGINT), \
                 v.clock_ahead_ms, v.written_by \
                 FROM reading_versions v WHERE v.reading_seq = $1 AND v.hlc = $2 AND v.site_id = $3",
                in_outbox("v")
            ))
            .bind(seq)
            .bind(stamp.hlc.pack()?)
            .bind(stamp.site_id.as_str())
            .fetch_one(&mut *conn)
            .await?;
        Ok(CurrentRowValues {
            seq,
            clock_ahead_ms,
            written_by,
            hlc: stamp.hlc.pack()?,
            site_id: stamp.site_id.clone(),
            values: Values {
                temperature,
                humidity,
                quality: Quality::from_db(quality),
                note,
            },
            state: if unsynced > 0 {
                SyncState::Pending
            } else {
                SyncState::Synced
            },
        })
    }

    /// Makes each reading's row hold its current version's values.
    async fn set_currents(
        &self,
        conn: &mut DB::Connection,
        rows: &[CurrentRowValues],
    ) -> Result<(), DbError> {
        for chunk in shaped_chunks(rows) {
            // VALUES columns are named column1… on both backends.
            let mut sql = String::from(
                "UPDATE readings SET temperature = v.column2, humidity = v.column3, \
                 quality = v.column4, note = v.column5, version_hlc = v.column6, \
                 version_site_id = v.column7, sync_state = v.column8, \
                 version_clock_ahead_ms = v.column9, version_written_by = v.column10 \
                 FROM (VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 10, "");
            sql.push_str(") AS v WHERE readings.seq = v.column1");
            let mut update = sqlx::query::<DB>(&sql);
            for row in chunk {
                update = update
                    .bind(row.seq)
                    .bind(row.values.temperature)
                    .bind(row.values.humidity)
                    .bind(row.values.quality as i64)
                    .bind(row.values.note.clone())
                    .bind(row.hlc)
                    .bind(row.site_id.as_str())
                    .bind(row.state as i64)
                    .bind(row.clock_ahead_ms)
                    .bind(row.written_by.clone());
            }
            update.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Stores pulled versions, synced (they came from the cloud) and never
    /// in the outbox, with their flags.
    async fn insert_remote_versions(
        &self,
        conn: &mut DB::Connection,
        rows: &[NewVersion<'_>],
        now_us: i64,
    ) -> Result<(), DbError> {
        for chunk in shaped_chunks(rows) {
            let mut sql = String::from(
                "INSERT INTO reading_versions (version_id, reading_seq, hlc, site_id, temperature, \
                 humidity, created_at_us, synced_at_us, quality, note, base_hlc, base_site_id, \
                 remote, clock_ahead_ms, written_by) VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 15, "");
            let mut insert = sqlx::query::<DB>(&sql);
            for (version_id, seq, remote, ahead_ms) in chunk {
                let base = match &remote.base {
                    Some(base) => Some(base.hlc.pack()?),
                    None => None,
                };
                insert = insert
                    .bind(*version_id)
                    .bind(*seq)
                    .bind(remote.stamp.hlc.pack()?)
                    .bind(remote.stamp.site_id.as_str())
                    .bind(remote.values.temperature)
                    .bind(remote.values.humidity)
                    .bind(now_us)
                    .bind(Some(now_us))
                    .bind(remote.values.quality as i64)
                    .bind(remote.values.note.clone())
                    .bind(base)
                    .bind(remote.base.as_ref().map(|b| b.site_id.clone()))
                    .bind(true)
                    .bind(ahead_ms.map(ms_i64))
                    .bind(remote.written_by.clone());
            }
            insert.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Readings other sites originated, first seen in the feed: stored
    /// synced, indexed by sensor at once (their keys are below the index's
    /// high mark).
    async fn insert_foreign_readings(
        &self,
        conn: &mut DB::Connection,
        rows: &[(i64, &RemoteVersion)],
    ) -> Result<(), DbError> {
        for chunk in shaped_chunks(rows) {
            let mut sql = String::from(
                "INSERT INTO readings (seq, reading_id, origin_site_id, sensor_id, temperature, \
                 humidity, measured_at_us, received_at_us, priority, clock_suspect, content_digest, \
                 version_hlc, version_site_id, sync_state, quality, note, origin_seq, \
                 version_written_by) VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 18, "");
            let mut insert = sqlx::query::<DB>(&sql);
            for (seq, remote) in chunk {
                insert = insert
                    .bind(*seq)
                    .bind(remote.reading_id.as_str())
                    .bind(remote.origin_site_id.as_str())
                    .bind(remote.sensor_id.as_str())
                    .bind(remote.values.temperature)
                    .bind(remote.values.humidity)
                    .bind(remote.measured_at_us)
                    .bind(remote.received_at_us)
                    .bind(remote.priority)
                    .bind(remote.clock_suspect)
                    // No gateway content to compare a retry against: an
                    // ingest of this id here is answered CONFLICT, never
                    // stored twice.
                    .bind(Vec::<u8>::new())
                    .bind(remote.stamp.hlc.pack()?)
                    .bind(remote.stamp.site_id.as_str())
                    .bind(SyncState::Synced as i64)
                    .bind(remote.values.quality as i64)
                    .bind(remote.values.note.clone())
                    .bind(remote.origin_seq)
                    .bind(remote.written_by.clone());
            }
            insert.execute(&mut *conn).await?;
            let mut sql = String::from(
                "INSERT INTO readings_by_sensor (sensor_id, measured_at_us, seq) VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 3, "");
            let mut index = sqlx::query::<DB>(&sql);
            for (seq, remote) in chunk {
                index = index
                    .bind(remote.sensor_id.as_str())
                    .bind(remote.measured_at_us)
                    .bind(*seq);
            }
            index.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Appends resolved conflicts to the audit log, each with both
    /// versions' writers: the arrived one's as the cloud said, the held
    /// one's read from its stored version (stored before this runs, if it
    /// arrived earlier in the page) in the same statement.
    async fn log_conflicts(
        &self,
        conn: &mut DB::Connection,
        rows: &[(&RemoteVersion, Conflict)],
        now_us: i64,
    ) -> Result<(), DbError> {
        for chunk in shaped_chunks(rows) {
            // VALUES columns are named column1… on both backends.
            let mut sql = String::from(
                "INSERT INTO conflicts (reading_id, local_hlc, local_site_id, remote_hlc, \
                 remote_site_id, current_hlc, current_site_id, winner, policy, resolved_at_us, \
                 remote_written_by, local_written_by) \
                 SELECT c.column1, c.column2, c.column3, c.column4, c.column5, c.column6, \
                 c.column7, c.column8, c.column9, c.column10, c.column11, \
                 (SELECT v.written_by FROM readings r JOIN reading_versions v \
                 ON v.reading_seq = r.seq WHERE r.reading_id = c.column1 \
                 AND v.hlc = c.column2 AND v.site_id = c.column3) FROM (VALUES ",
            );
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 11, "");
            sql.push_str(") AS c");
            let mut insert = sqlx::query::<DB>(&sql);
            for (remote, conflict) in chunk {
                insert = insert
                    .bind(remote.reading_id.as_str())
                    .bind(conflict.local.hlc.pack()?)
                    .bind(conflict.local.site_id.as_str())
                    .bind(conflict.remote.hlc.pack()?)
                    .bind(conflict.remote.site_id.as_str())
                    .bind(conflict.current.hlc.pack()?)
                    .bind(conflict.current.site_id.as_str())
                    .bind(conflict.winner.as_str())
                    .bind(conflict.policy.as_str())
                    .bind(now_us)
                    .bind(remote.written_by.clone());
            }
            insert.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Milliseconds as the database stores them.
fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
