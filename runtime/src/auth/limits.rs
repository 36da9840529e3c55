//! Per-identity rates: calls per second for every call (checked with the
//! credential), readings per second for ingest (checked by ingest-svc, which
//! knows how many a call carries). Both are token buckets (`governor`):
//! an identity may spend a burst of `burst_seconds` worth at once, then
//! its rate. A call over its rate is answered `RESOURCE_EXHAUSTED` with a
//! `RetryInfo` saying when it would pass, so a well-behaved gateway waits
//! exactly that long; other identities are not slowed.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use tonic_types::{ErrorDetails, StatusExt as _};

/// An identity's rates. In a stored record `None` means "the site's
/// default"; once resolved, `Some(0)` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    /// Calls per second.
    pub calls_per_second: Option<u32>,
    /// Readings per second (ingest).
    pub readings_per_second: Option<u32>,
    /// How many seconds' worth may be spent at once.
    pub burst_seconds: Option<u32>,
}

impl Rates {
    /// No limit at all (the operator, the services' own traffic).
    pub const UNLIMITED: Rates = Rates {
        calls_per_second: Some(0),
        readings_per_second: Some(0),
        burst_seconds: Some(1),
    };

    /// Each rate not set here taken from `defaults`.
    pub fn or(self, defaults: Rates) -> Rates {
        Rates {
            calls_per_second: self.calls_per_second.or(defaults.calls_per_second),
            readings_per_second: self.readings_per_second.or(defaults.readings_per_second),
            burst_seconds: self.burst_seconds.or(defaults.burst_seconds),
        }
    }
}

/// One identity's buckets.
pub struct RateLimiter {
    rates: Rates,
    calls: Option<DefaultDirectRateLimiter>,
    readings: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rates", &self.rates)
            .finish_non_exhaustive()
    }
}

fn bucket(rate: Option<u32>, burst_seconds: u32) -> Option<(DefaultDirectRateLimiter, NonZeroU32)> {
    let rate = NonZeroU32::new(rate.unwrap_or(0))?;
    let burst = NonZeroU32::new(rate.get().saturating_mul(burst_seconds.max(1)))?;
    Some((
        DefaultDirectRateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        burst,
    ))
}

impl RateLimiter {
    /// Buckets for resolved `rates` (unset or 0: no limit).
    pub fn new(rates: Rates) -> Self {
        let burst = rates.burst_seconds.unwrap_or(1);
        Self {
            rates,
            calls: bucket(rates.calls_per_second, burst).map(|(b, _)| b),
            readings: bucket(rates.readings_per_second, burst),
        }
    }

    /// The rates this limiter enforces.
    pub fn rates(&self) -> Rates {
        self.rates
    }

    /// Takes one call; `Err` holds how long until one would pass.
    pub fn check_call(&self) -> Result<(), Duration> {
        match &self.calls {
            None => Ok(()),
            Some(bucket) => bucket
                .check()
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// Takes `count` readings; `Err` holds how long until they would pass,
    /// or [`Duration::MAX`] when `count` is more than the burst (no wait
    /// would let it pass: the caller must send smaller batches).
    pub fn check_readings(&self, count: usize) -> Result<(), Duration> {
        let Some((bucket, _)) = &self.readings else {
            return Ok(());
        };
        let Some(n) = NonZeroU32::new(u32::try_from(count).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        match bucket.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            Err(_) => Err(Duration::MAX),
        }
    }

    /// The most readings one call may carry under this identity's burst.
    pub fn readings_burst(&self) -> Option<u32> {
        self.readings.as_ref().map(|(_, burst)| burst.get())
    }
}

/// The status of a call over its identity's rate: `RESOURCE_EXHAUSTED`,
/// naming the rate, with a `RetryInfo` detail any gRPC client can read.
pub fn over_rate(identity: &str, what: &str, retry_after: Duration) -> tonic::Status {
    if retry_after == Duration::MAX {
        return tonic::Status::resource_exhausted(format!(
            "identity {identity:?}: this call carries more than its whole {what} burst; send \
             smaller batches (no wait would let this one pass)"
        ));
    }
    // Never less than a millisecond: a zero delay would read as "retry now".
    let retry_after = retry_after.max(Duration::from_millis(1));
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        format!(
            "identity {identity:?} is over its {what} rate; retry after {} ms",
            retry_after.as_millis()
        ),
        ErrorDetails::with_retry_info(Some(retry_after)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = RateLimiter::new(Rates {
            calls_per_second: Some(10),
            readings_per_second: Some(100),
            burst_seconds: Some(1),
        });
        for _ in 0..10 {
            assert!(limiter.check_call().is_ok());
        }
        let wait = limiter.check_call().expect_err("over the burst");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limiter.check_readings(100).is_ok());
        assert!(limiter.check_readings(1).is_err());
    }

    #[test]
    fn zero_is_unlimited() {
        let limiter = RateLimiter::new(Rates::UNLIMITED);
        for _ in 0..10_000 {
            assert!(limiter.check_call().is_ok());
        }
        assert!(limiter.check_readings(1_000_000).is_ok());
    }
}
