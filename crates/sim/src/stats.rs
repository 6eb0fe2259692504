//! What a simulator counts and the log of requests it received.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::items::Write;

/// Most requests kept in the request log; later ones are only counted
/// ([`StatsSnapshot::requests_unlogged`]). [`crate::Endpoint::take_requests`] empties the log.
pub const REQUEST_LOG_MAX: usize = 1 << 20;

/// Counters, read at one moment. Each counts requests unless it says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Every request that reached the server, whatever it was answered.
    pub requests_received: u64,
    /// Requests answered as a success (2xx with no error in the body), idempotent replays and
    /// reads included.
    pub requests_accepted: u64,
    /// Requests answered by a fault ([`crate::Faults`]): outage, `fail_next`, timeout.
    pub requests_faulted: u64,
    /// Requests refused for their credentials (the webhook receiver: bad or missing signatures).
    pub auth_failures: u64,
    /// Requests that arrived when the rate limit had no budget for them. Each was answered the
    /// way the platform answers a throttled call and applied nothing.
    pub rate_limit_violations: u64,
    /// Item quantities written (one per item per applied write).
    pub items_applied: u64,
    /// Item quantity writes acknowledged but not applied ([`crate::Endpoint::lose_next_writes`]).
    pub writes_lost: u64,
    /// Items refused for good ([`crate::Faults::permanent_items`], unknown items when strict).
    pub items_rejected: u64,
    /// Repeats: a reused idempotency key (Shopify, webhooks), or for SP-API, which has no
    /// idempotency, a body identical to the previous one for the same SKU.
    pub duplicates: u64,
    /// Requests past [`REQUEST_LOG_MAX`] that were counted but not logged.
    pub requests_unlogged: u64,
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// When the request's head arrived, taken before the body is read.
    pub received_at: Instant,
    pub method: String,
    pub path: String,
    /// The external item ids the request named (in the simulator's id form), in request order.
    /// Empty when it named none or a fault answered it before the body was read.
    pub items: Vec<String>,
    /// The status answered; `None` while the request is still being handled or when the client
    /// went away first.
    pub status: Option<u16>,
}

/// Where a request's record sits in the log: its index and the log generation it was opened in
/// (`None` once the log is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(Option<(usize, u64)>);

#[derive(Debug, Default)]
pub(crate) struct Stats {
    received: AtomicU64,
    accepted: AtomicU64,
    faulted: AtomicU64,
    auth_failures: AtomicU64,
    violations: AtomicU64,
    items_applied: AtomicU64,
    writes_lost: AtomicU64,
    items_rejected: AtomicU64,
    duplicates: AtomicU64,
    unlogged: AtomicU64,
    log: Mutex<RequestLog>,
}

#[derive(Debug, Default)]
struct RequestLog {
    records: Vec<RequestRecord>,
    /// Bumped by every take, so a slot handed out before a take points nowhere after it.
    generation: u64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Stats {
    fn log(&self) -> std::sync::MutexGuard<'_, RequestLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an arriving request and opens its record.
    pub fn arrive(&self, received_at: Instant, method: &str, path: &str) -> Slot {
        bump(&self.received, 1);
        let mut log = self.log();
        if log.records.len() >= REQUEST_LOG_MAX {
            bump(&self.unlogged, 1);
            return Slot(None);
        }
        let generation = log.generation;
        log.records.push(RequestRecord {
            received_at,
            method: method.to_owned(),
            path: path.to_owned(),
            items: Vec::new(),
            status: None,
        });
        Slot(Some((log.records.len() - 1, generation)))
    }

    /// Notes the items a request named.
    pub fn touch(&self, slot: Slot, items: Vec<String>) {
        self.update(slot, |record| record.items = items);
    }

    /// Notes the status a request was answered.
    pub fn finish(&self, slot: Slot, status: u16) {
        self.update(slot, |record| record.status = Some(status));
    }

    fn update(&self, slot: Slot, f: impl FnOnce(&mut RequestRecord)) {
        let Slot(Some((index, generation))) = slot else {
            return;
        };
        let mut log = self.log();
        if log.generation == generation && index < log.records.len() {
            f(&mut log.records[index]);
        }
    }

    pub fn accepted(&self) {
        bump(&self.accepted, 1);
    }
    pub fn faulted(&self) {
        bump(&self.faulted, 1);
    }
    pub fn auth_failed(&self) {
        bump(&self.auth_failures, 1);
    }
    pub fn violation(&self) {
        bump(&self.violations, 1);
    }
    /// Counts one quantity a request set: applied, or lost.
    pub fn wrote(&self, write: Write) {
        if write.lost {
            bump(&self.writes_lost, 1);
        } else {
            bump(&self.items_applied, 1);
        }
    }
    pub fn rejected(&self, items: u64) {
        bump(&self.items_rejected, items);
    }
    pub fn duplicate(&self) {
        bump(&self.duplicates, 1);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            requests_received: read(&self.received),
            requests_accepted: read(&self.accepted),
            requests_faulted: read(&self.faulted),
            auth_failures: read(&self.auth_failures),
            rate_limit_violations: read(&self.violations),
            items_applied: read(&self.items_applied),
            writes_lost: read(&self.writes_lost),
            items_rejected: read(&self.items_rejected),
            duplicates: read(&self.duplicates),
            requests_unlogged: read(&self.unlogged),
        }
    }

    /// The log in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log().records.clone()
    }

    /// The log in arrival order, emptied. Requests still in flight keep no record.
    pub fn take_requests(&self) -> Vec<RequestRecord> {
        let mut log = self.log();
        log.generation += 1;
        std::mem::take(&mut log.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_follow_a_request_from_arrival_to_answer() {
        let stats = Stats::default();
        let t0 = Instant::now();
        let slot = stats.arrive(t0, "POST", "/x");
        stats.touch(slot, vec!["A".into()]);
        stats.finish(slot, 200);
        stats.accepted();
        let records = stats.requests();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].received_at, t0);
        assert_eq!(records[0].items, vec!["A".to_string()]);
        assert_eq!(records[0].status, Some(200));
        let snapshot = stats.snapshot();
        assert_eq!(
            (snapshot.requests_received, snapshot.requests_accepted),
            (1, 1)
        );
    }

    #[test]
    fn a_take_empties_the_log_and_orphans_open_slots() {
        let stats = Stats::default();
        let open = stats.arrive(Instant::now(), "GET", "/a");
        assert_eq!(stats.take_requests().len(), 1);
        let next = stats.arrive(Instant::now(), "GET", "/b");
        // The slot opened before the take must not write over the new request's record.
        stats.finish(open, 500);
        stats.finish(next, 200);
        let records = stats.requests();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].path, "/b");
        assert_eq!(records[0].status, Some(200));
    }
}
