//! Keeping the site inside its budget: measure, free what the rules allow,
//! and tell the writer whether a group of readings fits.
//!
//! Room is the smaller of what the budget leaves (`budget - used`) and what
//! the disk leaves above the reserve (`free + free pages inside the SQLite
//! file - reserve - WAL growth still possible`). The writer spends an
//! estimate of it (readings × bytes per version) on every group without a
//! query; when the estimate runs out it asks for a pass, which measures and
//! frees. A background task runs passes on an interval and applies
//! retention, so normally the writer never waits.
//!
//! A pass frees when room falls below a slack (5 % of the limit, between
//! 64 KiB and 256 MiB) and frees until room is twice the slack: first the
//! oldest synced readings, whatever their age; then, under
//! `drop-oldest-unsynced`, the oldest unsynced versions (never a leased one,
//! which may be in flight); on PostgreSQL at most two per version received
//! and three slacks' worth at once, so its estimate, which lags, can never
//! drop the backlog wholesale: past that, groups are refused as under
//! `reject`.
//! Under `reject`, a group that does not fit is refused and nothing stored
//! is touched.
//!
//! SQLite's measure falls as soon as rows go. PostgreSQL's tables keep their
//! size and reuse the space inside once vacuumed, which it cannot report
//! without extensions; the budget therefore counts three quarters of the
//! space it freed (rows removed × bytes per version) as free, spends that
//! credit on every version written since (whether it filled a hole or grew
//! a table, so the credit never outlives the space), and aims at 75 % of the
//! budget: the tables reach their high-water mark below it and then reuse
//! what is freed. Two guards keep a wrong estimate from passing the budget:
//! within two slacks of it a pass hands out at most two slacks of room, and
//! tables that grew there while credit was left make the next pass discard
//! the credit and free real space. The cost of a version is learnt only
//! while no credit is left (growth that fills holes is not what a version
//! costs; learning from it once let the writer in at a sixth of the real
//! cost and the tables past the budget). Measured on a 12 MiB budget, three
//! test runs side by side: the tables peaked at 74–82 % of it. Under
//! `drop-oldest-unsynced` the first fill is the hard case: the estimate
//! wants more drops than the allowance gives while the tables reach their
//! high-water mark, and some groups are refused meanwhile. After a restart
//! the credit starts at zero, so the first pass may free up to one slack
//! more than needed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::{Policy, StorageArgs};
use super::disk::{DiskProbe, wal_growth_left};
use super::refusal::{Cause, Refusals};
use crate::db::{Classify as _, Database, DbError, DroppedRow, Failure, Usage};
use crate::hlc::WallClock;
use crate::lease::Leases;

/// Bytes per version assumed before anything is stored.
const DEFAULT_BYTES_PER_VERSION: i64 = 512;
/// Versions written between two measurements for their growth to count as
/// a sample of what a version costs.
const MIN_SAMPLE_VERSIONS: i64 = 256;
/// A group is admitted when this many times its estimated size fits: the
/// estimate is an average, and a commit can split pages or catch up the
/// sensor index.
const ADMIT_MARGIN: i64 = 2;
/// Bytes a row of the sensor index takes at most (sensor id, time, seq and
/// its page share). Its rows are written in a sorted batch every
/// `--sensor-index-batch` readings, a burst that a small budget's slack
/// would not absorb, so a group that triggers it is admitted for it.
const SENSOR_INDEX_ROW_BYTES: i64 = 96;
/// Floor of the bytes-per-version estimate.
const MIN_BYTES_PER_VERSION: i64 = 64;
/// Bounds of the slack kept free ahead of the writer.
const MIN_SLACK: i64 = 64 * 1024;
const MAX_SLACK: i64 = 256 * 1024 * 1024;
/// Share (in percent) of the space freed on PostgreSQL that is counted as
/// free: its heap reuses freed space after a vacuum, its indexes most of it
/// and later (an index page once wholly empty and vacuumed again).
const POSTGRES_REUSE_PERCENT: i64 = 75;
/// Share of the budget PostgreSQL aims at: its tables keep their high-water
/// size, and space freed in one table serves only that table, so they run
/// past the point the estimate expects before reuse catches up.
const POSTGRES_TARGET_PERCENT: i64 = 75;
/// After a pass that could free nothing more, refused groups do not start
/// another one for this long (a flood of retries must not become a flood of
/// queries).
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(250);

