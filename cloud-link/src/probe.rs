//! The cloud reachability probe: `GET /health` on an interval, judged by a
//! state machine with hysteresis so one lost packet does not flip the site
//! offline and one lucky answer does not start a drain into a dead link.
//! sync-svc and health-svc both run it (one implementation, each its own
//! probe: sync-svc must not depend on health-svc being up).
//!
//! The link is in one of four states ([`LinkState`]):
//!
//! - `Unknown` until the first probe answered or failed. The first answer
//!   decides at once (a site that boots with a good link starts pushing
//!   within one probe);
//! - `Online`: the cloud answers, fast enough and reliably enough;
//! - `Degraded`: the cloud answers, but probes are slow (latency above
//!   `max_latency`) or too many of the last `window` probes failed (success
//!   ratio below `min_success_ratio`). Still reachable: sync-svc pushes;
//! - `Offline`: the cloud does not answer.
//!
//! Hysteresis: it takes `failures_to_offline` consecutive failures to go
//! offline (from online or degraded), `successes_to_online` consecutive
//! successes to come back from offline, `failures_to_offline` consecutive
//! poor answers (slow, or with the window's ratio too low) to go from online
//! to degraded, and `successes_to_online` consecutive good answers to go from
//! degraded back to online. A failure neither starts nor breaks a run of poor
//! answers, so a link that fails every other probe ends up degraded, never
//! offline.
//!
//! The window's success ratio is judged against the whole window (probes not
//! yet made count as successes), so one lost probe right after start-up does
//! not look like a 50 % loss. The window is cleared when the link comes back
//! from offline: the failures of an outage are the outage (already reported
//! as offline), not a sign that the restored link is poor.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Args;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::client::CloudClient;

/// How the probe runs and how it judges the link. The flags are shared by
/// sync-svc, health-svc and `edge up` (explicit ids, so they cannot clash
/// with another flattened config's fields).
#[derive(Debug, Clone, Copy, PartialEq, Args)]
pub struct ProbeConfig {
    /// Time between reachability probes (`GET /health`).
    #[arg(id = "probe_interval", value_name = "PROBE_INTERVAL", long = "probe-interval", env = "EDGE_PROBE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// Deadline for one probe.
    #[arg(id = "probe_timeout", value_name = "PROBE_TIMEOUT", long = "probe-timeout", env = "EDGE_PROBE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Consecutive failed probes that take the link offline (and consecutive
    /// slow or unreliable answers that make it degraded), 1 to 100.
    #[arg(id = "probe_failures", value_name = "PROBE_FAILURES", long = "probe-failures", env = "EDGE_PROBE_FAILURES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub failures_to_offline: u32,

    /// Consecutive good probes that bring it back (online from offline or
    /// degraded), 1 to 100.
    #[arg(id = "probe_successes", value_name = "PROBE_SUCCESSES", long = "probe-successes", env = "EDGE_PROBE_SUCCESSES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub successes_to_online: u32,

    /// Probes the success ratio is computed over (the last N), 1 to 1000.
    #[arg(id = "probe_window", value_name = "PROBE_WINDOW", long = "probe-window", env = "EDGE_PROBE_WINDOW", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub window: u32,

    /// A reachable link whose success ratio over the window falls below this
    /// (0 to 1) is DEGRADED.
    #[arg(id = "probe_min_success_ratio", value_name = "PROBE_MIN_SUCCESS_RATIO", long = "probe-min-success-ratio", env = "EDGE_PROBE_MIN_SUCCESS_RATIO", default_value_t = 0.8, value_parser = parse_ratio)]
    pub min_success_ratio: f64,

    /// A reachable link whose probes take longer than this is DEGRADED. Keep
    /// it below `--probe-timeout`.
    #[arg(id = "probe_max_latency", value_name = "PROBE_MAX_LATENCY", long = "probe-max-latency", env = "EDGE_PROBE_MAX_LATENCY", default_value = "1s", value_parser = humantime::parse_duration)]
    pub max_latency: Duration,
}

