//! One lane per target endpoint: a task that takes ready messages from its [`Queue`] by
//! priority, batches them as the target allows, waits for the breaker and the rate limit, sends,
//! and settles each message by the target's answer: delivered (recorded so older values never
//! follow), refused for good (parked in the dead-letter queue with an exception), worth retrying
//! (back off, behind the breaker) or a compare-and-set mismatch (drift: raise it and resync).
//!
//! The queue, limiter and breaker sit behind one short-held mutex so the committer can push rows
//! and the API can read the lane's state; nothing awaits while holding it. Store writes are
//! buffered and written by a recorder task beside the sending: a failed write is retried, never lost, and a message
//! resent after a crash carries the same idempotency key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossdock_model::{ExceptionKind, ExceptionRecord, Timestamp};
use crossdock_store::thread::StoreThread;
use crossdock_store::{Ack, NewDeadLetter, OutboxKind, OutboxRow};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tracing::{Instrument, debug, warn};

use crate::queue::{Depth, Entry, Pushed, Queue};
use crate::rate::{Budget, Limiter, RateConfig};
use crate::retry::{Breaker, BreakerConfig, BreakerState, RetryConfig};
use crate::target::{Body, Failure, Message, MsgResult, Outcome, RetryClass, Target};

/// How a lane treats its endpoint.
#[derive(Debug, Clone)]
pub struct LaneConfig {
    pub endpoint: String,
    /// What kind of target it is (`shopify`, `amazon`, ...), for display.
    pub target: String,
    pub rate: RateConfig,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    /// Upper bound on one call, whatever the target's own timeout.
    pub call_timeout: Duration,
    /// Send oldest first, ignoring zero crossings and low stock (a baseline for benchmarks).
    pub fifo: bool,
}

/// Counters since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LaneStats {
    /// Calls made to the target.
    pub calls: u64,
    pub failed_calls: u64,
    /// Messages the target accepted.
    pub delivered: u64,
    /// Outbox rows folded into a newer pending value instead of being sent.
    pub coalesced: u64,
    /// Rows dropped because a newer value was already delivered.
    pub stale: u64,
    pub parked: u64,
    pub mismatches: u64,
    /// Commit → delivered, per message, in [`LATENCY_BUCKETS_S`] buckets (cumulative counts are
    /// the exporter's business): `[count per bucket..., count above the last]`, and the sum.
    #[serde(skip)]
    pub latency_counts: [u64; LATENCY_BUCKETS_S.len() + 1],
    #[serde(skip)]
    pub latency_sum_s: f64,
}

/// Upper bounds (seconds) of the commit → delivered latency buckets.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

impl LaneStats {
    fn delivered_after(&mut self, created_at_us: i64) {
        self.delivered += 1;
        let s = ((Timestamp::now().as_micros() - created_at_us).max(0) as f64) / 1e6;
        let bucket = LATENCY_BUCKETS_S
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS_S.len());
        self.latency_counts[bucket] += 1;
        self.latency_sum_s += s;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    pub at: Timestamp,
    pub status: Option<u16>,
    pub detail: String,
}

/// What a lane is doing, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneState {
    /// Nothing pending.
    Idle,
    /// Messages pending and going out.
    Delivering,
    /// Everything pending waits for a retry backoff.
    BackingOff,
    /// The target asked for a pause (`Retry-After`).
    Paused,
    /// The breaker is open: messages wait (and keep coalescing) for a probe.
    BreakerOpen,
}

/// A lane as the endpoints API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LaneStatus {
    pub endpoint: String,
    pub target: String,
    pub state: LaneState,
    pub breaker: BreakerState,
    pub rate: Budget,
    pub depth: Depth,
    /// Age of the oldest pending message.
    pub oldest_age_ms: Option<u64>,
    pub last_error: Option<LastError>,
    pub stats: LaneStats,
    pub breaker_opened: u64,
}

struct State {
    queue: Queue,
    limiter: Limiter,
    breaker: Breaker,
    stats: LaneStats,
    last_error: Option<LastError>,
    /// Availability values of the call in flight, by key (one call at a time): a reader of the
    /// channel may see them before the lane has the answer.
    moving: HashMap<String, i64>,
    /// While someone reads the channel back ([`Lane::watch`]): every availability value sent,
    /// by key, and how many readers are watching.
    watched: HashMap<String, Vec<i64>>,
    watchers: usize,
    /// Store writes not yet made.
    acks: Vec<Ack>,
    parks: Vec<NewDeadLetter>,
    exceptions: Vec<ExceptionRecord>,
}

