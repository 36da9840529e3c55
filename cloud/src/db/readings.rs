//! Reading-level SQL: the cloud's own amendments, one reading's state, and
//! the change feed a site pulls.

use edge_cloud_link::contract::{AmendmentRequest, ReadingState, VersionRecord};
use edge_versioning::{CLOUD_SITE_ID, Stamp};
use sqlx::Row as _;

use super::backend::Backend;
use super::store::{Store, log_fall_back};
use super::versions::{CURRENT_JOIN, IS_CURRENT, RECORD_COLUMN_COUNT, RECORD_COLUMNS};
use super::{Amendment, DbError, FeedPage};
use crate::amend::amended;
use crate::resolve::{HeldVersion, Offered, Readings, stamp_of, version_of};
use edge_sql::statement::push_param;

/// Most row ids one page of a feed that follows shared sensors reads past
/// its cursor (see [`Store::changes`]): a bounded scan, however far behind
/// the site is and however rare its sensors are.
pub const FEED_WINDOW: i64 = 20_000;

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB> {
    /// Makes the cloud's amendment `request` (already checked) of
    /// `reading_id`, in one transaction: locks `cloud_state`, stamps the
    /// version above every version of the reading held (however far ahead)
    /// and the clock, writes it on top of the current one, and records it as
    /// current, written by `written_by`. `None` when the cloud holds no such
    /// reading.
    pub async fn amend(
        &self,
        reading_id: &str,
        request: &AmendmentRequest,
        written_by: &str,
    ) -> Result<Option<Amendment>, DbError> {
        let mut tx = self.write_tx("amend").await?;
        let conn: &mut DB::Connection = &mut tx;
        let persisted = Self::lock_clock(&mut *conn).await?;
        let mut records = Self::reading_versions(&mut *conn, reading_id).await?;
        let policy = self.versioning.policy;
        let mut readings = Readings::new(policy, records.iter().map(held).collect());
        let Some(current) = readings
            .current(reading_id)
            .and_then(|stamp| find(&records, stamp))
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        let (now_us, now_ms) = self.versioning.now();
        let mut clock = self.versioning.clock(persisted, now_ms);
        let seen: Vec<Stamp> = records.iter().map(|r| stamp_of(&r.version)).collect();
        let stamp = match clock.stamp_above(&seen) {
            Ok(stamp) => stamp,
            Err(source) => {
                tx.rollback().await?;
                return Err(DbError::ClockExhausted(edge_versioning::ReadingExhausted {
                    reading_id: reading_id.to_owned(),
                    source,
                }));
            }
        };
        let version = amended(current, request, stamp, written_by);
        let Offered::Added { conflict } = readings.offer(&version) else {
            return Err(DbError::Inconsistent(format!(
                "the cloud's new stamp {}.{} is already held for reading {reading_id}",
                stamp.physical_ms, stamp.logical
            )));
        };
        // The cloud's own version: never flagged.
        if Self::insert_versions(&mut *conn, CLOUD_SITE_ID, 0, &[(&version, None)]).await? != 1 {
            return Err(DbError::Inconsistent(format!(
                "the cloud's amendment of reading {reading_id} was already stored"
            )));
        }
        Self::upsert_currents(&mut *conn, &readings.changed()).await?;
        let conflicts: Vec<(&str, _)> = conflict.into_iter().map(|c| (reading_id, c)).collect();
        Self::insert_conflicts(&mut *conn, &conflicts, now_us).await?;
        Self::store_clock(&mut *conn, clock.hlc()).await?;
        let current = readings.current(reading_id).cloned();
        tx.statements_done().await?;
        tx.commit().await?;
        log_fall_back(&clock, persisted, self.versioning.max_clock_skew);

        records.push(version);
        let versions = records.len() as u64;
        let current = current
            .as_ref()
            .and_then(|stamp| find(&records, stamp))
            .cloned()
            .ok_or_else(|| DbError::Inconsistent("an amended reading has no winner".into()))?;
        Ok(Some(Amendment {
            state: ReadingState {
                current,
                versions,
                policy: policy.as_str().to_owned(),
            },
            conflicts: conflicts.len() as u64,
        }))
    }

    /// The current version of `reading_id` and how many versions the cloud
    /// holds (one query, so one snapshot); `None` when it holds none.
    pub async fn reading_state(&self, reading_id: &str) -> Result<Option<ReadingState>, DbError> {
        let mut sql = format!(
            "SELECT {RECORD_COLUMNS}, CAST(CASE WHEN {IS_CURRENT} THEN 1 ELSE 0 END AS BIGINT) \
             FROM versions v {CURRENT_JOIN} WHERE v.reading_id = "
        );
        DB::placeholder(&mut sql, 1);
        sql.push_str(" ORDER BY v.id");
        let mut conn = self.pools.read().acquire().await?;
        let rows = sqlx::query::<DB>(&sql)
            .bind(reading_id)
            .fetch_all(&mut *conn)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut records = Vec::with_capacity(rows.len());
        let mut current = Vec::new();
        for row in &rows {
            let record = Self::record_at(row, 0)?;
            if row.try_get::<i64, _>(RECORD_COLUMN_COUNT)? == 1 {
                current.push(record.clone());
            }
            records.push(record);
        }
        let policy = self.versioning.policy;
        let current = match <[VersionRecord; 1]>::try_from(current) {
            Ok([current]) => current,
            Err(_) => {
                // Only a reading with versions but no row could get here
                // (a bug, or a database edited by hand): the rule decides.
                tracing::warn!(%reading_id, "no recorded current version; resolving it now");
                let readings = Readings::new(policy, records.iter().map(held).collect());
                readings
                    .current(reading_id)
                    .and_then(|stamp| find(&records, stamp))
                    .cloned()
                    .ok_or_else(|| {
                        DbError::Inconsistent(format!("reading {reading_id} has no winner"))
                    })?
            }
        };
        Ok(Some(ReadingState {
            current,
            versions: records.len() as u64,
            policy: policy.as_str().to_owned(),
        }))
    }

    /// One page of `site`'s change feed: versions with row ids above
    /// `after`, of readings the site originated or of the `sensors` it
    /// shares, never one the site wrote itself; at most `limit`, by id.
    ///
    /// The readings the site originated are read through the partial index
    /// holding only versions written by someone other than the origin (the
    /// condition repeats the index's so the planners pick it): that branch
    /// stops after `limit + 1` rows, however far behind the site is, when
    /// the site follows no sensors.
    ///
    /// Shared sensors have no index: one over `(sensor_id, id)` cost every
    /// push a random B-tree insert per version (a page per sensor written),
    /// for a feed few sites ask for. A page that follows sensors instead
    /// reads the row ids above `after` in order, at most [`FEED_WINDOW`] of
    /// them and none above the newest id committed before the page is read
    /// (ids follow commit order, so a version committed later has a larger
    /// id and is not skipped). Both branches stop at that horizon, so the
    /// page holds every match up to it and the cursor may move there
    /// ([`FeedPage::covered_to`]) even when nothing in the window matched.
    /// The cost moves from every push to the pulls of the sites that follow
    /// sensors: each reads every version written once, a window per page.
    pub async fn changes(
        &self,
        site: &str,
        after: i64,
        limit: usize,
        sensors: &[String],
    ) -> Result<FeedPage, DbError> {
        let take = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let mut conn = self.pools.read().acquire().await?;
        // Read before the page: what commits after it has a larger id.
        let window = if sensors.is_empty() {
            None
        } else {
            let newest: Option<i64> =
                sqlx::query_scalar::<DB, Option<i64>>("SELECT MAX(id) FROM versions")
                    .fetch_one(&mut *conn)
                    .await?;
            let newest = newest.unwrap_or(0).max(after);
            Some((newest.min(after.saturating_add(FEED_WINDOW)), newest))
        };
        let mut next = 1;
        let mut sql = format!(
            "SELECT v.id, {RECORD_COLUMNS} FROM versions v WHERE v.id IN (\
             SELECT id FROM (SELECT id FROM versions WHERE origin_site_id = "
        );
        push_param::<DB>(&mut sql, &mut next);
        sql.push_str(" AND version_site_id <> origin_site_id AND id > ");
        push_param::<DB>(&mut sql, &mut next);
        if window.is_some() {
            sql.push_str(" AND id <= ");
            push_param::<DB>(&mut sql, &mut next);
        }
        sql.push_str(" ORDER BY id LIMIT ");
        push_param::<DB>(&mut sql, &mut next);
        sql.push_str(") AS originated");
        if window.is_some() {
            sql.push_str(" UNION SELECT id FROM (SELECT id FROM versions WHERE id > ");
            push_param::<DB>(&mut sql, &mut next);
            sql.push_str(" AND id <= ");
            push_param::<DB>(&mut sql, &mut next);
            sql.push_str(" AND version_site_id <> ");
            push_param::<DB>(&mut sql, &mut next);
            sql.push_str(" AND sensor_id IN (");
            for i in 0..sensors.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                push_param::<DB>(&mut sql, &mut next);
            }
            sql.push_str(") ORDER BY id LIMIT ");
            push_param::<DB>(&mut sql, &mut next);
            sql.push_str(") AS shared");
        }
        sql.push_str(") ORDER BY v.id LIMIT ");
        push_param::<DB>(&mut sql, &mut next);

        let mut query = sqlx::query::<DB>(&sql).bind(site).bind(after);
        if let Some((horizon, _)) = window {
            query = query.bind(horizon);
        }
        query = query.bind(take);
        if let Some((horizon, _)) = window {
            query = query.bind(after).bind(horizon).bind(site);
            for sensor in sensors {
                query = query.bind(sensor.as_str());
            }
            query = query.bind(take);
        }
        let rows = query.bind(take).fetch_all(&mut *conn).await?;
        let full = rows.len() > limit;
        let versions = rows
            .iter()
            .take(limit)
            .map(|row| Ok((row.try_get::<i64, _>(0)?, Self::record_at(row, 1)?)))
            .collect::<Result<Vec<_>, DbError>>()?;
        Ok(match window {
            Some((horizon, newest)) if !full => FeedPage {
                versions,
                more: horizon < newest,
                covered_to: Some(horizon),
            },
            _ => FeedPage {
                versions,
                more: full,
                covered_to: None,
            },
        })
    }

    /// Every version of one reading, in storage order.
    async fn reading_versions(
        conn: &mut DB::Connection,
        reading_id: &str,
    ) -> Result<Vec<VersionRecord>, DbError> {
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM versions v WHERE v.reading_id = ");
        DB::placeholder(&mut sql, 1);
        sql.push_str(" ORDER BY v.id");
        let rows = sqlx::query::<DB>(&sql)
            .bind(reading_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(|row| Self::record_at(row, 0)).collect()
    }
}

/// What resolution needs of a stored record.
fn held(record: &VersionRecord) -> HeldVersion {
    HeldVersion {
        reading_id: record.reading_id.clone(),
        version: version_of(record),
    }
}

/// The record of `records` with `stamp`.
fn find<'a>(records: &'a [VersionRecord], stamp: &Stamp) -> Option<&'a VersionRecord> {
    records.iter().find(|r| &stamp_of(&r.version) == stamp)
}