/// A ratio between 0 and 1.
fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        Ok(ratio) => Err(format!("must be between 0 and 1, got {ratio}")),
        Err(err) => Err(err.to_string()),
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            failures_to_offline: 3,
            successes_to_online: 2,
            window: 20,
            min_success_ratio: 0.8,
            max_latency: Duration::from_secs(1),
        }
    }
}

/// The link's state as the probe judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// No probe has answered or failed yet.
    Unknown,
    /// The cloud answers, fast and reliably.
    Online,
    /// The cloud answers, but slowly or not reliably. Still reachable.
    Degraded,
    /// The cloud does not answer.
    Offline,
}

impl LinkState {
    /// Every state, for exporting one gauge series per state.
    pub const ALL: [LinkState; 4] = [
        LinkState::Unknown,
        LinkState::Online,
        LinkState::Degraded,
        LinkState::Offline,
    ];

    /// Pushing makes sense: online or degraded.
    pub fn is_reachable(self) -> bool {
        matches!(self, LinkState::Online | LinkState::Degraded)
    }

    /// Lower-case name, as metric labels and logs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Unknown => "unknown",
            LinkState::Online => "online",
            LinkState::Degraded => "degraded",
            LinkState::Offline => "offline",
        }
    }
}

/// What the probe knows about the link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStatus {
    /// The state, after hysteresis.
    pub state: LinkState,
    /// When `state` last changed (or the probe started).
    pub since: SystemTime,
    /// When the link last went from reachable to unreachable or back (or
    /// the probe started): a move between online and degraded does not
    /// count, since both are reachable.
    pub reachability_since: SystemTime,
    /// Latency of the last successful probe.
    pub last_latency: Option<Duration>,
    /// Why the last probe failed, if it did.
    pub last_error: Option<String>,
    /// When a probe last succeeded.
    pub last_success_at: Option<SystemTime>,
    /// When the last probe finished.
    pub last_probe_at: Option<SystemTime>,
    /// Successful share of the probes in the window (`None` before the first).
    pub success_ratio: Option<f64>,
    /// Probes in the window so far (at most the configured window).
    pub window_probes: u32,
    /// Why the link is degraded or offline, for operators.
    pub reason: Option<String>,
}

impl LinkStatus {
    /// A status before any probe, starting now.
    pub fn starting() -> Self {
        let now = SystemTime::now();
        LinkStatus {
            state: LinkState::Unknown,
            since: now,
            reachability_since: now,
            last_latency: None,
            last_error: None,
            last_success_at: None,
            last_probe_at: None,
            success_ratio: None,
            window_probes: 0,
            reason: None,
        }
    }

    /// The cloud is reachable as far as the probe can tell (online or
    /// degraded): pushing makes sense.
    pub fn is_reachable(&self) -> bool {
        self.state.is_reachable()
    }

    /// How long the cloud has been unreachable (zero while reachable).
    pub fn unreachable_for(&self, now: SystemTime) -> Duration {
        if self.is_reachable() {
            Duration::ZERO
        } else {
            now.duration_since(self.reachability_since)
                .unwrap_or_default()
        }
    }
}

/// The state machine, separate from the timing so it can be tested alone.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    config: ProbeConfig,
    state: LinkState,
    /// Last `window` outcomes, oldest first; `true` for a success.
    window: VecDeque<bool>,
    /// Consecutive failures.
    failures: u32,
    /// Consecutive successes.
    successes: u32,
    /// Consecutive poor answers (slow, or the window's ratio too low);
    /// failures leave it alone.
    poor: u32,
    /// Consecutive good answers.
    good: u32,
    /// Latency of the last answer.
    last_latency: Option<Duration>,
}

impl Hysteresis {
    /// A machine that has seen nothing yet.
    pub fn new(config: &ProbeConfig) -> Self {
        let mut config = *config;
        config.failures_to_offline = config.failures_to_offline.max(1);
        config.successes_to_online = config.successes_to_online.max(1);
        config.window = config.window.max(1);
        Hysteresis {
            config,
            state: LinkState::Unknown,
            window: VecDeque::with_capacity(config.window as usize),
            failures: 0,
            successes: 0,
            poor: 0,
            good: 0,
            last_latency: None,
        }
    }