/// The site is full and the policy is `reject`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StorageFull(pub String);

/// Why a group was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// No room, and the policy refuses.
    #[error(transparent)]
    Full(StorageFull),
    /// Measuring or freeing failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What operators see of the budget (stats, metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StorageSnapshot {
    /// Bytes the database occupies, as measured.
    pub used_bytes: i64,
    /// The budget, if any.
    pub budget_bytes: Option<u64>,
    /// Free bytes on the data file system, when measured.
    pub disk_free_bytes: Option<u64>,
    /// Free bytes the site leaves alone.
    pub reserve_bytes: u64,
    /// Bytes the site may still grow by.
    pub room_bytes: i64,
    /// Ingest is being refused: by the budget, or because the disk is full.
    pub full: bool,
    /// Whether a measurement has been taken.
    pub measured: bool,
}

/// One measurement and what it implies.
#[derive(Debug, Clone, Copy)]
struct Measure {
    usage: Usage,
    bytes_per_version: i64,
    room: i64,
    /// Most room one pass gives the writer (PostgreSQL near its ceiling).
    hand_out: i64,
    slack: i64,
    disk_free: Option<u64>,
    reserve: u64,
}

/// What passes remember between runs.
#[derive(Debug, Default)]
struct PassState {
    /// PostgreSQL: bytes freed inside the tables and not yet reused.
    freed_inside: i64,
    last_used: i64,
    last_written: i64,
    /// Disk probe failures are logged once until it works again.
    disk_failing: bool,
    /// Bytes a new version adds, learnt from growth (0: not yet).
    marginal: i64,
    /// Rows were removed since the last measurement, so its growth is not a
    /// clean sample of what new versions cost.
    removed: bool,
    /// PostgreSQL: unsynced versions that may still be dropped, two per
    /// version written (one for its room, up to one for the drop records),
    /// up to three slacks' worth, so its estimate, which lags (the tables
    /// keep their size), can never drop the backlog wholesale. When it runs
    /// out, groups are refused until it refills. SQLite measures what each
    /// drop frees, so it needs no such bound.
    drop_allowance: Option<i64>,
}

/// The storage budget of one store.
pub struct Budget {
    db: Arc<Database>,
    leases: Arc<Leases>,
    clock: Arc<dyn WallClock>,
    args: StorageArgs,
    disk: Option<Arc<dyn DiskProbe>>,
    db_file: Option<PathBuf>,
    /// Bytes the writer may add before it needs a pass (an estimate).
    room: AtomicI64,
    /// Below this much room the background task is asked for a pass.
    slack: AtomicI64,
    bytes_per_version: AtomicI64,
    /// Versions stored at the last measurement.
    stored_versions: AtomicI64,
    refusals: Refusals,
    exhausted_at: Mutex<Option<Instant>>,
    /// Bytes the last refused group needed: a measurement that finds this
    /// much room ends the budget's refusal.
    refused_need: AtomicI64,
    snapshot: Mutex<StorageSnapshot>,
    pass: tokio::sync::Mutex<PassState>,
    wake: Notify,
}

