//! Periods during which the site refuses writes for lack of storage, so an
//! operator can see when they began, why, how long they lasted and how many
//! calls they turned away.
//!
//! Two things can refuse: the storage budget (no room under the budget or
//! above the free-disk reserve, see [`super::budget`]) and the disk itself (a
//! commit that failed because the file system was full, typically filled by
//! something else: images, logs). A period runs from the first refusal of
//! either until both have cleared: the budget clears when a group fits again,
//! the disk when a write commits. Nothing here waits or retries: ingest
//! comes back by itself because every new group is measured or tried again.
//! Each period is logged when it begins (with its cause) and when it ends
//! (with its length and the calls refused), and summed in
//! `storage_refused_seconds_total`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The storage budget or the free-disk reserve.
    Budget,
    /// A commit failed because the disk was full.
    Disk,
}

/// The refusal period now running, as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusing {
    /// Why writes are refused, in words (the database's own words for a full
    /// disk).
    pub reason: String,
    /// When the period began, microseconds since the epoch.
    pub since_us: i64,
}

#[derive(Debug, Default)]
struct State {
    budget: Option<String>,
    disk: Option<String>,
    /// Start of the running period: monotonic, and wall-clock for display.
    since: Option<(Instant, i64)>,
    refused_calls: u64,
    /// Length of the periods that ended.
    ended: Duration,
}

impl State {
    fn reason(&self) -> Option<&str> {
        self.disk.as_deref().or(self.budget.as_deref())
    }
}

/// The refusal periods of one store.
#[derive(Debug, Default)]
pub struct Refusals {
    state: Mutex<State>,
}

impl Refusals {
    /// `cause` refuses writes because of `reason`; begins a period if none
    /// runs. `now_us` is the wall clock, for display.
    pub fn begin(&self, cause: Cause, reason: String, now_us: i64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.since.is_none() {
            tracing::warn!(
                reason = %reason,
                "the site refuses new readings (RESOURCE_EXHAUSTED) until it has room again; \
                 gateways keep them and retry"
            );
            state.since = Some((Instant::now(), now_us));
            state.refused_calls = 0;
        }
        match cause {
            Cause::Budget => state.budget = Some(reason),
            Cause::Disk => state.disk = Some(reason),
        }
    }

    /// `cause` no longer refuses; ends the period if the other does not
    /// either.
    pub fn end(&self, cause: Cause) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match cause {
            Cause::Budget => state.budget = None,
            Cause::Disk => state.disk = None,
        }
        if state.budget.is_some() || state.disk.is_some() {
            return;
        }
        if let Some((since, _)) = state.since.take() {
            let lasted = since.elapsed();
            state.ended += lasted;
            tracing::info!(
                after = %humantime::format_duration(Duration::from_millis(
                    u64::try_from(lasted.as_millis()).unwrap_or(u64::MAX)
                )),
                refused_calls = state.refused_calls,
                "the site has room again; ingest resumed"
            );
        }
    }

    /// Counts one call refused during the running period.
    pub fn refused_call(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.refused_calls += 1;
        }
    }

    /// Whether `cause` refuses now.
    pub fn by(&self, cause: Cause) -> bool {
        self.state.lock().is_ok_and(|state| match cause {
            Cause::Budget => state.budget.is_some(),
            Cause::Disk => state.disk.is_some(),
        })
    }

    /// The running period, if any.
    pub fn current(&self) -> Option<Refusing> {
        let state = self.state.lock().ok()?;
        let (_, since_us) = state.since?;
        Some(Refusing {
            reason: state.reason().unwrap_or_default().to_owned(),
            since_us,
        })
    }

    /// Seconds spent refusing since start-up, the running period included.
    pub fn refused_seconds(&self) -> f64 {
        self.state.lock().map_or(0.0, |state| {
            let running = state.since.map_or(Duration::ZERO, |(at, _)| at.elapsed());
            (state.ended + running).as_secs_f64()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_runs_until_every_cause_has_cleared() {
        let refusals = Refusals::default();
        assert_eq!(refusals.current(), None);
        refusals.begin(Cause::Budget, "no room".into(), 5);
        refusals.begin(Cause::Disk, "database or disk is full".into(), 9);
        let running = refusals.current().expect("refusing");
        assert_eq!(running.since_us, 5, "the period began with the first cause");
        assert_eq!(running.reason, "database or disk is full");
        refusals.end(Cause::Disk);
        assert_eq!(refusals.current().map(|r| r.reason), Some("no room".into()));
        refusals.end(Cause::Budget);
        assert_eq!(refusals.current(), None);
        assert!(!refusals.by(Cause::Budget) && !refusals.by(Cause::Disk));
        let total = refusals.refused_seconds();
        assert!(total >= 0.0);
        assert_eq!(refusals.refused_seconds(), total, "no period runs");
    }
}
