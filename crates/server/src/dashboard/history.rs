//! The short memory behind the dashboard's plots: one sample a second for the last ten
//! minutes, taken by a task from the telemetry totals and the delivery lanes. Nothing is
//! stored; a restart starts the plots again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossdock_delivery::EndpointStatus;
use crossdock_model::Timestamp;
use tokio::sync::watch;

use crate::api::AppState;
use crate::telemetry::Totals;

/// How often a sample is taken.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How many samples are kept (ten minutes at one a second).
pub const SAMPLES_MAX: usize = 600;

/// Counters and levels read at one instant; rates come from two of them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    pub at_us: i64,
    pub totals: Totals,
    /// Messages delivered, over every lane.
    pub delivered: u64,
    /// Sum and count of commit → delivered latencies, over every lane.
    pub latency_sum_s: f64,
    pub latency_count: u64,
    /// Messages waiting and in flight, over every lane.
    pub depth: u64,
    /// Age of the oldest waiting message of any lane.
    pub oldest_age_s: f64,
    pub dead_letters: u64,
}

impl Reading {
    pub fn of(at: Timestamp, totals: Totals, lanes: &[EndpointStatus]) -> Reading {
        let mut r = Reading {
            at_us: at.as_micros(),
            totals,
            ..Reading::default()
        };
        for l in lanes {
            let st = &l.lane.stats;
            r.delivered += st.delivered;
            r.latency_sum_s += st.latency_sum_s;
            r.latency_count += st.latency_counts.iter().sum::<u64>();
            r.depth += l.lane.depth.by_priority.iter().sum::<u64>() + l.lane.depth.in_flight;
            r.oldest_age_s = r
                .oldest_age_s
                .max(l.lane.oldest_age_ms.unwrap_or(0) as f64 / 1000.0);
            r.dead_letters += l.dead_letters;
        }
        r
    }
}

/// What one second looked like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_us: i64,
    pub events_per_s: f64,
    pub deliveries_per_s: f64,
    /// Mean time of the commits in the interval; `None` without one.
    pub commit_ms: Option<f64>,
    /// Mean commit → delivered latency of the deliveries in the interval; `None` without one.
    pub lag_ms: Option<f64>,
    pub depth: u64,
    pub oldest_age_s: f64,
    pub dead_letters: u64,
}

/// The sample between two readings (`None` when no time passed between them).
pub fn sample(before: &Reading, now: &Reading) -> Option<Sample> {
    let dt_s = (now.at_us - before.at_us) as f64 / 1e6;
    if dt_s <= 0.0 {
        return None;
    }
    let d = |a: u64, b: u64| b.saturating_sub(a);
    let commits = d(before.totals.commits, now.totals.commits);
    let delivered_timed = d(before.latency_count, now.latency_count);
    Some(Sample {
        at_us: now.at_us,
        events_per_s: d(before.totals.events, now.totals.events) as f64 / dt_s,
        deliveries_per_s: d(before.delivered, now.delivered) as f64 / dt_s,
        commit_ms: (commits > 0).then(|| {
            d(before.totals.commit_us, now.totals.commit_us) as f64 / 1000.0 / commits as f64
        }),
        lag_ms: (delivered_timed > 0).then(|| {
            (now.latency_sum_s - before.latency_sum_s).max(0.0) * 1000.0 / delivered_timed as f64
        }),
        depth: now.depth,
        oldest_age_s: now.oldest_age_s,
        dead_letters: now.dead_letters,
    })
}

/// The last [`SAMPLES_MAX`] samples, oldest first, and the reading the next one starts from.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<(VecDeque<Sample>, Option<Reading>)>,
}

impl History {
    pub fn record(&self, reading: Reading) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (samples, last) = &mut *inner;
        if let Some(s) = last.as_ref().and_then(|b| sample(b, &reading)) {
            if samples.len() == SAMPLES_MAX {
                samples.pop_front();
            }
            samples.push_back(s);
        }
        *last = Some(reading);
    }

    /// Oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.iter().copied().collect()
    }
}

/// Samples every [`SAMPLE_EVERY`] until `stop` turns true.
pub fn start(st: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            // A lane status read that fails (the store is stopping) skips a sample.
            if let Ok(lanes) = st.delivery.status().await {
                let reading = Reading::of(Timestamp::now(), st.telemetry.totals(), &lanes);
                st.dashboard.history.record(reading);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at_s: i64, events: u64, delivered: u64, latency: (f64, u64)) -> Reading {
        Reading {
            at_us: at_s * 1_000_000,
            totals: Totals {
                events,
                commits: events / 10,
                commit_us: events * 100,
            },
            delivered,
            latency_sum_s: latency.0,
            latency_count: latency.1,
            depth: 3,
            oldest_age_s: 1.5,
            dead_letters: 1,
        }
    }

    #[test]
    fn rates_come_from_two_readings() {
        let s = sample(
            &reading(10, 100, 5, (1.0, 5)),
            &reading(12, 300, 9, (1.2, 9)),
        )
        .unwrap();
        assert_eq!(s.events_per_s, 100.0);
        assert_eq!(s.deliveries_per_s, 2.0);
        // 20 commits took 20,000 µs between them.
        assert_eq!(s.commit_ms, Some(1.0));
        // 4 deliveries took 0.2 s in all.
        assert!((s.lag_ms.unwrap() - 50.0).abs() < 1e-9, "{s:?}");
        assert_eq!((s.depth, s.oldest_age_s, s.dead_letters), (3, 1.5, 1));
        let idle = sample(
            &reading(12, 300, 9, (1.2, 9)),
            &reading(13, 300, 9, (1.2, 9)),
        )
        .unwrap();
        assert_eq!(
            (idle.events_per_s, idle.commit_ms, idle.lag_ms),
            (0.0, None, None)
        );
        assert!(sample(&reading(12, 0, 0, (0.0, 0)), &reading(12, 1, 1, (0.0, 1))).is_none());
    }

    #[test]
    fn history_keeps_the_last_ten_minutes() {
        let h = History::default();
        h.record(reading(0, 0, 0, (0.0, 0)));
        assert!(h.samples().is_empty(), "one reading makes no rate");
        for t in 1..=(SAMPLES_MAX as i64 + 5) {
            h.record(reading(t, t as u64 * 10, 0, (0.0, 0)));
        }
        let samples = h.samples();
        assert_eq!(samples.len(), SAMPLES_MAX);
        assert_eq!(samples[0].at_us, 6 * 1_000_000, "the oldest went first");
        assert!(samples.iter().all(|s| s.events_per_s == 10.0));
    }
}
