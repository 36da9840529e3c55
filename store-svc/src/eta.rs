//! The two forecasts operators plan by: when the backlog will have drained
//! (`backlog_drain_eta_seconds`) and when the storage will be full
//! (`storage_full_eta_seconds`), each a quantity over its recent rate.
//!
//! Rates are measured over a sliding window of the gauge refreshes (five
//! minutes by default): long enough that one slow push or one pruning pass
//! does not swing the forecast, short enough to follow a link that came
//! back. A forecast is `+Inf` when nothing moves (offline: the backlog does
//! not drain, or readings arrive faster than they leave; pruning keeps
//! pace: the storage does not fill) and `0` when there is nothing left (no
//! backlog; no room).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back rates look.
pub const RATE_WINDOW: Duration = Duration::from_secs(300);

/// A counter or level sampled over time, for its recent rate of change.
#[derive(Debug)]
pub struct RateWindow {
    samples: VecDeque<(Instant, f64)>,
    window: Duration,
}

impl RateWindow {
    /// A window over the last `window`.
    pub fn new(window: Duration) -> Self {
        RateWindow {
            samples: VecDeque::new(),
            window,
        }
    }

    /// Records `value` at `at`, forgetting samples older than the window
    /// (keeping one from before it, so the rate spans the whole window).
    pub fn record(&mut self, at: Instant, value: f64) {
        self.samples.push_back((at, value));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| at.duration_since(*t) >= self.window)
        {
            self.samples.pop_front();
        }
    }

    /// Change per second between the oldest and newest sample, once two
    /// samples at least a second apart exist.
    pub fn rate(&self) -> Option<f64> {
        let (t0, v0) = self.samples.front()?;
        let (t1, v1) = self.samples.back()?;
        let span = t1.duration_since(*t0).as_secs_f64();
        (span >= 1.0).then(|| (v1 - v0) / span)
    }
}

/// Seconds until `remaining` is used up at `rate` per second: `0` when
/// nothing remains, `+Inf` when the rate does not bring it down, `None`
/// until a rate is known.
pub fn eta_seconds(remaining: f64, rate: Option<f64>) -> Option<f64> {
    if remaining <= 0.0 {
        return Some(0.0);
    }
    let rate = rate?;
    Some(if rate > 0.0 {
        remaining / rate
    } else {
        f64::INFINITY
    })
}

/// The forecasts, refreshed with the gauges.
#[derive(Debug)]
pub struct Forecasts {
    synced: RateWindow,
    unsynced: RateWindow,
    used: RateWindow,
    /// `backlog_drain_eta_seconds`.
    pub drain_eta: Option<f64>,
    /// `storage_full_eta_seconds` (`None` when the site has no limit).
    pub full_eta: Option<f64>,
}

impl Default for Forecasts {
    fn default() -> Self {
        Forecasts {
            synced: RateWindow::new(RATE_WINDOW),
            unsynced: RateWindow::new(RATE_WINDOW),
            used: RateWindow::new(RATE_WINDOW),
            drain_eta: None,
            full_eta: None,
        }
    }
}

impl Forecasts {
    /// Takes one refresh: the synced counter and backlog, and, when the
    /// storage is measured and limited, bytes in use and room left.
    pub fn update(
        &mut self,
        at: Instant,
        synced_versions: i64,
        unsynced_versions: i64,
        storage: Option<(i64, i64)>,
    ) {
        self.synced.record(at, synced_versions as f64);
        self.unsynced.record(at, unsynced_versions as f64);
        // A backlog that grew over the window is not draining, however
        // much was synced meanwhile.
        let growing = self.unsynced.rate().is_some_and(|rate| rate > 0.0);
        self.drain_eta = eta_seconds(
            unsynced_versions as f64,
            self.synced
                .rate()
                .map(|rate| if growing { 0.0 } else { rate }),
        );
        self.full_eta = storage.and_then(|(used, room)| {
            self.used.record(at, used as f64);
            eta_seconds(room as f64, self.used.rate())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_spans_the_window() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(Duration::from_secs(60));
        w.record(t0, 0.0);
        assert_eq!(w.rate(), None, "one sample has no rate");
        w.record(t0 + Duration::from_secs(10), 100.0);
        assert_eq!(w.rate(), Some(10.0));
        // Old samples fall out: the rate follows the recent slope.
        for s in 1..=12 {
            w.record(t0 + Duration::from_secs(10 + s * 10), 100.0);
        }
        assert_eq!(w.rate(), Some(0.0));
    }

    #[test]
    fn forecasts_are_zero_when_done_and_infinite_when_stalled() {
        assert_eq!(eta_seconds(0.0, None), Some(0.0));
        assert_eq!(eta_seconds(10.0, None), None);
        assert_eq!(eta_seconds(100.0, Some(4.0)), Some(25.0));
        assert_eq!(eta_seconds(100.0, Some(0.0)), Some(f64::INFINITY));
        assert_eq!(eta_seconds(100.0, Some(-3.0)), Some(f64::INFINITY));
    }

    #[test]
    fn the_backlog_forecast_follows_the_drain() {
        let t0 = Instant::now();
        let mut f = Forecasts::default();
        f.update(t0, 1_000, 5_000, None);
        f.update(t0 + Duration::from_secs(10), 2_000, 4_000, Some((10, 0)));
        assert_eq!(f.drain_eta, Some(40.0), "4,000 left at 100/s");
        assert_eq!(f.full_eta, Some(0.0), "no room left");
        f.update(t0 + Duration::from_secs(20), 2_500, 3_000, None);
        assert_eq!(f.drain_eta, Some(40.0), "1,500 synced in 20 s: 75/s");
        assert_eq!(f.full_eta, None, "no limit, no forecast");
        f.update(t0 + Duration::from_secs(30), 3_000, 6_000, None);
        assert_eq!(
            f.drain_eta,
            Some(f64::INFINITY),
            "readings arrive faster than they leave"
        );
    }
}
