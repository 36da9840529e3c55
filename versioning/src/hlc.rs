//! The hybrid logical clock (HLC) stamp every version carries.
//!
//! A stamp is physical milliseconds plus a 16-bit logical counter, stored
//! packed into one `i64` (`physical_ms << 16 | logical`), so the database
//! compares stamps with plain integer order. The physical part therefore
//! has 47 bits: [`Hlc::MAX_PHYSICAL_MS`] (about the year 6429) is the
//! largest any stamp can carry.
//!
//! The range is split in two, so that amending a reading always works even
//! when its version is stamped at the very top:
//!
//! - up to [`Hlc::MAX_CLOCK_MS`]: the times a clock may read. A reading's
//!   first version is stamped by a clock, so it is never later than this; a
//!   wall clock reading later is taken as this.
//! - the last [`Hlc::AMENDMENT_HEADROOM_MS`] (2^32 ms, about 50 days, times
//!   65536 logical steps: 2^48 amendments): kept for versions stamped above
//!   a reading's versions (see [`crate::clock`]). Only an amendment (a
//!   version with a base) may carry a stamp there.
//!
//! What a node's clock issues stays in its part of the range
//! ([`Hlc::check_range`]). What a node *receives* is refused only beyond
//! what the encoding holds ([`Hlc::check_received`], naming the limit: that
//! checks the format's domain, not the writer's clock): a first version in
//! the headroom (stamped by an older build, whose clocks could be dragged to
//! the top, or by a writer that ignores these rules) is kept, since losing a
//! real reading is worse than one that cannot be amended any more; amending a
//! reading whose version sits at the very top fails with a clear error.
//! Nothing is clamped: [`Hlc::pack`] refuses a stamp it cannot represent
//! rather than let two stamps collapse into one.
//!
//! How a node's clock moves (what it adopts of what it receives, how it
//! stamps a reading's next version) is in [`crate::clock`].

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// One HLC value. Ordered as `(physical_ms, logical)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch.
    pub physical_ms: u64,
    /// Orders stamps within one millisecond.
    pub logical: u16,
}

/// A stamp outside the part of the clock's range it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutOfRange {
    /// A first version (no base) stamped later than any clock may read.
    #[error(
        "physical_ms {physical_ms} is above {max}, the latest time a clock may stamp a reading's \
         first version (the last 2^32 ms of the 47-bit range up to {top} are kept for \
         amendments)",
        max = Hlc::MAX_CLOCK_MS,
        top = Hlc::MAX_PHYSICAL_MS
    )]
    FirstVersion {
        /// The physical part found.
        physical_ms: u64,
    },
    /// Any stamp beyond what the 47-bit physical part holds.
    #[error(
        "physical_ms {physical_ms} is above {max}, the largest the clock's 47-bit range holds",
        max = Hlc::MAX_PHYSICAL_MS
    )]
    Encoding {
        /// The physical part found.
        physical_ms: u64,
    },
}

/// No stamp is left above a reading's versions: the clock's whole range is
/// used up (2^48 amendments of one reading stamped at the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "no stamp is left above {floor}: this reading's versions are stamped at the top of the \
     clock's range, so it cannot be amended"
)]
pub struct Exhausted {
    /// The highest stamp of the reading's versions.
    pub floor: Hlc,
}

/// A reading that cannot be amended: its versions are stamped at the very
/// top of the clock's range, so nothing can be stamped above them. The
/// answer every replica's store gives such an amendment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reading {reading_id}: {source}")]
pub struct ReadingExhausted {
    /// The reading.
    pub reading_id: String,
    /// Its highest stamp.
    #[source]
    pub source: Exhausted,
}

impl Hlc {
    /// The zero stamp, before any write.
    pub const ZERO: Hlc = Hlc {
        physical_ms: 0,
        logical: 0,
    };

    /// Largest physical part a stamp can carry: 47 bits, so the packed
    /// stamp is a positive `i64`.
    pub const MAX_PHYSICAL_MS: u64 = (1 << 47) - 1;