    /// Records one probe: `Some(latency)` for an answer, `None` for a
    /// failure. Returns the new state when it changed.
    pub fn observe(&mut self, answer: Option<Duration>) -> Option<LinkState> {
        self.window.push_back(answer.is_some());
        while self.window.len() > self.config.window as usize {
            self.window.pop_front();
        }
        match answer {
            None => {
                self.failures += 1;
                self.successes = 0;
                self.good = 0;
            }
            Some(latency) => {
                self.last_latency = Some(latency);
                self.failures = 0;
                self.successes += 1;
                if self.is_poor(latency) {
                    self.poor += 1;
                    self.good = 0;
                } else {
                    self.good += 1;
                    self.poor = 0;
                }
            }
        }
        let (to_offline, to_online) = (
            self.config.failures_to_offline,
            self.config.successes_to_online,
        );
        let next = match (self.state, answer) {
            (LinkState::Unknown, None) => LinkState::Offline,
            (LinkState::Unknown, Some(latency)) => self.class(latency),
            (LinkState::Online | LinkState::Degraded, _) if self.failures >= to_offline => {
                LinkState::Offline
            }
            (LinkState::Online, Some(_)) if self.poor >= to_offline => LinkState::Degraded,
            (LinkState::Degraded, Some(_)) if self.good >= to_online => LinkState::Online,
            (LinkState::Offline, Some(latency)) if self.successes >= to_online => {
                // Back: judge the restored link on its own probes only.
                self.window.clear();
                self.window
                    .extend(std::iter::repeat_n(true, self.successes as usize));
                while self.window.len() > self.config.window as usize {
                    self.window.pop_front();
                }
                self.class(latency)
            }
            _ => return None,
        };
        if next == self.state {
            return None;
        }
        self.state = next;
        self.poor = 0;
        self.good = 0;
        Some(next)
    }

    /// Online or degraded, for a link that just answered in `latency`.
    fn class(&self, latency: Duration) -> LinkState {
        if self.is_poor(latency) {
            LinkState::Degraded
        } else {
            LinkState::Online
        }
    }

    /// An answer is poor when it is slow or the window holds too many
    /// failures (judged against the whole window: probes not yet made
    /// count as successes).
    fn is_poor(&self, latency: Duration) -> bool {
        latency > self.config.max_latency || self.window_ratio() < self.config.min_success_ratio
    }

    fn window_ratio(&self) -> f64 {
        let failures = self.window.iter().filter(|ok| !**ok).count();
        let size = f64::from(self.config.window);
        (size - failures as f64) / size
    }

    /// The current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Successful share of the probes made in the window; `None` before
    /// the first.
    pub fn success_ratio(&self) -> Option<f64> {
        if self.window.is_empty() {
            return None;
        }
        let ok = self.window.iter().filter(|ok| **ok).count();
        Some(ok as f64 / self.window.len() as f64)
    }

    /// Probes in the window so far.
    pub fn window_probes(&self) -> u32 {
        u32::try_from(self.window.len()).unwrap_or(u32::MAX)
    }

    /// Why the link is degraded, for operators (`None` unless degraded).
    pub fn degraded_reason(&self) -> Option<String> {
        if self.state != LinkState::Degraded {
            return None;
        }
        let mut reasons = Vec::new();
        if let Some(latency) = self.last_latency
            && latency > self.config.max_latency
        {
            reasons.push(format!(
                "probes take {} (above --probe-max-latency {})",
                humantime::format_duration(round_ms(latency)),
                humantime::format_duration(self.config.max_latency)
            ));
        }
        if self.window_ratio() < self.config.min_success_ratio {
            let failed = self.window.iter().filter(|ok| !**ok).count();
            reasons.push(format!(
                "{failed} of the last {} probes failed (success ratio below --probe-min-success-ratio {})",
                self.window.len(),
                self.config.min_success_ratio
            ));
        }
        if reasons.is_empty() {
            reasons.push("recovering: waiting for consecutive good probes".to_owned());
        }
        Some(reasons.join("; "))
    }
}

