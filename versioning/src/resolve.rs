//! A reading's versions and which one is current.
//!
//! Every version names the version it amended (its *base*; none for the
//! reading's first version). That gives the versions a history:
//!
//! - A version written on top of another replaces it, whoever wrote either:
//!   an operator who corrects the cloud's calibration on purpose is obeyed
//!   under every rule.
//! - Versions that are not in each other's history are *concurrent*: a
//!   conflict. Among the versions nothing was written on top of (the heads),
//!   the deployment's [`Policy`] picks the winner: a head whose line holds a
//!   version the rule favours (under `cloud-wins` one the cloud wrote, under
//!   `edge-wins` a site's amendment) beats one whose line holds none; then
//!   the greatest `(HLC, site id)` wins. Judging the whole line, not only the
//!   head, keeps an amendment made on top of a favoured version favoured.
//!
//! The winner is a function of the *set* of versions only (the heads, then
//! the rule's total order), so replicas that hold the same versions hold the
//! same winner, whatever order the versions arrived in and however often.
//! Under `lww` the winner is also the greatest `(HLC, site id)` of all: a
//! version written on top of another has a greater HLC, because the writer
//! stamps a reading's new version above every version of it that it holds
//! ([`crate::clock::NodeClock::stamp_above`]).

use std::collections::HashSet;

use crate::{Hlc, Policy};

/// A version's identity: the writer's HLC and the writer's site id. Unique
/// per version, so `(reading id, stamp)` identifies one everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stamp {
    /// The clock value the writer assigned.
    pub hlc: Hlc,
    /// Who wrote it: a site id, or [`crate::CLOUD_SITE_ID`].
    pub site_id: String,
}

impl Stamp {
    /// A stamp from its parts.
    pub fn new(hlc: Hlc, site_id: impl Into<String>) -> Stamp {
        Stamp {
            hlc,
            site_id: site_id.into(),
        }
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}@{}",
            self.hlc.physical_ms, self.hlc.logical, self.site_id
        )
    }
}

/// What resolution needs to know of one version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// The version's identity.
    pub stamp: Stamp,
    /// The version it amended; `None` for the reading's first version.
    pub base: Option<Stamp>,
}

/// Which side of a conflict won, as seen by the replica that resolved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The version the replica held as current.
    Local,
    /// The version that arrived.
    Remote,
}

impl Side {
    /// `local` or `remote`: the bounded `winner` label of
    /// `conflicts_resolved_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Local => "local",
            Side::Remote => "remote",
        }
    }
}

/// A conflict a replica resolved: what it held, what arrived, who won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The version that was current before.
    pub local: Stamp,
    /// The concurrent version that arrived.
    pub remote: Stamp,
    /// `Local` when the version held before is still current; `Remote` when
    /// the arrival changed it (to the arrived version, or to a version whose
    /// line the arrival completed).
    pub winner: Side,
    /// The version current now.
    pub current: Stamp,
    /// The rule that decided.
    pub policy: Policy,
}

/// The result of offering a version to a reading's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The replica already held this version: nothing changed (no echo, no
    /// loop).
    AlreadyHeld,
    /// The version was added.
    Added {
        /// The current version changed (to the new one).
        winner_changed: bool,
        /// It was concurrent with the current version.
        conflict: Option<Conflict>,
    },
}

/// The versions of one reading a replica holds, and the current one.
#[derive(Debug, Clone, Default)]
pub struct History {
    versions: Vec<Version>,
    winner: Option<usize>,
}

impl History {
    /// The history of the versions held, current version computed under
    /// `policy`.
    pub fn new(versions: Vec<Version>, policy: Policy) -> History {
        let mut history = History {
            versions,
            winner: None,
        };
        history.winner = history.compute_winner(policy);
        history
    }

    /// The current version, if any is held.
    pub fn winner(&self) -> Option<&Version> {
        self.winner.map(|i| &self.versions[i])
    }

    /// The versions held, in the order they were added.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// Whether `stamp` is held.
    pub fn contains(&self, stamp: &Stamp) -> bool {
        self.versions.iter().any(|v| &v.stamp == stamp)
    }

