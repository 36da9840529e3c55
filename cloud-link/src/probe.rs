//! The cloud reachability probe: `GET /health` on an interval, with
//! hysteresis so one lost packet does not flip the site offline and one lucky
//! answer does not start a drain into a dead link.
//!
//! The first answer decides the initial state at once (a site that boots
//! with a good link starts pushing within one probe). After that it takes
//! `failures_to_offline` consecutive failures to go offline and
//! `successes_to_online` consecutive successes to come back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::client::CloudClient;

/// How the probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Time between probes.
    pub interval: Duration,
    /// Deadline for one probe.
    pub timeout: Duration,
    /// Consecutive failures that take the link offline.
    pub failures_to_offline: u32,
    /// Consecutive successes that bring it back online.
    pub successes_to_online: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            failures_to_offline: 3,
            successes_to_online: 2,
        }
    }
}

/// What the probe knows about the link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStatus {
    /// `None` until the first probe answered or failed.
    pub reachable: Option<bool>,
    /// When `reachable` last changed (or the probe started).
    pub since: SystemTime,
    /// Latency of the last successful probe.
    pub last_latency: Option<Duration>,
    /// Why the last probe failed, if it did.
    pub last_error: Option<String>,
    /// When a probe last succeeded.
    pub last_success_at: Option<SystemTime>,
}

impl LinkStatus {
    /// The cloud is reachable as far as the probe can tell.
    pub fn is_online(&self) -> bool {
        self.reachable == Some(true)
    }
}

/// The state machine, separate from the timing so it can be tested alone.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    failures_to_offline: u32,
    successes_to_online: u32,
    reachable: Option<bool>,
    streak: u32,
}

impl Hysteresis {
    /// A machine that has seen nothing yet.
    pub fn new(config: &ProbeConfig) -> Self {
        Hysteresis {
            failures_to_offline: config.failures_to_offline.max(1),
            successes_to_online: config.successes_to_online.max(1),
            reachable: None,
            streak: 0,
        }
    }

    /// Records one probe; returns the new state when it changed.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        match self.reachable {
            None => {
                self.reachable = Some(ok);
                self.streak = 0;
                Some(ok)
            }
            Some(state) if state == ok => {
                self.streak = 0;
                None
            }
            Some(_) => {
                self.streak += 1;
                let needed = if ok {
                    self.successes_to_online
                } else {
                    self.failures_to_offline
                };
                if self.streak >= needed {
                    self.reachable = Some(ok);
                    self.streak = 0;
                    Some(ok)
                } else {
                    None
                }
            }
        }
    }

    /// The current state (`None` before the first probe).
    pub fn reachable(&self) -> Option<bool> {
        self.reachable
    }
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
        let (tx, status) = watch::channel(LinkStatus {
            reachable: None,
            since: SystemTime::now(),
            last_latency: None,
            last_error: None,
            last_success_at: None,
        });
        let now = Arc::new(Notify::new());
        tokio::spawn(run(client, config, tx, now.clone(), stop));
        Prober { status, now }
    }

    /// Follows the link status.
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
        let result = client.health(config.timeout).await;
        let ok = result.is_ok();
        let changed = machine.observe(ok);
        tx.send_modify(|status| {
            match &result {
                Ok(latency) => {
                    status.last_latency = Some(*latency);
                    status.last_error = None;
                    status.last_success_at = Some(SystemTime::now());
                }
                Err(err) => status.last_error = Some(err.to_string()),
            }
            if let Some(reachable) = changed {
                status.reachable = Some(reachable);
                status.since = SystemTime::now();
            }
        });
        match changed {
            Some(true) => tracing::info!(cloud = client.base_url(), "cloud reachable"),
            Some(false) => tracing::warn!(
                cloud = client.base_url(),
                error = result
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                "cloud unreachable"
            ),
            None => {}
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

    fn machine() -> Hysteresis {
        Hysteresis::new(&ProbeConfig {
            failures_to_offline: 3,
            successes_to_online: 2,
            ..ProbeConfig::default()
        })
    }

    #[test]
    fn the_first_answer_decides_then_streaks_are_needed() {
        let mut m = machine();
        assert_eq!(m.observe(true), Some(true));
        assert_eq!(m.observe(false), None);
        assert_eq!(m.observe(false), None);
        assert_eq!(m.observe(true), None, "a success breaks the failure streak");
        assert_eq!(m.observe(false), None);
        assert_eq!(m.observe(false), None);
        assert_eq!(m.observe(false), Some(false));
        assert_eq!(m.observe(true), None);
        assert_eq!(m.observe(true), Some(true));
    }

    #[test]
    fn an_unreachable_start_is_offline_at_once() {
        let mut m = machine();
        assert_eq!(m.observe(false), Some(false));
        assert_eq!(m.reachable(), Some(false));
    }
}
