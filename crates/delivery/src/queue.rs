//! The pending messages of one lane, in the order they should go out.
//!
//! * "Latest" messages coalesce per key: one entry holds the newest value, the most urgent
//!   priority of everything folded into it and the arrival order of the oldest. A value from a
//!   ledger sequence at or below what was already delivered is dropped, so a channel never moves
//!   backwards.
//! * "Ordered" messages queue per key in ledger order; only the head of a key can go out, and a
//!   parked head holds its key (and only its key) until an operator retries or discards it.
//! * Ready entries go out by priority (0 crosses zero, 1 low stock, 2 the rest), then oldest
//!   first. An entry that failed waits for its backoff time before it is ready again.
//!
//! Pure data: time comes in as an argument; nothing here blocks or does I/O.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use crossdock_store::{Ack, OutboxKind, OutboxRow};

/// One message (or several coalesced into one) waiting to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The newest row (for "latest"), or the row itself (for "ordered").
    pub row: OutboxRow,
    /// The most urgent priority of the rows folded in.
    pub priority: u8,
    /// Arrival order of the oldest row folded in.
    order: u64,
    /// Failed attempts so far.
    pub attempts: u32,
    not_before: Option<Instant>,
    /// Rows folded into this entry (1 when nothing was coalesced).
    pub rows: u32,
    /// When set, the compare-and-set "from" value to use instead of the last delivered value
    /// (after a mismatch the channel's real value is known).
    pub cas_from: Option<Option<i64>>,
    /// Values sent for this key in calls whose outcome is unknown (timed out): one of them may
    /// have landed, so finding it on the channel is not drift.
    pub attempted: Vec<i64>,
    /// Set when a resync asked for this value again (`Queue::resend`): the write is a new
    /// request to the channel, not a replay of the first one, even when its value and
    /// compare-and-set "from" match a write the channel acknowledged and lost.
    pub resync: Option<u64>,
}

type Slot = (OutboxKind, String);

/// What became of a pushed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Folded into a pending entry of the same key.
    Coalesced,
    /// Older than what was delivered or is pending: dropped. The ack removes it from the store.
    Stale(Ack),
    /// Already pending (the same row seen twice): ignored.
    Duplicate,
}

#[derive(Debug, Default)]
pub struct Queue {
    latest: HashMap<String, Entry>,
    ordered: HashMap<String, VecDeque<Entry>>,
    /// Entries that may go out now: (priority, order, kind, key).
    ready: BTreeSet<(u8, u64, OutboxKind, String)>,
    /// Entries waiting for their backoff: (time, kind, key).
    delayed: BTreeSet<(Instant, OutboxKind, String)>,
    in_flight: HashSet<Slot>,
    /// Ordered keys whose head is in the dead-letter queue.
    parked: HashSet<String>,
    /// The newest delivered (ledger sequence, value) per "latest" key.
    sent: HashMap<String, (u64, Option<i64>)>,
    next_order: u64,
    /// Plain first-in-first-out, ignoring priorities: the baseline the benchmarks compare the
    /// risk-first order with.
    fifo: bool,
}

/// Counts for the endpoints API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depth {
    /// Pending entries by priority 0, 1, 2, not counting those in flight (`in_flight`).
    pub by_priority: [u64; 3],
    pub in_flight: u64,
    /// Entries waiting for a retry backoff.
    pub backing_off: u64,
    /// Ordered keys held by a parked message.
    pub parked_keys: u64,
    /// Creation time (µs) of the oldest pending message.
    pub oldest_created_at_us: Option<i64>,
    /// The same, per priority.
    pub oldest_by_priority: [Option<i64>; 3],
}

impl Queue {
    pub fn new() -> Self {
        Queue::default()
    }

    pub fn fifo() -> Self {
        Queue {
            fifo: true,
            ..Queue::default()
        }
    }

    /// Starts from what the store says was delivered.
    pub fn remember_sent(&mut self, key: String, ledger_seq: u64, value: Option<i64>) {
        let e = self.sent.entry(key).or_insert((ledger_seq, value));
        if ledger_seq >= e.0 {
            *e = (ledger_seq, value);
        }
    }

    /// Every key with a delivered value: `(key, ledger sequence, value)`.
    pub fn all_sent(&self) -> Vec<(String, u64, Option<i64>)> {
        self.sent
            .iter()
            .map(|(k, (seq, v))| (k.clone(), *seq, *v))
            .collect()
    }

