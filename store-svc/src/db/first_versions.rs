//! Readings' first versions kept in their `readings` row, with no row of
//! their own in `reading_versions` (the migration that added
//! `first_implicit` says why and how they are numbered).
//!
//! A reading appended here with no critical priority starts with its first
//! version *implicit*: the row's current values are the version's, and its
//! version id is `seq - seq_from + version_from` of the [`FirstRun`] holding
//! its seq. It is acknowledged when its seq lies in a run of
//! `acknowledged_first_runs` (or, acknowledged before those runs existed,
//! when its row's sync state says synced): an acknowledgement records a run
//! of seqs rather than rewriting each reading's row. The rest of the store
//! sees such a version in four places only: the implicit outbox (leases,
//! counts, the floor, drops), acknowledgements, the sync state a query
//! shows ([`sync_state_of`]) and pruning. Every other write that touches the
//! version, or changes the row's values away from it, first gives it its
//! row ([`Store::materialise_firsts`]), after which it is an ordinary
//! version.

use edge_sql::statement::shaped_chunks;
use sqlx::FromRow;

use super::DbError;
use super::backend::Backend;
use super::outbox::{IdChunk, id_chunks};
use super::sql::SqlBuilder;
use super::store::Store;
use crate::model::SyncState;
use crate::outbox::{OutboxEntry, id_runs, merge_runs};

/// Above this many runs of ids, a batch's runs are read in one range.
const MAX_RUN_LOOKUPS: usize = 16;

/// The first window of seqs [`Store::first_waiting_first`] reads.
const FIRST_WINDOW: i64 = 512;

/// Most seqs between two acknowledged in one batch that a recorded run
/// bridges (when none of them waits): critical readings and the like break
/// a batch's seqs into stretches, and a run per stretch would cost three
/// statements each.
const MAX_BRIDGED_GAP: i64 = 256;

/// Fewest seqs of a span read as a span; fewer are asked after in a list.
const MIN_SPAN: usize = 4;

/// Most acknowledged runs a scan of readings names as ranges to leave out;
/// with more it asks the runs' table row by row.
const MAX_SKIPPED_RUNS: usize = 16;

/// Reading `r`'s first version is implicit and its row does not say it was
/// acknowledged: it waits unless an acknowledged run holds its seq.
const FIRST_NOT_SYNCED_IN_ROW: &str = "r.first_implicit AND r.sync_state = 1";

/// Reading `{alias}`'s implicit first version was acknowledged after
/// acknowledgements became runs: an acknowledged run holds its seq (one
/// probe of the runs' primary key).
pub(super) fn first_acknowledged(alias: &str) -> String {
    format!(
        "({alias}.first_implicit AND COALESCE((SELECT a.seq_to FROM acknowledged_first_runs a \
         WHERE a.seq_from <= {alias}.seq ORDER BY a.seq_from DESC LIMIT 1), {alias}.seq - 1) \
         >= {alias}.seq)"
    )
}

/// Reading `{alias}`'s first version is implicit and waits for the cloud,
/// as a condition that probes the acknowledged runs per row (scans of many
/// readings leave the runs out as ranges instead: [`Acknowledged`]).
pub(super) fn first_waiting(alias: &str) -> String {
    format!(
        "({alias}.first_implicit AND {alias}.sync_state = 1 AND NOT {})",
        first_acknowledged(alias)
    )
}

/// Reading `{alias}`'s sync state: its row's, or synced when an
/// acknowledged run holds its implicit first version.
pub(super) fn sync_state_of(alias: &str) -> String {
    format!(
        "(CASE WHEN {} THEN {} ELSE {alias}.sync_state END)",
        first_acknowledged(alias),
        SyncState::Synced as i64
    )
}

/// What a scan of readings `from..=to` for waiting implicit first versions
/// leaves out: the acknowledged runs at either end trimmed off the range,
/// those inside named as ranges, or, when there are too many of them, a
/// probe per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Acknowledged {
    from: i64,
    to: i64,
    inside: Vec<(i64, i64)>,
    /// More runs than [`MAX_SKIPPED_RUNS`]: probe each row instead.
    many: bool,
}