    /// Adds a version that arrived from elsewhere and says what it changed.
    /// A version already held changes nothing.
    pub fn apply(&mut self, version: Version, policy: Policy) -> Applied {
        if self.contains(&version.stamp) {
            return Applied::AlreadyHeld;
        }
        let before = self.winner().map(|w| w.stamp.clone());
        let stamp = version.stamp.clone();
        self.versions.push(version);
        self.winner = self.compute_winner(policy);
        let now = self.winner().map(|w| &w.stamp);
        let winner_changed = now != before.as_ref();
        let conflict = before.and_then(|local| {
            let concurrent =
                !self.descends_from(&stamp, &local) && !self.descends_from(&local, &stamp);
            concurrent.then(|| Conflict {
                winner: if winner_changed {
                    Side::Remote
                } else {
                    Side::Local
                },
                current: now.cloned().unwrap_or_else(|| stamp.clone()),
                local,
                remote: stamp,
                policy,
            })
        });
        Applied::Added {
            winner_changed,
            conflict,
        }
    }

    /// Whether `later` was written on top of `earlier`, directly or through
    /// versions held here. A missing link reads as "no" (concurrent), which
    /// the rule then decides; once the link arrives the heads say the rest.
    pub fn descends_from(&self, later: &Stamp, earlier: &Stamp) -> bool {
        let mut current = later;
        // Bounded by the number of versions, so a malformed cycle ends.
        for _ in 0..=self.versions.len() {
            let Some(base) = self
                .versions
                .iter()
                .find(|v| &v.stamp == current)
                .and_then(|v| v.base.as_ref())
            else {
                return false;
            };
            if base == earlier {
                return true;
            }
            current = base;
        }
        false
    }

    /// The greatest head under `policy`. Heads are the versions no held
    /// version names as its base; if a malformed history has none (a
    /// cycle), every version competes, so there is still one answer.
    fn compute_winner(&self, policy: Policy) -> Option<usize> {
        let bases: HashSet<&Stamp> = self
            .versions
            .iter()
            .filter_map(|v| v.base.as_ref().filter(|b| **b != v.stamp))
            .collect();
        let best = |heads_only: bool| {
            self.versions
                .iter()
                .enumerate()
                .filter(|(_, v)| !heads_only || !bases.contains(&v.stamp))
                .map(|(i, v)| {
                    (
                        (
                            self.line_favoured(v, policy),
                            v.stamp.hlc,
                            v.stamp.site_id.as_str(),
                        ),
                        i,
                    )
                })
                .max()
                .map(|(_, i)| i)
        };
        best(true).or_else(|| best(false))
    }

