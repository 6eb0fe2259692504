//! The ledger state of one partition and the pure `apply` that changes it.
//!
//! Architecture invariant: nothing here does I/O, reads a clock or draws randomness. Time and ids
//! come in on the event; everything with side effects leaves as [`Effects`] data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crossdock_model::event::{
    Adjusted, Counted, Disposition, Event, EventData, GapTimeout, Picked, ReservationRef,
    ReservationRequested, ReturnInspected, ReturnReceived, Shipped, StatusChanged, StockStatus,
    SupplyExpected, TransferReceived, TransferShipped,
};
use crossdock_model::event::{QTY_MAX, qty_in_bound};
use crossdock_model::{
    ChannelId, ExceptionKind, ExceptionRecord, HUB_SOURCE, ItemId, LocationId, Lot, SourceId,
    Timestamp,
};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::ats::{channel_ats, priority};
use crate::items::ItemMap;
use crate::policy::{ChanIdx, LocIdx, Policy};
use crate::position::{CountMark, Position, TimeEffect};
use crate::reservation::{ResStatus, Reservation, Shortfall, plan_reservation, request_hash};
use crate::workflow::{Posting, Step, Workflow};

/// Last value published to one channel for one item, and the ledger sequence it was computed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub ats: i64,
    pub seq: u64,
}

/// An open line of expected supply (PO/ASN) at a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplyLine {
    pub reference: String,
    pub location: LocIdx,
    pub open: i64,
    pub expected_at: Timestamp,
}

/// A transfer in transit to `to`, with what is still expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferLine {
    pub transfer: String,
    pub to: LocIdx,
    pub open: i64,
}

/// Everything the ledger knows about one item. A million items are held in memory, most with
/// one to a few positions and channels, so both are stored inline up to two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemState {
    /// Which item: tables of items ([`crate::ItemMap`]) find a state by the id it holds.
    id: ItemId,
    pub positions: SmallVec<[Position; 2]>,
    /// Indexed by channel; `None` until first published.
    pub published: SmallVec<[Option<Published>; 2]>,
    /// Open supply, transfers in transit and the oversell hold: most items have none, so they
    /// live behind one pointer (a million items are held in memory).
    pub extras: Option<Box<ItemExtras>>,
    /// Ledger sequence of the last change.
    pub last_seq: u64,
}

impl ItemState {
    /// An item with nothing yet.
    pub fn new(id: ItemId) -> Self {
        ItemState {
            id,
            positions: SmallVec::new(),
            published: SmallVec::new(),
            extras: None,
            last_seq: 0,
        }
    }

    pub fn id(&self) -> &ItemId {
        &self.id
    }

    pub fn position(&self, loc: LocIdx, lot: Option<&Lot>) -> Option<&Position> {
        self.positions
            .iter()
            .find(|p| p.location == loc && p.lot.as_ref() == lot)
    }

    pub fn position_mut(&mut self, loc: LocIdx, lot: Option<&Lot>) -> &mut Position {
        match self
            .positions
            .iter()
            .position(|p| p.location == loc && p.lot.as_ref() == lot)
        {
            Some(i) => &mut self.positions[i],
            None => {
                self.positions.push(Position::new(loc, lot.cloned()));
                self.positions
                    .sort_by(|a, b| (a.location, &a.lot).cmp(&(b.location, &b.lot)));
                let i = self
                    .positions
                    .iter()
                    .position(|p| p.location == loc && p.lot.as_ref() == lot)
                    .expect("just inserted");
                &mut self.positions[i]
            }
        }
    }

    pub fn supply(&self) -> &[SupplyLine] {
        self.extras.as_ref().map_or(&[], |e| &e.supply)
    }

    pub fn transfers(&self) -> &[TransferLine] {
        self.extras.as_ref().map_or(&[], |e| &e.transfers)
    }

    pub fn oversell_hold(&self) -> Option<&str> {
        self.extras
            .as_ref()
            .and_then(|e| e.oversell_hold.as_deref())
    }

    pub fn extras_mut(&mut self) -> &mut ItemExtras {
        self.extras.get_or_insert_default()
    }

    /// Drops the extras again once they are empty.
    pub fn tidy(&mut self) {
        if self
            .extras
            .as_deref()
            .is_some_and(|e| *e == ItemExtras::default())
        {
            self.extras = None;
        }
    }

