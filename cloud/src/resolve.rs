//! What a write does between loading the touched readings and storing the
//! outcome: offer each arriving version to its reading's history, note
//! which readings got a new current version and which conflicts were
//! resolved, and move the cloud's clock over what arrived.
//!
//! No SQL here, and no rule either: which version is current is decided by
//! [`edge_versioning::History`] alone, the code every replica runs, so the
//! cloud cannot pick a different winner than a site holding the same
//! versions (DESIGN P4).

use std::collections::HashMap;

use edge_cloud_link::contract::{Hlc as WireHlc, VersionRecord, VersionStamp};
use edge_versioning::{Applied, Conflict, History, Hlc, Policy, Stamp, Version};

/// A version the cloud holds, as resolution needs it.
#[derive(Debug, Clone)]
pub(crate) struct HeldVersion {
    /// The reading it is a version of.
    pub reading_id: String,
    /// Its stamp and base.
    pub version: Version,
}

/// What offering a version did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Offered {
    /// The cloud holds it already: nothing changes.
    AlreadyHeld,
    /// New: store it (and the conflict it caused, if any).
    Added {
        /// It was concurrent with the version the cloud held as current.
        conflict: Option<Conflict>,
    },
}

/// A row `current_versions` must hold now: the current version of a
/// reading with more than one version, which changed or is the reading's
/// first row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewCurrent<'a> {
    /// The reading.
    pub reading_id: &'a str,
    /// The current version.
    pub stamp: &'a Stamp,
}

/// One reading's versions.
#[derive(Debug)]
struct Reading {
    history: History,
    /// How many versions were held when it was loaded.
    loaded: usize,
    current_changed: bool,
}

/// The histories of the readings one write touches.
#[derive(Debug)]
pub(crate) struct Readings {
    policy: Policy,
    by_id: HashMap<String, Reading>,
}

impl Readings {
    /// The histories of `held` (versions of any number of readings, in any
    /// order), resolved under `policy`.
    pub fn new(policy: Policy, held: Vec<HeldVersion>) -> Readings {
        let mut grouped: HashMap<String, Vec<Version>> = HashMap::new();
        for v in held {
            grouped.entry(v.reading_id).or_default().push(v.version);
        }
        let by_id = grouped
            .into_iter()
            .map(|(id, versions)| {
                let reading = Reading {
                    loaded: versions.len(),
                    history: History::new(versions, policy),
                    current_changed: false,
                };
                (id, reading)
            })
            .collect();
        Readings { policy, by_id }
    }

    /// Offers `record` to its reading's history (a reading the cloud has
    /// not seen starts with it).
    pub fn offer(&mut self, record: &VersionRecord) -> Offered {
        let reading = self
            .by_id
            .entry(record.reading_id.clone())
            .or_insert_with(|| Reading {
                history: History::default(),
                loaded: 0,
                current_changed: false,
            });
        match reading.history.apply(version_of(record), self.policy) {
            Applied::AlreadyHeld => Offered::AlreadyHeld,
            Applied::Added {
                winner_changed,
                conflict,
            } => {
                reading.current_changed |= winner_changed;
                Offered::Added { conflict }
            }
        }
    }

    /// The current version of `reading_id`, if the cloud holds any.
    pub fn current(&self, reading_id: &str) -> Option<&Stamp> {
        self.by_id
            .get(reading_id)?
            .history
            .winner()
            .map(|v| &v.stamp)
    }

    /// The rows `current_versions` must hold now, ordered by reading id (a
    /// stable order for the upserts): for every reading with more than one
    /// version whose current version changed since it was loaded, or that
    /// had at most one version then (and so no row). A reading with one
    /// version is its own current version and gets no row.
    pub fn changed(&self) -> Vec<NewCurrent<'_>> {
        let mut changed: Vec<NewCurrent<'_>> = self
            .by_id
            .iter()
            .filter(|(_, r)| {
                let now = r.history.versions().len();
                now > 1 && (r.current_changed || r.loaded <= 1) && now > r.loaded
            })
            .filter_map(|(id, r)| {
                Some(NewCurrent {
                    reading_id: id,
                    stamp: &r.history.winner()?.stamp,
                })
            })
            .collect();
        changed.sort_unstable_by(|a, b| a.reading_id.cmp(b.reading_id));
        changed
    }
}

