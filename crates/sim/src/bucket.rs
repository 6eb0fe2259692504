//! The rate limiter every simulator uses: a token bucket with continuous refill.
//!
//! One type covers the three shapes the targets document:
//! - SP-API's per-operation token bucket ("rate" tokens per second, "burst" bucket size);
//! - Shopify's GraphQL leaky bucket of cost points (`restoreRate` per second,
//!   `maximumAvailable`), where a call needs its whole requested cost to be available;
//! - the plain request buckets hosts put in front of WooCommerce and webhook receivers.
//!
//! The bucket is exact on purpose: it refills continuously from the time elapsed (in `f64`
//! seconds) and refuses only when the budget is really short. A client that paces itself by the
//! documented limit must never be counted as a violation, so there is no extra strictness: the
//! only tolerance is [`ROUNDING_SLACK`] for `f64` rounding in the refill.

use std::time::{Duration, Instant};

/// Budget the bucket lets go missing to `f64` rounding. A client that waits exactly
/// `cost / rate` seconds computes the same refill through a different sum of floats and may land
/// a few ulps short; that must not count as a violation.
pub const ROUNDING_SLACK: f64 = 1e-9;

/// A documented limit: `rate_per_s` tokens come back every second, up to `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub rate_per_s: f64,
    pub burst: f64,
}

impl RateLimit {
    pub const fn new(rate_per_s: f64, burst: f64) -> Self {
        RateLimit { rate_per_s, burst }
    }

    /// `None` when the limit can be used; else what is wrong with it, for the start error.
    pub(crate) fn problem(&self) -> Option<String> {
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0) {
            return Some(format!(
                "rate_per_s must be a number above 0, found {}",
                self.rate_per_s
            ));
        }
        if !(self.burst.is_finite() && self.burst >= 1.0) {
            return Some(format!("burst must be at least 1, found {}", self.burst));
        }
        None
    }
}

/// The answer to one [`TokenBucket::take`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Take {
    /// The cost was taken; `left` is the budget after it.
    Granted { left: f64 },
    /// Not enough budget: nothing was taken. `available` is the budget now and `wait` how long
    /// until `cost` would be available.
    Refused { available: f64, wait: Duration },
}

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    level: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket that starts full at `now`, as the platforms' buckets do for a new client.
    pub fn full(limit: RateLimit, now: Instant) -> Self {
        TokenBucket {
            limit,
            level: limit.burst,
            updated: now,
        }
    }

    /// Adds what came back since the last update. Requests handled out of arrival order (an
    /// earlier `now` after a later one) refill nothing and never move time backwards.
    fn refill(&mut self, now: Instant) {
        if now > self.updated {
            let elapsed_s = (now - self.updated).as_secs_f64();
            self.level = (self.level + elapsed_s * self.limit.rate_per_s).min(self.limit.burst);
            self.updated = now;
        }
    }

    /// Takes `cost` tokens if the budget at `now` covers it.
    pub fn take(&mut self, now: Instant, cost: f64) -> Take {
        debug_assert!(
            cost >= 0.0 && cost <= self.limit.burst,
            "cost {cost} never fits"
        );
        self.refill(now);
        if self.level + ROUNDING_SLACK >= cost {
            self.level = (self.level - cost).max(0.0);
            Take::Granted { left: self.level }
        } else {
            let wait_s = (cost - self.level) / self.limit.rate_per_s;
            Take::Refused {
                available: self.level,
                wait: Duration::from_secs_f64(wait_s),
            }
        }
    }

    /// The budget at `now`.
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.level
    }

    /// Returns `amount` taken earlier and not used (Shopify refunds the requested cost a query
    /// did not spend); never above the burst. The budget after it.
    pub fn give_back(&mut self, now: Instant, amount: f64) -> f64 {
        debug_assert!(amount >= 0.0, "give_back {amount}");
        self.refill(now);
        self.level = (self.level + amount.max(0.0)).min(self.limit.burst);
        self.level
    }
}