    fn any_negative(&self) -> bool {
        self.positions.iter().any(|p| p.b().available() < 0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemExtras {
    pub supply: Vec<SupplyLine>,
    pub transfers: Vec<TransferLine>,
    /// The open `oversell_risk` exception while some position is below zero.
    pub oversell_hold: Option<String>,
}

/// A changed availability for a delivery lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtsChange {
    pub channel: ChanIdx,
    pub item: ItemId,
    pub ats: i64,
    pub previous: Option<i64>,
    pub seq: u64,
    pub priority: u8,
}

/// A timer to set: when due, the engine submits `command`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerSet {
    pub id: String,
    pub due_at: Timestamp,
    pub command: Event,
    /// Stored in the timers table. Reservation expiries are not: the reservation row already holds
    /// its `expires_at` durably, and the engine re-arms them from it on start.
    pub durable: bool,
}

/// Side effects of a batch, as data. The engine persists them in the batch's commit.
#[derive(Debug, Default)]
pub struct Effects {
    pub touched_items: Vec<ItemId>,
    touched_item_set: HashSet<ItemId>,
    /// Latest state of every reservation the batch changed (settled ones leave the ledger).
    pub reservations: Vec<Reservation>,
    pub touched_sources: Vec<SourceId>,
    pub ats_changes: Vec<AtsChange>,
    pub exceptions: Vec<ExceptionRecord>,
    /// Exception ids the ledger resolved itself, with when and why.
    pub exceptions_resolved: Vec<(String, Timestamp, String)>,
    pub timers_set: Vec<TimerSet>,
    /// Durable timers that fired or are no longer needed.
    pub timers_done: Vec<String>,
    /// Timers derived from other durable state (reservation expiries) that are no longer needed.
    pub timers_cancelled: Vec<String>,
    /// Held events that were released: their log sequence and whether they applied.
    pub released: Vec<(u64, bool)>,
    /// Events of resequenced sources now in line, for the partitions of their items to apply
    /// (only when [`Ledger::forward_sequenced`]), in the order they came in line.
    pub forwards: Vec<Forward>,
    /// Latest hub clock seen in the batch; the "now" of the incoming horizon.
    pub now: Timestamp,
    /// Latest state of every workflow the batch changed.
    pub workflows: Vec<Workflow>,
    /// Workflow steps the batch recorded, in order.
    pub steps: Vec<Step>,
    /// Messages about workflows for other systems (ERP, warehouses, partners).
    pub postings: Vec<Posting>,
    /// Parts of cross-partition reservations to settle as their coordinator decided, once the
    /// decision is durable.
    pub part_commands: Vec<crate::cross::PartCommand>,
    /// What each applied input changed, per position, in the order applied: the journal that
    /// reconciliation backs out of the ledger and item history reads.
    pub changes: Vec<PositionChange>,
    /// The items the input being applied has touched so far, as they were before it.
    journal: Option<Journal>,
}

/// An event of a resequenced source that came in line, to be applied by the partitions of its
/// items once this batch is durable.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Where the event is logged in this partition.
    pub log_seq: u64,
    /// Whether it waited in the resequencer (its log row is `held`, not new).
    pub was_held: bool,
    pub event: Event,
}

/// The buckets one applied input changed at one position (`after - before`, never all zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionChange {
    /// Ledger sequence the change was applied at.
    pub seq: u64,
    /// The event time of the input.
    pub time: Timestamp,
    pub item: ItemId,
    pub location: LocIdx,
    pub lot: Option<Lot>,
    pub delta: crate::position::Buckets,
}

#[derive(Debug)]
struct Journal {
    seq: u64,
    time: Timestamp,
    /// Each touched item's positions' buckets before the input (copied, so the item's state
    /// itself is not cloned for every input).
    before: Vec<(ItemId, Vec<BucketsAt>)>,
}

/// A position's buckets, by location and lot.
type BucketsAt = (LocIdx, Option<Lot>, crate::position::Buckets);

impl Effects {
    fn open_journal(&mut self, seq: u64, time: Timestamp) {
        self.journal = Some(Journal {
            seq,
            time,
            before: Vec::new(),
        });
    }

    /// Records what the input changed since `open_journal`, comparing each touched item with
    /// its state before.
    fn close_journal(&mut self, items: &ItemMap) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for (id, old) in journal.before {
            let new = items.get(&id).map_or(&[][..], |s| &s.positions[..]);
            let keys = old
                .iter()
                .map(|(l, lot, _)| (*l, lot.as_ref()))
                .chain(new.iter().map(|p| (p.location, p.lot.as_ref())));
            let mut seen: Vec<(LocIdx, Option<&Lot>)> = Vec::new();
            for key in keys {
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let was = old
                    .iter()
                    .find(|(l, lot, _)| (*l, lot.as_ref()) == key)
                    .map(|(_, _, b)| *b)
                    .unwrap_or_default();
                let now = new
                    .iter()
                    .find(|p| (p.location, p.lot.as_ref()) == key)
                    .map(|p| p.b())
                    .unwrap_or_default();
                let delta = now.minus(&was);
                if delta != Default::default() {
                    self.changes.push(PositionChange {
                        seq: journal.seq,
                        time: journal.time,
                        item: id.clone(),
                        location: key.0,
                        lot: key.1.cloned(),
                        delta,
                    });
                }
            }
        }
    }

    fn touch(&mut self, item: &ItemId) {
        if self.touched_item_set.insert(item.clone()) {
            self.touched_items.push(item.clone());
        }
    }
    pub(crate) fn touch_reservation(&mut self, r: &Reservation) {
        match self.reservations.iter_mut().find(|x| x.id == r.id) {
            Some(x) => *x = r.clone(),
            None => self.reservations.push(r.clone()),
        }
    }
    pub(crate) fn exception(
        &mut self,
        ev: &Event,
        kind: ExceptionKind,
        entity: String,
        reason: String,
    ) {
        let cause = format!("event:{}/{}", ev.source, ev.id);
        let raw = serde_json::to_string(&ev.to_envelope()).ok();
        self.exceptions.push(ExceptionRecord::open(
            kind,
            &cause,
            entity,
            Some(ev.correlation_id.clone()),
            reason,
            raw,
            ev.received_at,
        ));
    }
}

/// A bucket an input would take out of bounds, named down to its position.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Breach {
    item: ItemId,
    location: LocationId,
    lot: Option<Lot>,
    bucket: &'static str,
    value: i64,
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} at {}", self.bucket, self.item, self.location)?;
        if let Some(lot) = &self.lot {
            write!(f, " lot {lot}")?;
        }
        write!(f, " to {}", self.value)
    }
}

/// Refuses an input that fails [`Event::check`]: nothing changes, nothing is logged, and an
/// exception keeps the raw input (`out_of_bounds` for a time beyond the hub's bounds,
/// `schema_violation` for anything else).
fn refuse(ev: &Event, e: crossdock_model::event::EventError, fx: &mut Effects) -> Outcome {
    let field = e.field().to_string();
    let kind = if field == "time" {
        ExceptionKind::OutOfBounds
    } else {
        ExceptionKind::SchemaViolation
    };
    let entity = match ev.data.items().first() {
        Some(item) => format!("item:{item}"),
        None => format!("source:{}", ev.source),
    };
    let reason = e.to_string();
    fx.exception(
        ev,
        kind,
        entity,
        format!("event {} from {}: {reason}", ev.id, ev.source),
    );
    Outcome::Rejected(Rejection::Invalid { field, reason })
}