impl Acknowledged {
    /// From the runs overlapping `from..=to` in seq order (`complete`
    /// when that is all of them, else only the first ones).
    fn within(mut from: i64, mut to: i64, runs: &[(i64, i64)], complete: bool) -> Self {
        let mut runs: &[(i64, i64)] = runs;
        while let Some(((run_from, run_to), rest)) = runs.split_first() {
            if *run_from > from {
                break;
            }
            from = from.max(run_to.saturating_add(1));
            runs = rest;
        }
        if complete {
            while let Some(((run_from, run_to), rest)) = runs.split_last() {
                if *run_to < to {
                    break;
                }
                to = to.min(run_from.saturating_sub(1));
                runs = rest;
            }
        }
        let inside: Vec<(i64, i64)> = runs
            .iter()
            .copied()
            .filter(|(run_from, run_to)| *run_to >= from && *run_from <= to)
            .collect();
        let many = !complete || inside.len() > MAX_SKIPPED_RUNS;
        Acknowledged {
            from,
            to,
            inside: if many { Vec::new() } else { inside },
            many,
        }
    }

    /// Nothing left to scan.
    pub(super) fn is_empty(&self) -> bool {
        self.from > self.to
    }
}

impl<DB: Backend> SqlBuilder<'_, DB> {
    /// ` AND …`: reading `r` lies in the scanned range and its implicit
    /// first version waits.
    pub(super) fn waiting_firsts(&mut self, scan: &Acknowledged) {
        self.push(" AND r.seq BETWEEN ");
        self.arg(scan.from);
        self.push(" AND ");
        self.arg(scan.to);
        self.push(&format!(" AND {FIRST_NOT_SYNCED_IN_ROW}"));
        if scan.many {
            self.push(&format!(" AND NOT {}", first_acknowledged("r")));
        }
        for (from, to) in &scan.inside {
            self.push(" AND r.seq NOT BETWEEN ");
            self.arg(*from);
            self.push(" AND ");
            self.arg(*to);
        }
    }
}

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
    pub(super) fn version_of(&self, seq: i64) -> Option<i64> {
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

    /// The acknowledged runs a scan of readings `from..=to` leaves out.
    pub(super) async fn acknowledged_in(
        &self,
        conn: &mut DB::Connection,
        from: i64,
        to: i64,
    ) -> Result<Acknowledged, DbError> {
        if from > to {
            return Ok(Acknowledged::within(from, to, &[], true));
        }
        let limit = MAX_SKIPPED_RUNS + 3;
        let (runs, complete) = self.acknowledged_runs(conn, from, to, limit).await?;
        Ok(Acknowledged::within(from, to, &runs, complete))
    }

    /// The acknowledged runs holding any seq of `from..=to`, in seq order:
    /// the one holding `from`, if any, and those starting inside. At most
    /// `limit` of them are read; `true` when that was all of them.
    async fn acknowledged_runs(
        &self,
        conn: &mut DB::Connection,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<(Vec<(i64, i64)>, bool), DbError> {
        let mut runs: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT seq_from, seq_to FROM acknowledged_first_runs \
             WHERE seq_from BETWEEN COALESCE((SELECT MAX(seq_from) \
             FROM acknowledged_first_runs WHERE seq_from <= $1), $1) AND $2 \
             ORDER BY seq_from LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
        let complete = runs.len() < limit;
        runs.retain(|(_, run_to)| *run_to >= from);
        Ok((runs, complete))
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
        let which = |alias: &str| {
            if waiting_only {
                format!(" AND {}", first_waiting(alias))
            } else {
                format!(" AND {alias}.first_implicit")
            }
        };
        let mut insert = SqlBuilder::<DB>::default();
        insert.push(&format!(
            "INSERT INTO reading_versions (version_id, reading_seq, hlc, site_id, temperature, \
             humidity, written_by, created_at_us, synced_at_us, quality, note) \
             SELECT {FIRST_VERSION_ID}, r.seq, r.version_hlc, r.version_site_id, r.temperature, \
             r.humidity, r.version_written_by, r.received_at_us, \
             CASE WHEN {} = {} THEN ",
            sync_state_of("r"),
            SyncState::Synced as i64
        ));
        insert.arg(now_us);
        insert.push(" END, r.quality, r.note FROM readings r WHERE ");
        insert.id_filter("r.seq", seqs);
        insert.push(&which("r"));
        let written = DB::rows_affected(&insert.query()?.execute(&mut *conn).await?);
        if written > 0 {
            // The row takes over the version's sync state as the flag
            // clears (an acknowledged run speaks only for implicit ones).
            let mut flag = SqlBuilder::<DB>::default();
            flag.push(&format!(
                "UPDATE readings SET first_implicit = FALSE, sync_state = {} WHERE ",
                sync_state_of("readings")
            ));
            flag.id_filter("readings.seq", seqs);
            flag.push(&which("readings"));
            flag.query()?.execute(&mut *conn).await?;
        }
        Ok(written)
    }

    /// Marks the implicit first versions of the readings `seqs` (sorted,
    /// distinct) acknowledged, as runs of seqs: no reading's row is
    /// rewritten. Returns the seqs of those that were still waiting (in
    /// order): their versions have no rows, in `reading_versions` or the
    /// outbox, for the rest of the completion to mark.
    ///
    /// The seqs of one batch come in stretches broken by readings that are
    /// not part of it (critical ones, which have rows of their own; ones
    /// leased by another push). A run per stretch would cost three
    /// statements each, so seqs close together are taken as one span
    /// ([`ack_spans`]): its waiting readings are read once, and the span is
    /// recorded as the fewest runs that leave out every reading still
    /// waiting that the batch does not acknowledge. A run may hold readings
    /// with no implicit first version: it speaks only for implicit ones.
    /// Scattered seqs (a batch's critical readings, one in a hundred) are
    /// asked after in lists instead, and only those that wait get runs.
    pub(super) async fn acknowledge_firsts(
        &self,
        conn: &mut DB::Connection,
        seqs: &[i64],
    ) -> Result<Vec<i64>, DbError> {
        let mut acknowledged = Vec::new();
        let mut scattered = Vec::new();
        for span in ack_spans(seqs) {
            let (Some(&from), Some(&to)) = (span.first(), span.last()) else {
                continue;
            };
            if !is_dense(span) {
                scattered.extend_from_slice(span);
                continue;
            }
            let touching = self.touching_runs(conn, from, to).await?;
            let scan = Acknowledged::within(from, to, &touching, true);
            let mut still_waiting: Vec<(i64,)> = Vec::new();
            if !scan.is_empty() {
                let mut sql = SqlBuilder::<DB>::default();
                sql.push("SELECT r.seq FROM readings r WHERE 1 = 1");
                sql.waiting_firsts(&scan);
                sql.push(" ORDER BY r.seq");
                still_waiting = sql.query_as()?.fetch_all(&mut *conn).await?;
            }
            let still_waiting: Vec<i64> = still_waiting.into_iter().map(|(seq,)| seq).collect();
            let (waited, runs) = runs_leaving_out(span, &still_waiting);
            acknowledged.extend(waited);
            self.replace_acknowledged(conn, &touching, &runs).await?;
        }
        if !scattered.is_empty() {
            let mut waited = Vec::new();
            for chunk in id_chunks(&scattered) {
                let mut sql = SqlBuilder::<DB>::default();
                sql.push("SELECT r.seq FROM readings r WHERE ");
                sql.id_filter("r.seq", &chunk);
                sql.push(&format!(" AND {}", first_waiting("r")));
                let rows = sql.query_as::<(i64,)>()?.fetch_all(&mut *conn).await?;
                waited.extend(rows.into_iter().map(|(seq,)| seq));
            }
            // Only neighbours share a run: what lies between scattered
            // seqs was not read.
            for (from, to) in id_runs(&waited) {
                let touching = self.touching_runs(conn, from, to).await?;
                self.replace_acknowledged(conn, &touching, &[(from, to)])
                    .await?;
            }
            acknowledged.extend(waited);
            acknowledged.sort_unstable();
            acknowledged.dedup();
        }
        Ok(acknowledged)
    }

    /// Every acknowledged run holding a seq of `from - 1..=to + 1`: those
    /// a new run `from..=to` overlaps or touches, in seq order.
    async fn touching_runs(
        &self,
        conn: &mut DB::Connection,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, i64)>, DbError> {
        let (touching, _) = self
            .acknowledged_runs(
                conn,
                from.saturating_sub(1),
                to.saturating_add(1),
                usize::MAX,
            )
            .await?;
        Ok(touching)
    }

    /// Replaces the acknowledged runs `touching` (in seq order, as read)
    /// by themselves merged with `runs`.
    async fn replace_acknowledged(
        &self,
        conn: &mut DB::Connection,
        touching: &[(i64, i64)],
        runs: &[(i64, i64)],
    ) -> Result<(), DbError> {
        if runs.is_empty() {
            return Ok(());
        }
        if let (Some(first), Some(last)) = (touching.first(), touching.last()) {
            sqlx::query("DELETE FROM acknowledged_first_runs WHERE seq_from BETWEEN $1 AND $2")
                .bind(first.0)
                .bind(last.0)
                .execute(&mut *conn)
                .await?;
        }
        let merged = merge_runs(touching.iter().chain(runs).copied().collect());
        for chunk in shaped_chunks(&merged) {
            let mut insert = SqlBuilder::<DB>::default();
            insert.push("INSERT INTO acknowledged_first_runs (seq_from, seq_to) VALUES ");
            for (i, (from, to)) in chunk.iter().enumerate() {
                insert.push(if i == 0 { "(" } else { ", (" });
                insert.arg(*from);
                insert.push(", ");
                insert.arg(*to);
                insert.push(")");
            }
            insert.query()?.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Counts the implicit first versions waiting above version `floor`.
    pub(super) async fn count_waiting_firsts(
        &self,
        conn: &mut DB::Connection,
        floor: i64,
    ) -> Result<i64, DbError> {
        let from = self.first_seq_above(conn, floor).await?;
        let scan = self.acknowledged_in(conn, from, i64::MAX).await?;
        if scan.is_empty() {
            return Ok(0);
        }
        let mut sql = SqlBuilder::<DB>::default();
        sql.push("SELECT COUNT(*) FROM readings r WHERE 1 = 1");
        sql.waiting_firsts(&scan);
        let (count,): (i64,) = sql.query_as()?.fetch_one(&mut *conn).await?;
        Ok(count)
    }

    /// The first implicit first version waiting above version `floor` and
    /// below version `below` (when given: a version known to wait, so the
    /// scan stops there): its id and when its reading was received here
    /// (the time it has waited since).
    ///
    /// The readings are scanned in windows of seqs, doubling from
    /// [`FIRST_WINDOW`], so a statement reads a bounded number of rows
    /// whatever plan the database picks: PostgreSQL with stale statistics
    /// reads all of a range and sorts it rather than walking the primary
    /// key to the first match, and the range above the floor is the whole
    /// backlog.
    pub(super) async fn first_waiting_first(
        &self,
        conn: &mut DB::Connection,
        floor: i64,
        below: Option<i64>,
    ) -> Result<Option<(i64, i64)>, DbError> {
        let from = self.first_seq_above(conn, floor).await?;
        let next_seq: i64 =
            sqlx::query_scalar("SELECT next_seq FROM site_state WHERE singleton = 1")
                .fetch_one(&mut *conn)
                .await?;
        let to = match below {
            Some(id) => self.first_seq_above(conn, id - 1).await?.min(next_seq),
            None => next_seq,
        };
        let mut window_from = from;
        let mut window = FIRST_WINDOW;
        while window_from < to {
            let window_to = window_from.saturating_add(window - 1).min(to - 1);
            let scan = self.acknowledged_in(conn, window_from, window_to).await?;
            if !scan.is_empty() {
                let mut sql = SqlBuilder::<DB>::default();
                sql.push(&format!(
                    "SELECT {FIRST_VERSION_ID}, r.received_at_us FROM readings r WHERE 1 = 1"
                ));
                sql.waiting_firsts(&scan);
                sql.push(" ORDER BY r.seq LIMIT 1");
                let found: Option<(i64, i64)> = sql.query_as()?.fetch_optional(&mut *conn).await?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            window_from = window_to.saturating_add(1);
            window = window.saturating_mul(2);
        }
        Ok(None)
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
        let scan = self.acknowledged_in(conn, seq_from, seq_to).await?;
        if scan.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = SqlBuilder::<DB>::default();
        // The version id is the run's business: filled in below.
        sql.push(&format!(
            "SELECT r.seq AS version_id, {FIRST_COLUMNS} FROM readings r WHERE 1 = 1"
        ));
        sql.waiting_firsts(&scan);
        sql.push(" ORDER BY r.seq");
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

/// Splits sorted, distinct seqs into spans read in one statement each: the
/// next seq joins a span when at most [`MAX_BRIDGED_GAP`] seqs lie between
/// it and the span's last, and the span stays within twice its seqs plus
/// that gap, so a span's statement reads a bounded number of readings.
fn ack_spans(seqs: &[i64]) -> Vec<&[i64]> {
    let mut spans = Vec::new();
    let mut start = 0;
    for i in 1..seqs.len() {
        let gap = seqs[i] - seqs[i - 1] - 1;
        let width = seqs[i] - seqs[start] + 1;
        let members = i64::try_from(i - start + 1).unwrap_or(i64::MAX);
        if gap > MAX_BRIDGED_GAP || width > members.saturating_mul(2) + MAX_BRIDGED_GAP {
            spans.push(&seqs[start..i]);
            start = i;
        }
    }
    if start < seqs.len() {
        spans.push(&seqs[start..]);
    }
    spans
}

/// Whether a span's readings are worth reading all of: at least
/// [`MIN_SPAN`] seqs, and at least half of the seqs it covers.
fn is_dense(span: &[i64]) -> bool {
    let (Some(first), Some(last)) = (span.first(), span.last()) else {
        return false;
    };
    let members = i64::try_from(span.len()).unwrap_or(i64::MAX);
    span.len() >= MIN_SPAN && last - first < members.saturating_mul(2)
}

/// For a span of acknowledged seqs (sorted, distinct) and the seqs of its
/// readings still waiting (sorted), those of the span's that were waiting,
/// and the runs recording them: from one such seq to another, split
/// wherever a reading waits that the span does not acknowledge. The span's
/// other seqs (readings with rows of their own, or acknowledged already)
/// need no run, and a run may bridge them.
fn runs_leaving_out(span: &[i64], waiting: &[i64]) -> (Vec<i64>, Vec<(i64, i64)>) {
    let mut acknowledged = Vec::new();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    let mut waiting = waiting.iter().copied().peekable();
    let mut left_out = false;
    for &seq in span {
        // Readings waiting below `seq` that the span leaves waiting.
        while waiting.next_if(|other| *other < seq).is_some() {
            left_out = true;
        }
        if waiting.next_if_eq(&seq).is_none() {
            continue;
        }
        acknowledged.push(seq);
        match runs.last_mut() {
            Some((_, last)) if !left_out => *last = seq,
            _ => runs.push((seq, seq)),
        }
        left_out = false;
    }
    (acknowledged, runs)
}

#[cfg(test)]
mod tests {
    use super::{
        Acknowledged, FirstRun, FirstRuns, MAX_BRIDGED_GAP, MAX_SKIPPED_RUNS, ack_spans, is_dense,
        runs_leaving_out,
    };

    #[test]
    fn runs_at_the_ends_of_a_scan_shorten_it_and_runs_inside_are_skipped() {
        // Acknowledged: 1-100 (the oldest), 150-160, 300-400 (the newest).
        let runs = [(1, 100), (150, 160), (300, 400)];
        let scan = Acknowledged::within(50, 350, &runs, true);
        assert_eq!(
            scan,
            Acknowledged {
                from: 101,
                to: 299,
                inside: vec![(150, 160)],
                many: false
            }
        );
        // A range inside one run has nothing left to scan.
        assert!(Acknowledged::within(20, 80, &runs[..1], true).is_empty());
        // With only the first runs known, the end is not trimmed and every
        // row is probed.
        let partial = Acknowledged::within(50, 350, &runs[..2], false);
        assert_eq!((partial.from, partial.to, partial.many), (101, 350, true));
        assert!(partial.inside.is_empty());
    }

    #[test]
    fn too_many_runs_inside_a_scan_are_probed_row_by_row() {
        let runs: Vec<(i64, i64)> = (0..=MAX_SKIPPED_RUNS as i64)
            .map(|i| (10 + 3 * i, 10 + 3 * i))
            .collect();
        let scan = Acknowledged::within(1, 1000, &runs, true);
        assert!(scan.many);
        assert!(scan.inside.is_empty());
        assert_eq!((scan.from, scan.to), (1, 1000));
    }

    #[test]
    fn seqs_close_together_share_a_span_and_far_ones_do_not() {
        let mut seqs: Vec<i64> = (1..=100).collect();
        // A gap of 3 critical readings, then more of the batch.
        seqs.extend(104..=200);
        // Far above: the live share of the same batch.
        seqs.extend(100_000..=100_010);
        let spans = ack_spans(&seqs);
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[0][0], spans[0][spans[0].len() - 1]), (1, 200));
        assert_eq!(
            (spans[1][0], spans[1][spans[1].len() - 1]),
            (100_000, 100_010)
        );
        assert!(ack_spans(&[]).is_empty());
    }

    #[test]
    fn critical_readings_alone_are_scattered_not_a_span() {
        // One reading in a hundred: what a batch's critical share looks like.
        let critical: Vec<i64> = (0..50).map(|i| 24 + i * 100).collect();
        assert!(ack_spans(&critical).iter().all(|span| !is_dense(span)));
        let stretch: Vec<i64> = (1..=100).chain(102..=200).collect();
        assert!(is_dense(&stretch));
        assert!(!is_dense(&[7, 8]));
    }

    #[test]
    fn sparse_seqs_do_not_make_a_wide_span() {
        // Gaps each within the bridged gap, but few seqs for the width.
        let seqs: Vec<i64> = (0..50).map(|i| i * MAX_BRIDGED_GAP).collect();
        for span in ack_spans(&seqs) {
            let width = span[span.len() - 1] - span[0] + 1;
            assert!(width <= 2 * span.len() as i64 + MAX_BRIDGED_GAP, "{span:?}");
        }
    }

    #[test]
    fn a_span_is_split_only_where_a_reading_it_leaves_waits() {
        // 5 and 6 are not acknowledged: 5 waits (leased elsewhere), 6 is
        // critical (no implicit first version) and does not split.
        let span = [1, 2, 3, 4, 7, 8, 10];
        let waiting = [1, 2, 4, 5, 7, 8, 10];
        let (acknowledged, runs) = runs_leaving_out(&span, &waiting);
        // 3 was acknowledged already: not counted again, and bridged.
        assert_eq!(acknowledged, vec![1, 2, 4, 7, 8, 10]);
        assert_eq!(runs, vec![(1, 4), (7, 10)]);
        // Nothing of the span waits (their versions have rows): no run.
        let (acknowledged, runs) = runs_leaving_out(&span, &[]);
        assert_eq!((acknowledged, runs), (vec![], vec![]));
        // Alternate readings acknowledged, the others left waiting.
        let (acknowledged, runs) = runs_leaving_out(&[2, 4], &[1, 2, 3, 4, 5]);
        assert_eq!((acknowledged, runs), (vec![2, 4], vec![(2, 2), (4, 4)]));
    }

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