    /// The top of the range kept for amendments of readings stamped at
    /// [`Hlc::MAX_CLOCK_MS`].
    pub const AMENDMENT_HEADROOM_MS: u64 = 1 << 32;

    /// The latest time a clock may read, and so the largest physical part a
    /// reading's first version may carry (about 50 days before the year
    /// 6429).
    pub const MAX_CLOCK_MS: u64 = Hlc::MAX_PHYSICAL_MS - Hlc::AMENDMENT_HEADROOM_MS;

    /// The largest stamp: nothing can be stamped above it.
    pub const MAX: Hlc = Hlc {
        physical_ms: Hlc::MAX_PHYSICAL_MS,
        logical: u16::MAX,
    };

    /// The stamp packed for storage; order-preserving. A physical part
    /// beyond [`Hlc::MAX_PHYSICAL_MS`] is refused, never clamped: stamps
    /// from outside are checked with [`Hlc::check_range`] first, and the
    /// clock never issues one.
    pub fn pack(self) -> Result<i64, OutOfRange> {
        if self.physical_ms > Hlc::MAX_PHYSICAL_MS {
            return Err(OutOfRange::Encoding {
                physical_ms: self.physical_ms,
            });
        }
        // At most 63 bits: a positive i64.
        Ok(((self.physical_ms << 16) | u64::from(self.logical)) as i64)
    }

    /// The stamp from its stored form. Negative values (never written by this
    /// code) read as zero.
    pub fn unpack(packed: i64) -> Hlc {
        let packed = u64::try_from(packed).unwrap_or(0);
        Hlc {
            physical_ms: packed >> 16,
            logical: (packed & 0xffff) as u16,
        }
    }

    /// Checks a stamp a clock issued against its part of the range: a first
    /// version (`amendment` false) at most [`Hlc::MAX_CLOCK_MS`], an
    /// amendment (a version with a base) at most [`Hlc::MAX_PHYSICAL_MS`].
    /// Clocks keep to this; receivers check only [`Hlc::check_received`].
    pub fn check_range(self, amendment: bool) -> Result<(), OutOfRange> {
        if self.physical_ms > Hlc::MAX_PHYSICAL_MS {
            Err(OutOfRange::Encoding {
                physical_ms: self.physical_ms,
            })
        } else if !amendment && self.physical_ms > Hlc::MAX_CLOCK_MS {
            Err(OutOfRange::FirstVersion {
                physical_ms: self.physical_ms,
            })
        } else {
            Ok(())
        }
    }

    /// Checks a stamp that arrived from elsewhere (a pushed or pulled
    /// version, or its base): refused only beyond what the encoding holds,
    /// [`Hlc::MAX_PHYSICAL_MS`]. However far ahead of the receiver's wall
    /// clock, and whichever part of the range, a stamp within it is kept.
    pub fn check_received(self) -> Result<(), OutOfRange> {
        if self.physical_ms > Hlc::MAX_PHYSICAL_MS {
            Err(OutOfRange::Encoding {
                physical_ms: self.physical_ms,
            })
        } else {
            Ok(())
        }
    }

    /// The smallest stamp above this one: the counter's next value, or the
    /// next millisecond when the counter is full. `None` above
    /// [`Hlc::MAX`].
    pub fn successor(self) -> Option<Hlc> {
        if self.logical < u16::MAX {
            Some(Hlc {
                physical_ms: self.physical_ms,
                logical: self.logical + 1,
            })
        } else if self.physical_ms < Hlc::MAX_PHYSICAL_MS {
            Some(Hlc {
                physical_ms: self.physical_ms + 1,
                logical: 0,
            })
        } else {
            None
        }
    }

    /// How far this stamp's physical part is ahead of the wall clock
    /// `now_ms`, in milliseconds; 0 when it is not ahead.
    pub fn ahead_of_ms(self, now_ms: u64) -> u64 {
        self.physical_ms.saturating_sub(now_ms)
    }

