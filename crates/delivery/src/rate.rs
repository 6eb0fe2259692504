//! Rate limits per endpoint. The configured limit is never exceeded; what the target reports
//! about its own budget (`X-Shopify-Shop-Api-Call-Limit`, GraphQL `throttleStatus`,
//! `x-amzn-RateLimit-Limit`, `Retry-After`) can only make the lane slower, never faster.
//!
//! * **token**: a bucket of `burst` requests refilled at `rate` per second; bursts are allowed.
//! * **leaky**: a leaky bucket used as a queue: calls leave at a steady `rate`, no bursts.
//! * **cost**: a bucket of `burst` points refilled at `rate` points per second, each call
//!   costing what the target charges (GraphQL query cost); the estimate taken before a call is
//!   corrected by the cost the target reports after it.
//!
//! A limiter starts empty: a hub that just started cannot know how much of the target's budget
//! an earlier run used, so it earns its budget like a client that has been quiet would.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::target::RateFeedback;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Token,
    Leaky,
    Cost,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Token => "token",
            LimitKind::Leaky => "leaky",
            LimitKind::Cost => "cost",
        }
    }
}

/// An endpoint's configured limit.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    pub kind: LimitKind,
    /// Requests (or points) per second.
    pub rate: f64,
    /// Bucket size in requests (or points). Ignored by `leaky`.
    #[serde(default = "one")]
    pub burst: f64,
}

fn one() -> f64 {
    1.0
}

impl RateConfig {
    pub fn token(rate: f64, burst: f64) -> Self {
        RateConfig {
            kind: LimitKind::Token,
            rate,
            burst,
        }
    }

    pub fn cost(rate: f64, burst: f64) -> Self {
        RateConfig {
            kind: LimitKind::Cost,
            rate,
            burst,
        }
    }

    pub fn leaky(rate: f64) -> Self {
        RateConfig {
            kind: LimitKind::Leaky,
            rate,
            burst: 1.0,
        }
    }

    /// Why this limit cannot work, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Some(format!("rate must be a positive number, not {}", self.rate));
        }
        if !(self.burst.is_finite() && self.burst >= 1.0) {
            return Some(format!("burst must be at least 1, not {}", self.burst));
        }
        None
    }
}

/// Budget refilled continuously: `level` of `capacity`, `rate` per second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    capacity: f64,
    rate: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let dt = (now - self.at).as_secs_f64();
            self.level = (self.level + dt * self.rate).min(self.capacity);
            self.at = now;
        }
    }

    /// How long until `cost` is available (a cost above the capacity waits for a full bucket).
    fn wait(&self, cost: f64) -> Duration {
        let need = cost.min(self.capacity) - self.level;
        if need <= 0.0 {
            Duration::ZERO
        } else {
            // Round up to the microsecond so that waiting exactly this long is always enough.
            Duration::from_micros((need / self.rate * 1e6).ceil() as u64)
        }
    }
}

/// What a limiter allows right now, for the endpoints API.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Budget {
    pub kind: LimitKind,
    pub available: f64,
    pub capacity: f64,
    pub rate: f64,
    /// Set while a `Retry-After` holds the endpoint.
    pub paused_ms: Option<u64>,
}

impl serde::Serialize for LimitKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Limiter {
    config: RateConfig,
    own: Bucket,
    /// The target's own bucket as it last reported it.
    target: Option<Bucket>,
    paused_until: Option<Instant>,
}

impl Limiter {
    pub fn new(config: RateConfig, now: Instant) -> Self {
        let capacity = match config.kind {
            LimitKind::Leaky => 1.0,
            LimitKind::Token | LimitKind::Cost => config.burst,
        };
        Limiter {
            config,
            own: Bucket {
                capacity,
                rate: config.rate,
                level: 0.0,
                at: now,
            },
            target: None,
            paused_until: None,
        }
    }

    pub fn config(&self) -> RateConfig {
        self.config
    }

    /// How long to wait before a call costing `cost` may be sent; zero means now.
    pub fn ready_in(&mut self, now: Instant, cost: f64) -> Duration {
        let cost = self.unit_cost(cost);
        self.own.refill(now);
        let mut wait = self.own.wait(cost);
        if let Some(t) = &mut self.target {
            t.refill(now);
            wait = wait.max(t.wait(cost));
        }
        if let Some(until) = self.paused_until {
            if until > now {
                wait = wait.max(until - now);
            } else {
                self.paused_until = None;
            }
        }
        wait
    }

