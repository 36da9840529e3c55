//! A node's clock: how a site or the cloud stamps the versions it writes
//! and what it takes of the stamps it receives. Both apply exactly this
//! code, loaded in each write transaction from the persisted stamp and the
//! wall clock, so their clocks obey the same bounds.
//!
//! Invariants:
//!
//! - **No version is refused for its stamp.** A received version is stored
//!   however far ahead its stamp is; only a stamp outside the clock's range
//!   is malformed ([`Hlc::check_range`]).
//! - **A stamp moves the clock only up to the bound.** [`NodeClock::receive`]
//!   adopts a remote stamp up to [`SkewBound`] ahead of the wall clock; a
//!   stamp beyond it is reported (the caller flags, counts and logs the
//!   version) and the clock stops at the bound instead of jumping there.
//! - **A clock found beyond the bound falls back.** [`NodeClock::load`]
//!   takes the persisted clock back to the bound when it is further ahead
//!   (pulled there by an older build, or the wall clock stepped back since),
//!   and says by how much; versions keep their stamps.
//! - **A reading's next version is stamped above all of its versions.**
//!   [`NodeClock::stamp_above`] stamps strictly above the highest version of
//!   the reading the node holds (its *floor*), whatever the clock says,
//!   carrying the counter into the next millisecond, into the headroom kept
//!   above [`Hlc::MAX_CLOCK_MS`] if need be. So `(reading, stamp, writer)`
//!   stays unique and an amendment always orders after what it amends.
//!
//! What is *not* promised: that all of a node's stamps increase. They do
//! while its wall clock runs forward, but after the clock fell back a new
//! reading's first version may be stamped below an earlier reading's. Only
//! versions of one reading are ever compared (the conflict rule, the
//! uniqueness of a version), and those always increase; the change feed's
//! cursor and the outbox follow row ids, not stamps.

use std::time::Duration;

use crate::hlc::{Exhausted, Hlc};

/// Default bound: how far ahead of its wall clock a node's clock may be
/// moved by the stamps it receives.
///
/// An hour is generous for clocks that merely drift (a real-time clock
/// without NTP drifts seconds a day, so months offline stay well inside it,
/// and so do NTP's steps), and it is the most one wrong clock (a ship an
/// hour, a day or a century fast) can move everyone else's stamps. Versions
/// stamped further ahead are kept all the same, and flagged.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(3_600);

/// How far ahead of a node's wall clock its clock may be moved, and beyond
/// which a received version is flagged. One setting for the deployment: the
/// cloud announces its own with the change feed and sites use what it
/// announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SkewBound {
    ms: u64,
}

impl SkewBound {
    /// [`DEFAULT_MAX_CLOCK_SKEW`].
    pub const DEFAULT: SkewBound = SkewBound {
        ms: DEFAULT_MAX_CLOCK_SKEW.as_millis() as u64,
    };

    /// A bound of `ms` milliseconds.
    pub const fn from_ms(ms: u64) -> SkewBound {
        SkewBound { ms }
    }

    /// A bound of `bound`, to the millisecond (saturating).
    pub fn from_duration(bound: Duration) -> SkewBound {
        SkewBound {
            ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The bound in milliseconds.
    pub fn as_ms(self) -> u64 {
        self.ms
    }

    /// The bound as a duration.
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.ms)
    }

    /// How far `stamp` is ahead of the wall clock `now_ms` when that is
    /// more than the bound: the version is flagged with it. `None` within.
    pub fn exceeded_by(self, stamp: Hlc, now_ms: u64) -> Option<u64> {
        let ahead = stamp.ahead_of_ms(now_ms);
        (ahead > self.ms).then_some(ahead)
    }

    /// The latest physical time a clock may hold at wall-clock time
    /// `now_ms`: the bound ahead of it, and never past [`Hlc::MAX_CLOCK_MS`].
    pub fn limit_ms(self, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.ms).min(Hlc::MAX_CLOCK_MS)
    }
}

impl Default for SkewBound {
    fn default() -> SkewBound {
        SkewBound::DEFAULT
    }
}

/// A node's clock for one write: the persisted stamp, the wall clock read
/// once, the bound in force. Persist [`NodeClock::hlc`] with the versions
/// it stamped or received.
#[derive(Debug, Clone)]
pub struct NodeClock {
    hlc: Hlc,
    /// The wall clock, never past [`Hlc::MAX_CLOCK_MS`].
    now_ms: u64,
    /// The wall clock as read, for measuring how far ahead a stamp is.
    wall_ms: u64,
    bound: SkewBound,
    fell_back_ms: Option<u64>,
}

