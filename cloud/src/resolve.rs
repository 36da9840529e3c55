//! What a write does between loading the touched readings and storing the
//! outcome: offer each arriving version to its reading's history, note
//! which readings got a new current version and which conflicts were
//! resolved, and move the cloud's clock over what arrived.
//!
//! No SQL here, and no rule either: which version is current is decided by
//! [`edge_versioning::History`] alone, the code every replica runs, so the
//! cloud cannot pick a different winner than a site holding the same
//! versions (docs/architecture.md, P4).

use std::collections::HashMap;

use edge_cloud_link::contract::{Hlc as WireHlc, VersionRecord, VersionStamp};
use edge_versioning::{
    Applied, Conflict, Exhausted, History, Hlc, NodeClock, Policy, SkewBound, Stamp, Version,
};

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

/// The cloud's hybrid logical clock while one write transaction runs: an
/// [`edge_versioning::NodeClock`] (the rules every replica applies) plus
/// what the write tells the operator.
///
/// Every version the cloud accepts moves it, up to `--max-clock-skew` ahead
/// of the wall clock, so a version the cloud writes later is stamped above
/// what it has seen within that bound. Versions stamped further ahead are
/// still taken (refusing real data for a bad clock is worse, P5) but
/// flagged and counted, and the clock stops at the bound: one wrong clock
/// cannot drag the cloud's stamps to the end of the range. The cloud's own
/// amendments are stamped above every version of their reading
/// ([`CloudClock::stamp_above`]), however far ahead.
#[derive(Debug, Clone)]
pub(crate) struct CloudClock {
    clock: NodeClock,
    /// Versions received beyond the bound.
    pub skewed: u64,
    /// The one furthest ahead: milliseconds ahead and its reading.
    pub furthest_ahead: Option<(u64, String)>,
}

impl CloudClock {
    /// The clock as persisted, at wall-clock time `now_ms`, under `bound`
    /// (fallen back to the bound if it was further ahead).
    pub fn new(persisted: Hlc, now_ms: u64, bound: SkewBound) -> CloudClock {
        CloudClock {
            clock: NodeClock::load(persisted, now_ms, bound),
            skewed: 0,
            furthest_ahead: None,
        }
    }

    /// The clock's value now: persist it.
    pub fn hlc(&self) -> Hlc {
        self.clock.hlc()
    }

    /// How far the persisted clock was beyond the bound, if it fell back.
    pub fn fell_back_ms(&self) -> Option<u64> {
        self.clock.fell_back_ms()
    }

    /// The cloud received `stamp`, a version of `reading_id`: how far ahead
    /// of the wall clock it is when beyond the bound (store it flagged).
    pub fn receive(&mut self, reading_id: &str, stamp: Hlc) -> Option<u64> {
        let ahead = self.clock.receive(stamp)?;
        self.skewed += 1;
        if self
            .furthest_ahead
            .as_ref()
            .is_none_or(|(ms, _)| ahead > *ms)
        {
            self.furthest_ahead = Some((ahead, reading_id.to_owned()));
        }
        Some(ahead)
    }

    /// The stamp of a version the cloud writes of a reading whose versions
    /// are `seen`: above every one of them (the current one need not be the
    /// highest) and above the clock.
    pub fn stamp_above<'a>(
        &mut self,
        seen: impl IntoIterator<Item = &'a Stamp>,
    ) -> Result<Hlc, Exhausted> {
        let floor = seen.into_iter().map(|s| s.hlc).max();
        self.clock.stamp_above(floor)
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
            written_by: None,
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
    fn the_clock_receives_up_to_the_bound_and_counts_what_is_beyond() {
        let now = 1_000_000;
        let mut clock = CloudClock::new(Hlc::ZERO, now, SkewBound::from_ms(300_000));
        let near = Hlc {
            physical_ms: now + 10,
            logical: 0,
        };
        assert_eq!(clock.receive("a", near), None);
        assert_eq!(clock.skewed, 0);
        let hour_ahead = Hlc {
            physical_ms: now + 3_600_000,
            logical: 4,
        };
        assert_eq!(clock.receive("b", hour_ahead), Some(3_600_000));
        assert_eq!(clock.skewed, 1);
        assert_eq!(clock.furthest_ahead, Some((3_600_000, "b".to_owned())));
        // The clock stopped at the bound; the reading's next version is
        // still stamped above the one from the future.
        assert_eq!(clock.hlc().physical_ms, now + 300_000);
        let seen = Stamp::new(hour_ahead, "ship-1");
        let next = clock.stamp_above([&seen]).expect("room above");
        assert!(next > hour_ahead);
        assert!(clock.stamp_above([]).expect("room") < hour_ahead);
    }

    #[test]
    fn a_stamp_is_above_the_versions_it_amends_even_if_the_clock_is_not() {
        let mut clock = CloudClock::new(Hlc::ZERO, 5, SkewBound::from_ms(0));
        let seen = Stamp::new(
            Hlc {
                physical_ms: 99,
                logical: 3,
            },
            "ship-1",
        );
        let stamp = clock.stamp_above([&seen]).expect("room above");
        assert!(stamp > seen.hlc);
    }
}