    /// Spends the budget of a call being sent now (after [`Limiter::ready_in`] said zero).
    pub fn take(&mut self, now: Instant, cost: f64) {
        let cost = self.unit_cost(cost);
        self.own.refill(now);
        self.own.level -= cost;
        if let Some(t) = &mut self.target {
            t.refill(now);
            t.level -= cost;
        }
    }

    /// Learns from the target's answer to a call that was charged `estimated`.
    pub fn observe(&mut self, now: Instant, feedback: &RateFeedback, estimated: f64) {
        if let Some(after) = feedback.retry_after {
            let until = now + after;
            self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        }
        if self.config.kind == LimitKind::Cost
            && let Some(actual) = feedback.cost
            && actual.is_finite()
            && actual >= 0.0
        {
            // Settle the estimate against what the target charged: give back the difference,
            // or take the rest (the bucket may go below zero and refill from there).
            self.own.refill(now);
            self.own.level = (self.own.level + estimated - actual).min(self.own.capacity);
        }
        let sane = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
        let (available, capacity, rate) = (
            sane(feedback.available),
            sane(feedback.capacity),
            sane(feedback.rate).filter(|r| *r > 0.0),
        );
        match (available, rate) {
            (Some(level), _) => {
                let prev = self.target;
                let capacity = capacity
                    .or(prev.map(|b| b.capacity))
                    .unwrap_or(self.own.capacity);
                let rate = rate.or(prev.map(|b| b.rate)).unwrap_or(self.own.rate);
                self.target = Some(Bucket {
                    capacity,
                    rate,
                    level: level.min(capacity),
                    at: now,
                });
            }
            (None, Some(rate)) => {
                // A usage plan rate without a level (`x-amzn-RateLimit-Limit`): never faster than
                // the configured rate, slower if the target says so.
                self.own.refill(now);
                self.own.rate = rate.min(self.config.rate);
            }
            (None, None) => {}
        }
    }

    pub fn budget(&mut self, now: Instant) -> Budget {
        self.own.refill(now);
        let mut available = self.own.level;
        if let Some(t) = &mut self.target {
            t.refill(now);
            available = available.min(t.level);
        }
        Budget {
            kind: self.config.kind,
            available: available.max(0.0),
            capacity: self.own.capacity,
            rate: self.own.rate,
            paused_ms: self
                .paused_until
                .filter(|u| *u > now)
                .map(|u| (u - now).as_millis() as u64),
        }
    }