pub struct Lane {
    config: LaneConfig,
    target: Arc<dyn Target>,
    state: Mutex<State>,
    wake: Notify,
    /// Results are waiting to be written.
    recorded: Notify,
    /// The backlog should be read from the store again.
    rescan: std::sync::atomic::AtomicBool,
}

/// What the lane does next.
enum Step {
    Send(Vec<Entry>, Vec<Message>, f64),
    Wait(Duration),
    Idle(Option<Instant>),
}

impl Lane {
    pub fn new(config: LaneConfig, target: Arc<dyn Target>) -> Arc<Lane> {
        let now = Instant::now();
        Arc::new(Lane {
            state: Mutex::new(State {
                queue: if config.fifo {
                    Queue::fifo()
                } else {
                    Queue::new()
                },
                limiter: Limiter::new(config.rate, now),
                breaker: Breaker::new(config.breaker, now),
                stats: LaneStats::default(),
                last_error: None,
                moving: HashMap::new(),
                watched: HashMap::new(),
                watchers: 0,
                acks: Vec::new(),
                parks: Vec::new(),
                exceptions: Vec::new(),
            }),
            config,
            target,
            wake: Notify::new(),
            recorded: Notify::new(),
            rescan: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.config.endpoint
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes committed outbox rows (from the committer, a DLQ retry or the backlog).
    pub fn push(&self, rows: impl IntoIterator<Item = OutboxRow>) {
        let now = Instant::now();
        let mut st = self.lock();
        for row in rows {
            match st.queue.push(row, now) {
                Pushed::Queued | Pushed::Duplicate => {}
                Pushed::Coalesced => st.stats.coalesced += 1,
                Pushed::Stale(ack) => {
                    st.stats.stale += 1;
                    st.acks.push(ack);
                }
            }
        }
        drop(st);
        self.wake.notify_one();
        self.recorded.notify_one();
    }

    /// Asks the lane to read its backlog from the store again.
    pub fn request_rescan(&self) {
        self.rescan
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    /// Lets ordered keys go whose parked message was retried or discarded.
    pub fn release(&self, keys: &[String]) {
        let now = Instant::now();
        let mut st = self.lock();
        for k in keys {
            st.queue.release(k, now);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The channel reports `shown` for `row.key`, which Crossdock did not send: raise
    /// `inventory_mismatch` and write `row` (the value Crossdock intends) again, comparing
    /// against what the channel shows.
    pub fn resync(&self, row: OutboxRow, shown: i64, reason: String, raw: Option<String>) {
        let now = Instant::now();
        let mut st = self.lock();
        st.stats.mismatches += 1;
        st.exceptions.push(ExceptionRecord::open(
            ExceptionKind::InventoryMismatch,
            &format!(
                "{}\0{}\0report\0{shown}\0{}",
                row.endpoint, row.key, row.ledger_seq
            ),
            entity_of(&row),
            row.correlation_id.clone(),
            reason,
            raw,
            Timestamp::now(),
        ));
        st.queue.resend(row, Some(shown), now);
        drop(st);
        self.wake.notify_one();
        self.recorded.notify_one();
    }

    /// Every key with a delivered value: `(key, ledger sequence, value)`.
    pub fn all_sent(&self) -> Vec<(String, u64, Option<i64>)> {
        self.lock().queue.all_sent()
    }

    /// Starts noting every availability value this lane sends (the call in flight included),
    /// for someone about to read the channel back: a read that takes a while may catch any of
    /// them. [`Lane::unwatch`] returns what was sent meanwhile.
    pub fn watch(&self) {
        let mut st = self.lock();
        let st = &mut *st;
        st.watchers += 1;
        for (key, value) in &st.moving {
            st.watched.entry(key.clone()).or_default().push(*value);
        }
    }

    /// Ends one [`Lane::watch`]: the values sent since, by key.
    pub fn unwatch(&self) -> HashMap<String, Vec<i64>> {
        let mut st = self.lock();
        st.watchers = st.watchers.saturating_sub(1);
        if st.watchers == 0 {
            std::mem::take(&mut st.watched)
        } else {
            st.watched.clone()
        }
    }

    /// The newest value delivered for `key`: `(ledger sequence, value)`.
    pub fn last_sent(&self, key: &str) -> Option<(u64, Option<i64>)> {
        self.lock().queue.last_sent(key)
    }

    pub fn status(&self) -> LaneStatus {
        let now = Instant::now();
        let mut st = self.lock();
        let depth = st.queue.depth();
        let oldest_age_ms = depth.oldest_created_at_us.map(|c| {
            let age = Timestamp::now().as_micros().saturating_sub(c);
            (age.max(0) / 1000) as u64
        });
        let breaker = st.breaker.state(now);
        let rate = st.limiter.budget(now);
        let pending: u64 = depth.by_priority.iter().sum::<u64>() + depth.in_flight;
        let state = if breaker == BreakerState::Open {
            LaneState::BreakerOpen
        } else if pending == 0 {
            LaneState::Idle
        } else if rate.paused_ms.is_some() {
            LaneState::Paused
        } else if depth.in_flight == 0 && depth.backing_off == pending {
            LaneState::BackingOff
        } else {
            LaneState::Delivering
        };
        LaneStatus {
            endpoint: self.config.endpoint.clone(),
            target: self.config.target.clone(),
            state,
            breaker,
            rate,
            depth,
            oldest_age_ms,
            last_error: st.last_error.clone(),
            stats: st.stats.clone(),
            breaker_opened: st.breaker.opened,
        }
    }

    /// Loads what the store knows (delivered values, held keys, the backlog), then works until
    /// `stop` turns true.
    pub async fn run(self: Arc<Lane>, store: StoreThread, mut stop: watch::Receiver<bool>) {
        while let Err(e) = self.load(&store).await {
            warn!(endpoint = %self.config.endpoint, error = %e, "lane could not load its backlog; retrying");
            if sleep_or_stop(Duration::from_secs(1), &mut stop).await {
                return;
            }
        }
        // Results are recorded beside the sending, so a call never waits for an fsync. The
        // recorder stops only after the lane has, so the last call's results are written too.
        let (finished, lane_done) = watch::channel(false);
        let recorder = tokio::spawn(self.clone().record(store.clone(), lane_done));
        loop {
            if *stop.borrow() {
                break;
            }
            if self.rescan.swap(false, std::sync::atomic::Ordering::AcqRel) {
                let endpoint = self.config.endpoint.clone();
                match store.call(move |s| s.lane_backlog(&endpoint)).await {
                    Ok(Ok(rows)) => self.push(rows),
                    Ok(Err(e)) => {
                        warn!(endpoint = %self.config.endpoint, error = %e, "lane could not rescan its backlog; will retry");
                        self.rescan
                            .store(true, std::sync::atomic::Ordering::Release);
                    }
                    Err(_) => break,
                }
            }
            match self.next_step() {
                Step::Send(entries, messages, cost) => self.send(entries, messages, cost).await,
                Step::Wait(d) => {
                    if sleep_or_stop(d, &mut stop).await {
                        break;
                    }
                }
                Step::Idle(due) => {
                    let sleep = due.map_or(Duration::from_secs(3600), |t| {
                        t.saturating_duration_since(Instant::now())
                    });
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(sleep) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
        }
        let _ = finished.send(true);
        let _ = recorder.await;
    }

    /// Writes the lane's results to the store as they come, batching whatever accumulated
    /// during the previous write; retries a failed write with backoff; once the lane has
    /// stopped, writes what is left (giving up after a few failed tries).
    async fn record(self: Arc<Lane>, store: StoreThread, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::ZERO;
        loop {
            let mut stopping = *stop.borrow();
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            } else if !stopping {
                tokio::select! {
                    _ = self.recorded.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    r = stop.changed() => stopping = r.is_err() || *stop.borrow(),
                }
            }
            backoff = match self.flush(&store).await {
                Ok(()) if stopping => return,
                Ok(()) => Duration::ZERO,
                Err(e) => {
                    warn!(endpoint = %self.config.endpoint, error = %e, "lane could not record results; retrying");
                    if stopping && backoff >= Duration::from_secs(2) {
                        warn!(endpoint = %self.config.endpoint, "stopping with results unrecorded; they are sent again after a restart");
                        return;
                    }
                    (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
                }
            };
        }
    }

    async fn load(&self, store: &StoreThread) -> Result<(), String> {
        let endpoint = self.config.endpoint.clone();
        let (sent, held, backlog) = store
            .call(move |s| {
                let sent = s.sent_values(&endpoint)?;
                let held = s.dead_letters(&crossdock_store::DeadLetterFilter {
                    endpoint: Some(endpoint.clone()),
                    status: Some(crossdock_store::DeadLetterStatus::Parked),
                    limit: u32::MAX,
                    ..Default::default()
                })?;
                let backlog = s.lane_backlog(&endpoint)?;
                Ok::<_, crossdock_store::StoreError>((sent, held, backlog))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        {
            let mut st = self.lock();
            for s in sent {
                st.queue.remember_sent(s.key, s.ledger_seq, s.value);
            }
            for l in held
                .into_iter()
                .filter(|l| l.row.kind == OutboxKind::Ordered)
            {
                st.queue.hold(l.row.key);
            }
        }
        debug!(endpoint = %self.config.endpoint, rows = backlog.len(), "lane loaded its backlog");
        self.push(backlog);
        Ok(())
    }

    /// Writes buffered acks, dead letters and exceptions; on failure keeps them for next time.
    async fn flush(&self, store: &StoreThread) -> Result<(), String> {
        let (acks, parks, exceptions) = {
            let mut st = self.lock();
            if st.acks.is_empty() && st.parks.is_empty() && st.exceptions.is_empty() {
                return Ok(());
            }
            (
                std::mem::take(&mut st.acks),
                std::mem::take(&mut st.parks),
                std::mem::take(&mut st.exceptions),
            )
        };
        let endpoint = self.config.endpoint.clone();
        let at = Timestamp::now().as_micros();
        let result = store
            .call(move |s| {
                let r = s.record_results(&endpoint, &exceptions, &parks, &acks, at);
                (r, acks, parks, exceptions)
            })
            .await;
        match result {
            Ok((Ok(()), ..)) => Ok(()),
            Ok((Err(e), acks, parks, exceptions)) => {
                // Back in front of anything newer, so the store sees them in order.
                let mut st = self.lock();
                st.acks.splice(0..0, acks);
                st.parks.splice(0..0, parks);
                st.exceptions.splice(0..0, exceptions);
                Err(e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn next_step(&self) -> Step {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        match st.breaker.ready_in(now) {
            Some(d) if d.is_zero() => {}
            Some(d) => return Step::Wait(d),
            None => return Step::Idle(None),
        }
        let backlog = st.queue.ready_len(now);
        if backlog == 0 {
            return Step::Idle(st.queue.next_due());
        }
        let n = self
            .target
            .batch_size(backlog)
            .clamp(1, self.target.max_batch().max(1));
        let entries = st.queue.take(n, now);
        let mut messages = Vec::with_capacity(entries.len());
        let mut kept = Vec::with_capacity(entries.len());
        for e in entries {
            match message(&self.config.endpoint, &st.queue, &e) {
                Ok(m) => {
                    messages.push(m);
                    kept.push(e);
                }
                Err(why) => {
                    let failure = Failure::permanent(None, why);
                    self.park(st, e, &failure, now);
                }
            }
        }
        if kept.is_empty() {
            return Step::Wait(Duration::ZERO);
        }
        let cost = self.target.estimated_cost(&messages);
        let wait = st.limiter.ready_in(now, cost);
        if !wait.is_zero() {
            for e in kept {
                st.queue.retry(e, None, now);
            }
            return Step::Wait(wait);
        }
        st.limiter.take(now, cost);
        st.breaker.on_send(now);
        st.stats.calls += 1;
        st.moving = messages
            .iter()
            .filter_map(|m| Some((m.key.clone(), value_of(m)?)))
            .collect();
        if st.watchers > 0 {
            for (key, value) in &st.moving {
                st.watched.entry(key.clone()).or_default().push(*value);
            }
        }
        Step::Send(kept, messages, cost)
    }

    async fn send(&self, entries: Vec<Entry>, messages: Vec<Message>, cost: f64) {
        let bound = self
            .config
            .call_timeout
            .max(self.target.call_budget(&messages));
        let span = tracing::info_span!(
            "deliver",
            endpoint = %self.config.endpoint,
            messages = messages.len(),
            correlation_id = tracing::field::Empty,
        );
        if !span.is_disabled()
            && let Some(ids) = crate::target::correlation_list(&messages)
        {
            span.record("correlation_id", ids);
        }
        let call = self.target.send(&messages).instrument(span);
        let outcome = match tokio::time::timeout(bound, call).await {
            Ok(o) if o.results.len() == messages.len() => o,
            Ok(o) => {
                let why = format!(
                    "the target answered {} results for {} messages",
                    o.results.len(),
                    messages.len()
                );
                Outcome::all(
                    messages.len(),
                    MsgResult::Failed(Failure::retryable(None, why)),
                    o.feedback,
                )
            }
            Err(_) => Outcome::all(
                messages.len(),
                MsgResult::Failed(Failure::retryable(None, "the call timed out")),
                Default::default(),
            ),
        };
        let mut mismatched = Vec::new();
        {
            let now = Instant::now();
            let mut st = self.lock();
            let st = &mut *st;
            st.moving.clear();
            st.limiter.observe(now, &outcome.feedback, cost);
            let answered = outcome.results.iter().any(|r| {
                !matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Retryable)
                    && !matches!(r, MsgResult::Requeue)
            });
            if answered {
                st.breaker.on_success();
            } else {
                st.breaker.on_failure(now);
                st.stats.failed_calls += 1;
            }
            for ((entry, msg), result) in entries.into_iter().zip(&messages).zip(outcome.results) {
                match result {
                    MsgResult::Delivered => {
                        st.stats.delivered_after(entry.row.created_at_us);
                        let acks = st.queue.delivered(entry, value_of(msg), now);
                        st.stats.stale += acks.len() as u64 - 1;
                        st.acks.extend(acks);
                    }
                    MsgResult::Requeue => st.queue.retry(entry, None, now),
                    MsgResult::Mismatch { found } => mismatched.push((entry, msg.clone(), found)),
                    MsgResult::Failed(f) => {
                        st.last_error = Some(LastError {
                            at: Timestamp::now(),
                            status: f.status,
                            detail: f.detail.clone(),
                        });
                        self.failed(st, entry, value_of(msg), &f, now);
                    }
                }
            }
        }
        for (entry, msg, found) in mismatched {
            self.mismatch(entry, msg, found).await;
        }
        self.recorded.notify_one();
    }

    fn failed(
        &self,
        st: &mut State,
        mut entry: Entry,
        value: Option<i64>,
        f: &Failure,
        now: Instant,
    ) {
        entry.attempts += 1;
        if f.class == RetryClass::Retryable
            && let Some(v) = value
            && !entry.attempted.contains(&v)
            && entry.attempted.len() < 8
        {
            // It may have landed (a timeout after the target applied it).
            entry.attempted.push(v);
        }
        let give_up = f.class == RetryClass::Permanent
            || (entry.attempts >= self.config.retry.max_attempts
                && st.breaker.state(now) == BreakerState::Closed);
        if give_up {
            self.park(st, entry, f, now);
        } else {
            let delay = self.config.retry.delay(entry.attempts - 1, fastrand::f64());
            st.queue.retry(entry, Some(now + delay), now);
        }
    }

    fn park(&self, st: &mut State, entry: Entry, f: &Failure, now: Instant) {
        let endpoint = &self.config.endpoint;
        let row = &entry.row;
        let reason = match (f.class, f.status) {
            (RetryClass::Permanent, Some(s)) => format!("{endpoint} refused it with HTTP {s}"),
            (RetryClass::Permanent, None) => format!("{endpoint} cannot take it: {}", f.detail),
            (RetryClass::Retryable, _) => format!(
                "{endpoint} still failing after {} attempts: {}",
                entry.attempts, f.detail
            ),
        };
        let exception = ExceptionRecord::open(
            ExceptionKind::DeliveryFailed,
            &format!("{endpoint}\0{}\0{}", row.key, row.ledger_seq),
            entity_of(row),
            row.correlation_id.clone(),
            format!("{reason}; the message is in the dead-letter queue"),
            Some(row.payload.clone()),
            Timestamp::now(),
        );
        warn!(endpoint, key = %row.key, seq = row.ledger_seq, %reason, "message parked");
        st.stats.parked += 1;
        st.parks.push(NewDeadLetter {
            row: row.clone(),
            reason,
            attempts: entry.attempts,
            last_status: f.status,
            last_response: f.detail.clone(),
            exception,
        });
        st.queue.parked(entry, now);
    }

    /// A compare-and-set refusal: read what the channel shows. If it already shows the value
    /// being sent (an earlier attempt landed), that is delivery; otherwise someone changed the
    /// channel outside Crossdock: raise `inventory_mismatch` and write again from what it shows.
    async fn mismatch(&self, mut entry: Entry, msg: Message, found: Option<i64>) {
        let intended = value_of(&msg);
        let current = match found {
            Some(v) => Some(Ok(v)),
            None => {
                self.budget_for(self.target.read_cost()).await;
                self.target.read_current(&msg.key).await
            }
        };
        let now = Instant::now();
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(Ok(v)) = current
            && Some(v) == intended
        {
            st.stats.delivered_after(entry.row.created_at_us);
            let acks = st.queue.delivered(entry, intended, now);
            st.acks.extend(acks);
            return;
        }
        if let Some(Ok(v)) = current
            && entry.attempted.contains(&v)
        {
            // An earlier attempt of ours landed after all: compare against it, no drift.
            entry.cas_from = Some(Some(v));
            entry.attempted.clear();
            st.queue.retry(entry, None, now);
            drop(guard);
            self.wake.notify_one();
            return;
        }
        entry.attempts += 1;
        if entry.attempts >= self.config.retry.max_attempts {
            let f = Failure::permanent(
                None,
                format!("compare-and-set refused {} times in a row", entry.attempts),
            );
            self.park(st, entry, &f, now);
            return;
        }
        st.stats.mismatches += 1;
        let expected = match &msg.body {
            Body::Availability { last_sent, .. } => *last_sent,
            Body::Document { .. } => None,
        };
        let shown = match &current {
            Some(Ok(v)) => v.to_string(),
            Some(Err(f)) => format!("unknown ({})", f.detail),
            None => "unknown".into(),
        };
        let endpoint = &self.config.endpoint;
        let row = &entry.row;
        st.exceptions.push(ExceptionRecord::open(
            ExceptionKind::InventoryMismatch,
            &format!("{endpoint}\0{}\0{}", row.key, row.ledger_seq),
            entity_of(row),
            row.correlation_id.clone(),
            format!(
                "{endpoint} showed {shown} for {} where Crossdock last sent {}; changed outside \
                 Crossdock, resyncing to {}",
                row.key,
                expected.map_or("nothing".into(), |v| v.to_string()),
                intended.map_or("?".into(), |v| v.to_string()),
            ),
            None,
            Timestamp::now(),
        ));
        // Resync: compare against what the channel really shows (or write blind if unknown).
        entry.cas_from = Some(match current {
            Some(Ok(v)) => Some(v),
            _ => None,
        });
        st.queue.retry(entry, None, now);
        drop(guard);
        self.wake.notify_one();
    }
}

impl Lane {
    /// Waits until the rate limit allows a call costing `cost`, and spends it.
    async fn budget_for(&self, cost: f64) {
        loop {
            let wait = {
                let now = Instant::now();
                let mut st = self.lock();
                let wait = st.limiter.ready_in(now, cost);
                if wait.is_zero() {
                    st.limiter.take(now, cost);
                }
                wait
            };
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// The message a target sees for a queued entry.
fn message(endpoint: &str, queue: &Queue, e: &Entry) -> Result<Message, String> {
    let row = &e.row;
    let body = match row.kind {
        OutboxKind::Latest => {
            #[derive(serde::Deserialize)]
            struct Availability {
                item: String,
                available: i64,
            }
            let a: Availability = serde_json::from_str(&row.payload)
                .map_err(|err| format!("the availability payload is unreadable: {err}"))?;
            let last_sent = match e.cas_from {
                Some(from) => from,
                None => queue.last_sent(&row.key).and_then(|(_, v)| v),
            };
            Body::Availability {
                item: a.item,
                available: a.available,
                last_sent,
            }
        }
        OutboxKind::Ordered => Body::Document {
            json: row.payload.clone(),
        },
    };
    Ok(Message {
        key: row.key.clone(),
        ledger_seq: row.ledger_seq,
        body,
        idempotency_key: match e.resync {
            None => format!("{endpoint}:{}:{}", row.key, row.ledger_seq),
            Some(r) => format!("{endpoint}:{}:{}:resync-{r}", row.key, row.ledger_seq),
        },
        correlation_id: row.correlation_id.clone(),
    })
}

fn value_of(m: &Message) -> Option<i64> {
    match m.body {
        Body::Availability { available, .. } => Some(available),
        Body::Document { .. } => None,
    }
}

fn entity_of(row: &OutboxRow) -> String {
    match row.kind {
        OutboxKind::Latest => format!("item:{}", row.key),
        OutboxKind::Ordered => format!("endpoint:{}/{}", row.endpoint, row.key),
    }
}

/// Sleeps for `d`; true if asked to stop meanwhile.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}