    pub fn last_sent(&self, key: &str) -> Option<(u64, Option<i64>)> {
        self.sent.get(key).copied()
    }

    /// Holds an ordered key whose head is parked (at start, from the dead-letter queue).
    pub fn hold(&mut self, key: String) {
        if let Some(head) = self.ordered.get(&key).and_then(|q| q.front()) {
            let (priority, order) = (head.priority, head.order);
            self.unschedule(OutboxKind::Ordered, &key, priority, order);
        }
        self.parked.insert(key);
    }

    /// Lets a held ordered key go again (its parked head was retried or discarded).
    pub fn release(&mut self, key: &str, now: Instant) {
        if self.parked.remove(key) {
            self.schedule_head(OutboxKind::Ordered, key, now);
        }
    }

    pub fn push(&mut self, mut row: OutboxRow, now: Instant) -> Pushed {
        if self.fifo {
            row.priority = 2;
        }
        let order = self.next_order;
        self.next_order += 1;
        let entry = Entry {
            priority: row.priority,
            order,
            attempts: 0,
            not_before: None,
            rows: 1,
            cas_from: None,
            attempted: Vec::new(),
            resync: None,
            row,
        };
        match entry.row.kind {
            OutboxKind::Latest => self.push_latest(entry, now),
            OutboxKind::Ordered => self.push_ordered(entry, now),
        }
    }

    fn push_latest(&mut self, entry: Entry, now: Instant) -> Pushed {
        let key = entry.row.key.clone();
        let seq = entry.row.ledger_seq;
        if let Some((sent, _)) = self.sent.get(&key)
            && seq <= *sent
        {
            return Pushed::Stale(stale_ack(&entry.row));
        }
        match self.latest.get_mut(&key) {
            None => {
                self.latest.insert(key.clone(), entry);
                self.schedule_head(OutboxKind::Latest, &key, now);
                Pushed::Queued
            }
            Some(pending) if seq == pending.row.ledger_seq => Pushed::Duplicate,
            Some(pending) if seq < pending.row.ledger_seq => Pushed::Stale(stale_ack(&entry.row)),
            Some(pending) => {
                let (old_priority, old_order) = (pending.priority, pending.order);
                pending.row = entry.row;
                pending.priority = pending.priority.min(entry.priority);
                pending.rows += 1;
                let changed = pending.priority != old_priority;
                if changed
                    && self.ready.remove(&(
                        old_priority,
                        old_order,
                        OutboxKind::Latest,
                        key.clone(),
                    ))
                {
                    self.ready
                        .insert((pending.priority, old_order, OutboxKind::Latest, key));
                }
                Pushed::Coalesced
            }
        }
    }

    fn push_ordered(&mut self, entry: Entry, now: Instant) -> Pushed {
        let key = entry.row.key.clone();
        let q = self.ordered.entry(key.clone()).or_default();
        if q.iter().any(|e| e.row.ledger_seq == entry.row.ledger_seq) {
            return Pushed::Duplicate;
        }
        let at = q.partition_point(|e| e.row.ledger_seq < entry.row.ledger_seq);
        let new_head = at == 0;
        if new_head && let Some(old) = q.front() {
            let (p, o) = (old.priority, old.order);
            self.unschedule(OutboxKind::Ordered, &key, p, o);
        }
        self.ordered
            .get_mut(&key)
            .expect("just made")
            .insert(at, entry);
        if new_head {
            self.schedule_head(OutboxKind::Ordered, &key, now);
        }
        Pushed::Queued
    }

    /// Queues `row` again even if its value was already delivered, comparing against `shown`
    /// (what the channel reports now): a resync after the channel changed outside Crossdock.
    /// A pending newer value is kept and compared against `shown` instead.
    pub fn resend(&mut self, row: OutboxRow, shown: Option<i64>, now: Instant) {
        let key = row.key.clone();
        if self
            .sent
            .get(&key)
            .is_some_and(|(seq, _)| row.ledger_seq < *seq)
        {
            // A newer value went out since `row` was computed; it already overwrote the channel.
            return;
        }
        let order = self.next_order;
        self.next_order += 1;
        if let Some(pending) = self.latest.get_mut(&key) {
            pending.cas_from = Some(shown);
            pending.resync = Some(order);
            return;
        }
        if self.in_flight.contains(&(OutboxKind::Latest, key.clone())) {
            // The value going out now is newer than anything to resend; if the channel refuses
            // it, the mismatch path reads the channel and resyncs.
            return;
        }
        self.latest.insert(
            key.clone(),
            Entry {
                priority: row.priority,
                order,
                attempts: 0,
                not_before: None,
                rows: 1,
                cas_from: Some(shown),
                attempted: Vec::new(),
                resync: Some(order),
                row,
            },
        );
        self.schedule_head(OutboxKind::Latest, &key, now);
    }

