//! An exact token bucket for the SP-API feed operations, which have their own per-operation
//! limits (far slower than the listings patch limit the lane enforces).
//!
//! Unlike the lane's limiters this bucket starts full: Amazon's own bucket for an operation
//! refills to its burst while the seller is quiet, and the cost of guessing wrong after a
//! restart is one retryable 429 on a feed call, which the lane backs off from.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// Rate and burst of one operation, as SP-API documents them.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// Tokens added per second.
    pub rate_per_s: f64,
    /// Bucket size.
    pub burst: f64,
}

impl BucketConfig {
    pub const fn new(rate_per_s: f64, burst: f64) -> Self {
        BucketConfig { rate_per_s, burst }
    }

    /// Why this limit cannot work, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0) {
            return Some(format!(
                "rate_per_s must be more than 0, found {}",
                self.rate_per_s
            ));
        }
        if !(self.burst.is_finite() && self.burst >= 1.0) {
            return Some(format!("burst must be at least 1, found {}", self.burst));
        }
        None
    }
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket. `config` must have passed [`BucketConfig::problem`].
    pub fn new(config: BucketConfig, now: Instant) -> Self {
        assert!(config.problem().is_none(), "{config:?}");
        TokenBucket {
            rate_per_s: config.rate_per_s,
            burst: config.burst,
            tokens: config.burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A clock that seems to go back (a caller's stale `now`) adds nothing.
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
        self.at = self.at.max(now);
    }

    /// Tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Takes `cost` tokens, or says how long until they will be there.
    pub fn try_take(&mut self, now: Instant, cost: f64) -> Result<(), Duration> {
        debug_assert!(cost > 0.0 && cost <= self.burst, "cost {cost}");
        self.refill(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            debug_assert!(self.tokens >= 0.0);
            Ok(())
        } else {
            let missing = cost - self.tokens;
            Err(Duration::from_secs_f64(missing / self.rate_per_s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spends_the_burst_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(BucketConfig::new(0.5, 2.0), t0);
        assert_eq!(b.try_take(t0, 1.0), Ok(()));
        assert_eq!(b.try_take(t0, 1.0), Ok(()));
        assert_eq!(b.try_take(t0, 1.0), Err(Duration::from_secs(2)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.try_take(t1, 1.0), Err(Duration::from_secs(1)));
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(b.try_take(t2, 1.0), Ok(()));
        // Never above the burst.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.available(later), 2.0);
        // A stale `now` neither refills nor panics.
        assert_eq!(b.try_take(t0, 1.0), Ok(()));
        assert_eq!(b.available(t0), 1.0);
    }

    #[test]
    fn the_create_feed_limit_allows_one_feed_per_two_minutes_after_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(BucketConfig::new(0.0083, 15.0), t0);
        for _ in 0..15 {
            assert!(b.try_take(t0, 1.0).is_ok());
        }
        let wait = b.try_take(t0, 1.0).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0 / 0.0083).abs() < 0.01, "{wait:?}");
    }

    #[test]
    fn refuses_limits_that_cannot_work() {
        assert!(BucketConfig::new(0.0, 1.0).problem().is_some());
        assert!(BucketConfig::new(1.0, 0.5).problem().is_some());
        assert!(BucketConfig::new(f64::NAN, 1.0).problem().is_some());
        assert!(BucketConfig::new(0.0222, 10.0).problem().is_none());
    }
}
