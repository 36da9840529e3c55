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
use crate::outbox::{DueOrder, OutboxEntry, id_runs, merge_runs};

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

/// Most runs of settled ids remembered; beyond them the lowest are
/// forgotten (the scans that would have skipped them read them instead).
const MAX_SETTLED_RUNS: usize = 1_024;

struct Lease {
    version_ids: Vec<i64>,
    expires: Instant,
}

#[derive(Default)]
struct LeaseTable {
    by_id: HashMap<String, Lease>,
    leased: HashSet<i64>,
    /// The leased ids that came from the implicit outbox.
    leased_implicit: HashSet<i64>,
    /// Runs of ids above the outbox floor known to hold nothing due in the
    /// implicit outbox, sorted and merged, learned from the scans and from
    /// completions, so later scans skip them. Both ends' scans skip them,
    /// so this rests on one rule: a version never returns to the implicit
    /// outbox once it left it (an acknowledgement is never undone, and an
    /// outbox row leaves only with the acknowledgement or the version).
    /// A change that breaks that rule (a re-drive that deletes rows, a
    /// resync that clears `synced_at_us`) must clear this too.
    settled: Vec<(i64, i64)>,
}

impl LeaseTable {
    fn release(&mut self, lease_id: &str) {
        if let Some(lease) = self.by_id.remove(lease_id) {
            for id in lease.version_ids {
                self.leased.remove(&id);
                self.leased_implicit.remove(&id);
            }
        }
    }

    /// Remembers settled runs; forgets those at or below `floor`.
    fn settle(&mut self, runs: impl IntoIterator<Item = (i64, i64)>, floor: Option<i64>) {
        let mut settled = std::mem::take(&mut self.settled);
        settled.extend(runs);
        let mut settled = merge_runs(settled);
        if let Some(floor) = floor {
            settled.retain(|&(_, last)| last > floor);
        }
        if settled.len() > MAX_SETTLED_RUNS {
            settled.drain(..settled.len() - MAX_SETTLED_RUNS);
        }
        self.settled = settled;
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
        let mut seen_implicit: HashSet<i64> = HashSet::new();
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
            let mut rows = db
                .due(
                    order,
                    now_us,
                    i64::try_from(limit).unwrap_or(i64::MAX),
                    &exclude,
                )
                .await?;
            // Critical versions all have outbox rows; the other ends merge
            // the rows with the implicit outbox, in id order.
            let mut implicit = HashSet::new();
            if order != DueOrder::Critical {
                let mut skip: Vec<(i64, i64)> = id_runs(
                    &table
                        .leased_implicit
                        .iter()
                        .chain(seen_implicit.iter())
                        .copied()
                        .collect::<Vec<i64>>(),
                );
                skip.extend(table.settled.iter().copied());
                let found = db.due_implicit(order, want, &merge_runs(skip)).await?;
                table.settle(found.settled, Some(found.floor));
                implicit.extend(found.entries.iter().map(|e| e.version_id));
                rows.extend(found.entries);
                rows.sort_by_key(|e| e.version_id);
                if order == DueOrder::Newest {
                    rows.reverse();
                }
            }
            let mut taken = 0;
            for row in rows {
                if taken == want {
                    break;
                }
                if !table.leased.contains(&row.version_id) && seen.insert(row.version_id) {
                    if implicit.contains(&row.version_id) {
                        seen_implicit.insert(row.version_id);
                    }
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
        table.leased_implicit.extend(seen_implicit);
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

    /// Ends a lease. Unknown ids are ignored: the lease may have lapsed
    /// already. `completed`: the ids of a completion that committed. Those
    /// this lease took from the implicit outbox are no longer in it
    /// (acknowledged, or given an outbox row), so scans may skip them; ids
    /// the lease did not hold teach nothing.
    pub async fn release(&self, lease_id: &str, completed: &[i64]) {
        let mut table = self.table.lock().await;
        if let Some(lease) = table.by_id.get(lease_id) {
            let held: HashSet<i64> = lease.version_ids.iter().copied().collect();
            let left: Vec<i64> = completed
                .iter()
                .copied()
                .filter(|id| held.contains(id) && table.leased_implicit.contains(id))
                .collect();
            if !left.is_empty() {
                table.settle(id_runs(&left), None);
            }
        }
        table.release(lease_id);
    }
}