impl Budget {
    /// A budget over `db` with the configured rules. `disk` measures the data
    /// file system (`None`: not measured, as on PostgreSQL).
    pub fn new(
        db: Arc<Database>,
        leases: Arc<Leases>,
        clock: Arc<dyn WallClock>,
        args: StorageArgs,
        disk: Option<Arc<dyn DiskProbe>>,
    ) -> Budget {
        let db_file = db.sqlite_path().map(PathBuf::from);
        Budget {
            db,
            leases,
            clock,
            args,
            disk,
            db_file,
            // Unknown until measured: the first group asks for a pass, so a
            // site restarted while full is refused from its first write.
            room: AtomicI64::new(0),
            slack: AtomicI64::new(MIN_SLACK),
            bytes_per_version: AtomicI64::new(DEFAULT_BYTES_PER_VERSION),
            stored_versions: AtomicI64::new(i64::MAX),
            refusals: Refusals::default(),
            exhausted_at: Mutex::new(None),
            refused_need: AtomicI64::new(0),
            snapshot: Mutex::new(StorageSnapshot::default()),
            pass: tokio::sync::Mutex::new(PassState::default()),
            wake: Notify::new(),
        }
    }

    /// The configured rules.
    pub fn args(&self) -> &StorageArgs {
        &self.args
    }

    /// The latest measurement.
    pub fn snapshot(&self) -> StorageSnapshot {
        let mut snapshot = self.snapshot.lock().map(|s| *s).unwrap_or_default();
        snapshot.full = self.refusals.current().is_some();
        snapshot
    }

    /// When and why writes are refused, and for how long they have been.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// Whether the budget refuses groups now (not counting a full disk,
    /// which only a write can prove has room again).
    pub fn over_budget(&self) -> bool {
        self.refusals.by(Cause::Budget)
    }

    /// A write failed because the disk is full (`err` says so in the
    /// database's words): refuses until a write commits again, and makes the
    /// next group measure the disk before it tries. Returns the refusal's
    /// reason, for the callers.
    pub fn disk_full(&self, err: &DbError) -> String {
        let reason = format!(
            "the disk holding the site database is full ({})",
            err.database_message().unwrap_or("no space left")
        );
        self.room.store(0, Ordering::Release);
        self.refusals
            .begin(Cause::Disk, reason.clone(), self.clock.now_us());
        reason
    }

    /// A write committed: whatever filled the disk left room for it.
    pub fn committed(&self) {
        self.refusals.end(Cause::Disk);
    }

    /// Takes room for a group of `readings` new readings whose commit also
    /// writes `index_rows` rows of the sensor index (its sorted catch-up,
    /// see `Database::index_rows_due`), or refuses them when the site is full
    /// under the `reject` policy (or nothing could be dropped). A pass that
    /// fails (the database is unavailable) refuses them too, with its error.
    pub async fn admit(&self, readings: usize, index_rows: i64) -> Result<(), AdmitError> {
        let readings = i64::try_from(readings).unwrap_or(i64::MAX);
        let group = Group {
            readings,
            // The catch-up indexes only the readings still stored.
            index_rows: index_rows.min(
                self.stored_versions
                    .load(Ordering::Relaxed)
                    .saturating_add(readings),
            ),
        };
        if self.take(group.bytes(self.bytes_per_version.load(Ordering::Relaxed))) {
            if self.room.load(Ordering::Relaxed) < self.slack.load(Ordering::Relaxed) {
                self.wake.notify_one();
            }
            return Ok(());
        }
        let recently_exhausted = self
            .exhausted_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() < EXHAUSTED_BACKOFF);
        if !recently_exhausted {
            match self.pass(group).await {
                Ok(()) => {}
                // Measuring writes too (giving space back): on a full disk
                // it fails like a commit would, and the next groups are
                // refused without trying again for a moment.
                Err(err) if err.failure() == Failure::StorageFull => {
                    if let Ok(mut exhausted) = self.exhausted_at.lock() {
                        *exhausted = Some(Instant::now());
                    }
                    return Err(AdmitError::Full(StorageFull(self.disk_full(&err))));
                }
                Err(err) => return Err(err.into()),
            }
            // Measured now: the estimate per version may have changed.
            if self.take(group.bytes(self.bytes_per_version.load(Ordering::Relaxed))) {
                return Ok(());
            }
        }
        let why = self.describe_full();
        self.refused_need.store(
            group.bytes(self.bytes_per_version.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        self.refusals
            .begin(Cause::Budget, why.clone(), self.clock.now_us());
        Err(AdmitError::Full(StorageFull(why)))
    }

    /// Spends `need` bytes of room if there is that much.
    fn take(&self, need: i64) -> bool {
        let taken = self
            .room
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |room| {
                (room >= need).then(|| room - need)
            })
            .is_ok();
        if taken {
            self.end_refusal();
        }
        taken
    }