impl NodeClock {
    /// The clock persisted as `persisted`, at wall-clock time `now_ms`,
    /// under `bound`; fallen back to the bound if it was further ahead.
    ///
    /// A clock one millisecond past the bound is not taken back: that is
    /// where ticking with the counter full at the bound carries it, and
    /// taking it back would repeat stamps while the wall clock runs forward.
    pub fn load(persisted: Hlc, now_ms: u64, bound: SkewBound) -> NodeClock {
        let limit = bound.limit_ms(now_ms);
        let (hlc, fell_back_ms) = if persisted.physical_ms > limit.saturating_add(1) {
            (
                Hlc {
                    physical_ms: limit,
                    logical: 0,
                },
                Some(persisted.physical_ms - limit),
            )
        } else {
            (persisted, None)
        };
        NodeClock {
            hlc,
            now_ms: now_ms.min(Hlc::MAX_CLOCK_MS),
            wall_ms: now_ms,
            bound,
            fell_back_ms,
        }
    }

    /// How far the persisted clock was beyond the bound, in milliseconds,
    /// if [`NodeClock::load`] took it back: log it when persisting.
    pub fn fell_back_ms(&self) -> Option<u64> {
        self.fell_back_ms
    }

    /// The clock's value now: persist it.
    pub fn hlc(&self) -> Hlc {
        self.hlc
    }

    /// The bound in force.
    pub fn bound(&self) -> SkewBound {
        self.bound
    }

    /// The latest physical time the clock may hold now.
    fn limit_ms(&self) -> u64 {
        self.bound.limit_ms(self.wall_ms)
    }

    /// The stamp of a reading's first version (a reading no version of is
    /// held): above the clock, never behind the wall clock. At
    /// [`Hlc::MAX_CLOCK_MS`] with the counter full (a wall clock past the
    /// year 6429) it stays there: first versions of different readings may
    /// then share a stamp, which their identity (reading, stamp, writer)
    /// allows.
    pub fn tick(&mut self) -> Hlc {
        let next = if self.now_ms > self.hlc.physical_ms {
            Hlc {
                physical_ms: self.now_ms,
                logical: 0,
            }
        } else {
            self.hlc.successor().unwrap_or(Hlc::MAX)
        };
        self.hlc = next.min(Hlc {
            physical_ms: Hlc::MAX_CLOCK_MS,
            logical: u16::MAX,
        });
        self.hlc
    }

    /// The node received (and stores) a version stamped `remote`: the clock
    /// moves up to it, or up to the bound when it is further ahead. Returns
    /// how far ahead of the wall clock the stamp is when that is beyond the
    /// bound: flag, count and log the version.
    pub fn receive(&mut self, remote: Hlc) -> Option<u64> {
        self.adopt(remote);
        self.bound.exceeded_by(remote, self.wall_ms)
    }

    /// The stamp of a new version of a reading whose highest held version
    /// is stamped `floor` (`None`: none held): the clock's next stamp, or
    /// the floor's successor when the clock is not above the floor. The
    /// clock follows the stamp up to the bound.
    pub fn stamp_above(&mut self, floor: Option<Hlc>) -> Result<Hlc, Exhausted> {
        let own = self.tick();
        match floor {
            Some(floor) if floor >= own => {
                let stamp = floor.successor().ok_or(Exhausted { floor })?;
                self.adopt(stamp);
                Ok(stamp)
            }
            _ => Ok(own),
        }
    }