/// The cloud's hybrid logical clock while one write transaction runs.
///
/// Every version the cloud accepts moves it (the HLC receive rule), so a
/// version the cloud writes later is stamped above everything it has seen,
/// however wrong the writers' clocks were. Versions more than the allowed
/// skew ahead of the cloud's wall clock are still taken (refusing real data
/// for a bad clock is worse, P5) but counted, so an operator sees the clock
/// that drags everyone's stamps forward.
#[derive(Debug, Clone)]
pub(crate) struct CloudClock {
    /// The clock's value now.
    pub hlc: Hlc,
    now_ms: u64,
    max_skew_ms: u64,
    /// Versions received more than the allowed skew ahead.
    pub skewed: u64,
    /// The one furthest ahead: milliseconds ahead and its reading.
    pub furthest_ahead: Option<(u64, String)>,
}

impl CloudClock {
    /// The clock as persisted, at wall-clock time `now_ms`.
    pub fn new(persisted: Hlc, now_ms: u64, max_skew_ms: u64) -> CloudClock {
        CloudClock {
            hlc: persisted,
            now_ms,
            max_skew_ms,
            skewed: 0,
            furthest_ahead: None,
        }
    }

    /// The cloud received `stamp`, a version of `reading_id`.
    pub fn receive(&mut self, reading_id: &str, stamp: Hlc) {
        self.hlc = self.hlc.receive(stamp, self.now_ms);
        let ahead = stamp.ahead_of_ms(self.now_ms);
        if ahead > self.max_skew_ms {
            self.skewed += 1;
            if self
                .furthest_ahead
                .as_ref()
                .is_none_or(|(ms, _)| ahead > *ms)
            {
                self.furthest_ahead = Some((ahead, reading_id.to_owned()));
            }
        }
    }

    /// The stamp of a version the cloud writes on top of `seen` (the
    /// versions of the reading it amends): above the clock and above every
    /// one of them. The clock already is above every version it received;
    /// taking `seen` in too keeps that true for versions stored before the
    /// clock existed.
    pub fn tick_above<'a>(&mut self, seen: impl IntoIterator<Item = &'a Stamp>) -> Hlc {
        let newest = seen.into_iter().map(|s| s.hlc).fold(self.hlc, Hlc::max);
        self.hlc = newest.tick(self.now_ms);
        self.hlc
    }
}

/// A contract stamp as the rule sees it. Its logical part was checked to
/// fit 16 bits before it got here; a larger one is clamped, never wrapped.
pub(crate) fn stamp_of(v: &VersionStamp) -> Stamp {
    Stamp::new(hlc_of(v.hlc), v.site_id.as_str())
}

/// A contract HLC as the rule sees it (logical clamped to 16 bits).
pub(crate) fn hlc_of(hlc: WireHlc) -> Hlc {
    Hlc {
        physical_ms: hlc.physical_ms,
        logical: u16::try_from(hlc.logical).unwrap_or(u16::MAX),
    }
}

/// A stamp as the contract shows it.
pub(crate) fn wire_stamp(stamp: &Stamp) -> VersionStamp {
    VersionStamp {
        hlc: WireHlc {
            physical_ms: stamp.hlc.physical_ms,
            logical: u32::from(stamp.hlc.logical),
        },
        site_id: stamp.site_id.clone(),
    }
}

/// What resolution needs of a contract version.
pub(crate) fn version_of(record: &VersionRecord) -> Version {
    Version {
        stamp: stamp_of(&record.version),
        base: record.base.as_ref().map(stamp_of),
    }
}

#[cfg(test)]
mod tests {
    use edge_cloud_link::contract::Priority;
    use edge_versioning::{CLOUD_SITE_ID, Side};

    use super::*;

    fn record(reading: &str, ms: u64, site: &str, base: Option<(u64, &str)>) -> VersionRecord {
        let stamp = |ms: u64, site: &str| VersionStamp {
            hlc: WireHlc {
                physical_ms: ms,
                logical: 0,
            },
            site_id: site.into(),
        };
        VersionRecord {
            reading_id: reading.into(),
            seq: 1,
            origin_site_id: "ship-1".into(),
            sensor_id: "t-1".into(),
            temperature_celsius: 20.0,
            humidity_percent: 50.0,
            measured_at_us: 1,
            received_at_us: 2,
            priority: Priority::Normal,
            clock_suspect: false,
            version: stamp(ms, site),
            quality: Default::default(),
            note: None,
            base: base.map(|(ms, site)| stamp(ms, site)),
        }
    }

