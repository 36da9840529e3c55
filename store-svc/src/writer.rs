//! Group commit: one writer task turns concurrent appends into shared
//! transactions.
//!
//! Every append is a job on a bounded queue. The writer takes the first job,
//! then everything else already queued (up to a row limit), commits it all in
//! one durable transaction and answers each job with its own outcomes. While a
//! commit's fsync runs, new jobs queue up and form the next group, so the
//! number of fsyncs adapts to the load: one per call when idle, one per many
//! calls when busy. Per-transaction overhead, not fsync, is what this
//! amortises (figures in BENCHMARKS.md).
//!
//! Before a group is committed, the storage budget ([`Budget::admit`]) must
//! have room for it; a group refused there is answered `Full` and nothing of
//! it is stored.
//!
//! A group is answered only from what its own transaction proved: stored
//! outcomes only after its COMMIT succeeded. When any statement or the
//! COMMIT fails, the database layer closes the connection (see
//! `db::write_conn`), so the next group runs on a fresh one that reads the
//! real state; every call of the failed group is answered with the error,
//! never STORED, even when the COMMIT's outcome is unknown (the gateway's
//! retry with the same ids settles it: what was stored is a DUPLICATE). A
//! full disk is reported as such (`RESOURCE_EXHAUSTED` with the database's
//! words), starts a refusal period ([`crate::storage::refusal`]) and makes
//! the next group measure the disk first; the first group that commits
//! again ends it. Only a failure that is neither a full disk nor an
//! unavailable database may be the fault of one call's readings (data the
//! database refuses, or a bug): then each call of the group is retried
//! alone, so it cannot fail the unrelated calls it was grouped with.
//!
//! The task ends when every [`Writer`] handle is dropped and the queue is
//! empty, so nothing accepted into the queue is left unanswered at shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::db::{Classify as _, Database, DbError, Failure};
use crate::model::{AppendOutcome, NewReading};
use crate::storage::{AdmitError, Budget, StorageFull};

/// Jobs that may wait for the writer before callers feel back-pressure.
const QUEUE_DEPTH: usize = 1024;

/// Appending failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The writer has stopped (the service is shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// The transaction failed; nothing of the group was stored.
    #[error(transparent)]
    Db(Arc<DbError>),
    /// The site's storage is full and its policy refuses new readings.
    #[error(transparent)]
    Full(StorageFull),
}

struct Job {
    readings: Vec<NewReading>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, WriteError>>,
}

/// A handle for submitting appends to the writer task.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    busy: Arc<BusyMeter>,
}

/// Length of the window over which the writer's busy share is measured.
const BUSY_WINDOW: Duration = Duration::from_millis(500);

/// How much of the writer's time appends took recently: the capacity ingest
/// uses, which the sync drain leaves to it (see `LeaseBatchResponse`).
#[derive(Debug)]
pub struct BusyMeter {
    state: Mutex<BusyState>,
}

#[derive(Debug)]
struct BusyState {
    window_start: Instant,
    busy_in_window: Duration,
    last_share: f64,
}

impl BusyMeter {
    fn new() -> Self {
        BusyMeter {
            state: Mutex::new(BusyState {
                window_start: Instant::now(),
                busy_in_window: Duration::ZERO,
                last_share: 0.0,
            }),
        }
    }

    /// Records `busy` time spent appending, ending now.
    fn record(&self, busy: Duration) {
        if let Ok(mut state) = self.state.lock() {
            state.busy_in_window += busy;
            Self::roll(&mut state);
        }
    }

    /// Closes the window once it is long enough; an idle gap counts as idle.
    fn roll(state: &mut BusyState) {
        let elapsed = state.window_start.elapsed();
        if elapsed >= BUSY_WINDOW {
            state.last_share =
                (state.busy_in_window.as_secs_f64() / elapsed.as_secs_f64()).min(1.0);
            state.window_start = Instant::now();
            state.busy_in_window = Duration::ZERO;
        }
    }

    /// Percent of the writer's time appends took in the last full window
    /// (0 when the writer has been idle for longer than a window).
    pub fn percent(&self) -> u32 {
        let Ok(mut state) = self.state.lock() else {
            return 0;
        };
        if state.window_start.elapsed() >= BUSY_WINDOW * 2 {
            // Nothing recorded for a whole window: idle.
            state.last_share = (state.busy_in_window.as_secs_f64()
                / state.window_start.elapsed().as_secs_f64())
            .min(1.0);
            state.window_start = Instant::now();
            state.busy_in_window = Duration::ZERO;
        } else {
            Self::roll(&mut state);
        }
        (state.last_share * 100.0).round() as u32
    }
}

impl Writer {
    /// Starts the writer task over `db`. A group stops taking queued jobs once
    /// it holds `max_group_rows` readings; the job that crosses the limit is
    /// still part of it, so a group holds less than `max_group_rows` plus one
    /// call's readings.
    pub fn spawn(
        db: Arc<Database>,
        budget: Arc<Budget>,
        max_group_rows: usize,
    ) -> (Writer, JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let busy = Arc::new(BusyMeter::new());
        let task = tokio::spawn(run(db, budget, jobs, max_group_rows.max(1), busy.clone()));
        (Writer { queue, busy }, task)
    }

    /// How busy appends kept the writer recently.
    pub fn busy(&self) -> &BusyMeter {
        &self.busy
    }

