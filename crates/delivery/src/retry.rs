//! Retry timing and the circuit breaker of an endpoint.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// Exponential backoff with full jitter: attempt `n` waits a uniformly random time in
/// `[0, min(cap, base · 2^n))`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "RetryConfig::default_base_ms")]
    pub base_ms: u64,
    #[serde(default = "RetryConfig::default_cap_ms")]
    pub cap_ms: u64,
    /// Retryable failures of one message, while its endpoint is otherwise healthy (breaker
    /// closed), before it is parked. Failures while the breaker is open never park anything.
    #[serde(default = "RetryConfig::default_max_attempts")]
    pub max_attempts: u32,
}

impl RetryConfig {
    fn default_base_ms() -> u64 {
        200
    }
    fn default_cap_ms() -> u64 {
        60_000
    }
    fn default_max_attempts() -> u32 {
        25
    }

    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self
            .base_ms
            .saturating_mul(1u64 << attempt.min(32))
            .min(self.cap_ms);
        Duration::from_micros((ceiling as f64 * 1000.0 * unit.clamp(0.0, 1.0)) as u64)
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            base_ms: Self::default_base_ms(),
            cap_ms: Self::default_cap_ms(),
            max_attempts: Self::default_max_attempts(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed calls that open the breaker.
    #[serde(default = "BreakerConfig::default_failures")]
    pub failures: u32,
    /// How long it stays open before a half-open probe; doubles on each failed probe up to
    /// `open_max_ms`.
    #[serde(default = "BreakerConfig::default_open_ms")]
    pub open_ms: u64,
    #[serde(default = "BreakerConfig::default_open_max_ms")]
    pub open_max_ms: u64,
}

impl BreakerConfig {
    fn default_failures() -> u32 {
        5
    }
    fn default_open_ms() -> u64 {
        2_000
    }
    fn default_open_max_ms() -> u64 {
        30_000
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: Self::default_failures(),
            open_ms: Self::default_open_ms(),
            open_max_ms: Self::default_open_max_ms(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// Closed: calls flow, failures counted. Open: no calls until `until`. Half-open: one probe call;
/// success closes, failure opens again for longer.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    consecutive: u32,
    until: Instant,
    open_for: Duration,
    probe_in_flight: bool,
    /// Times the breaker opened, for tests and metrics.
    pub opened: u64,
    pub closed_again: u64,
}

impl Breaker {
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        Breaker {
            config,
            state: BreakerState::Closed,
            consecutive: 0,
            until: now,
            open_for: Duration::from_millis(config.open_ms),
            probe_in_flight: false,
            opened: 0,
            closed_again: 0,
        }
    }

    /// The state as of `now` (an open breaker whose time is up is half-open).
    pub fn state(&mut self, now: Instant) -> BreakerState {
        if self.state == BreakerState::Open && now >= self.until {
            self.state = BreakerState::HalfOpen;
            self.probe_in_flight = false;
        }
        self.state
    }

    /// How long until a call may go out (zero: now). A half-open breaker lets one probe through.
    pub fn ready_in(&mut self, now: Instant) -> Option<Duration> {
        match self.state(now) {
            BreakerState::Closed => Some(Duration::ZERO),
            BreakerState::Open => Some(self.until - now),
            BreakerState::HalfOpen if self.probe_in_flight => None,
            BreakerState::HalfOpen => Some(Duration::ZERO),
        }
    }

    /// A call is going out.
    pub fn on_send(&mut self, now: Instant) {
        if self.state(now) == BreakerState::HalfOpen {
            self.probe_in_flight = true;
        }
    }

    /// The endpoint answered (even if it refused a message: it is up).
    pub fn on_success(&mut self) {
        if self.state != BreakerState::Closed {
            self.closed_again += 1;
        }
        self.state = BreakerState::Closed;
        self.consecutive = 0;
        self.probe_in_flight = false;
        self.open_for = Duration::from_millis(self.config.open_ms);
    }

    /// A call failed in a way that says the endpoint is unwell (timeout, connection, 5xx, 429).
    pub fn on_failure(&mut self, now: Instant) {
        match self.state(now) {
            BreakerState::HalfOpen => {
                self.open_for =
                    (self.open_for * 2).min(Duration::from_millis(self.config.open_max_ms));
                self.open(now);
            }
            BreakerState::Closed => {
                self.consecutive += 1;
                if self.consecutive >= self.config.failures {
                    self.open(now);
                }
            }
            BreakerState::Open => {}
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.until = now + self.open_for;
        self.probe_in_flight = false;
        self.opened += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_full_jitter() {
        let r = RetryConfig {
            base_ms: 100,
            cap_ms: 1_000,
            max_attempts: 5,
        };
        assert_eq!(r.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(r.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(r.delay(4, 1.0), Duration::from_millis(1_000));
        assert_eq!(r.delay(60, 1.0), Duration::from_millis(1_000));
        assert_eq!(r.delay(3, 0.0), Duration::ZERO);
        assert_eq!(r.delay(3, 0.5), Duration::from_millis(400));
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let t0 = Instant::now();
        let cfg = BreakerConfig {
            failures: 3,
            open_ms: 1_000,
            open_max_ms: 4_000,
        };
        let mut b = Breaker::new(cfg, t0);
        for _ in 0..2 {
            b.on_failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.on_failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.ready_in(t0), Some(Duration::from_secs(1)));

        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert_eq!(b.ready_in(t1), Some(Duration::ZERO));
        b.on_send(t1);
        assert_eq!(b.ready_in(t1), None, "one probe at a time");
        b.on_failure(t1);
        assert_eq!(
            b.ready_in(t1),
            Some(Duration::from_secs(2)),
            "longer after a failed probe"
        );

        let t2 = t1 + Duration::from_secs(2);
        b.on_send(t2);
        b.on_success();
        assert_eq!(b.state(t2), BreakerState::Closed);
        assert_eq!((b.opened, b.closed_again), (2, 1));
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig::default(), t0);
        for _ in 0..4 {
            b.on_failure(t0);
        }
        b.on_success();
        for _ in 0..4 {
            b.on_failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
    }
}
