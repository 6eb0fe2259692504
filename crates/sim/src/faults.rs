//! Failures a test switches on and off while a simulator runs.
//!
//! Every simulator checks its [`Faults`] for each request as it arrives, before it looks at
//! credentials, limits or the body: a request that a fault answers applies nothing. Faults are
//! shared by the handle and the server, so a test changes them at any time.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;

/// The failures in force. All off by default.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    latency: Duration,
    fail_next: u32,
    fail_status: Option<StatusCode>,
    hang: Option<Duration>,
    outage: bool,
    permanent: HashSet<String>,
}

/// What the faults decided for one request when it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FaultPlan {
    /// Added before the request is handled (faulted or not).
    pub latency: Duration,
    pub outcome: FaultOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultOutcome {
    /// Handle the request normally.
    Serve,
    /// Hang this long, then answer 504 Gateway Timeout without applying anything.
    Hang(Duration),
    /// Answer this status at once without applying anything.
    Answer(StatusCode),
}

impl Faults {
    fn state(&self) -> MutexGuard<'_, FaultState> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `extra` to every request before it is handled (`Duration::ZERO` turns it off). The
    /// request is then served normally.
    pub fn latency(&self, extra: Duration) {
        self.state().latency = extra;
    }

    /// The next `n` requests answer `status` (a 5xx) and apply nothing.
    ///
    /// # Panics
    /// When `status` is not a 5xx status: other failures have their own switches.
    pub fn fail_next(&self, n: u32, status: u16) {
        assert!(
            (500..=599).contains(&status),
            "fail_next takes a 5xx status, found {status}"
        );
        let mut state = self.state();
        state.fail_next = n;
        state.fail_status = Some(StatusCode::from_u16(status).expect("a 5xx status is valid"));
    }

    /// `Some(d)`: every request hangs for `d`, then answers 504 Gateway Timeout and applies
    /// nothing (so a client with a shorter timeout times out). `None` turns it off.
    pub fn timeout(&self, hang: Option<Duration>) {
        self.state().hang = hang;
    }

    /// While on, every request answers 503 Service Unavailable and applies nothing.
    pub fn outage(&self, on: bool) {
        self.state().outage = on;
    }

    /// Replaces the set of external item ids the platform refuses for good. Requests that touch
    /// them get the platform's permanent rejection for those items (each simulator documents
    /// its own); reads answer as for an item that is not there.
    pub fn permanent_items<I, S>(&self, ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.state().permanent = ids.into_iter().map(Into::into).collect();
    }

    /// Turns every fault off.
    pub fn clear(&self) {
        *self.state() = FaultState::default();
    }

    /// Whether `id` is one of the [`Faults::permanent_items`].
    pub fn is_permanent(&self, id: &str) -> bool {
        self.state().permanent.contains(id)
    }

    /// Decides for one arriving request, consuming one of [`Faults::fail_next`] when it is used.
    /// An outage or a hang does not consume it.
    pub(crate) fn plan(&self) -> FaultPlan {
        let mut state = self.state();
        let outcome = if let Some(hang) = state.hang {
            FaultOutcome::Hang(hang)
        } else if state.outage {
            FaultOutcome::Answer(StatusCode::SERVICE_UNAVAILABLE)
        } else if state.fail_next > 0 {
            state.fail_next -= 1;
            FaultOutcome::Answer(
                state
                    .fail_status
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )
        } else {
            FaultOutcome::Serve
        };
        FaultPlan {
            latency: state.latency,
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_is_consumed_one_request_at_a_time() {
        let faults = Faults::default();
        faults.fail_next(2, 502);
        let bad = FaultOutcome::Answer(StatusCode::BAD_GATEWAY);
        assert_eq!(faults.plan().outcome, bad);
        assert_eq!(faults.plan().outcome, bad);
        assert_eq!(faults.plan().outcome, FaultOutcome::Serve);
    }

    #[test]
    fn an_outage_wins_over_fail_next_and_keeps_it() {
        let faults = Faults::default();
        faults.fail_next(1, 500);
        faults.outage(true);
        let unavailable = FaultOutcome::Answer(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(faults.plan().outcome, unavailable);
        faults.outage(false);
        assert_eq!(
            faults.plan().outcome,
            FaultOutcome::Answer(StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert_eq!(faults.plan().outcome, FaultOutcome::Serve);
    }

    #[test]
    fn latency_comes_with_every_plan_and_clear_resets_all() {
        let faults = Faults::default();
        faults.latency(Duration::from_millis(30));
        faults.timeout(Some(Duration::from_secs(1)));
        faults.permanent_items(["A"]);
        let plan = faults.plan();
        assert_eq!(plan.latency, Duration::from_millis(30));
        assert_eq!(plan.outcome, FaultOutcome::Hang(Duration::from_secs(1)));
        assert!(faults.is_permanent("A") && !faults.is_permanent("B"));
        faults.clear();
        assert_eq!(
            faults.plan(),
            FaultPlan {
                latency: Duration::ZERO,
                outcome: FaultOutcome::Serve
            }
        );
        assert!(!faults.is_permanent("A"));
    }

    #[test]
    #[should_panic(expected = "5xx")]
    fn fail_next_refuses_a_non_5xx_status() {
        Faults::default().fail_next(1, 404);
    }
}