    /// Entries ready to go out now (by priority, then oldest first), up to `max`; they are in
    /// flight until completed.
    pub fn take(&mut self, max: usize, now: Instant) -> Vec<Entry> {
        self.promote(now);
        let mut out = Vec::with_capacity(max.min(self.ready.len()));
        while out.len() < max {
            let Some((_, _, kind, key)) = self.ready.pop_first() else {
                break;
            };
            let entry = match kind {
                OutboxKind::Latest => self.latest.remove(&key),
                OutboxKind::Ordered => self.ordered.get_mut(&key).and_then(|q| q.pop_front()),
            };
            if let Some(entry) = entry {
                self.in_flight.insert((kind, key));
                out.push(entry);
            }
        }
        out
    }

    /// Ready entries right now.
    pub fn ready_len(&mut self, now: Instant) -> usize {
        self.promote(now);
        self.ready.len()
    }

    /// When the next backed-off entry becomes ready.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.first().map(|(t, _, _)| *t)
    }

    /// The entry was delivered: remember its value and let the key's next entry go. Returns
    /// the ack to record (and any pending entry this made stale).
    pub fn delivered(&mut self, entry: Entry, value: Option<i64>, now: Instant) -> Vec<Ack> {
        let kind = entry.row.kind;
        let key = entry.row.key.clone();
        let mut acks = vec![Ack {
            key: key.clone(),
            kind,
            ledger_seq: entry.row.ledger_seq,
            delivered: true,
            value,
            correlation_id: entry.row.correlation_id.clone(),
        }];
        if kind == OutboxKind::Latest {
            self.remember_sent(key.clone(), entry.row.ledger_seq, value);
            // A pending entry that is not newer than what just went out is moot; a newer one
            // compares against what just went out, not against an older reading.
            if let Some(p) = self.latest.get_mut(&key) {
                if p.row.ledger_seq <= entry.row.ledger_seq {
                    let p = self.latest.remove(&key).expect("present");
                    self.unschedule(OutboxKind::Latest, &key, p.priority, p.order);
                    acks.push(stale_ack(&p.row));
                } else {
                    p.cas_from = None;
                    p.attempted.clear();
                    p.resync = None;
                }
            }
        }
        self.finish(kind, &key, now);
        acks
    }

    /// Puts an in-flight entry back to be sent again after `not_before` (now when `None`),
    /// folding in anything newer that arrived for its key meanwhile.
    pub fn retry(&mut self, mut entry: Entry, not_before: Option<Instant>, now: Instant) {
        let kind = entry.row.kind;
        let key = entry.row.key.clone();
        entry.not_before = not_before.filter(|t| *t > now);
        match kind {
            OutboxKind::Latest => {
                if let Some(newer) = self.latest.remove(&key) {
                    self.unschedule(OutboxKind::Latest, &key, newer.priority, newer.order);
                    if newer.row.ledger_seq > entry.row.ledger_seq {
                        // The newer value goes out; what the channel shows (`cas_from`) and
                        // what may have landed (`attempted`) still hold.
                        entry.row = newer.row;
                        entry.rows += newer.rows;
                        if newer.cas_from.is_some() {
                            entry.cas_from = newer.cas_from;
                        }
                        if newer.resync.is_some() {
                            entry.resync = newer.resync;
                        }
                    }
                    entry.priority = entry.priority.min(newer.priority);
                }
                self.latest.insert(key.clone(), entry);
            }
            OutboxKind::Ordered => {
                self.ordered
                    .entry(key.clone())
                    .or_default()
                    .push_front(entry);
            }
        }
        self.in_flight.remove(&(kind, key.clone()));
        self.schedule_head(kind, &key, now);
    }

    /// The entry went to the dead-letter queue. A "latest" key carries on with any newer value;
    /// an "ordered" key is held until the parked message is retried or discarded.
    pub fn parked(&mut self, entry: Entry, now: Instant) {
        let kind = entry.row.kind;
        let key = entry.row.key.clone();
        if kind == OutboxKind::Ordered {
            self.parked.insert(key.clone());
        }
        self.finish(kind, &key, now);
    }

    pub fn depth(&self) -> Depth {
        let mut d = Depth {
            in_flight: self.in_flight.len() as u64,
            backing_off: self.delayed.len() as u64,
            parked_keys: self.parked.len() as u64,
            ..Depth::default()
        };
        let mut count = |e: &Entry| {
            let p = usize::from(e.priority.min(2));
            d.by_priority[p] += 1;
            let c = e.row.created_at_us;
            d.oldest_created_at_us = Some(d.oldest_created_at_us.map_or(c, |o| o.min(c)));
            d.oldest_by_priority[p] = Some(d.oldest_by_priority[p].map_or(c, |o| o.min(c)));
        };
        self.latest.values().for_each(&mut count);
        self.ordered.values().flatten().for_each(&mut count);
        d
    }

    /// Pending entries (in flight excluded).
    pub fn len(&self) -> usize {
        self.latest.len() + self.ordered.values().map(VecDeque::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn finish(&mut self, kind: OutboxKind, key: &str, now: Instant) {
        self.in_flight.remove(&(kind, key.to_string()));
        if kind == OutboxKind::Ordered && self.ordered.get(key).is_some_and(VecDeque::is_empty) {
            self.ordered.remove(key);
        }
        self.schedule_head(kind, key, now);
    }

    /// Makes the head entry of a key ready (or delayed), unless the key is busy or held.
    fn schedule_head(&mut self, kind: OutboxKind, key: &str, now: Instant) {
        let slot = (kind, key.to_string());
        if self.in_flight.contains(&slot)
            || (kind == OutboxKind::Ordered && self.parked.contains(key))
        {
            return;
        }
        let head = match kind {
            OutboxKind::Latest => self.latest.get(key),
            OutboxKind::Ordered => self.ordered.get(key).and_then(|q| q.front()),
        };
        let Some(head) = head else { return };
        match head.not_before {
            Some(t) if t > now => {
                self.delayed.insert((t, kind, slot.1));
            }
            _ => {
                self.ready.insert((head.priority, head.order, kind, slot.1));
            }
        }
    }

    fn unschedule(&mut self, kind: OutboxKind, key: &str, priority: u8, order: u64) {
        let key = key.to_string();
        if !self.ready.remove(&(priority, order, kind, key.clone())) {
            self.delayed
                .retain(|(_, k, name)| !(*k == kind && *name == key));
        }
    }

    /// Moves backed-off entries whose time has come to the ready set.
    fn promote(&mut self, now: Instant) {
        while let Some((t, kind, key)) = self.delayed.first().cloned() {
            if t > now {
                break;
            }
            self.delayed.pop_first();
            let head = match kind {
                OutboxKind::Latest => self.latest.get_mut(&key),
                OutboxKind::Ordered => self.ordered.get_mut(&key).and_then(|q| q.front_mut()),
            };
            if let Some(head) = head {
                head.not_before = None;
                self.ready.insert((head.priority, head.order, kind, key));
            }
        }
    }
}

fn stale_ack(row: &OutboxRow) -> Ack {
    Ack {
        key: row.key.clone(),
        kind: row.kind,
        ledger_seq: row.ledger_seq,
        delivered: false,
        value: None,
        correlation_id: row.correlation_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn row(kind: OutboxKind, key: &str, seq: u64, priority: u8) -> OutboxRow {
        OutboxRow {
            partition: 0,
            endpoint: "shop".into(),
            key: key.into(),
            ledger_seq: seq,
            priority,
            kind,
            payload: format!(r#"{{"item":"{key}","available":{seq}}}"#),
            correlation_id: None,
            created_at_us: seq as i64,
        }
    }

    fn latest(key: &str, seq: u64, priority: u8) -> OutboxRow {
        row(OutboxKind::Latest, key, seq, priority)
    }

    fn ordered(key: &str, seq: u64) -> OutboxRow {
        row(OutboxKind::Ordered, key, seq, 2)
    }

    fn keys(entries: &[Entry]) -> Vec<(String, u64)> {
        entries
            .iter()
            .map(|e| (e.row.key.clone(), e.row.ledger_seq))
            .collect()
    }

    fn k(key: &str, seq: u64) -> (String, u64) {
        (key.to_string(), seq)
    }

    #[test]
    fn zero_crossings_then_low_stock_then_oldest_first() {
        let now = Instant::now();
        let mut q = Queue::new();
        q.push(latest("rest-old", 1, 2), now);
        q.push(latest("low", 2, 1), now);
        q.push(latest("rest-new", 3, 2), now);
        q.push(latest("zero", 4, 0), now);
        let out = q.take(10, now);
        assert_eq!(
            keys(&out),
            [
                k("zero", 4),
                k("low", 2),
                k("rest-old", 1),
                k("rest-new", 3)
            ]
        );
    }

    #[test]
    fn latest_values_coalesce_per_key() {
        let now = Instant::now();
        let mut q = Queue::new();
        assert_eq!(q.push(latest("A", 1, 2), now), Pushed::Queued);
        q.push(latest("B", 2, 2), now);
        assert_eq!(q.push(latest("A", 5, 0), now), Pushed::Coalesced);
        assert_eq!(q.push(latest("A", 7, 2), now), Pushed::Coalesced);
        assert_eq!(q.push(latest("A", 7, 2), now), Pushed::Duplicate);
        assert!(
            matches!(q.push(latest("A", 3, 2), now), Pushed::Stale(a) if a.ledger_seq == 3 && !a.delivered)
        );
        let out = q.take(10, now);
        assert_eq!(
            keys(&out),
            [k("A", 7), k("B", 2)],
            "A kept the zero crossing's urgency"
        );
        assert_eq!((out[0].rows, out[0].priority), (3, 0));
    }

    #[test]
    fn nothing_older_than_what_was_delivered_goes_out() {
        let now = Instant::now();
        let mut q = Queue::new();
        q.push(latest("A", 5, 2), now);
        let e = q.take(1, now).pop().unwrap();
        // Newer and older values arrive while 5 is in flight.
        q.push(latest("A", 4, 2), now);
        q.push(latest("A", 6, 2), now);
        assert!(q.take(10, now).is_empty(), "one message per key in flight");
        let acks = q.delivered(e, Some(5), now);
        assert_eq!(acks.len(), 1);
        assert_eq!(q.last_sent("A"), Some((5, Some(5))));
        assert_eq!(keys(&q.take(10, now)), [k("A", 6)]);
        assert!(matches!(q.push(latest("A", 5, 2), now), Pushed::Stale(_)));
    }

    #[test]
    fn ordered_messages_go_one_at_a_time_in_ledger_order() {
        let now = Instant::now();
        let mut q = Queue::new();
        q.push(ordered("doc", 3), now);
        q.push(ordered("doc", 1), now);
        q.push(ordered("doc", 2), now);
        assert_eq!(q.push(ordered("doc", 2), now), Pushed::Duplicate);
        let first = q.take(10, now);
        assert_eq!(keys(&first), [k("doc", 1)]);
        q.delivered(first.into_iter().next().unwrap(), None, now);
        assert_eq!(keys(&q.take(10, now)), [k("doc", 2)]);
    }

    #[test]
    fn a_parked_key_holds_only_itself() {
        let now = Instant::now();
        let mut q = Queue::new();
        q.push(ordered("stuck", 1), now);
        q.push(ordered("stuck", 2), now);
        q.push(ordered("free", 3), now);
        q.push(ordered("free", 4), now);
        let out = q.take(10, now);
        assert_eq!(keys(&out), [k("stuck", 1), k("free", 3)]);
        let mut it = out.into_iter();
        q.parked(it.next().unwrap(), now);
        q.delivered(it.next().unwrap(), None, now);
        assert_eq!(keys(&q.take(10, now)), [k("free", 4)]);
        assert_eq!(q.depth().parked_keys, 1);
        q.release("stuck", now);
        assert_eq!(keys(&q.take(10, now)), [k("stuck", 2)]);
    }

    #[test]
    fn a_failed_entry_waits_for_its_backoff_and_absorbs_newer_values() {
        let now = Instant::now();
        let mut q = Queue::new();
        q.push(latest("A", 1, 2), now);
        let e = q.take(1, now).pop().unwrap();
        q.push(latest("A", 2, 0), now);
        let later = now + Duration::from_secs(1);
        q.retry(e, Some(later), now);
        assert!(q.take(10, now).is_empty());
        assert_eq!(q.ready_len(now), 0);
        assert_eq!(q.next_due(), Some(later));
        let out = q.take(10, later);
        assert_eq!(keys(&out), [k("A", 2)]);
        assert_eq!(out[0].priority, 0);
    }

    #[test]
    fn a_resend_goes_out_again_against_what_the_channel_shows() {
        let now = Instant::now();
        let mut q = Queue::new();
        q.push(latest("A", 5, 2), now);
        let e = q.take(1, now).pop().unwrap();
        q.delivered(e, Some(5), now);
        assert!(matches!(q.push(latest("A", 5, 2), now), Pushed::Stale(_)));
        q.resend(latest("A", 5, 2), Some(9), now);
        let out = q.take(10, now);
        assert_eq!(keys(&out), [k("A", 5)]);
        assert_eq!(out[0].cas_from, Some(Some(9)));
        // A new request, not a replay of the write of seq 5 the channel acknowledged (and, it
        // may be, lost); a second resync is newer still.
        let first = out[0].resync.expect("a resync");
        q.delivered(out.into_iter().next().unwrap(), Some(5), now);
        q.resend(latest("A", 5, 2), Some(9), now);
        let again = q.take(10, now);
        assert!(again[0].resync.expect("a resync") > first);
    }

    #[test]
    fn a_resend_older_than_what_went_out_is_dropped() {
        let now = Instant::now();
        let mut q = Queue::new();
        q.push(latest("A", 7, 2), now);
        let e = q.take(1, now).pop().unwrap();
        q.delivered(e, Some(7), now);
        q.resend(latest("A", 5, 2), Some(9), now);
        assert!(q.take(10, now).is_empty(), "seq 5 must not follow seq 7");
    }

    #[test]
    fn what_the_channel_showed_is_forgotten_once_a_value_lands() {
        let now = Instant::now();
        let mut q = Queue::new();
        q.push(latest("A", 1, 2), now);
        let in_flight = q.take(1, now).pop().unwrap();
        q.push(latest("A", 2, 2), now);
        // A drift report arrives while 1 is in flight: the pending 2 would compare against 9 ...
        q.resend(latest("A", 1, 2), Some(9), now);
        // ... but 1 lands first, so 2 compares against what was just delivered.
        q.delivered(in_flight, Some(1), now);
        let next = q.take(10, now);
        assert_eq!(keys(&next), [k("A", 2)]);
        assert_eq!(next[0].cas_from, None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u8, u64),
        Deliver(usize),
        Fail(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..4, 1u64..40).prop_map(|(k, s)| Op::Push(k, s)),
            1 => (0usize..4).prop_map(Op::Deliver),
            1 => (0usize..4).prop_map(Op::Fail),
        ]
    }

    proptest! {
        /// Out-of-order and duplicate ledger sequences never move a key backwards, and once
        /// everything is delivered each key holds the newest value pushed for it.
        #[test]
        fn delivered_values_never_go_backwards(ops in prop::collection::vec(op(), 1..200)) {
            let now = Instant::now();
            let mut q = Queue::new();
            let mut in_flight: Vec<Entry> = Vec::new();
            let mut newest: HashMap<String, u64> = HashMap::new();
            let mut delivered: HashMap<String, u64> = HashMap::new();
            let deliver = |q: &mut Queue, e: Entry, delivered: &mut HashMap<String, u64>| {
                let key = e.row.key.clone();
                let seq = e.row.ledger_seq;
                if let Some(prev) = delivered.get(&key) {
                    prop_assert!(seq > *prev, "{key}: delivered {seq} after {prev}");
                }
                delivered.insert(key, seq);
                q.delivered(e, Some(seq as i64), now);
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Push(key, seq) => {
                        let key = format!("K{key}");
                        let n = newest.entry(key.clone()).or_insert(seq);
                        *n = (*n).max(seq);
                        q.push(latest(&key, seq, 2), now);
                    }
                    Op::Deliver(n) => {
                        in_flight.extend(q.take(n, now));
                        if !in_flight.is_empty() {
                            let e = in_flight.remove(0);
                            deliver(&mut q, e, &mut delivered)?;
                        }
                    }
                    Op::Fail(n) => {
                        in_flight.extend(q.take(n, now));
                        if let Some(e) = in_flight.pop() {
                            q.retry(e, None, now);
                        }
                    }
                }
            }
            for e in std::mem::take(&mut in_flight) {
                deliver(&mut q, e, &mut delivered)?;
            }
            loop {
                let batch = q.take(100, now);
                if batch.is_empty() { break; }
                for e in batch { deliver(&mut q, e, &mut delivered)?; }
            }
            prop_assert!(q.is_empty());
            for (key, seq) in &newest {
                prop_assert_eq!(q.last_sent(key).map(|s| s.0), Some(*seq), "{}", key);
            }
        }
    }
}