    fn held(r: &VersionRecord) -> HeldVersion {
        HeldVersion {
            reading_id: r.reading_id.clone(),
            version: version_of(r),
        }
    }

    #[test]
    fn a_new_reading_is_current_without_a_row_or_a_conflict() {
        let mut readings = Readings::new(Policy::Lww, Vec::new());
        let first = record("r", 10, "ship-1", None);
        assert_eq!(readings.offer(&first), Offered::Added { conflict: None });
        assert_eq!(readings.offer(&first), Offered::AlreadyHeld);
        assert_eq!(readings.current("r"), Some(&stamp_of(&first.version)));
        assert!(readings.changed().is_empty());
    }

    #[test]
    fn a_second_version_gets_the_reading_a_row_even_if_it_does_not_win() {
        let first = record("r", 10, "ship-1", None);
        let stale = record("r", 5, "ship-2", None);
        let mut readings = Readings::new(Policy::Lww, vec![held(&first)]);
        assert!(matches!(readings.offer(&stale), Offered::Added { .. }));
        let changed = readings.changed();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].stamp, &stamp_of(&first.version));

        // Once it has a row, only a change of winner rewrites it.
        let older = record("r", 4, "ship-3", None);
        let mut readings = Readings::new(Policy::Lww, vec![held(&first), held(&stale)]);
        assert!(matches!(readings.offer(&older), Offered::Added { .. }));
        assert!(readings.changed().is_empty());
        assert!(matches!(readings.offer(&first), Offered::AlreadyHeld));
    }

    #[test]
    fn a_concurrent_amendment_is_a_conflict_the_policy_decides() {
        let first = record("r", 10, "ship-1", None);
        let cloud = record("r", 20, CLOUD_SITE_ID, Some((10, "ship-1")));
        let site = record("r", 30, "ship-1", Some((10, "ship-1")));
        for (policy, winner, current) in [
            (Policy::Lww, Side::Remote, &site),
            (Policy::CloudWins, Side::Local, &cloud),
            (Policy::EdgeWins, Side::Remote, &site),
        ] {
            let mut readings = Readings::new(policy, vec![held(&first), held(&cloud)]);
            let Offered::Added {
                conflict: Some(conflict),
            } = readings.offer(&site)
            else {
                panic!("{policy}: a conflict expected");
            };
            assert_eq!(conflict.winner, winner, "{policy}");
            assert_eq!(
                readings.current("r"),
                Some(&stamp_of(&current.version)),
                "{policy}"
            );
            // The reading had two versions, so a row: rewritten if the
            // winner changed.
            assert_eq!(
                readings.changed().len(),
                usize::from(winner == Side::Remote)
            );
        }
    }

    #[test]
    fn the_clock_receives_and_counts_skew() {
        let now = 1_000_000;
        let mut clock = CloudClock::new(Hlc::ZERO, now, 300_000);
        clock.receive(
            "a",
            Hlc {
                physical_ms: now + 10,
                logical: 0,
            },
        );
        assert_eq!(clock.skewed, 0);
        let hour_ahead = Hlc {
            physical_ms: now + 3_600_000,
            logical: 4,
        };
        clock.receive("b", hour_ahead);
        assert_eq!(clock.skewed, 1);
        assert_eq!(clock.furthest_ahead, Some((3_600_000, "b".to_owned())));
        assert!(clock.hlc > hour_ahead);
        let next = clock.tick_above([]);
        assert!(next > hour_ahead);
    }

    #[test]
    fn a_tick_is_above_the_versions_it_amends_even_if_the_clock_is_not() {
        let mut clock = CloudClock::new(Hlc::ZERO, 5, 0);
        let seen = Stamp::new(
            Hlc {
                physical_ms: 99,
                logical: 3,
            },
            "ship-1",
        );
        let stamp = clock.tick_above([&seen]);
        assert!(stamp > seen.hlc);
        assert_eq!(clock.hlc, stamp);
    }
}