/// `d` rounded to whole milliseconds, for readable messages.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A running probe.
#[derive(Clone)]
pub struct Prober {
    status: watch::Receiver<LinkStatus>,
    now: Arc<Notify>,
}

impl Prober {
    /// Starts probing `client`'s cloud until `stop`.
    pub fn spawn(client: CloudClient, config: ProbeConfig, stop: CancellationToken) -> Prober {
        let (tx, status) = watch::channel(LinkStatus::starting());
        let now = Arc::new(Notify::new());
        tokio::spawn(run(client, config, tx, now.clone(), stop));
        Prober { status, now }
    }

    /// Follows the link status. It changes after every probe (latency,
    /// ratio); compare `state` to react to transitions only.
    pub fn watch(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }

    /// The link status now.
    pub fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    /// Probes at once instead of at the next interval.
    pub fn probe_now(&self) {
        self.now.notify_one();
    }
}

async fn run(
    client: CloudClient,
    config: ProbeConfig,
    tx: watch::Sender<LinkStatus>,
    now: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut machine = Hysteresis::new(&config);
    loop {
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = client.health(config.timeout) => result,
        };
        let changed = machine.observe(result.as_ref().ok().copied());
        let at = SystemTime::now();
        tx.send_modify(|status| {
            match &result {
                Ok(latency) => {
                    status.last_latency = Some(*latency);
                    status.last_error = None;
                    status.last_success_at = Some(at);
                }
                Err(err) => status.last_error = Some(err.to_string()),
            }
            status.last_probe_at = Some(at);
            status.success_ratio = machine.success_ratio();
            status.window_probes = machine.window_probes();
            if let Some(state) = changed {
                if status.state == LinkState::Unknown
                    || status.state.is_reachable() != state.is_reachable()
                {
                    status.reachability_since = at;
                }
                status.state = state;
                status.since = at;
            }
            status.reason = match status.state {
                LinkState::Degraded => machine.degraded_reason(),
                LinkState::Offline => status.last_error.clone(),
                LinkState::Unknown | LinkState::Online => None,
            };
        });
        match changed {
            Some(LinkState::Online) => tracing::info!(cloud = client.base_url(), "cloud online"),
            Some(LinkState::Degraded) => tracing::warn!(
                cloud = client.base_url(),
                reason = machine.degraded_reason().unwrap_or_default(),
                "cloud link degraded"
            ),
            Some(LinkState::Offline) => tracing::warn!(
                cloud = client.base_url(),
                error = result
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                "cloud unreachable"
            ),
            Some(LinkState::Unknown) | None => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(config.interval) => {}
            () = now.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LinkState::{Degraded, Offline, Online};

    const FAST: Option<Duration> = Some(Duration::from_millis(10));
    const SLOW: Option<Duration> = Some(Duration::from_millis(900));
    const FAIL: Option<Duration> = None;

    fn machine() -> Hysteresis {
        Hysteresis::new(&ProbeConfig {
            failures_to_offline: 3,
            successes_to_online: 2,
            window: 10,
            min_success_ratio: 0.8,
            max_latency: Duration::from_millis(500),
            ..ProbeConfig::default()
        })
    }

    /// Feeds `answers` and returns the transitions, in order.
    fn feed(m: &mut Hysteresis, answers: &[Option<Duration>]) -> Vec<LinkState> {
        answers.iter().filter_map(|a| m.observe(*a)).collect()
    }

    #[test]
    fn the_first_answer_decides_then_streaks_are_needed() {
        let mut m = machine();
        assert_eq!(m.state(), LinkState::Unknown);
        assert_eq!(m.observe(FAST), Some(Online));
        assert_eq!(m.observe(FAIL), None, "one failure is not an outage");
        assert_eq!(m.observe(FAIL), None);
        assert_eq!(m.observe(FAST), None, "a success breaks the failure streak");
        assert_eq!(m.observe(FAIL), None);
        assert_eq!(m.observe(FAIL), None);
        assert_eq!(m.observe(FAIL), Some(Offline));
        assert_eq!(m.observe(FAST), None);
        assert_eq!(m.observe(FAST), Some(Online));
    }

    #[test]
    fn an_unreachable_start_is_offline_at_once() {
        let mut m = machine();
        assert_eq!(m.observe(FAIL), Some(Offline));
        assert_eq!(m.state(), Offline);
    }

    #[test]
    fn a_slow_start_is_degraded_at_once() {
        let mut m = machine();
        assert_eq!(m.observe(SLOW), Some(Degraded));
        assert!(m.degraded_reason().is_some_and(|r| r.contains("latency")));
    }

    #[test]
    fn slow_answers_degrade_after_a_streak_and_recover_after_one() {
        let mut m = machine();
        assert_eq!(m.observe(FAST), Some(Online));
        assert_eq!(feed(&mut m, &[SLOW, SLOW, FAST, SLOW, SLOW]), vec![]);
        assert_eq!(m.observe(SLOW), Some(Degraded));
        assert!(m.state().is_reachable(), "degraded is still reachable");
        assert_eq!(m.observe(FAST), None, "one good answer is not a recovery");
        assert_eq!(m.observe(SLOW), None);
        assert_eq!(m.observe(FAST), None);
        assert_eq!(m.observe(FAST), Some(Online));
    }

    #[test]
    fn losing_every_other_probe_is_degraded_not_offline() {
        let mut m = machine();
        assert_eq!(m.observe(FAST), Some(Online));
        let mut seen = Vec::new();
        for _ in 0..20 {
            seen.extend(feed(&mut m, &[FAIL, FAST]));
        }
        assert_eq!(seen, vec![Degraded]);
        assert_eq!(m.success_ratio(), Some(0.5));
        let reason = m.degraded_reason().expect("a reason");
        assert!(
            reason.contains("5 of the last 10 probes failed"),
            "{reason}"
        );
    }

    #[test]
    fn a_clean_outage_goes_straight_offline_and_comes_back_online() {
        let mut m = machine();
        assert_eq!(feed(&mut m, &[FAST, FAST, FAST]), vec![Online]);
        assert_eq!(
            feed(&mut m, &[FAIL; 8]),
            vec![Offline],
            "never degraded on the way down"
        );
        assert_eq!(
            feed(&mut m, &[FAST, FAST]),
            vec![Online],
            "the outage's failures do not make the restored link look poor"
        );
        assert_eq!(m.success_ratio(), Some(1.0));
    }

    #[test]
    fn a_degraded_link_can_go_offline_and_come_back_degraded() {
        let mut m = machine();
        assert_eq!(m.observe(SLOW), Some(Degraded));
        assert_eq!(feed(&mut m, &[FAIL, FAIL, FAIL]), vec![Offline]);
        assert_eq!(feed(&mut m, &[SLOW, SLOW]), vec![Degraded]);
    }

    #[test]
    fn one_lost_probe_after_start_does_not_degrade() {
        let mut m = machine();
        let answers = [FAST, FAIL, FAST, FAST, FAST, FAST];
        assert_eq!(feed(&mut m, &answers), vec![Online]);
        assert_eq!(m.success_ratio(), Some(5.0 / 6.0));
        assert_eq!(m.window_probes(), 6);
    }

    #[test]
    fn the_window_keeps_only_the_last_probes() {
        let mut m = machine();
        feed(&mut m, &[FAIL, FAIL, FAIL]);
        feed(&mut m, &[FAST; 12]);
        assert_eq!(m.window_probes(), 10);
        assert_eq!(m.success_ratio(), Some(1.0));
    }

    #[test]
    fn probe_flags_check_their_ranges() {
        assert_eq!(parse_ratio("0.5"), Ok(0.5));
        assert!(parse_ratio("1.5").is_err_and(|e| e.contains("between 0 and 1")));
        assert!(parse_ratio("x").is_err());
    }
}
