//! The admin API's listings: what the cloud stores, page by page, for
//! tests and demos (never the site-facing contract).

use edge_cloud_link::contract::{Hlc, VersionRecord, VersionStamp};

use super::backend::Backend;
use super::sql::parse_priority;
use super::store::Store;
use super::versions::{CURRENT_JOIN, IS_CURRENT, RECORD_COLUMNS, wire_hlc};
use super::{DbError, Page};
use crate::stored::{StoredConflict, StoredSimpleReading, StoredVersion};
use edge_sql::statement::push_param;

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB> {
    /// Up to `limit` versions of `site` stored after cursor `after`.
    pub async fn versions_page(
        &self,
        site: &str,
        after: i64,
        limit: u32,
    ) -> Result<Page<StoredVersion>, DbError> {
        self.stored_versions(Some(site), after, limit).await
    }

    /// Up to `limit` versions of any site stored after cursor `after` that
    /// were stamped beyond the clock-skew bound (flagged), through their
    /// partial index.
    pub async fn clock_ahead_page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Page<StoredVersion>, DbError> {
        self.stored_versions(None, after, limit).await
    }

    /// Versions pushed by `site`, or (`None`) the flagged versions of all.
    async fn stored_versions(
        &self,
        site: Option<&str>,
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
            Option<i64>,
            Option<String>,
        );
        let mut sql = String::from(
            "SELECT id, seq, reading_id, hlc_physical_ms, hlc_logical, version_site_id, sensor_id, temperature, \
             humidity, measured_at_us, received_at_us, priority, clock_suspect, push, clock_ahead_ms, \
             written_by FROM versions WHERE ",
        );
        let mut next = 1;
        if site.is_some() {
            sql.push_str("site_id = ");
            push_param::<DB>(&mut sql, &mut next);
        } else {
            sql.push_str("clock_ahead_ms IS NOT NULL");
        }
        sql.push_str(" AND id > ");
        push_param::<DB>(&mut sql, &mut next);
        sql.push_str(" ORDER BY id LIMIT ");
        push_param::<DB>(&mut sql, &mut next);
        let mut query = sqlx::query_as::<DB, Row>(&sql);
        if let Some(site) = site {
            query = query.bind(site);
        }
        let mut conn = self.pools.read().acquire().await?;
        let rows: Vec<Row> = query
            .bind(after)
            .bind(i64::from(limit) + 1)
            .fetch_all(&mut *conn)
            .await?;
        let rows: Vec<(i64, StoredVersion)> = rows
            .into_iter()
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
                        clock_ahead_ms: r.14.and_then(|ms| u64::try_from(ms).ok()),
                        written_by: r.15,
                    },
                )
            })
            .collect();
        let page = Page::from_overfetched(rows, limit, |(id, _)| *id);
        Ok(Page {
            rows: page.rows.into_iter().map(|(_, v)| v).collect(),
            next: page.next,
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
        let mut conn = self.pools.read().acquire().await?;
        let rows: Vec<(i64, String, f64, f64, String)> =
            sqlx::query_as::<DB, (i64, String, f64, f64, String)>(&sql)
                .bind(after)
                .bind(i64::from(limit) + 1)
                .fetch_all(&mut *conn)
                .await?;
        let rows: Vec<StoredSimpleReading> = rows
            .into_iter()
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
        Ok(Page::from_overfetched(rows, limit, |r| r.id))
    }

    /// Up to `limit` current versions, by reading id after `after`,
    /// optionally only of readings that originated at `origin`.
    pub async fn current_page(
        &self,
        origin: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<VersionRecord, String>, DbError> {
        let mut sql =
            format!("SELECT {RECORD_COLUMNS} FROM versions v {CURRENT_JOIN} WHERE {IS_CURRENT}");
        let mut next = 1;
        if origin.is_some() {
            sql.push_str(" AND v.origin_site_id = ");
            push_param::<DB>(&mut sql, &mut next);
        }
        if after.is_some() {
            sql.push_str(" AND v.reading_id > ");
            push_param::<DB>(&mut sql, &mut next);
        }
        sql.push_str(" ORDER BY v.reading_id LIMIT ");
        push_param::<DB>(&mut sql, &mut next);
        let mut query = sqlx::query::<DB>(&sql);
        if let Some(origin) = origin {
            query = query.bind(origin);
        }
        if let Some(after) = after {
            query = query.bind(after);
        }
        query = query.bind(i64::from(limit) + 1);
        let mut conn = self.pools.read().acquire().await?;
        let rows = query.fetch_all(&mut *conn).await?;
        let rows = rows
            .iter()
            .map(|row| Self::record_at(row, 0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetched(rows, limit, |r| {
            r.reading_id.clone()
        }))
    }

    /// Up to `limit` resolved conflicts with ids above `after`, optionally
    /// only those of `reading_id`.
    pub async fn conflicts_page(
        &self,
        reading_id: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Page<StoredConflict>, DbError> {
        type Row = (
            i64,
            String,
            i64,
            i64,
            String,
            i64,
            i64,
            String,
            String,
            String,
            i64,
            Option<String>,
            Option<String>,
        );
        // Both versions' writers through the versions' unique key: the cloud
        // never prunes a version, so they are read with the log, not copied
        // into it.
        let writer = |side: &str| {
            format!(
                "(SELECT v.written_by FROM versions v WHERE v.reading_id = c.reading_id \
                 AND v.hlc_physical_ms = c.{side}_physical_ms AND v.hlc_logical = c.{side}_logical \
                 AND v.version_site_id = c.{side}_site_id)"
            )
        };
        let mut sql = format!(
            "SELECT c.id, c.reading_id, c.local_physical_ms, c.local_logical, c.local_site_id, \
             c.remote_physical_ms, c.remote_logical, c.remote_site_id, c.winner, c.policy, \
             c.resolved_at_us, {}, {} FROM conflicts c WHERE c.id > ",
            writer("local"),
            writer("remote")
        );
        let mut next = 1;
        push_param::<DB>(&mut sql, &mut next);
        if reading_id.is_some() {
            sql.push_str(" AND c.reading_id = ");
            push_param::<DB>(&mut sql, &mut next);
        }
        sql.push_str(" ORDER BY c.id LIMIT ");
        push_param::<DB>(&mut sql, &mut next);
        let mut query = sqlx::query_as::<DB, Row>(&sql).bind(after);
        if let Some(reading_id) = reading_id {
            query = query.bind(reading_id);
        }
        let mut conn = self.pools.read().acquire().await?;
        let rows: Vec<Row> = query
            .bind(i64::from(limit) + 1)
            .fetch_all(&mut *conn)
            .await?;
        let rows: Vec<StoredConflict> = rows
            .into_iter()
            .map(|r| StoredConflict {
                id: r.0,
                reading_id: r.1,
                local: VersionStamp {
                    hlc: wire_hlc(r.2, r.3),
                    site_id: r.4,
                },
                remote: VersionStamp {
                    hlc: wire_hlc(r.5, r.6),
                    site_id: r.7,
                },
                winner: r.8,
                policy: r.9,
                resolved_at_us: r.10,
                local_written_by: r.11,
                remote_written_by: r.12,
            })
            .collect();
        Ok(Page::from_overfetched(rows, limit, |c| c.id))
    }
}
