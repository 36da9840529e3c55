//! What health-svc knows, behind one watch channel: `GetCloudHealth` reads
//! it, `WatchCloudHealth` follows it, the gauges read it at scrape time.
//!
//! Invariant: watchers are woken only when the link's state or a service's
//! state changes. Every probe and every check still updates the figures
//! (latency, success ratio, last check, error text) in place, silently, so
//! whatever is read next is current; but drift alone sends nothing.

use std::time::SystemTime;

use edge_cloud_link::{LinkState, LinkStatus};
use tokio::sync::watch;

/// A mesh service's state, as its `grpc.health.v1` answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// Not checked yet.
    Unknown,
    /// Answered SERVING.
    Serving,
    /// Answered, but not SERVING.
    NotServing,
    /// No answer in time.
    Unreachable,
}

impl Serving {
    /// Lower-case name, for logs and operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Serving::Unknown => "unknown",
            Serving::Serving => "serving",
            Serving::NotServing => "not_serving",
            Serving::Unreachable => "unreachable",
        }
    }
}

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The state it shows.
    pub state: Serving,
    /// What went wrong, when not serving.
    pub error: Option<String>,
}

/// One mesh service as health-svc sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceHealth {
    /// Short name (`ingest`, `store`, `sync`): also the metric label.
    pub name: &'static str,
    /// The gRPC service asked about.
    pub grpc_service: &'static str,
    /// The address checked.
    pub address: String,
    /// The state.
    pub state: Serving,
    /// When it entered `state`.
    pub since: SystemTime,
    /// When it was last checked.
    pub last_check_at: Option<SystemTime>,
    /// What went wrong, when not serving.
    pub error: Option<String>,
}

/// The cloud link as health-svc sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// No cloud URL configured: offline by design.
    NotConfigured,
    /// The probe's view of the cloud at `url`.
    Probed {
        /// The cloud probed (no credentials).
        url: String,
        /// What the probe says.
        status: LinkStatus,
    },
}

impl Link {
    /// The probe's state; `None` when no cloud is configured.
    pub fn state(&self) -> Option<LinkState> {
        match self {
            Link::NotConfigured => None,
            Link::Probed { status, .. } => Some(status.state),
        }
    }

    /// The cloud is reachable (online or degraded).
    pub fn is_reachable(&self) -> bool {
        self.state().is_some_and(LinkState::is_reachable)
    }
}

/// Everything health-svc reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// The cloud link.
    pub link: Link,
    /// The mesh services, in a fixed order.
    pub services: Vec<ServiceHealth>,
}

impl Health {
    /// Every mesh service is serving. Says nothing about the link: an
    /// offline site with a serving mesh is healthy.
    pub fn mesh_healthy(&self) -> bool {
        self.services.iter().all(|s| s.state == Serving::Serving)
    }
}

/// The shared health.
#[derive(Clone)]
pub struct HealthBoard {
    tx: watch::Sender<Health>,
}

impl HealthBoard {
    /// A board for `link` (its probe not run yet) and services not checked
    /// yet.
    pub fn new(link: Link, services: Vec<ServiceHealth>) -> Self {
        let (tx, _) = watch::channel(Health { link, services });
        HealthBoard { tx }
    }

    /// The health now.
    pub fn get(&self) -> Health {
        self.tx.borrow().clone()
    }

    /// Follows the health: woken on state changes only.
    pub fn subscribe(&self) -> watch::Receiver<Health> {
        self.tx.subscribe()
    }

    /// Records the probe's latest status; wakes watchers if the link's
    /// state changed.
    pub fn set_link(&self, latest: &LinkStatus) -> bool {
        self.tx.send_if_modified(|health| match &mut health.link {
            Link::NotConfigured => false,
            Link::Probed { status, .. } => {
                let changed = status.state != latest.state;
                *status = latest.clone();
                changed
            }
        })
    }

    /// Records a check of service `index`; wakes watchers if its state
    /// changed. Returns the previous state when it changed.
    pub fn set_service(&self, index: usize, check: Check, at: SystemTime) -> Option<Serving> {
        let mut before = None;
        self.tx.send_if_modified(|health| {
            let Some(service) = health.services.get_mut(index) else {
                return false;
            };
            let changed = service.state != check.state;
            if changed {
                before = Some(service.state);
                service.state = check.state;
                service.since = at;
            }
            service.error = check.error;
            service.last_check_at = Some(at);
            changed
        });
        before
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn board() -> HealthBoard {
        let service = ServiceHealth {
            name: "store",
            grpc_service: "edge.v1.ReadingsService",
            address: "http://127.0.0.1:1".into(),
            state: Serving::Unknown,
            since: SystemTime::UNIX_EPOCH,
            last_check_at: None,
            error: None,
        };
        HealthBoard::new(
            Link::Probed {
                url: "http://cloud".into(),
                status: LinkStatus::starting(),
            },
            vec![service],
        )
    }

    #[test]
    fn only_state_changes_wake_watchers() {
        let board = board();
        let mut rx = board.subscribe();
        let mut status = LinkStatus::starting();
        status.state = LinkState::Online;
        status.last_latency = Some(Duration::from_millis(5));
        assert!(board.set_link(&status));
        assert!(rx.has_changed().expect("open"));
        rx.borrow_and_update();

        status.last_latency = Some(Duration::from_millis(50));
        status.success_ratio = Some(0.9);
        assert!(!board.set_link(&status), "drift is not a change");
        assert!(!rx.has_changed().expect("open"));
        let link = board.get().link;
        assert!(
            matches!(link, Link::Probed { status, .. } if status.last_latency == Some(Duration::from_millis(50))),
            "but the figures are current"
        );

        let at = SystemTime::now();
        let serving = Check {
            state: Serving::Serving,
            error: None,
        };
        assert_eq!(
            board.set_service(0, serving.clone(), at),
            Some(Serving::Unknown)
        );
        assert!(rx.has_changed().expect("open"));
        rx.borrow_and_update();
        assert_eq!(board.set_service(0, serving, at), None);
        assert!(!rx.has_changed().expect("open"));
        assert!(board.get().mesh_healthy());
    }

    #[test]
    fn an_offline_link_leaves_the_mesh_healthy() {
        let board = board();
        let mut status = LinkStatus::starting();
        status.state = LinkState::Offline;
        board.set_link(&status);
        let check = Check {
            state: Serving::Serving,
            error: None,
        };
        board.set_service(0, check, SystemTime::now());
        let health = board.get();
        assert!(health.mesh_healthy());
        assert!(!health.link.is_reachable());
        let down = Check {
            state: Serving::Unreachable,
            error: Some("connection refused".into()),
        };
        board.set_service(0, down, SystemTime::now());
        assert!(!board.get().mesh_healthy());
    }
}
