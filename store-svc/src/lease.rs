//! Leases over outbox batches, held in store-svc's memory.
//!
//! A lease keeps its versions from being handed out again while sync-svc
//! pushes them. It ends when sync-svc completes the batch or when it lapses
//! (sync-svc died or hung), after which the versions are due again: nothing
//! is lost or stuck for longer than the lease. Leases are not persisted: a
//! restart of store-svc releases them all, which is what their expiry would
//! do anyway. A version pushed twice because of that is harmless: the cloud
//! answers `duplicate` and the outbox entry leaves all the same.
//!
//! Choosing a batch and recording its lease happen under one lock, and a
//! completion releases its lease only after its transaction ended, so a
//! version that just left the outbox is never leased again from a stale read.
//! A completion that failed releases its lease too: nothing is assumed about
//! what it wrote, the next lease reads the outbox again, and a version whose
//! completion did commit after all is simply no longer there (one whose
//! outcome the database had not yet made visible is pushed again, and the
//! cloud answers duplicate).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::db::{Database, DbError};
use crate::outbox::{DueOrder, OutboxEntry, id_runs};

/// Most runs of taken version ids left out of a lease query in SQL.
const MAX_EXCLUDED_RUNS: usize = 32;

/// What to lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Most versions.
    pub max_versions: usize,
    /// Percent of `max_versions` taken from the newest versions.
    pub newest_share_percent: u32,
    /// How long the lease holds.
    pub duration: Duration,
}

/// A leased batch.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedBatch {
    /// Names the lease; empty when nothing was leased.
    pub lease_id: String,
    /// Critical versions first, then by version id.
    pub entries: Vec<OutboxEntry>,
}

struct Lease {
    version_ids: Vec<i64>,
    expires: Instant,
}

#[derive(Default)]
struct LeaseTable {
    by_id: HashMap<String, Lease>,
    leased: HashSet<i64>,
}

impl LeaseTable {
    fn release(&mut self, lease_id: &str) {
        if let Some(lease) = self.by_id.remove(lease_id) {
            for id in lease.version_ids {
                self.leased.remove(&id);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let lapsed: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, lease)| lease.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            tracing::info!(lease_id = %id, "outbox lease lapsed; its versions are due again");
            self.release(&id);
        }
    }
}

/// The leases of one store.
#[derive(Default)]
pub struct Leases {
    table: Mutex<LeaseTable>,
}

impl Leases {
    /// Leases up to `request.max_versions` due versions: critical first, then
    /// the newest share, then the oldest.
    pub async fn lease(
        &self,
        db: &Database,
        request: LeaseRequest,
        now_us: i64,
    ) -> Result<LeasedBatch, DbError> {
        let mut table = self.table.lock().await;
        table.expire(Instant::now());
        let max = request.max_versions.max(1);
        let newest = max * request.newest_share_percent.min(100) as usize / 100;
        let mut picked: Vec<OutboxEntry> = Vec::new();
        let mut seen: HashSet<i64> = HashSet::new();
        for (order, want) in [
            (DueOrder::Critical, max),
            (DueOrder::Newest, newest),
            (DueOrder::Oldest, max),
        ] {
            let want = want.min(max - picked.len());
            if want == 0 {
                continue;
            }
            // Leased and already picked versions are left out in SQL, as a
            // few runs of ids; should they be scattered into too many runs,
            // enough rows are read to skip them instead.
            let taken: Vec<i64> = table.leased.iter().chain(seen.iter()).copied().collect();
            let runs = id_runs(&taken);
            let (limit, exclude) = if runs.len() <= MAX_EXCLUDED_RUNS {
                (want, runs)
            } else {
                (want + taken.len(), Vec::new())
            };
            let rows = db
                .due(
                    order,
                    now_us,
                    i64::try_from(limit).unwrap_or(i64::MAX),
                    &exclude,
                )
                .await?;
            let mut taken = 0;
            for row in rows {
                if taken == want {
                    break;
                }
                if !table.leased.contains(&row.version_id) && seen.insert(row.version_id) {
                    picked.push(row);
                    taken += 1;
                }
            }
        }
        if picked.is_empty() {
            return Ok(LeasedBatch {
                lease_id: String::new(),
                entries: picked,
            });
        }
        // Critical first (priority 2 sorts before 1), then oldest first.
        picked.sort_by_key(|e| (std::cmp::Reverse(e.priority), e.version_id));
        let lease_id = uuid::Uuid::new_v4().to_string();
        let version_ids: Vec<i64> = picked.iter().map(|e| e.version_id).collect();
        table.leased.extend(version_ids.iter().copied());
        table.by_id.insert(
            lease_id.clone(),
            Lease {
                version_ids,
                expires: Instant::now() + request.duration,
            },
        );
        Ok(LeasedBatch {
            lease_id,
            entries: picked,
        })
    }

    /// Runs `f` with the runs of leased version ids while no lease can be
    /// taken, so nothing `f` removes from the outbox (leaving those runs out)
    /// is in flight to the cloud.
    pub async fn excluding_leased<T, F, Fut>(&self, f: F) -> T
    where
        F: FnOnce(Vec<(i64, i64)>) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let mut table = self.table.lock().await;
        table.expire(Instant::now());
        let leased: Vec<i64> = table.leased.iter().copied().collect();
        f(id_runs(&leased)).await
    }

    /// Ends a lease (its completion committed). Unknown ids are ignored: the
    /// lease may have lapsed already.
    pub async fn release(&self, lease_id: &str) {
        self.table.lock().await.release(lease_id);
    }
}
