//! Readings' first versions kept in their `readings` row, with no row of
//! their own in `reading_versions` (the migration that added
//! `first_implicit` says why and how they are numbered).
//!
//! A reading appended here with no critical priority starts with its first
//! version *implicit*: the row's current values are the version's, its
//! sync state says whether the cloud acknowledged it, and its version id is
//! `seq - seq_from + version_from` of the [`FirstRun`] holding its seq. The
//! rest of the store sees such a version in three places only: the implicit
//! outbox (leases, counts, the floor, drops), acknowledgements (which set
//! the reading synced) and pruning (which counts it). Every other write that
//! touches the version, or changes the row's values away from it, first
//! gives it its row ([`Store::materialise_firsts`]), after which it is an
//! ordinary version.

use sqlx::FromRow;

use super::DbError;
use super::backend::Backend;
use super::outbox::IdChunk;
use super::sql::SqlBuilder;
use super::store::Store;
use crate::model::SyncState;
use crate::outbox::{OutboxEntry, id_runs};

/// Above this many runs of ids, a batch's runs are read in one range.
const MAX_RUN_LOOKUPS: usize = 16;

/// Reading `r`'s first version is implicit and waits for the cloud.
pub(super) const FIRST_WAITING: &str = "r.first_implicit AND r.sync_state = 1";

/// The version id of reading `r`'s first version, from its run, as a
/// scalar subquery (one probe of the runs' primary key).
pub(super) const FIRST_VERSION_ID: &str = "(SELECT r.seq - fr.seq_from + fr.version_from \
     FROM first_version_runs fr WHERE fr.seq_from <= r.seq ORDER BY fr.seq_from DESC LIMIT 1)";

/// Columns of [`OutboxEntry`] for the implicit first version of reading
/// `r`, the version id added to the seq by the caller's first argument:
/// never attempted, enqueued when the reading was received.
const FIRST_COLUMNS: &str = "r.reading_id, COALESCE(r.origin_seq, r.seq) AS seq, \
     r.origin_site_id, r.sensor_id, r.temperature, r.humidity, r.measured_at_us, \
     r.received_at_us, r.priority, r.clock_suspect, r.version_hlc AS hlc, r.version_site_id, \
     CAST(0 AS BIGINT) AS attempts, r.received_at_us AS enqueued_at_us, \
     CAST(NULL AS TEXT) AS last_error, r.quality, r.note, CAST(NULL AS BIGINT) AS base_hlc, \
     CAST(NULL AS TEXT) AS base_site_id, r.version_written_by AS written_by";

/// Consecutive readings appended here whose first versions have
/// consecutive ids: reading `seq_from + i` has version `version_from + i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FirstRun {
    pub seq_from: i64,
    pub seq_to: i64,
    pub version_from: i64,
}

impl From<(i64, i64, i64)> for FirstRun {
    fn from((seq_from, seq_to, version_from): (i64, i64, i64)) -> Self {
        Self {
            seq_from,
            seq_to,
            version_from,
        }
    }
}

impl FirstRun {
    /// The last version id of the run.
    fn version_to(&self) -> i64 {
        self.version_from + (self.seq_to - self.seq_from)
    }

    /// What a version id adds to a seq in this run.
    fn offset(&self) -> i64 {
        self.version_from - self.seq_from
    }

    /// The seq whose first version is `version_id`, if the run holds it.
    fn seq_of(&self, version_id: i64) -> Option<i64> {
        (self.version_from..=self.version_to())
            .contains(&version_id)
            .then(|| version_id - self.offset())
    }
}

/// The runs that hold some version id of a range, in id order.
#[derive(Debug, Default)]
pub(super) struct FirstRuns(Vec<FirstRun>);

impl FirstRuns {
    /// The run that would hold version `id`: the last starting at or
    /// below it.
    fn run_of_version(&self, id: i64) -> Option<&FirstRun> {
        let after = self.0.partition_point(|run| run.version_from <= id);
        after.checked_sub(1).map(|i| &self.0[i])
    }