    fn unit_cost(&self, cost: f64) -> f64 {
        match self.config.kind {
            LimitKind::Cost => cost.max(0.0),
            // Requests are counted, whatever the target would charge.
            LimitKind::Token | LimitKind::Leaky => {
                if cost > 0.0 {
                    cost.ceil()
                } else {
                    0.0
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends as fast as the limiter allows for `secs` and returns the send times.
    fn drive(limiter: &mut Limiter, start: Instant, secs: f64, cost: f64) -> Vec<Instant> {
        let mut now = start;
        let end = start + Duration::from_secs_f64(secs);
        let mut sent = Vec::new();
        while now < end {
            let wait = limiter.ready_in(now, cost);
            if wait.is_zero() {
                limiter.take(now, cost);
                sent.push(now);
            } else {
                now += wait;
            }
        }
        sent
    }

    /// Checks the sends against an exact token bucket that starts full (the most a target
    /// could allow).
    fn conforms(sent: &[Instant], start: Instant, rate: f64, burst: f64, cost: f64) -> bool {
        let mut level = burst;
        let mut at = start;
        for &t in sent {
            level = (level + (t - at).as_secs_f64() * rate).min(burst);
            at = t;
            if level + 1e-9 < cost {
                return false;
            }
            level -= cost;
        }
        true
    }

    #[test]
    fn token_bucket_never_exceeds_its_rate_and_burst() {
        let start = Instant::now();
        let mut l = Limiter::new(RateConfig::token(5.0, 5.0), start);
        let sent = drive(&mut l, start, 10.0, 1.0);
        assert!(conforms(&sent, start, 5.0, 5.0, 1.0));
        // Starts empty, so 10 s give at most 50 calls (and, once full, bursts of 5).
        assert!((48..=50).contains(&sent.len()), "{} calls", sent.len());
    }

    #[test]
    fn token_bucket_allows_a_burst_once_refilled() {
        let start = Instant::now();
        let mut l = Limiter::new(RateConfig::token(5.0, 5.0), start);
        let later = start + Duration::from_secs(2);
        for _ in 0..5 {
            assert_eq!(l.ready_in(later, 1.0), Duration::ZERO);
            l.take(later, 1.0);
        }
        assert_eq!(l.ready_in(later, 1.0), ms(200));
    }

    #[test]
    fn leaky_bucket_spaces_calls_evenly() {
        let start = Instant::now();
        let mut l = Limiter::new(RateConfig::leaky(2.0), start);
        let later = start + Duration::from_secs(60);
        assert_eq!(l.ready_in(later, 1.0), Duration::ZERO);
        l.take(later, 1.0);
        assert_eq!(
            l.ready_in(later, 1.0),
            ms(500),
            "no burst after a quiet minute"
        );
    }

    #[test]
    fn cost_bucket_charges_points_and_refunds_the_difference() {
        let start = Instant::now();
        let mut l = Limiter::new(RateConfig::cost(100.0, 1000.0), start);
        let t = start + Duration::from_secs(10);
        assert_eq!(l.budget(t).available, 1000.0);
        l.take(t, 10.0);
        assert_eq!(l.budget(t).available, 990.0);
        let fb = RateFeedback {
            cost: Some(4.0),
            ..RateFeedback::default()
        };
        l.observe(t, &fb, 10.0);
        assert_eq!(l.budget(t).available, 996.0);
    }

    #[test]
    fn a_call_dearer_than_estimated_is_charged_in_full() {
        let start = Instant::now();
        let mut l = Limiter::new(RateConfig::cost(100.0, 1000.0), start);
        let t = start + Duration::from_secs(10);
        l.take(t, 10.0);
        let fb = RateFeedback {
            cost: Some(50.0),
            ..RateFeedback::default()
        };
        l.observe(t, &fb, 10.0);
        assert_eq!(l.budget(t).available, 950.0);
    }

    #[test]
    fn a_target_reporting_less_budget_slows_the_lane() {
        let start = Instant::now();
        let mut l = Limiter::new(RateConfig::cost(100.0, 1000.0), start);
        let t = start + Duration::from_secs(10);
        let fb = RateFeedback {
            available: Some(5.0),
            capacity: Some(1000.0),
            rate: Some(50.0),
            ..RateFeedback::default()
        };
        l.observe(t, &fb, 10.0);
        // 5 of 10 points available, refilling at the target's 50/s: 100 ms.
        assert_eq!(l.ready_in(t, 10.0), ms(100));
    }

    #[test]
    fn a_target_reporting_more_never_lifts_the_configured_limit() {
        let start = Instant::now();
        let mut l = Limiter::new(RateConfig::token(5.0, 5.0), start);
        let fb = RateFeedback {
            rate: Some(50.0),
            ..RateFeedback::default()
        };
        l.observe(start, &fb, 1.0);
        let sent = drive(&mut l, start, 4.0, 1.0);
        assert!(conforms(&sent, start, 5.0, 5.0, 1.0));
        let fb = RateFeedback {
            available: Some(1e9),
            capacity: Some(1e9),
            rate: Some(1e9),
            ..RateFeedback::default()
        };
        l.observe(start, &fb, 1.0);
        let sent = drive(&mut l, start + Duration::from_secs(4), 4.0, 1.0);
        assert!(conforms(&sent, start, 5.0, 5.0, 1.0));
    }

    #[test]
    fn amazon_rate_header_lowers_the_rate() {
        let start = Instant::now();
        let mut l = Limiter::new(RateConfig::token(5.0, 5.0), start);
        let fb = RateFeedback {
            rate: Some(0.5),
            ..RateFeedback::default()
        };
        l.observe(start, &fb, 1.0);
        let sent = drive(&mut l, start, 10.0, 1.0);
        assert!(conforms(&sent, start, 0.5, 5.0, 1.0));
        assert!(sent.len() <= 5, "{} calls at 0.5/s", sent.len());
    }

    #[test]
    fn retry_after_pauses_the_endpoint() {
        let start = Instant::now();
        let mut l = Limiter::new(RateConfig::token(100.0, 100.0), start);
        let t = start + Duration::from_secs(5);
        let fb = RateFeedback {
            retry_after: Some(Duration::from_secs(2)),
            ..RateFeedback::default()
        };
        l.observe(t, &fb, 1.0);
        assert_eq!(l.ready_in(t, 1.0), Duration::from_secs(2));
        assert_eq!(l.budget(t).paused_ms, Some(2000));
        assert_eq!(l.ready_in(t + Duration::from_secs(2), 1.0), Duration::ZERO);
    }

    #[test]
    fn bad_configs_are_named() {
        assert!(RateConfig::token(0.0, 5.0).problem().is_some());
        assert!(RateConfig::token(5.0, 0.5).problem().is_some());
        assert!(RateConfig::token(f64::NAN, 5.0).problem().is_some());
        assert!(RateConfig::cost(100.0, 1000.0).problem().is_none());
    }
}
