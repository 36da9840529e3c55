//! How many versions the next lease asks for: `--sync-batch-size` on a link
//! that carries it, fewer on one that does not.
//!
//! Every push costs something whatever its size, at both ends: a lease, a
//! transaction and a commit at the cloud, a completion. On a fast link a
//! batch of 5,000 versions drains about a third faster than one of 2,000. On
//! a slow link the same batch can outlast the push timeout, fail, and be sent
//! again in full, never getting through. So the size adapts to what the link
//! shows: a push that took more than half the push timeout (or ran into it)
//! halves the size, down to [`MIN_BATCH`]; one answered within an eighth of
//! it doubles the size back, up to the configured one. It starts at the
//! configured size, so a link that carries it never sees a smaller batch.
//!
//! Ingest comes first at the site, too: a batch's completion holds the
//! store's single writer for as long as it takes to record, so while ingest
//! keeps that writer at least [`BUSY_PERCENT`] busy a lease asks for no more
//! than [`BUSY_BATCH`] versions, however fast the link.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The smallest batch the size shrinks to (or the configured size, if
/// smaller): still a few readings a second on a link of a few kbit/s.
pub const MIN_BATCH: u32 = 100;

/// The most a lease asks for while ingest is busy.
pub const BUSY_BATCH: u32 = 2_000;

/// How busy ingest keeps the store's writer (percent) before leases are
/// capped at [`BUSY_BATCH`].
pub const BUSY_PERCENT: u32 = 50;

/// The batch size the drain leases with; shared by its workers.
#[derive(Debug)]
pub struct BatchSize {
    max: u32,
    min: u32,
    push_timeout: Duration,
    current: AtomicU32,
    /// The writer's busy share the store last reported.
    ingest_busy_percent: AtomicU32,
}

impl BatchSize {
    /// Starts at `max` (`--sync-batch-size`), adapting against
    /// `push_timeout`.
    pub fn new(max: u32, push_timeout: Duration) -> Self {
        let max = max.max(1);
        BatchSize {
            max,
            min: MIN_BATCH.min(max),
            push_timeout,
            current: AtomicU32::new(max),
            ingest_busy_percent: AtomicU32::new(0),
        }
    }

    /// Versions the next lease asks for.
    pub fn current(&self) -> u32 {
        let size = self.current.load(Ordering::Relaxed);
        if self.ingest_busy_percent.load(Ordering::Relaxed) >= BUSY_PERCENT {
            size.min(BUSY_BATCH)
        } else {
            size
        }
    }

    /// Learns how busy ingest keeps the store's writer (each lease says).
    pub fn ingest_busy(&self, percent: u32) {
        self.ingest_busy_percent.store(percent, Ordering::Relaxed);
    }

    /// Learns from one push that took `took`, `answered` when the cloud
    /// answered it (whatever the answer). Returns the size now.
    pub fn observe(&self, took: Duration, answered: bool) -> u32 {
        let slow = took >= self.push_timeout / 2;
        let fast = answered && took <= self.push_timeout / 8;
        let update = |size: u32| {
            if slow {
                Some((size / 2).max(self.min))
            } else if fast {
                Some(size.saturating_mul(2).min(self.max))
            } else {
                None
            }
        };
        match self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, update)
        {
            Ok(before) => update(before).unwrap_or(before),
            Err(unchanged) => unchanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{BUSY_BATCH, BUSY_PERCENT, BatchSize, MIN_BATCH};

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[test]
    fn a_fast_link_keeps_the_configured_size() {
        let size = BatchSize::new(5000, TIMEOUT);
        assert_eq!(size.current(), 5000);
        assert_eq!(size.observe(Duration::from_millis(80), true), 5000);
        // Between an eighth and a half of the timeout: left as it is.
        assert_eq!(size.observe(Duration::from_secs(10), true), 5000);
    }

    #[test]
    fn slow_pushes_halve_it_to_the_floor_and_fast_ones_restore_it() {
        let size = BatchSize::new(5000, TIMEOUT);
        assert_eq!(size.observe(Duration::from_secs(16), true), 2500);
        // A push that ran into the timeout was never answered.
        assert_eq!(size.observe(TIMEOUT, false), 1250);
        for _ in 0..10 {
            size.observe(TIMEOUT, false);
        }
        assert_eq!(size.current(), MIN_BATCH);
        // A failure answered quickly (refused, unreachable) says nothing
        // about what the link carries.
        assert_eq!(size.observe(Duration::from_millis(5), false), MIN_BATCH);
        let mut steps = 0;
        while size.current() < 5000 {
            size.observe(Duration::from_millis(200), true);
            steps += 1;
        }
        assert_eq!(steps, 6, "100 -> 5000 in six fast pushes");
    }

    #[test]
    fn a_busy_ingest_caps_the_batch() {
        let size = BatchSize::new(5000, TIMEOUT);
        size.ingest_busy(BUSY_PERCENT);
        assert_eq!(size.current(), BUSY_BATCH);
        size.ingest_busy(BUSY_PERCENT - 1);
        assert_eq!(size.current(), 5000);
        let small = BatchSize::new(500, TIMEOUT);
        small.ingest_busy(100);
        assert_eq!(small.current(), 500);
    }

    #[test]
    fn a_configured_size_below_the_floor_is_kept() {
        let size = BatchSize::new(10, TIMEOUT);
        assert_eq!(size.observe(TIMEOUT, false), 10);
        assert_eq!(size.observe(Duration::from_millis(1), true), 10);
    }
}