    /// The seqs whose first versions are among `ids` (any order), in seq
    /// order. An id of a version with a row of its own (an amendment, a
    /// pulled version) lies between runs and maps to nothing.
    pub(super) fn seqs_of(&self, ids: &[i64]) -> Vec<i64> {
        let mut seqs: Vec<i64> = ids
            .iter()
            .filter_map(|id| self.run_of_version(*id)?.seq_of(*id))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs
    }

    /// The first version id of reading `seq`, if a run holds it.
    fn version_of(&self, seq: i64) -> Option<i64> {
        let after = self.0.partition_point(|run| run.seq_from <= seq);
        let run = &self.0[after.checked_sub(1)?];
        (seq <= run.seq_to).then(|| seq + run.offset())
    }

    /// The readings whose first versions have ids in `first..=last`, as
    /// one span of seqs (runs follow each other in seq order with no gap:
    /// every reading appended here is in one), or `None`.
    pub(super) fn seq_span(&self, first: i64, last: i64) -> Option<(i64, i64)> {
        let ranges = self.seq_ranges(first, last);
        Some((ranges.first()?.0, ranges.last()?.1))
    }

    /// For the ids `first..=last`: each run's share as the seqs it covers
    /// and the offset from seq to version id, in id order.
    fn seq_ranges(&self, first: i64, last: i64) -> Vec<(i64, i64, i64)> {
        self.0
            .iter()
            .filter_map(|run| {
                let from = first.max(run.version_from);
                let to = last.min(run.version_to());
                (from <= to).then(|| (from - run.offset(), to - run.offset(), run.offset()))
            })
            .collect()
    }
}

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB> {
    /// The runs holding any version id in `first..=last`.
    pub(super) async fn first_runs(
        &self,
        conn: &mut DB::Connection,
        first: i64,
        last: i64,
    ) -> Result<FirstRuns, DbError> {
        let runs: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT seq_from, seq_to, version_from FROM first_version_runs \
             WHERE version_from BETWEEN COALESCE((SELECT MAX(version_from) \
             FROM first_version_runs WHERE version_from <= $1), $1) AND $2 \
             ORDER BY version_from",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&mut *conn)
        .await?;
        Ok(FirstRuns(
            runs.into_iter()
                .map(FirstRun::from)
                .filter(|run| run.version_to() >= first)
                .collect(),
        ))
    }

    /// The runs holding any of `ids`: read per run of consecutive ids
    /// (a batch is mostly one or two), so a batch spanning the backlog
    /// does not read every run in between.
    pub(super) async fn first_runs_of(
        &self,
        conn: &mut DB::Connection,
        ids: &[i64],
    ) -> Result<FirstRuns, DbError> {
        let spans = id_runs(ids);
        let spans = if spans.len() > MAX_RUN_LOOKUPS {
            match (ids.iter().min(), ids.iter().max()) {
                (Some(first), Some(last)) => vec![(*first, *last)],
                _ => Vec::new(),
            }
        } else {
            spans
        };
        let mut runs = Vec::new();
        for (first, last) in spans {
            runs.extend(self.first_runs(conn, first, last).await?.0);
        }
        runs.sort_by_key(|run| run.version_from);
        runs.dedup();
        Ok(FirstRuns(runs))
    }

    /// The lowest seq whose first version id lies above `version_id` (the
    /// readings a scan of implicit first versions above it starts at);
    /// `i64::MAX` when there are none.
    pub(super) async fn first_seq_above(
        &self,
        conn: &mut DB::Connection,
        version_id: i64,
    ) -> Result<i64, DbError> {
        let run: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT seq_from, seq_to, version_from FROM first_version_runs \
             WHERE version_from <= $1 ORDER BY version_from DESC LIMIT 1",
        )
        .bind(version_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(run) = run.map(FirstRun::from) {
            return Ok(match run.seq_of(version_id) {
                Some(seq) => seq + 1,
                None => run.seq_to + 1,
            });
        }
        // Every run lies above: the scan starts at the first (readings
        // older than every run have rows of their own).
        let first: Option<i64> = sqlx::query_scalar("SELECT MIN(seq_from) FROM first_version_runs")
            .fetch_one(&mut *conn)
            .await?;
        Ok(first.unwrap_or(i64::MAX))
    }

    /// Records that readings `seq_from..=seq_to`, appended with first
    /// versions `version_from…`, have them implicit: the last run grows when
    /// it continues it, else a new run starts.
    pub(super) async fn extend_first_runs(
        &self,
        conn: &mut DB::Connection,
        seq_from: i64,
        seq_to: i64,
        version_from: i64,
    ) -> Result<(), DbError> {
        let extended = sqlx::query(
            "UPDATE first_version_runs SET seq_to = $1 \
             WHERE seq_from = (SELECT MAX(seq_from) FROM first_version_runs) \
             AND seq_to = $2 AND version_from - seq_from = $3",
        )
        .bind(seq_to)
        .bind(seq_from - 1)
        .bind(version_from - seq_from)
        .execute(&mut *conn)
        .await?;
        if DB::rows_affected(&extended) == 0 {
            sqlx::query(
                "INSERT INTO first_version_runs (seq_from, seq_to, version_from) \
                 VALUES ($1, $2, $3)",
            )
            .bind(seq_from)
            .bind(seq_to)
            .bind(version_from)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Gives the implicit first versions of the readings in `seqs` their
    /// rows, as they are (an acknowledged one synced at `now_us`, the time
    /// of its acknowledgement not being kept), or only those still waiting
    /// when `waiting_only`. Returns how many. Each stays in the outbox, or
    /// out of it, as it was.
    pub(super) async fn materialise_firsts(
        &self,
        conn: &mut DB::Connection,
        seqs: &IdChunk,
        now_us: i64,
        waiting_only: bool,
    ) -> Result<u64, DbError> {
        let which = if waiting_only {
            " AND r.first_implicit AND r.sync_state = 1"
        } else {
            " AND r.first_implicit"
        };
        let mut insert = SqlBuilder::<DB>::default();
        insert.push(&format!(
            "INSERT INTO reading_versions (version_id, reading_seq, hlc, site_id, temperature, \
             humidity, written_by, created_at_us, synced_at_us, quality, note) \
             SELECT {FIRST_VERSION_ID}, r.seq, r.version_hlc, r.version_site_id, r.temperature, \
             r.humidity, r.version_written_by, r.received_at_us, \
             CASE WHEN r.sync_state = {} THEN ",
            SyncState::Synced as i64
        ));
        insert.arg(now_us);
        insert.push(" END, r.quality, r.note FROM readings r WHERE ");
        insert.id_filter("r.seq", seqs);
        insert.push(which);
        let written = DB::rows_affected(&insert.query()?.execute(&mut *conn).await?);
        if written > 0 {
            let mut flag = SqlBuilder::<DB>::default();
            flag.push("UPDATE readings SET first_implicit = FALSE WHERE ");
            flag.id_filter("readings.seq", seqs);
            flag.push(&which.replace("r.", "readings."));
            flag.query()?.execute(&mut *conn).await?;
        }
        Ok(written)
    }

    /// Marks the implicit first versions of the readings in `seqs`
    /// acknowledged, those still waiting. Returns how many.
    pub(super) async fn acknowledge_firsts(
        &self,
        conn: &mut DB::Connection,
        seqs: &IdChunk,
    ) -> Result<u64, DbError> {
        let mut sql = SqlBuilder::<DB>::default();
        sql.push("UPDATE readings SET sync_state = ");
        sql.arg(SyncState::Synced as i64);
        sql.push(" WHERE ");
        sql.id_filter("seq", seqs);
        sql.push(" AND first_implicit AND sync_state = ");
        sql.arg(SyncState::Pending as i64);
        Ok(DB::rows_affected(&sql.query()?.execute(&mut *conn).await?))
    }

    /// Counts the implicit first versions waiting above version `floor`.
    pub(super) async fn count_waiting_firsts(
        &self,
        conn: &mut DB::Connection,
        floor: i64,
    ) -> Result<i64, DbError> {
        let from = self.first_seq_above(conn, floor).await?;
        Ok(sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM readings r WHERE r.seq >= $1 AND {FIRST_WAITING}"
        ))
        .bind(from)
        .fetch_one(&mut *conn)
        .await?)
    }

    /// The first implicit first version waiting above version `floor` and
    /// below version `below` (when given: a version known to wait, so the
    /// scan stops there): its id and when its reading was received here
    /// (the time it has waited since).
    pub(super) async fn first_waiting_first(
        &self,
        conn: &mut DB::Connection,
        floor: i64,
        below: Option<i64>,
    ) -> Result<Option<(i64, i64)>, DbError> {
        let from = self.first_seq_above(conn, floor).await?;
        let to = match below {
            Some(id) => self.first_seq_above(conn, id - 1).await?,
            None => i64::MAX,
        };
        if from >= to {
            return Ok(None);
        }
        Ok(sqlx::query_as(&format!(
            "SELECT {FIRST_VERSION_ID}, r.received_at_us FROM readings r \
             WHERE r.seq >= $1 AND r.seq < $2 AND {FIRST_WAITING} ORDER BY r.seq LIMIT 1"
        ))
        .bind(from)
        .bind(to)
        .fetch_optional(&mut *conn)
        .await?)
    }
}

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB>
where
    for<'r> OutboxEntry: FromRow<'r, DB::Row>,
{
    /// Up to `limit` implicit first versions waiting with ids in
    /// `first..=last`, in id order (descending when `newest`): one
    /// statement over the readings those ids name, whatever the runs.
    pub(super) async fn due_firsts(
        &self,
        conn: &mut DB::Connection,
        first: i64,
        last: i64,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<OutboxEntry>, DbError> {
        let runs = self.first_runs(conn, first, last).await?;
        let Some((seq_from, seq_to)) = runs.seq_span(first, last) else {
            return Ok(Vec::new());
        };
        let mut sql = SqlBuilder::<DB>::default();
        // The version id is the run's business: filled in below.
        sql.push(&format!(
            "SELECT r.seq AS version_id, {FIRST_COLUMNS} FROM readings r WHERE r.seq BETWEEN "
        ));
        sql.arg(seq_from);
        sql.push(" AND ");
        sql.arg(seq_to);
        sql.push(&format!(" AND {FIRST_WAITING} ORDER BY r.seq"));
        if newest {
            sql.push(" DESC");
        }
        sql.push(" LIMIT ");
        sql.arg(i64::try_from(limit).unwrap_or(i64::MAX));
        let mut found = sql.query_as::<OutboxEntry>()?.fetch_all(&mut *conn).await?;
        for entry in &mut found {
            // Every seq of the span is in one of the runs read.
            entry.version_id = runs
                .version_of(entry.version_id)
                .ok_or(DbError::Inconsistent(
                    "a reading outside every run of its span",
                ))?;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::{FirstRun, FirstRuns};

    fn runs() -> FirstRuns {
        // Readings 1–10 have versions 1–10; version 11 is an amendment;
        // readings 11–20 have versions 12–21.
        FirstRuns(vec![
            FirstRun {
                seq_from: 1,
                seq_to: 10,
                version_from: 1,
            },
            FirstRun {
                seq_from: 11,
                seq_to: 20,
                version_from: 12,
            },
        ])
    }

    #[test]
    fn an_id_between_runs_maps_to_no_reading() {
        assert_eq!(runs().seqs_of(&[10, 11, 12, 21, 22]), vec![10, 11, 20]);
    }

    #[test]
    fn a_range_of_ids_becomes_each_runs_seqs() {
        assert_eq!(runs().seq_ranges(5, 14), vec![(5, 10, 0), (11, 13, 1)]);
        assert_eq!(runs().seq_ranges(11, 11), vec![]);
    }

    #[test]
    fn a_seq_finds_its_version_and_a_window_its_readings() {
        let runs = runs();
        assert_eq!(runs.version_of(1), Some(1));
        assert_eq!(runs.version_of(11), Some(12));
        assert_eq!(runs.version_of(21), None);
        assert_eq!(runs.version_of(0), None);
        assert_eq!(runs.seq_span(5, 14), Some((5, 13)));
        assert_eq!(runs.seq_span(11, 11), None);
        assert_eq!(runs.seq_span(22, 30), None);
    }
}
