//! The hybrid logical clock (HLC) that stamps every version.
//!
//! A stamp is physical milliseconds plus a 16-bit logical counter. Stamps a
//! site issues are strictly increasing even when the wall clock stalls or jumps
//! back (no NTP while offline is normal): the next stamp is
//! `max(wall clock, last stamp)` with the counter bumped when the physical part
//! did not move. The last stamp is persisted in the same transaction as the
//! versions it stamped, so the clock never goes backwards across restarts.
//!
//! Stamps are stored packed into one `i64` (`physical_ms << 16 | logical`), so
//! the database compares them with plain integer order.

use std::time::{SystemTime, UNIX_EPOCH};

/// One HLC value. Ordered as `(physical_ms, logical)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch.
    pub physical_ms: u64,
    /// Orders stamps within one millisecond.
    pub logical: u16,
}

/// Largest physical part that still packs into a positive `i64`.
const MAX_PHYSICAL_MS: u64 = (i64::MAX as u64) >> 16;

impl Hlc {
    /// The zero stamp, before any write.
    pub const ZERO: Hlc = Hlc {
        physical_ms: 0,
        logical: 0,
    };

    /// The stamp packed for storage; order-preserving.
    pub fn pack(self) -> i64 {
        let physical = self.physical_ms.min(MAX_PHYSICAL_MS);
        ((physical << 16) | u64::from(self.logical)) as i64
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

    /// The next stamp after `self` for a local event at wall-clock time
    /// `now_ms`: strictly greater than `self`, and never behind the wall clock.
    pub fn tick(self, now_ms: u64) -> Hlc {
        let now_ms = now_ms.min(MAX_PHYSICAL_MS);
        if now_ms > self.physical_ms {
            Hlc {
                physical_ms: now_ms,
                logical: 0,
            }
        } else if self.logical < u16::MAX {
            Hlc {
                physical_ms: self.physical_ms,
                logical: self.logical + 1,
            }
        } else if self.physical_ms < MAX_PHYSICAL_MS {
            // 65536 stamps in one millisecond: borrow from the next one.
            Hlc {
                physical_ms: self.physical_ms + 1,
                logical: 0,
            }
        } else {
            // The clock's range (to about the year 6400) is exhausted; only a
            // broken clock gets here. Staying put keeps the order monotonic.
            self
        }
    }
}

impl Hlc {
    /// The next stamp after receiving a remote stamp `remote` at wall-clock
    /// time `now_ms`: greater than both `self` and `remote`, so whatever this
    /// replica writes next orders after what it has seen (the HLC receive
    /// rule). A remote stamp far ahead of the wall clock is still taken: the
    /// order must hold whatever the clocks say; callers count the skew.
    pub fn receive(self, remote: Hlc, now_ms: u64) -> Hlc {
        let now_ms = now_ms.min(MAX_PHYSICAL_MS);
        let remote = Hlc {
            physical_ms: remote.physical_ms.min(MAX_PHYSICAL_MS),
            logical: remote.logical,
        };
        let newest = self.max(remote);
        if now_ms > newest.physical_ms {
            return Hlc {
                physical_ms: now_ms,
                logical: 0,
            };
        }
        newest.tick(now_ms)
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
        assert!(a.pack() < b.pack());
        assert_eq!(Hlc::unpack(a.pack()), a);
        assert_eq!(Hlc::unpack(b.pack()), b);
    }

    #[test]
    fn tick_follows_the_wall_clock_when_it_moves_forward() {
        let last = Hlc {
            physical_ms: 1000,
            logical: 7,
        };
        assert_eq!(
            last.tick(2000),
            Hlc {
                physical_ms: 2000,
                logical: 0
            }
        );
    }

    #[test]
    fn tick_never_goes_back_when_the_wall_clock_jumps_back() {
        let last = Hlc {
            physical_ms: 5000,
            logical: 3,
        };
        let next = last.tick(1000);
        assert!(next > last);
        assert_eq!(
            next,
            Hlc {
                physical_ms: 5000,
                logical: 4
            }
        );
    }

    #[test]
    fn tick_carries_into_the_next_millisecond_when_the_counter_is_full() {
        let last = Hlc {
            physical_ms: 5000,
            logical: u16::MAX,
        };
        assert_eq!(
            last.tick(5000),
            Hlc {
                physical_ms: 5001,
                logical: 0
            }
        );
    }

    #[test]
    fn receive_orders_after_a_remote_stamp_ahead_of_the_wall_clock() {
        let local = Hlc {
            physical_ms: 1000,
            logical: 0,
        };
        let remote = Hlc {
            physical_ms: 9000,
            logical: 5,
        };
        let next = local.receive(remote, 2000);
        assert!(next > remote && next > local);
        assert_eq!(
            next,
            Hlc {
                physical_ms: 9000,
                logical: 6
            }
        );
        assert_eq!(remote.ahead_of_ms(2000), 7000);
    }

    #[test]
    fn receive_follows_the_wall_clock_when_it_is_ahead_of_both() {
        let next = Hlc {
            physical_ms: 1000,
            logical: 9,
        }
        .receive(
            Hlc {
                physical_ms: 1500,
                logical: 3,
            },
            4000,
        );
        assert_eq!(
            next,
            Hlc {
                physical_ms: 4000,
                logical: 0
            }
        );
    }

    #[test]
    fn receive_of_an_older_remote_stamp_still_ticks_the_local_clock() {
        let local = Hlc {
            physical_ms: 5000,
            logical: 2,
        };
        let next = local.receive(
            Hlc {
                physical_ms: 10,
                logical: 0,
            },
            100,
        );
        assert_eq!(
            next,
            Hlc {
                physical_ms: 5000,
                logical: 3
            }
        );
    }

    #[test]
    fn many_ticks_in_one_millisecond_are_strictly_increasing() {
        let mut clock = Hlc::ZERO;
        let mut prev = clock;
        for _ in 0..200_000 {
            clock = clock.tick(42);
            assert!(clock > prev);
            prev = clock;
        }
    }
}