    /// Appends `readings` durably; returns one outcome per reading, in order.
    pub async fn append(
        &self,
        readings: Vec<NewReading>,
    ) -> Result<Vec<AppendOutcome>, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { readings, reply })
            .await
            .map_err(|_| WriteError::Closed)?;
        answer.await.map_err(|_| WriteError::Closed)?
    }
}

async fn run(
    db: Arc<Database>,
    budget: Arc<Budget>,
    mut jobs: mpsc::Receiver<Job>,
    max_group_rows: usize,
    busy: Arc<BusyMeter>,
) {
    let mut group: Vec<Job> = Vec::new();
    let mut episode = Episode::default();
    while let Some(first) = jobs.recv().await {
        let mut rows = first.readings.len();
        group.push(first);
        while rows < max_group_rows {
            match jobs.try_recv() {
                Ok(job) => {
                    rows += job.readings.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        match budget.admit(rows, db.index_rows_due(rows)).await {
            Ok(()) => commit(&db, &budget, &mut group, &mut episode).await,
            Err(refused) => {
                let err = match refused {
                    AdmitError::Full(full) => WriteError::Full(full),
                    AdmitError::Db(err) => {
                        if episode.failed() {
                            tracing::error!(error = %err, "cannot check the storage budget; nothing of the group was stored");
                        } else {
                            tracing::debug!(error = %err, "cannot check the storage budget");
                        }
                        WriteError::Db(Arc::new(err))
                    }
                };
                answer_all(&budget, &mut group, &err);
            }
        }
        busy.record(started.elapsed());
    }
    tracing::debug!("store writer stopped");
}

/// A stretch of failing appends (a database down for minutes), so that it
/// is logged when it begins and when it ends rather than for every group.
#[derive(Debug, Default)]
struct Episode {
    since: Option<Instant>,
    failures: u64,
}

impl Episode {
    /// Counts a failure; whether it is the first of a stretch.
    fn failed(&mut self) -> bool {
        self.failures += 1;
        self.since.get_or_insert_with(Instant::now);
        self.failures == 1
    }

    /// An append committed: ends the stretch, if one ran.
    fn succeeded(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                after = %humantime::format_duration(Duration::from_secs(since.elapsed().as_secs())),
                failures = self.failures,
                "appends commit again"
            );
        }
        self.failures = 0;
    }
}

async fn commit(db: &Database, budget: &Budget, group: &mut Vec<Job>, episode: &mut Episode) {
    let all: Vec<&NewReading> = group.iter().flat_map(|job| job.readings.iter()).collect();
    let result = db.append(&all).await;
    drop(all);
    match result {
        Ok(outcomes) => {
            budget.committed();
            episode.succeeded();
            let mut outcomes = outcomes.into_iter();
            for job in group.drain(..) {
                let mine: Vec<AppendOutcome> = outcomes.by_ref().take(job.readings.len()).collect();
                // A caller that went away (deadline, disconnect) just misses
                // its answer; its readings are committed all the same.
                let _ = job.reply.send(Ok(mine));
            }
        }
        Err(err)
            if group.len() > 1 && matches!(err.failure(), Failure::Refused | Failure::Other) =>
        {
            tracing::warn!(error = %err, calls = group.len(), "group commit failed; retrying each call alone");
            for job in group.drain(..) {
                let readings: Vec<&NewReading> = job.readings.iter().collect();
                let result = match db.append(&readings).await {
                    Ok(outcomes) => {
                        budget.committed();
                        episode.succeeded();
                        Ok(outcomes)
                    }
                    Err(err) => Err(failed(budget, episode, err, readings.len())),
                };
                let _ = job.reply.send(result);
            }
        }
        Err(err) => {
            let readings = group.iter().map(|job| job.readings.len()).sum();
            let err = failed(budget, episode, err, readings);
            answer_all(budget, group, &err);
        }
    }
}

/// Logs a failed append (once per stretch of failures, and a full disk
/// once per refusal period) and turns it into the callers' error; a full
/// disk also starts (or continues) a refusal period.
fn failed(budget: &Budget, episode: &mut Episode, err: DbError, readings: usize) -> WriteError {
    let first = episode.failed();
    match err.failure() {
        Failure::StorageFull => {
            let already = budget.refusals().current().is_some();
            let reason = budget.disk_full(&err);
            if already {
                tracing::debug!(error = %err, readings, "append refused for a full disk");
            } else {
                tracing::error!(error = %err, readings, %reason, "append refused for a full disk; nothing of it was stored");
            }
        }
        _ if !first => {
            tracing::debug!(error = %err, readings, "append failed again and was not acknowledged");
        }
        Failure::Unavailable => {
            tracing::warn!(error = %err, readings, "append failed and was not acknowledged; the callers retry it (logged once until appends commit again)");
        }
        Failure::Refused | Failure::Other => {
            tracing::error!(error = %err, readings, "append failed and was not acknowledged (logged once until appends commit again)");
        }
    }
    WriteError::Db(Arc::new(err))
}

/// Answers every call of the group with `err`, counting the calls a full
/// site refused.
fn answer_all(budget: &Budget, group: &mut Vec<Job>, err: &WriteError) {
    for job in group.drain(..) {
        if refused_for_storage(err) {
            budget.refusals().refused_call();
        }
        let _ = job.reply.send(Err(err.clone()));
    }
}

/// Whether `err` refuses for lack of storage (the budget's or the disk's).
fn refused_for_storage(err: &WriteError) -> bool {
    match err {
        WriteError::Full(_) => true,
        WriteError::Db(err) => err.failure() == Failure::StorageFull,
        WriteError::Closed => false,
    }
}
