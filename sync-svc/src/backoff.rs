//! Retry delays: exponential, capped, with jitter so that many sites (or
//! many batches) that failed together do not all come back together.

use std::time::Duration;

use rand::Rng as _;

/// Exponential backoff between `initial` and `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure (before jitter).
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 for the first):
    /// `initial · 2^(failures-1)`, capped at `max`, then drawn uniformly from
    /// its upper half ("equal jitter": never less than half, so a retry storm
    /// still spreads, and never more than the cap). Never shorter than
    /// `at_least` (a `Retry-After` the cloud sent).
    pub fn delay(&self, failures: u32, at_least: Option<Duration>) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let ceiling = self
            .initial
            .saturating_mul(1u32 << exponent)
            .min(self.max)
            .max(Duration::from_millis(1));
        let half = ceiling / 2;
        let jittered = half + rand::rng().random_range(Duration::ZERO..=ceiling - half);
        jittered.max(at_least.unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_capped_and_honour_retry_after() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for _ in 0..100 {
            let first = b.delay(1, None);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let fourth = b.delay(4, None);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            assert!(b.delay(40, None) <= Duration::from_secs(60));
            assert!(b.delay(40, None) >= Duration::from_secs(30));
            assert_eq!(
                b.delay(1, Some(Duration::from_secs(120))),
                Duration::from_secs(120)
            );
        }
    }
}