/// `Retry-After` in whole seconds for a refused request: at least 1, rounded up.
pub(crate) fn retry_after_s(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn what_is_given_back_never_fills_past_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(RateLimit::new(1.0, 10.0), t0);
        assert!(matches!(bucket.take(t0, 8.0), Take::Granted { .. }));
        assert_eq!(bucket.give_back(t0, 5.0), 7.0);
        assert_eq!(bucket.give_back(t0, 5.0), 10.0);
    }

    #[test]
    fn starts_full_and_refuses_past_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(RateLimit::new(5.0, 5.0), t0);
        for _ in 0..5 {
            assert!(matches!(bucket.take(t0, 1.0), Take::Granted { .. }));
        }
        let Take::Refused { available, wait } = bucket.take(t0, 1.0) else {
            panic!("the sixth request at the same instant must be refused");
        };
        assert_eq!(available, 0.0);
        assert_eq!(wait, Duration::from_millis(200));
    }

    #[test]
    fn refills_continuously_up_to_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(RateLimit::new(100.0, 1000.0), t0);
        assert!(matches!(bucket.take(t0, 1000.0), Take::Granted { left } if left == 0.0));
        // 0.05 s at 100 points/s is 5 points: a 10-point mutation is refused, a 2-point read is not.
        assert!(matches!(
            bucket.take(at(t0, 0.05), 10.0),
            Take::Refused { .. }
        ));
        assert!(matches!(
            bucket.take(at(t0, 0.05), 2.0),
            Take::Granted { .. }
        ));
        // Never beyond the burst, however long the pause.
        assert_eq!(bucket.available(at(t0, 3600.0)), 1000.0);
    }

    #[test]
    fn a_refused_request_takes_nothing() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(RateLimit::new(1.0, 10.0), t0);
        assert!(matches!(bucket.take(t0, 8.0), Take::Granted { .. }));
        assert!(matches!(bucket.take(t0, 5.0), Take::Refused { .. }));
        assert!(matches!(bucket.take(t0, 2.0), Take::Granted { left } if left == 0.0));
    }

    #[test]
    fn a_client_pacing_exactly_at_the_rate_is_never_refused() {
        // The documented SP-API rates, including the awkward ones (0.0083/s, 0.0222/s).
        for (rate, burst) in [
            (5.0, 5.0),
            (0.5, 15.0),
            (0.0083, 15.0),
            (0.0222, 10.0),
            (2.0, 15.0),
        ] {
            let t0 = Instant::now();
            let mut bucket = TokenBucket::full(RateLimit::new(rate, burst), t0);
            // Spend the burst, then one request every 1/rate seconds for 1,000 periods.
            for _ in 0..burst as usize {
                assert!(matches!(bucket.take(t0, 1.0), Take::Granted { .. }));
            }
            for k in 1..=1_000u32 {
                let now = at(t0, f64::from(k) / rate);
                assert!(
                    matches!(bucket.take(now, 1.0), Take::Granted { .. }),
                    "rate {rate}: request {k} paced at the rate was refused"
                );
            }
            // And one more request in the same period is refused.
            let now = at(t0, 1_000.0 / rate);
            assert!(matches!(bucket.take(now, 1.0), Take::Refused { .. }));
        }
    }

    #[test]
    fn out_of_order_arrivals_do_not_move_time_backwards() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(RateLimit::new(1.0, 1.0), t0);
        assert!(matches!(
            bucket.take(at(t0, 1.0), 1.0),
            Take::Granted { .. }
        ));
        // An earlier arrival handled later refills nothing.
        assert!(matches!(
            bucket.take(at(t0, 0.5), 1.0),
            Take::Refused { .. }
        ));
        assert!(matches!(
            bucket.take(at(t0, 2.0), 1.0),
            Take::Granted { .. }
        ));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_s(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_s(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_s(Duration::ZERO), 1);
    }

    #[test]
    fn limits_are_checked() {
        assert!(RateLimit::new(5.0, 5.0).problem().is_none());
        assert!(
            RateLimit::new(0.0, 5.0)
                .problem()
                .unwrap()
                .contains("rate_per_s")
        );
        assert!(
            RateLimit::new(1.0, 0.5)
                .problem()
                .unwrap()
                .contains("burst")
        );
        assert!(RateLimit::new(f64::NAN, 5.0).problem().is_some());
    }
}