/// What the ledger did with one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Changed state (or was recorded as already included); logged.
    Applied,
    /// Recorded but not applied; an exception was opened. Logged.
    Quarantined { kind: ExceptionKind, reason: String },
    /// Waiting for a missing sequence number; logged, applied when released.
    Held,
    /// In line for its resequenced source and handed to the partitions of its items
    /// ([`Effects::forwards`]); logged.
    Forwarded,
    /// A reservation was created (logged) or an identical request repeated (not logged).
    Reservation { view: Reservation, repeat: bool },
    /// Not enough stock for at least one line; nothing changed, not logged.
    Insufficient(Vec<Shortfall>),
    /// Refused; nothing changed, not logged.
    Rejected(Rejection),
    /// Nothing to do (a timer for something already settled); not logged.
    Noop,
    /// A workflow command changed a workflow (logged) or repeated one (not logged).
    Workflow { view: Box<Workflow>, repeat: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    NotFound(String),
    /// Same reservation id with a different request.
    Conflict(String),
    InvalidState(String),
    Invalid {
        field: String,
        reason: String,
    },
}

impl Outcome {
    /// Whether the input goes into the event log.
    pub fn is_logged(&self) -> bool {
        match self {
            Outcome::Applied | Outcome::Quarantined { .. } | Outcome::Held | Outcome::Forwarded => {
                true
            }
            Outcome::Reservation { repeat, .. } | Outcome::Workflow { repeat, .. } => !repeat,
            Outcome::Insufficient(_) | Outcome::Rejected(_) | Outcome::Noop => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeldEvent {
    pub log_seq: u64,
    pub event: Event,
}

/// Resequencer state of one source.
#[derive(Debug, Clone, Default)]
pub struct SourceSeq {
    pub next: u64,
    pub held: BTreeMap<u64, HeldEvent>,
}

/// The state of one partition.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Sequence of the last logged input.
    pub seq: u64,
    pub(crate) items: ItemMap,
    pub(crate) reservations: HashMap<String, Reservation>,
    sources: HashMap<SourceId, SourceSeq>,
    /// Workflows still in progress, by key (`order:<id>`, ...); finished ones live in the store.
    /// Boxed: growing the map then moves pointers, not workflows (no pause when it doubles).
    pub(crate) workflows: HashMap<String, Box<Workflow>>,
    /// Orders waiting for stock of an item, oldest first.
    pub(crate) backorders: BTreeMap<ItemId, Vec<String>>,
    /// With several partitions, the partition of a resequenced source only puts its events in
    /// order: each one in line is forwarded ([`Effects::forwards`]) to the partitions of its
    /// items, which apply it as an ordinary input. With one partition it applies them itself.
    pub forward_sequenced: bool,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn item(&self, id: &ItemId) -> Option<&Arc<ItemState>> {
        self.items.get(id)
    }

    pub fn items(&self) -> impl Iterator<Item = (&ItemId, &Arc<ItemState>)> {
        self.items.iter().map(|s| (s.id(), s))
    }

    /// Every item's state, as a table to share (cloning it copies pointers).
    pub fn item_map(&self) -> &ItemMap {
        &self.items
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    pub fn insert_item(&mut self, state: ItemState) {
        self.items.insert(Arc::new(state));
    }

    /// The state of `id` to fill in from the store while loading, empty if it is new.
    pub fn restore_item(&mut self, id: &ItemId) -> &mut ItemState {
        Arc::make_mut(self.items.get_or_insert(id))
    }

    /// Puts an item's state in as it is (another partition's item, lent for one input).
    pub fn lend_item(&mut self, state: Arc<ItemState>) {
        self.items.insert(state);
    }

    /// Takes an item's state out (a lent item going back to its partition).
    pub fn take_item(&mut self, id: &ItemId) -> Option<Arc<ItemState>> {
        self.items.remove(id)
    }

    pub fn reservation(&self, id: &str) -> Option<&Reservation> {
        self.reservations.get(id)
    }

    /// Reservations held, committed or being decided.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    pub fn insert_reservation(&mut self, r: Reservation) {
        self.reservations.insert(r.id.clone(), r);
    }

    pub fn source_seq(&self, source: &SourceId) -> Option<&SourceSeq> {
        self.sources.get(source)
    }

    pub fn restore_source(&mut self, source: SourceId, next: u64) {
        self.sources.entry(source).or_default().next = next;
    }

    /// Puts a held event back after a restart.
    pub fn restore_held(&mut self, log_seq: u64, event: Event) {
        let Some(seq) = event.sequence else { return };
        self.sources
            .entry(event.source.clone())
            .or_default()
            .held
            .insert(seq, HeldEvent { log_seq, event });
    }

    pub(crate) fn item_mut(&mut self, id: &ItemId, fx: &mut Effects) -> &mut ItemState {
        fx.touch(id);
        if let Some(journal) = &mut fx.journal
            && !journal.before.iter().any(|(i, _)| i == id)
        {
            let buckets = self.items.get(id).map_or_else(Vec::new, |s| {
                s.positions
                    .iter()
                    .map(|p| (p.location, p.lot.clone(), p.b()))
                    .collect()
            });
            journal.before.push((id.clone(), buckets));
        }
        Arc::make_mut(self.items.get_or_insert(id))
    }

    /// Applies one input. The caller logs it at `self.seq` when `is_logged()`.
    pub fn apply(&mut self, policy: &Policy, ev: &Event, fx: &mut Effects) -> Outcome {
        fx.now = fx.now.max(ev.received_at);
        // One validation for every door: whatever built this event (HTTP, a partner file, a
        // webhook, a workflow command, a reconciliation), it is checked here before anything
        // else, and refused (not logged, an exception opened) when it fails.
        if let Err(e) = ev.check(&policy.time_bounds) {
            return refuse(ev, e, fx);
        }
        let seq = self.seq + 1;
        if let (Some(n), true) = (ev.sequence, policy.is_sequenced(&ev.source)) {
            let state = self
                .sources
                .entry(ev.source.clone())
                .or_insert_with(|| SourceSeq {
                    next: n,
                    ..Default::default()
                });
            if n > state.next {
                if state.held.contains_key(&n) {
                    return Outcome::Rejected(Rejection::Conflict(format!(
                        "sequence {n} of source {} is already held under another id",
                        ev.source
                    )));
                }
                state.held.insert(
                    n,
                    HeldEvent {
                        log_seq: seq,
                        event: ev.clone(),
                    },
                );
                let expected = state.next;
                let over = state.held.len() > policy.held_max;
                self.seq = seq;
                if !fx.touched_sources.contains(&ev.source) {
                    fx.touched_sources.push(ev.source.clone());
                }
                if over {
                    self.give_up_gap(policy, &ev.source, expected, ev, fx);
                } else {
                    fx.timers_set.push(gap_timer(
                        &ev.source,
                        expected,
                        ev.received_at.plus_secs(policy.gap_wait_s),
                    ));
                }
                return Outcome::Held;
            }
        }
        let sequenced = ev.sequence.is_some() && policy.is_sequenced(&ev.source);
        let outcome = if sequenced && self.forward_sequenced {
            fx.forwards.push(Forward {
                log_seq: seq,
                was_held: false,
                event: ev.clone(),
            });
            Outcome::Forwarded
        } else {
            self.apply_in_order(policy, ev, seq, fx)
        };
        if outcome.is_logged() {
            self.seq = seq;
        }
        if let (Some(n), true) = (ev.sequence, sequenced) {
            let state = self.sources.get_mut(&ev.source).expect("created above");
            if n == state.next {
                state.next = n.saturating_add(1);
                fx.timers_done.push(gap_timer_id(&ev.source, n));
                if !fx.touched_sources.contains(&ev.source) {
                    fx.touched_sources.push(ev.source.clone());
                }
                self.release_ready(policy, &ev.source, fx);
            }
        }
        outcome
    }

    /// Applies held events of `source` that are now next in line.
    fn release_ready(&mut self, policy: &Policy, source: &SourceId, fx: &mut Effects) {
        loop {
            let state = self.sources.get_mut(source).expect("source state exists");
            let next = state.next;
            let Some(held) = state.held.remove(&next) else {
                break;
            };
            state.next = next.saturating_add(1);
            if self.forward_sequenced {
                fx.forwards.push(Forward {
                    log_seq: held.log_seq,
                    was_held: true,
                    event: held.event,
                });
                continue;
            }
            let outcome = self.apply_in_order(policy, &held.event, self.seq, fx);
            fx.released
                .push((held.log_seq, outcome == Outcome::Applied));
        }
    }

    fn give_up_gap(
        &mut self,
        policy: &Policy,
        source: &SourceId,
        expected: u64,
        cause: &Event,
        fx: &mut Effects,
    ) {
        let Some(state) = self.sources.get_mut(source) else {
            return;
        };
        if state.next != expected {
            return;
        }
        let Some((&first_held, _)) = state.held.first_key_value() else {
            return;
        };
        state.next = first_held;
        fx.timers_done.push(gap_timer_id(source, expected));
        let reason = format!(
            "source {source} skipped sequence {expected}..={}; {} held event(s) released after the wait",
            first_held - 1,
            state.held.len()
        );
        fx.exceptions.push(ExceptionRecord::open(
            ExceptionKind::SequenceGap,
            &format!("gap:{source}:{expected}"),
            format!("source:{source}"),
            Some(cause.correlation_id.clone()),
            reason,
            None,
            cause.received_at,
        ));
        self.release_ready(policy, source, fx);
    }

    /// Applies an input that is next in line, journaling what it changed.
    fn apply_in_order(
        &mut self,
        policy: &Policy,
        ev: &Event,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        fx.open_journal(seq, ev.time);
        let outcome = self.apply_unjournaled(policy, ev, seq, fx);
        fx.close_journal(&self.items);
        outcome
    }

    fn apply_unjournaled(
        &mut self,
        policy: &Policy,
        ev: &Event,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let hub = ev.source.as_str() == HUB_SOURCE;
        if hub == ev.data.is_public() {
            let reason = if hub {
                format!(
                    "source {HUB_SOURCE} is the hub's own; it does not emit {}",
                    ev.data.type_name()
                )
            } else {
                format!(
                    "{} is a hub command, not accepted from source {}",
                    ev.data.type_name(),
                    ev.source
                )
            };
            fx.exception(
                ev,
                ExceptionKind::OwnershipViolation,
                format!("source:{}", ev.source),
                reason.clone(),
            );
            return Outcome::Quarantined {
                kind: ExceptionKind::OwnershipViolation,
                reason,
            };
        }
        match &ev.data {
            EventData::ReservationRequested(r) => return self.reserve(policy, ev, r, seq, fx),
            EventData::ReservationReleased(r) => {
                return self.settle(policy, r, ResStatus::Released, seq, fx);
            }
            EventData::ReservationCommitted(r) => {
                return self.settle(policy, r, ResStatus::Committed, seq, fx);
            }
            EventData::ReservationExpired(r) => {
                return self.settle(policy, r, ResStatus::Expired, seq, fx);
            }
            EventData::CrossBegun(d) => return self.cross_begin(policy, ev, d, seq, fx),
            EventData::CrossDecided(d) => return self.cross_decide(ev, d, seq, fx),
            EventData::GapTimeout(GapTimeout { source, expected }) => {
                let waiting = self
                    .sources
                    .get(source)
                    .is_some_and(|s| s.next == *expected && !s.held.is_empty());
                if !waiting {
                    fx.timers_done.push(gap_timer_id(source, *expected));
                    return Outcome::Noop;
                }
                self.give_up_gap(policy, source, *expected, ev, fx);
                if !fx.touched_sources.contains(source) {
                    fx.touched_sources.push(source.clone());
                }
                return Outcome::Applied;
            }
            _ => {}
        }
        if let Some(outcome) = self.apply_workflow_command(policy, ev, seq, fx) {
            return outcome;
        }
        if let Err((kind, entity, reason)) = check_master_data(policy, ev) {
            fx.exception(ev, kind, entity, reason.clone());
            return Outcome::Quarantined { kind, reason };
        }
        let item_ids: Vec<ItemId> = ev.data.items().into_iter().cloned().collect();
        // What the items were before, to put back when the event would take a bucket out of
        // bounds (physical events change only their items).
        let saved: Vec<(ItemId, Option<Arc<ItemState>>)> = item_ids
            .iter()
            .map(|id| (id.clone(), self.items.get(id).cloned()))
            .collect();
        let exceptions_before = fx.exceptions.len();
        self.apply_physical(policy, ev, fx);
        if let Some(breach) = self.breach(policy, &saved) {
            for (id, state) in saved {
                match state {
                    Some(state) => self.items.insert(state),
                    None => self.items.remove(&id),
                };
            }
            fx.exceptions.truncate(exceptions_before);
            let reason = format!(
                "{} would take {breach}, beyond the bound of ±{QTY_MAX}; not applied",
                ev.data.type_name()
            );
            fx.exception(
                ev,
                ExceptionKind::OutOfBounds,
                format!("item:{}", breach.item),
                reason.clone(),
            );
            return Outcome::Quarantined {
                kind: ExceptionKind::OutOfBounds,
                reason,
            };
        }
        self.advance_workflows(policy, ev, seq, fx);
        for id in &item_ids {
            let item = self.item_mut(id, fx);
            item.last_seq = seq;
            check_oversell(policy, id, item, ev, seq, fx);
            item.tidy();
        }
        Outcome::Applied
    }

    /// The first bucket of the given items that an input took outside `±QTY_MAX` (or further
    /// outside than it was), compared with their state before it.
    fn breach(
        &self,
        policy: &Policy,
        before: &[(ItemId, Option<Arc<ItemState>>)],
    ) -> Option<Breach> {
        for (id, old) in before {
            let Some(new) = self.items.get(id) else {
                continue;
            };
            for p in &new.positions {
                let Some((bucket, value)) = p.b().out_of_bound() else {
                    continue;
                };
                let was = old
                    .as_ref()
                    .and_then(|o| o.position(p.location, p.lot.as_ref()))
                    .map_or(0, |o| {
                        o.b()
                            .named()
                            .into_iter()
                            .find(|(n, _)| *n == bucket)
                            .map_or(0, |(_, v)| v)
                    });
                if qty_in_bound(was) || value.unsigned_abs() > was.unsigned_abs() {
                    return Some(Breach {
                        item: id.clone(),
                        location: policy.location_name(p.location).clone(),
                        lot: p.lot.clone(),
                        bucket,
                        value,
                    });
                }
            }
        }
        None
    }

    fn apply_physical(&mut self, policy: &Policy, ev: &Event, fx: &mut Effects) {
        let loc = |l: &LocationId| policy.location(l).expect("checked by check_master_data");
        let t = ev.time;
        match &ev.data {
            EventData::Received(d) => {
                let item = self.item_mut(&d.item, fx);
                let l = loc(&d.location);
                item.position_mut(l, d.lot.as_ref()).on_hand_delta(t, d.qty);
                if let Some(reference) = &d.reference
                    && let Some(line) = item
                        .extras_mut()
                        .supply
                        .iter_mut()
                        .find(|s| &s.reference == reference && s.location == l)
                {
                    let closes = line.open.min(d.qty);
                    line.open -= closes;
                    item.position_mut(l, None).b_mut().incoming -= closes;
                    item.extras_mut().supply.retain(|s| s.open > 0);
                }
            }
            EventData::Adjusted(Adjusted {
                item,
                location,
                delta,
                lot,
                ..
            }) => {
                self.item_mut(item, fx)
                    .position_mut(loc(location), lot.as_ref())
                    .on_hand_delta(t, *delta);
            }
            EventData::Counted(Counted {
                item,
                location,
                qty,
                lot,
            }) => {
                let mark = CountMark {
                    time: t,
                    tiebreak: ev.payload_hash(),
                };
                let effect = self
                    .item_mut(item, fx)
                    .position_mut(loc(location), lot.as_ref())
                    .count(mark, *qty);
                if effect == TimeEffect::BeyondWindow {
                    fx.exception(
                        ev,
                        ExceptionKind::InventoryMismatch,
                        format!("item:{item}"),
                        format!(
                            "count of {qty} at {location} as of {t} is older than the deltas the ledger remembers; \
                             not applied, send a current count"
                        ),
                    );
                }
            }
            EventData::StatusChanged(StatusChanged {
                item,
                location,
                qty,
                from,
                to,
                lot,
            }) => {
                let mut b = self
                    .item_mut(item, fx)
                    .position_mut(loc(location), lot.as_ref())
                    .b_mut();
                if let Some(b) = status_bucket(&mut b, *from) {
                    *b -= qty;
                }
                if let Some(b) = status_bucket(&mut b, *to) {
                    *b += qty;
                }
            }
            EventData::Picked(Picked {
                item,
                location,
                qty,
                ..
            }) => {
                let p = self.item_mut(item, fx).position_mut(loc(location), None);
                p.b_mut().allocated -= qty;
                p.b_mut().picked += qty;
            }
            EventData::Shipped(Shipped { lines, .. }) => {
                for line in lines {
                    let p = self
                        .item_mut(&line.item, fx)
                        .position_mut(loc(&line.location), None);
                    p.b_mut().picked -= line.qty;
                    p.on_hand_delta(t, -line.qty);
                }
            }
            EventData::TransferShipped(TransferShipped {
                transfer,
                item,
                from,
                to,
                qty,
            }) => {
                let state = self.item_mut(item, fx);
                state.position_mut(loc(from), None).on_hand_delta(t, -qty);
                state.position_mut(loc(to), None).b_mut().in_transit += qty;
                state.extras_mut().transfers.push(TransferLine {
                    transfer: transfer.clone(),
                    to: loc(to),
                    open: *qty,
                });
            }
            EventData::TransferReceived(TransferReceived {
                transfer,
                item,
                location,
                qty,
            }) => {
                let l = loc(location);
                let state = self.item_mut(item, fx);
                let open = state
                    .transfers()
                    .iter()
                    .find(|x| &x.transfer == transfer && x.to == l)
                    .map(|x| x.open);
                let closes = open.unwrap_or(0).min(*qty);
                if let Some(line) = state
                    .extras_mut()
                    .transfers
                    .iter_mut()
                    .find(|x| &x.transfer == transfer && x.to == l)
                {
                    line.open -= closes;
                }
                state.extras_mut().transfers.retain(|x| x.open > 0);
                let p = state.position_mut(l, None);
                p.b_mut().in_transit -= closes;
                p.on_hand_delta(t, *qty);
                let variance = match open {
                    None => Some(format!(
                        "transfer {transfer} received {qty} at {location} but no shipment is known"
                    )),
                    Some(o) if *qty > o => Some(format!(
                        "transfer {transfer} received {qty} at {location}, {o} in transit"
                    )),
                    _ => None,
                };
                if let Some(reason) = variance {
                    fx.exception(
                        ev,
                        ExceptionKind::TransferVariance,
                        format!("item:{item}"),
                        reason,
                    );
                }
            }
            EventData::ReturnReceived(ReturnReceived {
                item,
                location,
                qty,
                ..
            }) => {
                let p = self.item_mut(item, fx).position_mut(loc(location), None);
                p.on_hand_delta(t, *qty);
                p.b_mut().returns_pending += qty;
            }
            EventData::ReturnInspected(ReturnInspected {
                item,
                location,
                qty,
                disposition,
                ..
            }) => {
                let p = self.item_mut(item, fx).position_mut(loc(location), None);
                p.b_mut().returns_pending -= qty;
                match disposition {
                    Disposition::Restock => {}
                    Disposition::Damaged => p.b_mut().damaged += qty,
                    Disposition::Scrap => {
                        p.on_hand_delta(t, -qty);
                    }
                }
            }
            EventData::SupplyExpected(SupplyExpected {
                reference,
                item,
                location,
                qty,
                expected_at,
            }) => {
                let l = loc(location);
                let state = self.item_mut(item, fx);
                let open = state
                    .supply()
                    .iter()
                    .find(|s| &s.reference == reference && s.location == l)
                    .map_or(0, |s| s.open);
                // Less expected: never more than the reference has open.
                let change = if *qty < 0 {
                    -(qty.unsigned_abs().min(open.unsigned_abs()) as i64)
                } else {
                    *qty
                };
                state.position_mut(l, None).b_mut().incoming += change;
                match state
                    .extras_mut()
                    .supply
                    .iter_mut()
                    .find(|s| &s.reference == reference && s.location == l)
                {
                    Some(line) => {
                        line.open += change;
                        line.expected_at = *expected_at;
                    }
                    None if change > 0 => state.extras_mut().supply.push(SupplyLine {
                        reference: reference.clone(),
                        location: l,
                        open: change,
                        expected_at: *expected_at,
                    }),
                    None => {}
                }
                state.extras_mut().supply.retain(|s| s.open > 0);
            }
            EventData::ReservationRequested(_)
            | EventData::ReservationReleased(_)
            | EventData::ReservationCommitted(_)
            | EventData::ReservationExpired(_)
            | EventData::GapTimeout(_)
            | EventData::CrossBegun(_)
            | EventData::CrossDecided(_) => {
                unreachable!("hub commands are handled before physical events")
            }
            EventData::OrderCaptured(_)
            | EventData::OrderApproved(_)
            | EventData::OrderCancelled(_)
            | EventData::OrderShipmentDue(_)
            | EventData::BackordersDue(_)
            | EventData::ReturnAuthorized(_)
            | EventData::TransferRequested(_)
            | EventData::PurchaseOrderCreated(_)
            | EventData::PurchaseOrderAcknowledged(_)
            | EventData::PurchaseOrderAckDue(_)
            | EventData::AsnReceived(_)
            | EventData::AsnDecided(_) => {
                unreachable!("workflow commands are handled before physical events")
            }
        }
    }

    pub(crate) fn reserve(
        &mut self,
        policy: &Policy,
        ev: &Event,
        r: &ReservationRequested,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let request_hash = request_hash(r);
        if let Some(existing) = self.reservations.get(&r.reservation) {
            if existing.request_hash == request_hash {
                return Outcome::Reservation {
                    view: existing.clone(),
                    repeat: true,
                };
            }
            return Outcome::Rejected(Rejection::Conflict(format!(
                "reservation {} already exists with other lines or channel",
                r.reservation
            )));
        }
        let Some(chan) = policy.channel(&r.channel) else {
            return Outcome::Rejected(Rejection::Invalid {
                field: "channel".into(),
                reason: format!("unknown channel {:?}", r.channel.as_str()),
            });
        };
        for (i, line) in r.lines.iter().enumerate() {
            if !policy.knows_item(&line.item) {
                return Outcome::Rejected(Rejection::Invalid {
                    field: format!("lines[{i}].item"),
                    reason: format!("unknown item {:?}", line.item.as_str()),
                });
            }
        }
        let channel = policy.channel_policy(chan);
        let plan = plan_reservation(policy, &r.lines, channel, |id| {
            self.items.get(id).map(|a| &**a)
        });
        let lines = match plan {
            Ok(lines) => lines,
            Err(shortfalls) => return Outcome::Insufficient(shortfalls),
        };
        for line in &lines {
            let l = policy
                .location(&line.location)
                .expect("planned from policy");
            let item = self.item_mut(&line.item, fx);
            item.last_seq = seq;
            let p = item.position_mut(l, line.lot.as_ref());
            p.b_mut().reserved += line.qty;
            debug_assert!(
                p.b().available() >= 0,
                "a reservation never drives available below zero"
            );
        }
        let expires_at = ev.time.plus_secs(r.ttl_s);
        let res = Reservation {
            id: r.reservation.clone(),
            channel: r.channel.clone(),
            status: ResStatus::Held,
            lines,
            request_hash,
            expires_at,
            created_seq: seq,
            updated_seq: seq,
            cross: None,
        };
        fx.timers_set.push(expiry_timer(&res));
        fx.touch_reservation(&res);
        self.reservations.insert(res.id.clone(), res.clone());
        Outcome::Reservation {
            view: res,
            repeat: false,
        }
    }

    fn settle(
        &mut self,
        policy: &Policy,
        r: &ReservationRef,
        to: ResStatus,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let Some(res) = self.reservations.get(&r.reservation) else {
            if to == ResStatus::Expired {
                fx.timers_cancelled
                    .push(reservation_timer_id(&r.reservation));
                return Outcome::Noop;
            }
            return Outcome::Rejected(Rejection::NotFound(format!(
                "no reservation {}",
                r.reservation
            )));
        };
        let from = res.status;
        match (from, to) {
            (ResStatus::Held, _) => {}
            // Cancelling an order after its allocation: the units go back to available.
            (ResStatus::Committed, ResStatus::Released) => {}
            (from, to) if from == to => {
                return Outcome::Reservation {
                    view: res.clone(),
                    repeat: true,
                };
            }
            (_, ResStatus::Expired) => {
                fx.timers_cancelled
                    .push(reservation_timer_id(&r.reservation));
                return Outcome::Noop;
            }
            (from, to) => {
                return Outcome::Rejected(Rejection::InvalidState(format!(
                    "reservation {} is {}, it cannot become {}",
                    r.reservation,
                    from.as_str(),
                    to.as_str()
                )));
            }
        }
        if res.cross.is_some() {
            return self.cross_settle(&r.reservation, to, seq, fx);
        }
        let lines = res.lines.clone();
        for line in &lines {
            let item = self.item_mut(&line.item, fx);
            item.last_seq = seq;
            let loc = policy
                .location(&line.location)
                .expect("reserved at a configured location");
            let p = item.position_mut(loc, line.lot.as_ref());
            if from == ResStatus::Committed {
                // What was already picked against the allocation is not allocated any more;
                // give back only what still is.
                let mut b = p.b_mut();
                b.allocated -= line.qty.min(b.allocated.max(0));
                continue;
            }
            assert!(
                p.b().reserved >= line.qty,
                "a held reservation's quantity is in its position's reserved bucket"
            );
            p.b_mut().reserved -= line.qty;
            if to == ResStatus::Committed {
                p.b_mut().allocated += line.qty;
            }
        }
        let res = self
            .reservations
            .get_mut(&r.reservation)
            .expect("found above");
        res.status = to;
        res.updated_seq = seq;
        let view = res.clone();
        if to != ResStatus::Committed {
            self.reservations.remove(&r.reservation);
        }
        fx.touch_reservation(&view);
        fx.timers_cancelled
            .push(reservation_timer_id(&r.reservation));
        Outcome::Reservation {
            view,
            repeat: false,
        }
    }

    /// Recomputes channel availability of the items the batch touched; records what changed.
    pub fn finish_batch(&mut self, policy: &Policy, fx: &mut Effects) {
        let now = fx.now;
        let touched = fx.touched_items.clone();
        for id in &touched {
            let Some(arc) = self.items.get_mut(id) else {
                continue;
            };
            let item = Arc::make_mut(arc);
            item.published.resize(policy.channels.len(), None);
            for (i, channel) in policy.channels.iter().enumerate() {
                let ats = channel_ats(item, channel, now);
                let previous = item.published[i].map(|p| p.ats);
                if previous == Some(ats) {
                    continue;
                }
                item.published[i] = Some(Published {
                    ats,
                    seq: item.last_seq,
                });
                fx.ats_changes.push(AtsChange {
                    channel: ChanIdx(i as u16),
                    item: id.clone(),
                    ats,
                    previous,
                    seq: item.last_seq,
                    priority: priority(previous.unwrap_or(0), ats, channel.low_stock),
                });
            }
        }
    }
}

/// The bucket holding stock of a status; sellable stock is on_hand that is in no other bucket.
fn status_bucket(b: &mut crate::position::Buckets, s: StockStatus) -> Option<&mut i64> {
    match s {
        StockStatus::Sellable => None,
        StockStatus::Quarantined => Some(&mut b.quarantined),
        StockStatus::Damaged => Some(&mut b.damaged),
    }
}

fn check_oversell(
    policy: &Policy,
    id: &ItemId,
    item: &mut ItemState,
    ev: &Event,
    seq: u64,
    fx: &mut Effects,
) {
    match (
        item.oversell_hold().map(str::to_string),
        item.any_negative(),
    ) {
        (None, true) => {
            let record = ExceptionRecord::open(
                ExceptionKind::OversellRisk,
                &format!("oversell:{id}:{seq}"),
                format!("item:{id}"),
                Some(ev.correlation_id.clone()),
                format!(
                    "{} drove available below zero for {id}; positive availability is withheld from every channel \
                     until the stock is corrected",
                    ev.data.type_name()
                ),
                serde_json::to_string(&ev.to_envelope()).ok(),
                ev.received_at,
            );
            item.extras_mut().oversell_hold = Some(record.id.clone());
            fx.exceptions.push(record);
        }
        (Some(_), false) if !policy.resolves_oversell_records => {
            // Left open for a person (exceptions policy `hold`); the hold itself is lifted.
            item.extras_mut().oversell_hold = None;
        }
        (Some(ex), false) => {
            fx.exceptions_resolved.push((
                ex.clone(),
                ev.received_at,
                format!(
                    "available is back at or above zero after {} {}",
                    ev.source, ev.id
                ),
            ));
            item.extras_mut().oversell_hold = None;
        }
        _ => {}
    }
}

/// Checks items, locations and ownership. `Err((kind, entity, reason))` quarantines the event.
fn check_master_data(policy: &Policy, ev: &Event) -> Result<(), (ExceptionKind, String, String)> {
    let ty = ev.data.type_name();
    for item in ev.data.items() {
        if !policy.knows_item(item) {
            return Err((
                ExceptionKind::UnknownItem,
                format!("item:{item}"),
                format!("unknown item {:?}", item.as_str()),
            ));
        }
    }
    let check_loc =
        |l: &LocationId, owner_check: bool| -> Result<(), (ExceptionKind, String, String)> {
            let Some(idx) = policy.location(l) else {
                return Err((
                    ExceptionKind::UnknownLocation,
                    format!("location:{l}"),
                    format!("unknown location {:?}", l.as_str()),
                ));
            };
            if owner_check && !policy.owns(&ev.source, ty, idx) {
                return Err((
                    ExceptionKind::OwnershipViolation,
                    format!("source:{}", ev.source),
                    format!("source {} does not own {ty} at {l}", ev.source),
                ));
            }
            Ok(())
        };
    match &ev.data {
        EventData::Received(d) => check_loc(&d.location, true),
        EventData::Adjusted(d) => check_loc(&d.location, true),
        EventData::Counted(d) => check_loc(&d.location, true),
        EventData::StatusChanged(d) => check_loc(&d.location, true),
        EventData::Picked(d) => check_loc(&d.location, true),
        EventData::Shipped(d) => d
            .lines
            .iter()
            .try_for_each(|l| check_loc(&l.location, true)),
        EventData::TransferShipped(d) => {
            check_loc(&d.from, true).and_then(|()| check_loc(&d.to, false))
        }
        EventData::TransferReceived(d) => check_loc(&d.location, true),
        EventData::ReturnReceived(d) => check_loc(&d.location, true),
        EventData::ReturnInspected(d) => check_loc(&d.location, true),
        EventData::SupplyExpected(d) => check_loc(&d.location, true),
        _ => Ok(()),
    }
}

/// The expiry of a held reservation, correlated with the reservation it ends.
pub fn expiry_timer(r: &Reservation) -> TimerSet {
    TimerSet {
        id: reservation_timer_id(&r.id),
        due_at: r.expires_at,
        command: hub_command(
            format!("expire:{}", r.id),
            r.expires_at,
            format!("reservation:{}", r.id),
            EventData::ReservationExpired(ReservationRef {
                reservation: r.id.clone(),
            }),
        ),
        durable: false,
    }
}

/// The id of the hub command that creates reservation `reservation` (the only one that makes a
/// row for a new id): the writer knows a reservation exists by this key's fingerprint.
pub fn reserve_command_id(reservation: &str) -> String {
    format!("reserve:{reservation}")
}

pub fn reservation_timer_id(reservation: &str) -> String {
    format!("res:{reservation}")
}

pub fn gap_timer_id(source: &SourceId, expected: u64) -> String {
    format!("gap:{source}:{expected}")
}

fn gap_timer(source: &SourceId, expected: u64, due_at: Timestamp) -> TimerSet {
    TimerSet {
        id: gap_timer_id(source, expected),
        due_at,
        command: hub_command(
            format!("gap-timeout:{source}:{expected}"),
            due_at,
            format!("gap:{source}:{expected}"),
            EventData::GapTimeout(GapTimeout {
                source: source.clone(),
                expected,
            }),
        ),
        durable: true,
    }
}

/// A command the hub issues to itself (timers, reservations). `received_at` is filled on submit.
pub fn hub_command(id: String, time: Timestamp, correlation_id: String, data: EventData) -> Event {
    Event {
        id,
        source: SourceId::new(HUB_SOURCE).expect("valid"),
        time,
        sequence: None,
        correlation_id,
        causation_id: None,
        data,
        received_at: time,
    }
}

/// Shorthand used by the engine and tests.
pub fn channel_name(policy: &Policy, c: ChanIdx) -> &ChannelId {
    &policy.channel_policy(c).id
}
