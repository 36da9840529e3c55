//! What sync-svc reports about itself: one [`pb::SyncStatus`] behind a watch
//! channel, so `GetStatus` reads it and `WatchStatus` follows it.

use std::time::SystemTime;

use edge_proto::v1 as pb;
use tokio::sync::watch;

/// The shared status.
#[derive(Clone)]
pub struct StatusBoard {
    tx: watch::Sender<pb::SyncStatus>,
}

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

impl StatusBoard {
    /// A board starting in `state`.
    pub fn new(state: pb::SyncLinkState, cloud_url: String, compat_mode: bool) -> Self {
        let (tx, _) = watch::channel(pb::SyncStatus {
            state: state as i32,
            cloud_url,
            compat_mode,
            ..Default::default()
        });
        StatusBoard { tx }
    }

    /// The status now.
    pub fn get(&self) -> pb::SyncStatus {
        self.tx.borrow().clone()
    }

    /// Follows the status.
    pub fn subscribe(&self) -> watch::Receiver<pb::SyncStatus> {
        self.tx.subscribe()
    }

    /// Sets the drain state (no change notification if it is the same).
    pub fn set_state(&self, state: pb::SyncLinkState, next_attempt: Option<SystemTime>) {
        self.tx.send_if_modified(|s| {
            let next = next_attempt.map(timestamp);
            let changed = s.state != state as i32 || s.next_attempt_at != next;
            s.state = state as i32;
            s.next_attempt_at = next;
            changed
        });
    }

    /// Records when the link entered its current state.
    pub fn set_link_since(&self, since: SystemTime) {
        self.tx
            .send_modify(|s| s.link_since = Some(timestamp(since)));
    }

    /// Records a well-formed push answer that acknowledged `synced` versions.
    pub fn success(&self, synced: u64) {
        self.tx.send_modify(|s| {
            s.last_success_at = Some(timestamp(SystemTime::now()));
            s.synced_since_start += synced;
        });
    }

    /// Records a failure.
    pub fn error(&self, error: &str) {
        self.tx.send_modify(|s| {
            s.last_error = error.to_owned();
            s.last_error_at = Some(timestamp(SystemTime::now()));
        });
    }

    /// Records the store's backlog figures.
    pub fn backlog(&self, backlog: u64, dead_letters: u64, stuck: u64) {
        self.tx.send_if_modified(|s| {
            let changed =
                (s.backlog, s.dead_letters, s.stuck_versions) != (backlog, dead_letters, stuck);
            s.backlog = backlog;
            s.dead_letters = dead_letters;
            s.stuck_versions = stuck;
            changed
        });
    }

    /// Records a page of the change feed applied: the cursor after it and
    /// how many versions it held.
    pub fn pulled(&self, cursor: u64, received: u64) {
        self.tx.send_modify(|s| {
            s.pull_cursor = cursor;
            s.pulled_since_start += received;
        });
    }

    /// Records a pull that reached the end of the feed.
    pub fn pull_done(&self, cursor: u64) {
        self.tx.send_modify(|s| {
            s.pull_cursor = cursor;
            s.last_pull_at = Some(timestamp(SystemTime::now()));
        });
    }

    /// Records the conflict rule the cloud announced and whether this
    /// site's own setting disagrees; `true` when either changed.
    pub fn policy(&self, announced: &str, mismatch: bool) -> bool {
        self.tx.send_if_modified(|s| {
            let changed = s.conflict_policy != announced || s.conflict_policy_mismatch != mismatch;
            s.conflict_policy = announced.to_owned();
            s.conflict_policy_mismatch = mismatch;
            changed
        })
    }
}