    /// Milliseconds since the Unix epoch for a wall-clock reading in
    /// microseconds (negative readings, a broken clock, count as 0).
    pub fn ms_from_us(now_us: i64) -> u64 {
        u64::try_from(now_us / 1_000).unwrap_or(0)
    }
}

impl fmt::Display for Hlc {
    /// `physical_ms.logical`, as versions are shown everywhere.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.physical_ms, self.logical)
    }
}

/// A source of wall-clock time, injectable so tests can skew or stop it.
pub trait WallClock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_us(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_us(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            // A clock set before 1970 is a broken clock; the HLC keeps order.
            Err(_) => 0,
        }
    }
}

/// The system clock shifted by a fixed offset: a site whose wall clock is
/// wrong by that much (an hour ahead, a day behind), for tests and drills.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    /// Microseconds added to the system clock (negative: behind).
    pub offset_us: i64,
}

impl WallClock for OffsetClock {
    fn now_us(&self) -> i64 {
        SystemClock.now_us().saturating_add(self.offset_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_preserves_order_and_round_trips() {
        let a = Hlc {
            physical_ms: 1_700_000_000_000,
            logical: 65535,
        };
        let b = Hlc {
            physical_ms: 1_700_000_000_001,
            logical: 0,
        };
        let (pa, pb) = (a.pack().expect("fits"), b.pack().expect("fits"));
        assert!(pa < pb);
        assert_eq!(Hlc::unpack(pa), a);
        assert_eq!(Hlc::unpack(pb), b);
        assert_eq!(
            Hlc::unpack(Hlc::MAX.pack().expect("the top fits")),
            Hlc::MAX
        );
        assert_eq!(Hlc::MAX.pack(), Ok(i64::MAX));
    }

    #[test]
    fn pack_refuses_what_it_cannot_hold_rather_than_merge_two_stamps() {
        let beyond = |physical_ms| Hlc {
            physical_ms,
            logical: 1,
        };
        for physical_ms in [Hlc::MAX_PHYSICAL_MS + 1, 1 << 50, u64::MAX] {
            assert_eq!(
                beyond(physical_ms).pack(),
                Err(OutOfRange::Encoding { physical_ms })
            );
        }
    }

    #[test]
    fn first_versions_stop_below_the_headroom_amendments_may_use_it() {
        let at = |physical_ms| Hlc {
            physical_ms,
            logical: u16::MAX,
        };
        assert_eq!(at(Hlc::MAX_CLOCK_MS).check_range(false), Ok(()));
        let err = at(Hlc::MAX_CLOCK_MS + 1)
            .check_range(false)
            .expect_err("a first version in the headroom");
        assert!(
            err.to_string().contains(&Hlc::MAX_CLOCK_MS.to_string()),
            "names the limit: {err}"
        );
        assert_eq!(at(Hlc::MAX_CLOCK_MS + 1).check_range(true), Ok(()));
        assert_eq!(at(Hlc::MAX_PHYSICAL_MS).check_range(true), Ok(()));
        assert!(at(Hlc::MAX_PHYSICAL_MS + 1).check_range(true).is_err());
        // What arrives from elsewhere is refused only beyond the encoding.
        assert_eq!(at(Hlc::MAX_CLOCK_MS + 1).check_received(), Ok(()));
        assert_eq!(at(Hlc::MAX_PHYSICAL_MS).check_received(), Ok(()));
        assert!(at(Hlc::MAX_PHYSICAL_MS + 1).check_received().is_err());
        assert_eq!(Hlc::MAX_CLOCK_MS, (1 << 47) - 1 - (1 << 32));
    }

    #[test]
    fn the_successor_carries_into_the_next_millisecond_and_ends_at_the_top() {
        let full = Hlc {
            physical_ms: 5000,
            logical: u16::MAX,
        };
        assert_eq!(
            full.successor(),
            Some(Hlc {
                physical_ms: 5001,
                logical: 0
            })
        );
        assert_eq!(
            Hlc::ZERO.successor(),
            Some(Hlc {
                physical_ms: 0,
                logical: 1
            })
        );
        assert_eq!(Hlc::MAX.successor(), None);
    }
}
