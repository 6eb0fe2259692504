//! What every simulator shares: its faults, its counters and request log, the quantities it
//! shows, and the gate every request passes first.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::faults::{FaultOutcome, Faults};
use crate::items::ItemBook;
use crate::stats::{RequestRecord, Slot, Stats, StatsSnapshot};

/// The state and steering every simulator has. Each simulator dereferences to its `Endpoint`,
/// so `sim.faults()`, `sim.stats()`, `sim.quantity(id)` work on all of them.
///
/// Item ids are external ids in the simulator's own form (each simulator documents it); the
/// methods here accept any form the simulator knows and convert it.
#[derive(Debug)]
pub struct Endpoint {
    faults: Faults,
    pub(crate) stats: Stats,
    items: Mutex<ItemBook>,
    /// Every `X-Correlation-Id` received, in arrival order.
    correlations: Mutex<Vec<String>>,
    canonical_id: fn(&str) -> String,
    fault_answer: fn(StatusCode) -> Response,
    shutdown: watch::Receiver<bool>,
}

impl Endpoint {
    pub(crate) fn new(
        canonical_id: fn(&str) -> String,
        fault_answer: fn(StatusCode) -> Response,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Endpoint {
            faults: Faults::default(),
            stats: Stats::default(),
            items: Mutex::new(ItemBook::default()),
            correlations: Mutex::new(Vec::new()),
            canonical_id,
            fault_answer,
            shutdown,
        }
    }

    /// The failures in force; change them at any time.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Every `X-Correlation-Id` header received so far, in arrival order.
    pub fn correlation_ids(&self) -> Vec<String> {
        self.correlations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps the ids in the request's `X-Correlation-Id` (a comma-separated list).
    pub(crate) fn note_correlation(&self, headers: &axum::http::HeaderMap) {
        let ids = headers
            .get_all("x-correlation-id")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|id| !id.is_empty());
        let mut seen = self.correlations.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(ids.map(String::from));
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Every logged request in arrival order, with its receive instant and the items it named.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.stats.requests()
    }

    /// Like [`Endpoint::requests`], and empties the log (for long benchmarks).
    pub fn take_requests(&self) -> Vec<RequestRecord> {
        self.stats.take_requests()
    }

    /// The quantity the platform shows for `id`; `None` for an item it does not have.
    pub fn quantity(&self, id: &str) -> Option<i64> {
        self.items().quantity(&(self.canonical_id)(id))
    }

    /// Sets `id`'s quantity as a person editing the channel by hand would: not a request, not in
    /// the history. Creates the item when it is new. The same as [`Endpoint::edit_by_hand`];
    /// seeding code reads better with this name.
    pub fn set_quantity(&self, id: &str, quantity: i64) {
        self.edit_by_hand(id, quantity);
    }

    /// A merchant edits `id`'s level in the channel's admin: the channel shows `quantity` from
    /// now on, to reads and to compare-and-set writes alike. No request is made and nothing
    /// enters the history. Creates the item when it is new.
    pub fn edit_by_hand(&self, id: &str, quantity: i64) {
        self.items().set_by_hand(&(self.canonical_id)(id), quantity);
    }

    /// The next `n` quantity writes (one per item a write request sets, whatever the request
    /// carries) are lost updates: answered as successful, not applied, not in the history,
    /// counted in [`StatsSnapshot::writes_lost`]. Replaces any count still due; 0 turns it
    /// off. Idempotent replays apply nothing and so lose nothing.
    pub fn lose_next_writes(&self, n: u64) {
        self.items().lose_next(n);
    }

    /// Every value requests applied to `id`, oldest first (bounded by
    /// [`crate::items::HISTORY_MAX`]).
    pub fn history(&self, id: &str) -> Vec<i64> {
        self.items().history(&(self.canonical_id)(id))
    }

    /// Every item's quantity, by id.
    pub fn quantities(&self) -> BTreeMap<String, i64> {
        self.items().quantities()
    }

    /// The item book. Lock order: take this before any lock of a simulator's own state.
    pub(crate) fn items(&self) -> MutexGuard<'_, ItemBook> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits `d`, or less when the server stops. True when the whole time passed.
    pub(crate) async fn pause(&self, d: Duration) -> bool {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            _ = shutdown.wait_for(|stopping| *stopping) => false,
        }
    }
}

/// When a request arrived and where its record is, for the handlers (a request extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    /// Taken before the body is read; rate limits measure time from it too.
    pub at: Instant,
    pub slot: Slot,
}

impl Endpoint {
    /// Notes the items a request named (in the simulator's id form).
    pub(crate) fn touch(&self, arrival: &Arrival, items: Vec<String>) {
        self.stats.touch(arrival.slot, items);
    }
}

/// The first thing every request meets: records its arrival, then applies the faults in force.
/// A request a fault answers never reaches its handler, so it applies nothing.
pub(crate) async fn gate(
    State(endpoint): State<Arc<Endpoint>>,
    mut request: Request,
    next: Next,
) -> Response {
    let at = Instant::now();
    let slot = endpoint
        .stats
        .arrive(at, request.method().as_str(), request.uri().path());
    request.extensions_mut().insert(Arrival { at, slot });

    let plan = endpoint.faults.plan();
    if !plan.latency.is_zero() {
        endpoint.pause(plan.latency).await;
    }
    let response = match plan.outcome {
        FaultOutcome::Serve => next.run(request).await,
        FaultOutcome::Hang(d) => {
            // Counted before the wait: a client that gives up first drops this future.
            endpoint.stats.faulted();
            endpoint.pause(d).await;
            (endpoint.fault_answer)(StatusCode::GATEWAY_TIMEOUT)
        }
        FaultOutcome::Answer(status) => {
            endpoint.stats.faulted();
            (endpoint.fault_answer)(status)
        }
    };
    endpoint.stats.finish(slot, response.status().as_u16());
    response
}

/// A JSON answer.
pub(crate) fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}
