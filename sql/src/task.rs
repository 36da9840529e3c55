//! A task beside a database's writer (SQLite's WAL checkpoints, the site's
//! by-sensor batches): started with the store, woken by the writer's
//! commits, stopped with the store, and reporting a failure once rather
//! than at every attempt.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running background task. Dropping it (a store that failed to finish
/// opening) stops the task too; [`BackgroundTask::stop`] also waits for it.
pub struct BackgroundTask {
    signals: Signals,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// What a task's body waits on: wake-ups from the writer and its stop.
#[derive(Clone)]
pub struct Signals {
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl Signals {
    /// Waits for the next wake-up, or for `retry` to pass when given (a
    /// task that failed tries again without one). A wake-up that came while
    /// the task was busy counts. False once the task is stopping.
    pub async fn woken(&self, retry: Option<Duration>) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            () = self.wake.notified() => true,
            () = tokio::time::sleep(retry.unwrap_or_default()), if retry.is_some() => true,
        }
    }

    /// Waits `pause`; false if the task is stopping meanwhile.
    pub async fn paused(&self, pause: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            () = tokio::time::sleep(pause) => true,
        }
    }

    /// Whether the task is asked to stop: for a body that checks between
    /// units of work rather than abandoning one half done.
    pub fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

impl BackgroundTask {
    /// Spawns `body` with its signals.
    pub fn spawn<F, Fut>(body: F) -> Self
    where
        F: FnOnce(Signals) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let signals = Signals {
            wake: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
        };
        let task = tokio::spawn(body(signals.clone()));
        BackgroundTask {
            signals,
            task: Mutex::new(Some(task)),
        }
    }

    /// Wakes the task (a commit gave it work).
    pub fn wake(&self) {
        self.signals.wake.notify_one();
    }

    /// Stops the task and waits for it to end.
    pub async fn stop(&self) {
        self.signals.stop.cancel();
        let task = self.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.signals.stop.cancel();
    }
}

/// A background task's failures as its logs tell them: the first as a
/// warning, repeats at debug level (a full disk fails every attempt), and
/// the recovery once.
#[derive(Debug, Default)]
pub struct FailureReport {
    failing: bool,
}

impl FailureReport {
    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.failing
    }

    /// Logs an attempt's outcome: `failed` says what failed and what it
    /// means, `recovered` that it works again.
    pub fn record<E: Display>(
        &mut self,
        outcome: Result<(), E>,
        failed: &'static str,
        recovered: &'static str,
    ) {
        match outcome {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!("{recovered}");
                }
            }
            Err(err) if !self.failing => {
                self.failing = true;
                tracing::warn!(error = %err, "{failed}");
            }
            Err(err) => tracing::debug!(error = %err, "{failed} (again)"),
        }
    }
}