    /// Whether `head` or a version of its line (its base, its base's base,
    /// … as far as held) is one `policy` favours.
    fn line_favoured(&self, head: &Version, policy: Policy) -> bool {
        if policy == Policy::Lww {
            return false;
        }
        let mut current = Some(head);
        // Bounded by the number of versions, so a malformed cycle ends.
        for _ in 0..=self.versions.len() {
            let Some(v) = current else { return false };
            if policy.favours(&v.stamp, v.base.is_some()) {
                return true;
            }
            current = v
                .base
                .as_ref()
                .and_then(|b| self.versions.iter().find(|w| &w.stamp == b));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CLOUD_SITE_ID;

    fn stamp(ms: u64, site: &str) -> Stamp {
        Stamp::new(
            Hlc {
                physical_ms: ms,
                logical: 0,
            },
            site,
        )
    }

    fn version(stamp: &Stamp, base: Option<&Stamp>) -> Version {
        Version {
            stamp: stamp.clone(),
            base: base.cloned(),
        }
    }

    #[test]
    fn an_amendment_on_top_replaces_under_every_rule_and_is_no_conflict() {
        let first = stamp(10, "site-a");
        let cloud = stamp(20, CLOUD_SITE_ID);
        let fix = stamp(15, "site-a"); // an older clock, but written on top of the cloud's
        for policy in Policy::ALL {
            let mut h = History::new(vec![version(&first, None)], policy);
            h.apply(version(&cloud, Some(&first)), policy);
            let applied = h.apply(version(&fix, Some(&cloud)), policy);
            assert_eq!(
                applied,
                Applied::Added {
                    winner_changed: true,
                    conflict: None
                },
                "{policy}"
            );
            assert_eq!(h.winner().map(|v| &v.stamp), Some(&fix), "{policy}");
        }
    }

    #[test]
    fn concurrent_amendments_are_a_conflict_decided_by_the_rule() {
        let first = stamp(10, "site-a");
        let site = stamp(30, "site-a");
        let cloud = stamp(20, CLOUD_SITE_ID);
        for (policy, expected, side) in [
            (Policy::Lww, &site, Side::Local),
            (Policy::CloudWins, &cloud, Side::Remote),
            (Policy::EdgeWins, &site, Side::Local),
        ] {
            let mut h = History::new(
                vec![version(&first, None), version(&site, Some(&first))],
                policy,
            );
            let Applied::Added {
                conflict: Some(conflict),
                ..
            } = h.apply(version(&cloud, Some(&first)), policy)
            else {
                panic!("{policy}: a conflict expected");
            };
            assert_eq!(conflict.winner, side, "{policy}");
            assert_eq!(
                (conflict.local, conflict.remote),
                (site.clone(), cloud.clone())
            );
            assert_eq!(h.winner().map(|v| &v.stamp), Some(expected), "{policy}");
        }
    }

    #[test]
    fn an_amendment_on_top_of_the_favoured_side_stays_favoured() {
        // cloud-wins: the cloud beat two site amendments; a site then amends
        // on top of the cloud's version. A losing site branch with a clock an
        // hour ahead must not come back.
        let first = stamp(10, "site-a");
        let cloud = stamp(20, CLOUD_SITE_ID);
        let ahead = stamp(3_600_000, "site-b");
        let fix = stamp(30, "site-a");
        let mut h = History::new(
            vec![
                version(&first, None),
                version(&cloud, Some(&first)),
                version(&ahead, Some(&first)),
            ],
            Policy::CloudWins,
        );
        assert_eq!(h.winner().map(|v| &v.stamp), Some(&cloud));
        h.apply(version(&fix, Some(&cloud)), Policy::CloudWins);
        assert_eq!(h.winner().map(|v| &v.stamp), Some(&fix));
    }

    #[test]
    fn under_edge_wins_a_cloud_correction_of_an_untouched_reading_applies() {
        let first = stamp(10, "site-a");
        let cloud = stamp(5, CLOUD_SITE_ID);
        let mut h = History::new(vec![version(&first, None)], Policy::EdgeWins);
        h.apply(version(&cloud, Some(&first)), Policy::EdgeWins);
        assert_eq!(h.winner().map(|v| &v.stamp), Some(&cloud));
    }

    #[test]
    fn a_version_held_already_changes_nothing() {
        let first = stamp(10, "site-a");
        let mut h = History::new(vec![version(&first, None)], Policy::Lww);
        assert_eq!(
            h.apply(version(&first, None), Policy::Lww),
            Applied::AlreadyHeld
        );
        assert_eq!(h.versions().len(), 1);
    }

    #[test]
    fn a_stale_version_arriving_late_is_no_conflict() {
        let first = stamp(10, "site-a");
        let second = stamp(20, "site-b");
        let mut h = History::new(vec![version(&second, Some(&first))], Policy::EdgeWins);
        let applied = h.apply(version(&first, None), Policy::EdgeWins);
        assert_eq!(
            applied,
            Applied::Added {
                winner_changed: false,
                conflict: None
            }
        );
    }

    #[test]
    fn a_cycle_still_has_one_winner() {
        let a = stamp(1, "site-a");
        let b = stamp(2, "site-b");
        let h = History::new(
            vec![version(&a, Some(&b)), version(&b, Some(&a))],
            Policy::Lww,
        );
        assert_eq!(h.winner().map(|v| &v.stamp), Some(&b));
    }
}