    /// What a measurement must find, beyond the slack, to end a refusal:
    /// room for the group that was refused, where room is measured (SQLite
    /// hands freed pages back, so pruning shows). PostgreSQL's tables keep
    /// their size and its room is an estimate from credit for pruned rows,
    /// which a pass may discard: waiting there for a whole group's room
    /// could refuse for good, so a slack's worth ends the refusal and the
    /// next group is measured against its own need.
    fn refused_need(&self) -> i64 {
        if self.db.reclaims_on_delete() {
            self.refused_need.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Room was found: the budget no longer refuses.
    fn end_refusal(&self) {
        self.refused_need.store(0, Ordering::Relaxed);
        self.refusals.end(Cause::Budget);
    }

    fn describe_full(&self) -> String {
        let s = self.snapshot();
        let mut limits = Vec::new();
        if let Some(budget) = s.budget_bytes {
            limits.push(format!(
                "{} in use of a {} budget",
                ByteSize::b(s.used_bytes.max(0) as u64),
                ByteSize::b(budget)
            ));
        }
        if let Some(free) = s.disk_free_bytes {
            limits.push(format!(
                "{} free on disk with {} kept in reserve",
                ByteSize::b(free),
                ByteSize::b(s.reserve_bytes)
            ));
        }
        let why = match self.args.storage_policy {
            Policy::Reject => "nothing synced is left to prune",
            Policy::DropOldestUnsynced if self.db.reclaims_on_delete() => {
                "nothing synced or unsynced is left to drop"
            }
            Policy::DropOldestUnsynced => {
                "nothing synced is left to prune and the oldest unsynced versions are dropped no \
                 faster than two per reading received"
            }
        };
        format!(
            "the site's storage is full ({}); {why}, so readings are refused until the cloud \
             takes the backlog: keep them at the gateway and retry",
            limits.join("; ")
        )
    }

    /// Applies retention and keeps room ahead of the writer every
    /// `storage_check_interval` (sooner when the writer runs short), until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            if let Err(err) = self.apply_retention(&stop).await {
                tracing::warn!(error = %err, "retention pass failed; retrying");
            }
            if let Err(err) = self.pass(Group::default()).await {
                tracing::warn!(error = %err, "storage budget pass failed; retrying");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.args.storage_check_interval) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Removes synced readings older than the retention age, a small
    /// transaction at a time.
    async fn apply_retention(&self, stop: &CancellationToken) -> Result<(), DbError> {
        let retention_us = i64::try_from(self.args.retention.as_micros()).unwrap_or(i64::MAX);
        let cutoff = self.clock.now_us().saturating_sub(retention_us);
        let batch = i64::from(self.args.prune_batch);
        let mut pruned = 0;
        while !stop.is_cancelled() {
            let removed = self.db.prune_synced(Some(cutoff), batch).await?;
            if removed == 0 {
                break;
            }
            pruned += removed;
            let bytes_per_version = self.bytes_per_version.load(Ordering::Relaxed);
            let mut state = self.pass.lock().await;
            state.freed_inside += reusable(removed, bytes_per_version);
            state.removed = true;
            tokio::task::yield_now().await;
        }
        if pruned > 0 {
            tracing::info!(
                versions = pruned,
                retention = %humantime::format_duration(self.args.retention),
                "retention pruned synced versions"
            );
            self.db
                .give_back_space(self.slack.load(Ordering::Relaxed))
                .await?;
            self.pass.lock().await.removed = true;
        }
        Ok(())
    }

    /// One pass: measure, free what the rules allow, publish the result.
    /// Frees when room is below the slack or below what a waiting group of
    /// `group` needs, until it is twice the slack and the group fits with
    /// a slack to spare.
    async fn pass(&self, group: Group) -> Result<(), DbError> {
        let mut state = self.pass.lock().await;
        let mut m = self.measure(&mut state).await?;
        let mut freed = false;
        // While the budget refuses, every pass (the background ones too)
        // frees for the group it refused, so the refusal can end with no
        // ingest coming to find out.
        let want = group.bytes(m.bytes_per_version).max(self.refused_need());
        let enough = |m: &Measure| m.room >= (2 * m.slack).max(want.saturating_add(m.slack));
        if m.room < m.slack.max(want) {
            let batch = i64::from(self.args.prune_batch);
            let mut pruned = 0;
            while !enough(&m) {
                let removed = self.db.prune_synced(None, batch).await?;
                if removed == 0 {
                    break;
                }
                pruned += removed;
                state.freed_inside += reusable(removed, m.bytes_per_version);
                state.removed = true;
                m = self.measure(&mut state).await?;
            }
            if pruned > 0 {
                freed = true;
                tracing::info!(
                    versions = pruned,
                    "pruned the oldest synced versions ahead of retention to stay within the storage limits"
                );
            }
            if m.room < m.slack.max(want) && self.args.storage_policy == Policy::DropOldestUnsynced
            {
                let mut summary = DropSummary::default();
                while !enough(&m) {
                    let allowed = if self.db.reclaims_on_delete() {
                        batch
                    } else {
                        state.drop_allowance.unwrap_or(0).min(batch)
                    };
                    if allowed <= 0 {
                        break;
                    }
                    let dropped = self.drop_batch(allowed).await?;
                    if dropped.is_empty() {
                        break;
                    }
                    state.drop_allowance =
                        Some(state.drop_allowance.unwrap_or(0) - dropped.len() as i64);
                    summary.add(&dropped);
                    state.freed_inside += reusable(dropped.len() as u64, m.bytes_per_version);
                    state.removed = true;
                    m = self.measure(&mut state).await?;
                }
                if summary.versions > 0 {
                    freed = true;
                    tracing::warn!(
                        versions = summary.versions,
                        first_seq = summary.first_seq,
                        last_seq = summary.last_seq,
                        "dropped the oldest unsynced versions to stay within the storage limits \
                         (policy drop-oldest-unsynced); they are reported to the cloud as dropped"
                    );
                }
            }
        }
        if freed || m.usage.free_inside_bytes > 2 * m.slack {
            self.db.give_back_space(m.slack).await?;
            // A vacuum writes maps of its own: not growth from new versions.
            state.removed = true;
            m = self.measure(&mut state).await?;
        }
        m.room = m.room.min(m.hand_out.max(want.saturating_add(m.slack)));
        if let Ok(mut exhausted) = self.exhausted_at.lock() {
            *exhausted = (m.room < m.slack.max(want)).then(Instant::now);
        }
        self.publish(&m);
        Ok(())
    }

    /// Drops one batch of the oldest unleased unsynced versions.
    async fn drop_batch(&self, batch: i64) -> Result<Vec<DroppedRow>, DbError> {
        let db = &self.db;
        self.leases
            .excluding_leased(|leased| async move { db.drop_unsynced(batch, &leased).await })
            .await
    }

    async fn measure(&self, state: &mut PassState) -> Result<Measure, DbError> {
        let usage = self.db.usage().await?;
        let written = usage.versions_written - state.last_written;
        let grown = usage.used_bytes - state.last_used;
        // What a version costs at the margin, learnt from growth with no
        // removal in between (an average over all stored versions would
        // count the schema's fixed size and half-empty pages too). On
        // PostgreSQL only while no freed space is left to reuse: growth
        // that fills holes is not what a version costs.
        let clean = !state.removed && (self.db.reclaims_on_delete() || state.freed_inside == 0);
        if clean && written >= MIN_SAMPLE_VERSIONS && grown > 0 && state.last_used > 0 {
            let sample = grown / written;
            state.marginal = if state.marginal == 0 {
                sample
            } else {
                (state.marginal * 7 + sample * 3) / 10
            };
        }
        let bytes_per_version = if state.marginal > 0 {
            state.marginal
        } else if usage.live_versions > 0 {
            usage.used_bytes / usage.live_versions
        } else {
            DEFAULT_BYTES_PER_VERSION
        }
        .max(MIN_BYTES_PER_VERSION);
        let budget = self
            .args
            .storage_budget
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let mut used = usage.used_bytes;
        if !self.db.reclaims_on_delete() {
            // Every version written since is taken to have used freed
            // space, whether it did or grew a table: never more credit.
            let reused = written.max(0).saturating_mul(bytes_per_version);
            state.freed_inside = (state.freed_inside - reused).max(0);
            // Tables that grew near the ceiling while credit was left show
            // that the credit was not all there (a vacuum that could not
            // yet recycle, index pages freed only in part): trust the
            // measure alone, so this pass frees space that is real.
            if let Some(budget) = budget
                && !state.removed
                && grown > 0
                && usage.used_bytes > budget - 2 * slack_for(budget)
                && state.freed_inside > 0
            {
                tracing::debug!(
                    credit = state.freed_inside,
                    used = usage.used_bytes,
                    "tables grew near the budget; freed-space credit discarded"
                );
                state.freed_inside = 0;
            }
            used -= state.freed_inside.min(used);
        }
        state.last_used = usage.used_bytes;
        state.last_written = usage.versions_written;
        state.removed = false;

        let mut room = i64::MAX;
        let mut hand_out = i64::MAX;
        let mut limit = i64::MAX;
        if let Some(budget) = budget {
            limit = budget;
            if self.db.reclaims_on_delete() {
                // A quarter slack stays out of the writer's reach: writes it
                // is not asked about (the cloud's acks add each synced
                // reading to the synced index; amendments, pulled versions)
                // grow the pages too, and must not take the site over.
                room = budget - used - slack_for(budget) / 4;
            } else {
                room = budget / 100 * POSTGRES_TARGET_PERCENT - used;
                // Near the ceiling, one pass hands out at most two slacks,
                // so tables that grow instead of reusing are caught by the
                // next pass (above) before they pass the budget.
                let slack = slack_for(budget);
                hand_out = (2 * slack).max(budget - usage.used_bytes - slack);
            }
        }
        let mut disk_free = None;
        let mut reserve = 0;
        if let Some(probe) = &self.disk {
            match probe.space() {
                Ok(space) => {
                    state.disk_failing = false;
                    reserve = self.args.storage_reserve.bytes(space.total_bytes);
                    let wal = self.db_file.as_deref().map_or(0, wal_growth_left);
                    let disk_room = i64::try_from(space.free_bytes).unwrap_or(i64::MAX)
                        + usage.free_inside_bytes
                        - i64::try_from(reserve.saturating_add(wal)).unwrap_or(i64::MAX);
                    room = room.min(disk_room);
                    limit = limit.min(
                        i64::try_from(space.total_bytes.saturating_sub(reserve))
                            .unwrap_or(i64::MAX),
                    );
                    disk_free = Some(space.free_bytes);
                }
                Err(err) => {
                    if !state.disk_failing {
                        tracing::warn!(error = %err, "cannot read the data directory's free space; the reserve is not enforced until it can");
                        state.disk_failing = true;
                    }
                }
            }
        }
        let slack = slack_for(limit);
        let allowance_cap = (3 * slack / bytes_per_version).max(i64::from(self.args.prune_batch));
        state.drop_allowance = Some(match state.drop_allowance {
            None => allowance_cap,
            Some(left) => left
                .saturating_add(written.max(0).saturating_mul(2))
                .min(allowance_cap),
        });
        Ok(Measure {
            usage,
            bytes_per_version,
            room,
            hand_out,
            slack,
            disk_free,
            reserve,
        })
    }

    fn publish(&self, m: &Measure) {
        // Room again, measured, for the group that was refused: the budget
        // no longer refuses, whether or not a group of readings comes to
        // take it (amendments and pulled pages are refused while it does).
        if m.room >= self.refused_need().max(m.slack) {
            self.end_refusal();
        }
        self.bytes_per_version
            .store(m.bytes_per_version, Ordering::Relaxed);
        self.slack.store(m.slack, Ordering::Relaxed);
        self.stored_versions
            .store(m.usage.live_versions, Ordering::Relaxed);
        self.room.store(m.room, Ordering::Release);
        if let Ok(mut snapshot) = self.snapshot.lock() {
            *snapshot = StorageSnapshot {
                used_bytes: m.usage.used_bytes,
                budget_bytes: self.args.storage_budget,
                disk_free_bytes: m.disk_free,
                reserve_bytes: m.reserve,
                room_bytes: m.room,
                // Read from the flag by `snapshot()`.
                full: false,
                measured: true,
            };
        }
    }
}

/// Bytes of PostgreSQL table space counted as reusable after removing
/// `versions` of `bytes_per_version` (SQLite measures it instead).
fn reusable(versions: u64, bytes_per_version: i64) -> i64 {
    i64::try_from(versions)
        .unwrap_or(i64::MAX)
        .saturating_mul(bytes_per_version)
        / 100
        * POSTGRES_REUSE_PERCENT
}

/// A group of readings the writer wants to commit.
#[derive(Debug, Clone, Copy, Default)]
struct Group {
    readings: i64,
    /// Rows of the sensor index its commit writes.
    index_rows: i64,
}

impl Group {
    /// The bytes it is admitted for, at `bytes_per_version` a version.
    fn bytes(self, bytes_per_version: i64) -> i64 {
        self.readings
            .saturating_mul(bytes_per_version)
            .saturating_add(self.index_rows.saturating_mul(SENSOR_INDEX_ROW_BYTES))
            .saturating_mul(ADMIT_MARGIN)
    }
}

/// The room kept free ahead of the writer for a limit of `limit` bytes.
fn slack_for(limit: i64) -> i64 {
    (limit / 20).clamp(MIN_SLACK, MAX_SLACK)
}

/// What one pass dropped, for its one log line.
#[derive(Debug, Default)]
struct DropSummary {
    versions: usize,
    first_seq: i64,
    last_seq: i64,
}

impl DropSummary {
    fn add(&mut self, dropped: &[DroppedRow]) {
        for row in dropped {
            if self.versions == 0 || row.seq < self.first_seq {
                self.first_seq = row.seq;
            }
            self.last_seq = self.last_seq.max(row.seq);
            self.versions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_is_a_twentieth_of_the_limit_within_bounds() {
        assert_eq!(slack_for(20 << 20), 1 << 20);
        assert_eq!(slack_for(100_000), MIN_SLACK);
        assert_eq!(slack_for(i64::MAX), MAX_SLACK);
    }

    #[test]
    fn a_drop_summary_spans_the_seqs_dropped() {
        let row = |seq| DroppedRow {
            version_id: seq,
            seq,
            reading_id: String::new(),
            hlc: 0,
            site_id: String::new(),
            dropped_at_us: 0,
        };
        let mut summary = DropSummary::default();
        summary.add(&[row(5), row(6)]);
        summary.add(&[row(7)]);
        assert_eq!(
            (summary.versions, summary.first_seq, summary.last_seq),
            (3, 5, 7)
        );
    }
}