    /// Moves the clock up to `stamp`, or to the bound if that is lower.
    fn adopt(&mut self, stamp: Hlc) {
        let limit = self.limit_ms();
        let adopted = if stamp.physical_ms > limit {
            Hlc {
                physical_ms: limit,
                logical: 0,
            }
        } else {
            stamp
        };
        self.hlc = self.hlc.max(adopted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const HOUR: u64 = 3_600_000;

    fn at(physical_ms: u64, logical: u16) -> Hlc {
        Hlc {
            physical_ms,
            logical,
        }
    }

    #[test]
    fn ticks_follow_the_wall_clock_and_never_repeat_within_it() {
        let mut clock = NodeClock::load(at(NOW - 5, 7), NOW, SkewBound::DEFAULT);
        assert_eq!(clock.fell_back_ms(), None);
        assert_eq!(clock.tick(), at(NOW, 0));
        assert_eq!(clock.tick(), at(NOW, 1));
        let mut prev = clock.hlc();
        for _ in 0..200_000 {
            let next = clock.tick();
            assert!(next > prev);
            prev = next;
        }
    }

    #[test]
    fn a_stamp_within_the_bound_is_adopted_without_a_flag() {
        let mut clock = NodeClock::load(at(NOW, 0), NOW, SkewBound::DEFAULT);
        let remote = at(NOW + HOUR / 2, 9);
        assert_eq!(clock.receive(remote), None);
        assert_eq!(clock.hlc(), remote);
        assert!(clock.tick() > remote);
    }

    #[test]
    fn a_stamp_beyond_the_bound_is_flagged_and_moves_the_clock_only_to_the_bound() {
        let mut clock = NodeClock::load(at(NOW, 0), NOW, SkewBound::DEFAULT);
        let far = at(Hlc::MAX_CLOCK_MS, u16::MAX);
        assert_eq!(clock.receive(far), Some(Hlc::MAX_CLOCK_MS - NOW));
        assert_eq!(clock.hlc(), at(NOW + HOUR, 0));
        // Its own next stamps stay at the bound, distinct and increasing.
        let (a, b) = (clock.tick(), clock.tick());
        assert_eq!((a, b), (at(NOW + HOUR, 1), at(NOW + HOUR, 2)));
    }

    #[test]
    fn a_clock_persisted_beyond_the_bound_falls_back_to_it() {
        let clock = NodeClock::load(at(Hlc::MAX_PHYSICAL_MS, 3), NOW, SkewBound::DEFAULT);
        assert_eq!(clock.hlc(), at(NOW + HOUR, 0));
        assert_eq!(
            clock.fell_back_ms(),
            Some(Hlc::MAX_PHYSICAL_MS - NOW - HOUR)
        );
        // The wall clock set back a day: the clock follows it to the bound.
        let clock = NodeClock::load(at(NOW, 0), NOW - 24 * HOUR, SkewBound::DEFAULT);
        assert_eq!(clock.hlc(), at(NOW - 23 * HOUR, 0));
        assert_eq!(clock.fell_back_ms(), Some(23 * HOUR));
    }

    #[test]
    fn an_amendment_of_a_reading_at_the_top_carries_into_the_headroom() {
        let mut clock = NodeClock::load(at(NOW, 0), NOW, SkewBound::DEFAULT);
        let top = at(Hlc::MAX_CLOCK_MS, u16::MAX);
        let first = clock.stamp_above(Some(top)).expect("room above");
        assert_eq!(first, at(Hlc::MAX_CLOCK_MS + 1, 0));
        let second = clock.stamp_above(Some(first)).expect("room above");
        assert_eq!(second, at(Hlc::MAX_CLOCK_MS + 1, 1));
        // The clock itself stayed at the bound.
        assert_eq!(clock.hlc().physical_ms, NOW + HOUR);
        assert_eq!(second.check_range(true), Ok(()));
    }

    #[test]
    fn an_amendment_is_stamped_by_the_clock_when_the_clock_is_above_the_floor() {
        let mut clock = NodeClock::load(at(NOW, 4), NOW, SkewBound::DEFAULT);
        assert_eq!(clock.stamp_above(Some(at(NOW - HOUR, 0))), Ok(at(NOW, 5)));
        assert_eq!(clock.stamp_above(None), Ok(at(NOW, 6)));
    }

    #[test]
    fn a_floor_within_the_bound_moves_the_clock_past_it() {
        let mut clock = NodeClock::load(at(NOW, 0), NOW, SkewBound::DEFAULT);
        let stamp = clock.stamp_above(Some(at(NOW + 10, 2))).expect("room");
        assert_eq!(stamp, at(NOW + 10, 3));
        assert!(clock.tick() > stamp);
    }

    #[test]
    fn only_the_very_top_is_exhausted() {
        let mut clock = NodeClock::load(at(NOW, 0), NOW, SkewBound::DEFAULT);
        assert_eq!(
            clock.stamp_above(Some(Hlc::MAX)),
            Err(Exhausted { floor: Hlc::MAX })
        );
        let below = Hlc {
            physical_ms: Hlc::MAX_PHYSICAL_MS,
            logical: u16::MAX - 1,
        };
        assert_eq!(clock.stamp_above(Some(below)), Ok(Hlc::MAX));
    }

    #[test]
    fn a_wall_clock_past_the_range_stamps_at_the_clocks_limit() {
        let mut clock = NodeClock::load(Hlc::ZERO, u64::MAX / 2, SkewBound::DEFAULT);
        let first = clock.tick();
        assert_eq!(first, at(Hlc::MAX_CLOCK_MS, 0));
        assert_eq!(first.check_range(false), Ok(()));
        for _ in 0..70_000 {
            assert_eq!(clock.tick().check_range(false), Ok(()));
        }
    }

    #[test]
    fn the_bound_converts_and_flags() {
        let bound = SkewBound::from_duration(Duration::from_secs(90));
        assert_eq!(bound.as_ms(), 90_000);
        assert_eq!(bound.as_duration(), Duration::from_secs(90));
        assert_eq!(bound.exceeded_by(at(NOW + 90_000, 5), NOW), None);
        assert_eq!(bound.exceeded_by(at(NOW + 90_001, 0), NOW), Some(90_001));
        assert_eq!(SkewBound::default().as_duration(), DEFAULT_MAX_CLOCK_SKEW);
        assert_eq!(
            SkewBound::from_ms(u64::MAX).limit_ms(NOW),
            Hlc::MAX_CLOCK_MS
        );
    }
}
