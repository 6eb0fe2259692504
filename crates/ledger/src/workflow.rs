//! Workflows: orders, returns, transfers and purchase orders as explicit state machines kept
//! with the ledger, so one batch commits a workflow's step together with the stock it moves.
//!
//! A workflow changes only through events: hub commands (capture, approve, cancel, authorize,
//! request, create, decide, timers) and the physical events that name it (picked and shipped name
//! the order, transfer and return events their transfer or RMA, a receipt its PO). Every change
//! appends a [`Step`] with the causing event and correlation id. What must reach another system
//! leaves as a [`Posting`] (the engine turns it into an outbox message), what must happen later
//! as a durable timer, what needs a person as an exception.

use std::collections::HashMap;

use crossdock_model::event::{
    AckStatus, AsnDecided, AsnReceived, Credit, CreditDecision, Disposition, Event, EventData,
    OrderCaptured, OrderLine, PurchaseOrderCreated, ReturnAuthorized, ShipTo, TransferRequested,
};
use crossdock_model::{
    ChannelId, ExceptionKind, ExceptionRecord, ItemId, LocationId, Lot, Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::policy::{ChanIdx, LocIdx, Policy, SourcingRule};
use crate::reservation::Shortfall;
use crate::state::{Effects, ItemState, Ledger, Outcome, Rejection, TimerSet, hub_command};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowKind {
    Order,
    Return,
    Transfer,
    PurchaseOrder,
}

impl WorkflowKind {
    pub const ALL: [WorkflowKind; 4] = [
        WorkflowKind::Order,
        WorkflowKind::Return,
        WorkflowKind::Transfer,
        WorkflowKind::PurchaseOrder,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowKind::Order => "order",
            WorkflowKind::Return => "return",
            WorkflowKind::Transfer => "transfer",
            WorkflowKind::PurchaseOrder => "purchase_order",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
    pub fn key(self, id: &str) -> String {
        format!("{}:{id}", self.as_str())
    }
}

/// One workflow instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub kind: WorkflowKind,
    pub id: String,
    pub state: String,
    pub doc: Doc,
    pub correlation_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_seq: u64,
    pub updated_seq: u64,
    /// Steps recorded so far (the next step's number).
    pub steps: u32,
    /// Identifies the request that created it, so a repeat is recognised.
    pub request_hash: u64,
    /// The pending deadline (an order's shipment posting, a PO's acknowledgment), until it is
    /// met or fires. Its timer is derived from this on start, as a reservation's expiry is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
}

impl Workflow {
    pub fn key(&self) -> String {
        self.kind.key(&self.id)
    }

    /// Every item the workflow names: its lines' and what they allocated (substitutes).
    pub fn items(&self) -> Vec<ItemId> {
        let mut out: Vec<ItemId> = match &self.doc {
            Doc::Order(d) => d
                .lines
                .iter()
                .flat_map(|l| {
                    std::iter::once(l.item.clone())
                        .chain(l.allocations.iter().map(|a| a.item.clone()))
                })
                .collect(),
            Doc::Return(d) => d.lines.iter().map(|l| l.item.clone()).collect(),
            Doc::Transfer(d) => d.lines.iter().map(|l| l.item.clone()).collect(),
            Doc::PurchaseOrder(d) => d
                .lines
                .iter()
                .map(|l| l.item.clone())
                .chain(d.pending.iter().filter_map(|l| ItemId::new(&l.item).ok()))
                .collect(),
        };
        out.sort();
        out.dedup();
        out
    }
    /// No further step can change it: it may leave memory.
    pub fn is_final(&self) -> bool {
        let s = self.state.as_str();
        match self.kind {
            WorkflowKind::Order => matches!(s, "closed" | "cancelled"),
            WorkflowKind::Return => s == "credited",
            WorkflowKind::Transfer => s == "received",
            WorkflowKind::PurchaseOrder => matches!(s, "closed" | "rejected"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Doc {
    Order(OrderDoc),
    Return(ReturnDoc),
    Transfer(TransferDoc),
    PurchaseOrder(PoDoc),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDoc {
    pub channel: ChannelId,
    pub origin: String,
    pub ship_to: ShipTo,
    pub amount_minor: i64,
    pub credit: Credit,
    pub sold: bool,
    pub lines: Vec<OrderLineState>,
}

/// An ordered line and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineState {
    pub item: ItemId,
    pub qty: i64,
    pub allocations: Vec<Allocation>,
    /// Waiting for stock.
    pub backordered: i64,
    /// Given back by a cancel.
    pub cancelled: i64,
}

impl OrderLineState {
    pub fn allocated(&self) -> i64 {
        self.allocations.iter().map(|a| a.qty).sum()
    }
    pub fn picked(&self) -> i64 {
        self.allocations.iter().map(|a| a.picked).sum()
    }
    pub fn shipped(&self) -> i64 {
        self.allocations.iter().map(|a| a.shipped).sum()
    }
}

/// Units of a line drawn from one position: still allocated, picked, shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The line's item, or the substitute that fills it.
    pub item: ItemId,
    pub location: LocationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<Lot>,
    pub qty: i64,
    pub picked: i64,
    pub shipped: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnDoc {
    pub order: Option<String>,
    pub location: LocationId,
    pub reason: String,
    pub lines: Vec<ReturnLineState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLineState {
    pub item: ItemId,
    pub authorized: i64,
    pub received: i64,
    pub restocked: i64,
    pub damaged: i64,
    pub scrapped: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferDoc {
    pub from: LocationId,
    pub to: LocationId,
    pub lines: Vec<TransferLineState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLineState {
    pub item: ItemId,
    pub qty: i64,
    pub shipped: i64,
    pub received: i64,
    /// Shipped but never received: written off when the receipt came up short.
    pub lost: i64,
    pub closed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoDoc {
    pub partner: Option<String>,
    pub location: LocationId,
    pub expected_at: Timestamp,
    pub ack: Option<AckStatus>,
    pub ack_due_at: Timestamp,
    pub lines: Vec<PoLineState>,
    pub asns: Vec<String>,
    /// ASN lines that did not match the PO, waiting for a decision.
    pub pending: Vec<PendingAsnLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoLineState {
    pub item: ItemId,
    pub qty: i64,
    /// Announced by ASNs.
    pub shipped: i64,
    pub received: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAsnLine {
    pub asn: String,
    pub item: String,
    pub qty: i64,
    pub problem: String,
}

/// One recorded change of a workflow: the history `GET /v1/orders/{id}` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub key: String,
    pub n: u32,
    pub from: String,
    pub to: String,
    pub at: Timestamp,
    pub seq: u64,
    /// The causing event, `<source>/<id>`.
    pub cause: String,
    pub correlation_id: String,
    pub note: String,
}

/// Where a posting goes; the engine maps it to a delivery endpoint from config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PostTo {
    Erp,
    Warehouse(LocationId),
    Partner(String),
}

/// A message to another system about a workflow, sent through the outbox in order per workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Posting {
    pub to: PostTo,
    pub key: String,
    pub payload: serde_json::Value,
    pub correlation_id: String,
}

/// Line plan of an order: allocations and what waits.
#[derive(Debug, Clone, PartialEq)]
struct LinePlan {
    allocations: Vec<Allocation>,
    backordered: i64,
}

/// Free stock of an item at a location: the sum of its positions' `available`, never below 0.
fn free_at(state: Option<&ItemState>, loc: LocIdx) -> Vec<(Option<Lot>, i64)> {
    state
        .map(|s| {
            s.positions
                .iter()
                .filter(|p| p.location == loc)
                .map(|p| (p.lot.clone(), p.b().free()))
                .filter(|(_, q)| *q > 0)
                .collect()
        })
        .unwrap_or_default()
}

/// Candidate locations for an order: the rule's (or channel's) priority order, those serving the
/// ship-to region first.
fn candidates(policy: &Policy, chan: ChanIdx, rule: &SourcingRule, region: &str) -> Vec<LocIdx> {
    let base = rule
        .locations
        .clone()
        .unwrap_or_else(|| policy.channel_policy(chan).locations.clone());
    let serves = |l: &LocIdx| {
        policy
            .workflow
            .regions
            .get(l)
            .is_some_and(|r| r.iter().any(|x| x.eq_ignore_ascii_case(region)))
    };
    let (mut first, rest): (Vec<LocIdx>, Vec<LocIdx>) = base.into_iter().partition(serves);
    first.extend(rest);
    first
}

/// Sources an order's lines. Pure: reads positions, changes nothing.
///
/// Ship-complete takes every line from the first location that has all of it; when none has,
/// the location that covers the most units, the rest backordered. Otherwise lines are drawn in
/// location order across at most `1 + max_splits` locations. A short line tries the item's
/// substitutes when the rule allows.
fn plan_order<'a>(
    policy: &Policy,
    rule: &SourcingRule,
    locs: &[LocIdx],
    lines: &[OrderLine],
    item: impl Fn(&ItemId) -> Option<&'a ItemState>,
) -> Vec<LinePlan> {
    // Units already planned per (item, location, lot), so two lines never count the same unit.
    let mut used: HashMap<(ItemId, LocIdx, Option<Lot>), i64> = HashMap::new();
    let take = |it: &ItemId,
                loc: LocIdx,
                want: i64,
                used: &mut HashMap<(ItemId, LocIdx, Option<Lot>), i64>|
     -> Vec<Allocation> {
        let mut out = Vec::new();
        let mut remaining = want;
        for (lot, free) in free_at(item(it), loc) {
            if remaining == 0 {
                break;
            }
            let k = (it.clone(), loc, lot.clone());
            let already = used.get(&k).copied().unwrap_or(0);
            let n = (free - already).min(remaining);
            if n > 0 {
                *used.entry(k).or_default() += n;
                remaining -= n;
                out.push(Allocation {
                    item: it.clone(),
                    location: policy.location_name(loc).clone(),
                    lot,
                    qty: n,
                    picked: 0,
                    shipped: 0,
                });
            }
        }
        out
    };
    let subs = |it: &ItemId| -> Vec<ItemId> {
        if rule.substitute {
            policy
                .workflow
                .substitutions
                .get(it)
                .cloned()
                .unwrap_or_default()
        } else {
            Vec::new()
        }
    };
    let free_total = |it: &ItemId, loc: LocIdx| -> i64 {
        free_at(item(it), loc).iter().map(|(_, q)| q).sum::<i64>()
    };
    let mut allowed: Vec<LocIdx> = locs.to_vec();
    if rule.ship_complete {
        let complete = locs.iter().copied().find(|&l| {
            lines
                .iter()
                .all(|line| free_total(&line.item, l) >= line.qty)
        });
        let chosen = complete.or_else(|| {
            locs.iter().copied().max_by_key(|&l| {
                // Most units covered; ties keep the earlier (higher priority) location.
                let covered: i64 = lines
                    .iter()
                    .map(|line| free_total(&line.item, l).min(line.qty))
                    .sum();
                (
                    covered,
                    std::cmp::Reverse(locs.iter().position(|x| *x == l)),
                )
            })
        });
        allowed = chosen.into_iter().collect();
    }
    let max_locations = if rule.ship_complete {
        1
    } else {
        1 + rule.max_splits as usize
    };
    let mut opened: Vec<LocIdx> = Vec::new();
    let mut plans = Vec::with_capacity(lines.len());
    for line in lines {
        let mut allocations = Vec::new();
        let mut remaining = line.qty;
        let mut candidates_items = vec![line.item.clone()];
        candidates_items.extend(subs(&line.item));
        for it in &candidates_items {
            for &loc in &allowed {
                if remaining == 0 {
                    break;
                }
                if !opened.contains(&loc) && opened.len() >= max_locations {
                    continue;
                }
                let got = take(it, loc, remaining, &mut used);
                if !got.is_empty() {
                    if !opened.contains(&loc) {
                        opened.push(loc);
                    }
                    remaining -= got.iter().map(|a| a.qty).sum::<i64>();
                    allocations.extend(got);
                }
            }
        }
        plans.push(LinePlan {
            allocations,
            backordered: remaining,
        });
    }
    plans
}

/// Hash of what identifies an order request, independent of the credit answer and of time.
fn order_hash(o: &OrderCaptured) -> u64 {
    let text = serde_json::to_string(&json!({
        "channel": o.channel, "lines": o.lines, "ship_to": o.ship_to,
        "amount": o.amount_minor, "sold": o.sold, "backorder": o.backorder,
    }))
    .expect("serializes");
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

fn data_hash<T: Serialize>(value: &T) -> u64 {
    xxhash_rust::xxh3::xxh3_64(serde_json::to_string(value).expect("serializes").as_bytes())
}

/// The timer of a workflow's pending deadline. Not stored: it is derived from the workflow row
/// (armed again on start), and the command that fires clears the deadline, so it acts once.
pub fn deadline_timer(wf: &Workflow) -> Option<TimerSet> {
    let due = wf.deadline?;
    let (id, name, data) = match wf.kind {
        WorkflowKind::Order => (
            shipment_timer_id(&wf.id),
            format!("order:{}:shipment-due", wf.id),
            EventData::OrderShipmentDue(crossdock_model::event::OrderShipmentDue {
                order: wf.id.clone(),
            }),
        ),
        WorkflowKind::PurchaseOrder => (
            ack_timer_id(&wf.id),
            format!("po:{}:ack-due", wf.id),
            EventData::PurchaseOrderAckDue(crossdock_model::event::PurchaseOrderAckDue {
                po: wf.id.clone(),
            }),
        ),
        WorkflowKind::Return | WorkflowKind::Transfer => return None,
    };
    Some(TimerSet {
        id,
        due_at: due,
        command: hub_command(name, due, wf.correlation_id.clone(), data),
        durable: false,
    })
}

pub fn shipment_timer_id(order: &str) -> String {
    format!("wf:order:{order}:ship")
}

pub fn ack_timer_id(po: &str) -> String {
    format!("wf:po:{po}:ack")
}

impl Ledger {
    pub fn workflow(&self, key: &str) -> Option<&Workflow> {
        self.workflows.get(key).map(|w| &**w)
    }

    /// Puts a workflow back after a restart.
    pub fn insert_workflow(&mut self, wf: Workflow) {
        if let Doc::Order(o) = &wf.doc {
            for line in o.lines.iter().filter(|l| l.backordered > 0) {
                let waiting = self.backorders.entry(line.item.clone()).or_default();
                if !waiting.contains(&wf.id) {
                    waiting.push(wf.id.clone());
                }
            }
        }
        self.workflows.insert(wf.key(), Box::new(wf));
    }

    pub fn workflows(&self) -> impl Iterator<Item = &Workflow> {
        self.workflows.values().map(|w| &**w)
    }

    /// The items some order in this ledger waits for (backordered lines).
    pub fn backordered_items(&self) -> impl Iterator<Item = &ItemId> {
        self.backorders.keys()
    }

    /// Whether some order in this ledger waits for `item`.
    pub fn waits_for(&self, item: &ItemId) -> bool {
        self.backorders.get(item).is_some_and(|w| !w.is_empty())
    }

    /// Workflow hub commands. `None`: not a workflow command.
    pub(crate) fn apply_workflow_command(
        &mut self,
        policy: &Policy,
        ev: &Event,
        seq: u64,
        fx: &mut Effects,
    ) -> Option<Outcome> {
        Some(match &ev.data {
            EventData::OrderCaptured(o) => self.capture_order(policy, ev, o, seq, fx),
            EventData::OrderApproved(a) => {
                let key = WorkflowKind::Order.key(&a.order);
                let Some(wf) = self.workflows.get(&key) else {
                    return Some(not_found(&key));
                };
                if wf.state != "held" {
                    return Some(Outcome::Workflow {
                        view: wf.clone(),
                        repeat: true,
                    });
                }
                let mut wf = (**wf).clone();
                if let Doc::Order(d) = &mut wf.doc {
                    d.credit = Credit {
                        decision: CreditDecision::Approved,
                        note: a.note.clone(),
                    };
                }
                self.step(
                    &mut wf,
                    "validated",
                    ev,
                    seq,
                    fx,
                    format!("credit hold lifted: {}", a.note),
                );
                fx.exceptions_resolved.push((
                    credit_exception_id(&a.order),
                    ev.received_at,
                    format!("approved: {}", a.note),
                ));
                self.source_and_accept(policy, &mut wf, ev, seq, fx);
                self.finish(wf, fx)
            }
            EventData::OrderCancelled(c) => {
                self.cancel_order(policy, ev, &c.order, &c.reason, seq, fx)
            }
            EventData::OrderShipmentDue(d) => {
                let key = WorkflowKind::Order.key(&d.order);
                fx.timers_done.push(shipment_timer_id(&d.order));
                let Some(wf) = self.workflows.get(&key).map(|w| (**w).clone()) else {
                    return Some(Outcome::Noop);
                };
                if wf.deadline.is_none() {
                    return Some(Outcome::Noop);
                }
                let mut wf = wf;
                wf.deadline = None;
                let reason = format!(
                    "order {} is {} and not shipped {}s after release",
                    d.order, wf.state, policy.workflow.shipment_sla_s
                );
                self.open_exception(
                    fx,
                    ev,
                    ExceptionKind::ShipmentPostingDelay,
                    &key,
                    &format!("{key}:ship-due"),
                    reason.clone(),
                );
                let state = wf.state.clone();
                self.step(&mut wf, &state, ev, seq, fx, reason);
                self.finish(wf, fx)
            }
            EventData::BackordersDue(d) => {
                let before = fx.workflows.len();
                self.fill_backorders(policy, &d.item, ev, seq, fx);
                if fx.workflows.len() > before {
                    Outcome::Applied
                } else {
                    Outcome::Noop
                }
            }
            EventData::ReturnAuthorized(r) => self.authorize_return(policy, ev, r, seq, fx),
            EventData::TransferRequested(t) => self.request_transfer(policy, ev, t, seq, fx),
            EventData::PurchaseOrderCreated(p) => self.create_po(policy, ev, p, seq, fx),
            EventData::PurchaseOrderAcknowledged(a) => {
                let key = WorkflowKind::PurchaseOrder.key(&a.po);
                let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) else {
                    return Some(quarantine(
                        fx,
                        ev,
                        ExceptionKind::AsnMismatch,
                        &key,
                        format!(
                            "acknowledgment for purchase order {} which is not known",
                            a.po
                        ),
                    ));
                };
                let Doc::PurchaseOrder(d) = &mut wf.doc else {
                    unreachable!("keyed by kind")
                };
                if d.ack.is_some() {
                    let note = format!("acknowledged again ({:?})", a.status);
                    let state = wf.state.clone();
                    self.step(&mut wf, &state, ev, seq, fx, note);
                    return Some(self.finish(wf, fx));
                }
                d.ack = Some(a.status);
                fx.timers_done.push(ack_timer_id(&a.po));
                fx.exceptions_resolved.push((
                    ack_exception_id(&a.po),
                    ev.received_at,
                    "the supplier acknowledged".into(),
                ));
                let to = if a.status == AckStatus::Rejected {
                    "rejected"
                } else {
                    "acknowledged"
                };
                if a.status == AckStatus::Rejected {
                    // The supplier will not ship: the open supply goes away.
                    let (loc, lines) = (d.location.clone(), d.lines.clone());
                    for line in lines {
                        self.close_supply(
                            policy,
                            &line.item,
                            &loc,
                            &a.po,
                            line.qty - line.received,
                            fx,
                        );
                    }
                }
                wf.deadline = None;
                let note = format!("{:?}", a.status).to_lowercase();
                if wf.state == "created" || a.status == AckStatus::Rejected {
                    self.step(&mut wf, to, ev, seq, fx, note);
                } else {
                    let state = wf.state.clone();
                    self.step(
                        &mut wf,
                        &state,
                        ev,
                        seq,
                        fx,
                        format!("acknowledged late: {note}"),
                    );
                }
                self.finish(wf, fx)
            }
            EventData::PurchaseOrderAckDue(d) => {
                fx.timers_done.push(ack_timer_id(&d.po));
                let key = WorkflowKind::PurchaseOrder.key(&d.po);
                let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) else {
                    return Some(Outcome::Noop);
                };
                if wf.deadline.take().is_none() {
                    return Some(Outcome::Noop);
                }
                let Doc::PurchaseOrder(po) = &wf.doc else {
                    unreachable!("keyed by kind")
                };
                if po.ack.is_some() {
                    return Some(Outcome::Noop);
                }
                let reason = format!(
                    "purchase order {} sent to {} was not acknowledged by {}",
                    d.po,
                    po.partner.as_deref().unwrap_or("the supplier"),
                    po.ack_due_at
                );
                self.open_exception(
                    fx,
                    ev,
                    ExceptionKind::PartnerAckTimeout,
                    &key,
                    &format!("{key}:ack"),
                    reason.clone(),
                );
                let state = wf.state.clone();
                self.step(&mut wf, &state, ev, seq, fx, reason);
                self.finish(wf, fx)
            }
            EventData::AsnReceived(a) => self.receive_asn(policy, ev, a, seq, fx),
            EventData::AsnDecided(d) => self.decide_asn(policy, ev, d, seq, fx),
            _ => return None,
        })
    }

    /// Moves workflows a physical event names; fills backorders when stock came in.
    pub(crate) fn advance_workflows(
        &mut self,
        policy: &Policy,
        ev: &Event,
        seq: u64,
        fx: &mut Effects,
    ) {
        match &ev.data {
            EventData::Picked(p) => {
                let key = WorkflowKind::Order.key(&p.order);
                if let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) {
                    let Doc::Order(d) = &mut wf.doc else { return };
                    let mut left = p.qty;
                    for a in d.lines.iter_mut().flat_map(|l| l.allocations.iter_mut()) {
                        if a.item == p.item && a.location == p.location && left > 0 {
                            let n = a.qty.min(left);
                            a.qty -= n;
                            a.picked += n;
                            left -= n;
                        }
                    }
                    let all_picked = d
                        .lines
                        .iter()
                        .all(|l| l.allocated() == 0 && l.backordered == 0);
                    let note = if left > 0 {
                        format!(
                            "picked {} {} at {}; {left} more than allocated there",
                            p.qty, p.item, p.location
                        )
                    } else {
                        format!("picked {} {} at {}", p.qty, p.item, p.location)
                    };
                    let to = if all_picked && wf.state != "partially_shipped" {
                        "picked".to_string()
                    } else {
                        wf.state.clone()
                    };
                    self.step(&mut wf, &to, ev, seq, fx, note);
                    self.finish(wf, fx);
                }
            }
            EventData::Shipped(s) => {
                let key = WorkflowKind::Order.key(&s.order);
                if let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) {
                    let Doc::Order(d) = &mut wf.doc else { return };
                    let mut unpicked = Vec::new();
                    for line in &s.lines {
                        let mut left = line.qty;
                        for a in d.lines.iter_mut().flat_map(|l| l.allocations.iter_mut()) {
                            if a.item == line.item && a.location == line.location && left > 0 {
                                let from_picked = a.picked.min(left);
                                a.picked -= from_picked;
                                let from_allocated = a.qty.min(left - from_picked);
                                a.qty -= from_allocated;
                                a.shipped += from_picked + from_allocated;
                                left -= from_picked + from_allocated;
                                if from_allocated > 0 {
                                    unpicked.push((
                                        a.item.clone(),
                                        a.location.clone(),
                                        a.lot.clone(),
                                        from_allocated,
                                    ));
                                }
                            }
                        }
                    }
                    // Shipped without a pick message: the shipment took the units from picked;
                    // they were still allocated, so they leave the allocation instead.
                    for (item, location, lot, n) in unpicked {
                        let loc = policy
                            .location(&location)
                            .expect("allocated at a configured location");
                        let mut b = self
                            .item_mut(&item, fx)
                            .position_mut(loc, lot.as_ref())
                            .b_mut();
                        b.allocated -= n;
                        b.picked += n;
                    }
                    let complete = d.lines.iter().all(|l| l.shipped() + l.cancelled >= l.qty);
                    let shipped: i64 = s.lines.iter().map(|l| l.qty).sum();
                    let note = format!(
                        "shipment {} with {shipped} units",
                        s.shipment.as_deref().unwrap_or("-")
                    );
                    if complete {
                        fx.timers_done.push(shipment_timer_id(&s.order));
                        wf.deadline = None;
                        self.step(&mut wf, "shipped", ev, seq, fx, note);
                        let invoice = order_invoice(&wf);
                        let (origin, corr) =
                            (order_doc(&wf).origin.clone(), ev.correlation_id.clone());
                        fx.postings.push(Posting {
                            to: PostTo::Erp,
                            key: key.clone(),
                            payload: invoice.clone(),
                            correlation_id: corr.clone(),
                        });
                        if let Some(partner) = origin.strip_prefix("edi:") {
                            fx.postings.push(Posting {
                                to: PostTo::Partner(partner.to_string()),
                                key: key.clone(),
                                payload: invoice,
                                correlation_id: corr,
                            });
                        }
                        self.step(&mut wf, "invoiced", ev, seq, fx, "invoice posted".into());
                        self.step(&mut wf, "closed", ev, seq, fx, String::new());
                    } else {
                        self.step(
                            &mut wf,
                            "partially_shipped",
                            ev,
                            seq,
                            fx,
                            note + "; the rest stays allocated",
                        );
                    }
                    self.finish(wf, fx);
                }
            }
            EventData::TransferShipped(t) => {
                let key = WorkflowKind::Transfer.key(&t.transfer);
                if let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) {
                    let Doc::Transfer(d) = &mut wf.doc else {
                        return;
                    };
                    if let Some(l) = d.lines.iter_mut().find(|l| l.item == t.item) {
                        l.shipped += t.qty;
                    }
                    let all = d.lines.iter().all(|l| l.shipped >= l.qty);
                    let to = if all { "shipped" } else { "shipping" };
                    let note = format!(
                        "shipped {} {} from {}; in transit to {}",
                        t.qty, t.item, t.from, t.to
                    );
                    self.step(&mut wf, to, ev, seq, fx, note);
                    self.finish(wf, fx);
                }
            }
            EventData::TransferReceived(t) => {
                let key = WorkflowKind::Transfer.key(&t.transfer);
                if let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) {
                    let Doc::Transfer(d) = &mut wf.doc else {
                        return;
                    };
                    let mut note = format!("received {} {} at {}", t.qty, t.item, t.location);
                    if let Some(l) = d.lines.iter_mut().find(|l| l.item == t.item) {
                        l.received += t.qty;
                        l.closed = true;
                        if l.received < l.shipped {
                            // A short receipt closes the line: what did not arrive leaves transit.
                            let lost = l.shipped - l.received;
                            l.lost += lost;
                            let loc = policy.location(&t.location).expect("checked");
                            let state = self.item_mut(&t.item, fx);
                            if let Some(line) = state
                                .extras_mut()
                                .transfers
                                .iter_mut()
                                .find(|x| x.transfer == t.transfer && x.to == loc)
                            {
                                let gone = line.open.min(lost);
                                line.open -= gone;
                                state.position_mut(loc, None).b_mut().in_transit -= gone;
                            }
                            state.extras_mut().transfers.retain(|x| x.open > 0);
                            let reason = format!(
                                "transfer {} received {} of {} {} shipped to {}; {lost} written off in transit",
                                t.transfer, l.received, l.shipped, t.item, t.location
                            );
                            note = reason.clone();
                            self.open_exception(
                                fx,
                                ev,
                                ExceptionKind::TransferVariance,
                                &key,
                                &format!("{key}:{}:short", t.item),
                                reason,
                            );
                        }
                    }
                    let Doc::Transfer(d) = &wf.doc else {
                        unreachable!()
                    };
                    let done = d.lines.iter().all(|l| l.closed);
                    let to = if done {
                        "received".to_string()
                    } else {
                        wf.state.clone()
                    };
                    self.step(&mut wf, &to, ev, seq, fx, note);
                    self.finish(wf, fx);
                }
            }
            EventData::ReturnReceived(r) => {
                let key = WorkflowKind::Return.key(&r.rma);
                if let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) {
                    let Doc::Return(d) = &mut wf.doc else { return };
                    let note = match d.lines.iter_mut().find(|l| l.item == r.item) {
                        Some(l) => {
                            l.received += r.qty;
                            format!("received {} {} at {}", r.qty, r.item, r.location)
                        }
                        None => {
                            let reason = format!(
                                "return {} received {} {} which it did not authorize",
                                r.rma, r.qty, r.item
                            );
                            self.open_exception(
                                fx,
                                ev,
                                ExceptionKind::InventoryMismatch,
                                &key,
                                &format!("{key}:{}:unauthorized", r.item),
                                reason.clone(),
                            );
                            reason
                        }
                    };
                    self.step(&mut wf, "received", ev, seq, fx, note);
                    self.finish(wf, fx);
                }
            }
            EventData::ReturnInspected(r) => {
                let key = WorkflowKind::Return.key(&r.rma);
                if let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) {
                    let Doc::Return(d) = &mut wf.doc else { return };
                    if let Some(l) = d.lines.iter_mut().find(|l| l.item == r.item) {
                        match r.disposition {
                            Disposition::Restock => l.restocked += r.qty,
                            Disposition::Damaged => l.damaged += r.qty,
                            Disposition::Scrap => l.scrapped += r.qty,
                        }
                    }
                    let to = match r.disposition {
                        Disposition::Restock => "restocked",
                        Disposition::Damaged => "damaged",
                        Disposition::Scrap => "scrapped",
                    };
                    self.step(
                        &mut wf,
                        "inspected",
                        ev,
                        seq,
                        fx,
                        format!("inspected {} {}", r.qty, r.item),
                    );
                    self.step(
                        &mut wf,
                        to,
                        ev,
                        seq,
                        fx,
                        format!("{} {} {to}", r.qty, r.item),
                    );
                    let Doc::Return(d) = &wf.doc else {
                        unreachable!()
                    };
                    let done = d
                        .lines
                        .iter()
                        .all(|l| l.restocked + l.damaged + l.scrapped >= l.authorized);
                    if done {
                        let payload = json!({
                            "type": "return.credited", "rma": wf.id, "order": d.order,
                            "location": d.location, "lines": d.lines,
                        });
                        fx.postings.push(Posting {
                            to: PostTo::Erp,
                            key: key.clone(),
                            payload,
                            correlation_id: ev.correlation_id.clone(),
                        });
                        self.step(
                            &mut wf,
                            "credited",
                            ev,
                            seq,
                            fx,
                            "credit posted to the ERP".into(),
                        );
                    }
                    self.finish(wf, fx);
                }
            }
            EventData::Received(r) => {
                if let Some(po) = &r.reference {
                    let key = WorkflowKind::PurchaseOrder.key(po);
                    if let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) {
                        let Doc::PurchaseOrder(d) = &mut wf.doc else {
                            return;
                        };
                        if let Some(l) = d.lines.iter_mut().find(|l| l.item == r.item) {
                            l.received += r.qty;
                        }
                        let done = d.lines.iter().all(|l| l.received >= l.qty);
                        let note = format!("received {} {} at {}", r.qty, r.item, r.location);
                        if done {
                            self.step(&mut wf, "received", ev, seq, fx, note);
                            let Doc::PurchaseOrder(d) = &wf.doc else {
                                unreachable!()
                            };
                            let payload = json!({"type": "purchase_order.received", "po": wf.id, "location": d.location, "lines": d.lines});
                            fx.postings.push(Posting {
                                to: PostTo::Erp,
                                key: key.clone(),
                                payload,
                                correlation_id: ev.correlation_id.clone(),
                            });
                            self.step(
                                &mut wf,
                                "closed",
                                ev,
                                seq,
                                fx,
                                "receipt posted to the ERP".into(),
                            );
                        } else {
                            self.step(&mut wf, "receiving", ev, seq, fx, note);
                        }
                        self.finish(wf, fx);
                    }
                }
            }
            _ => {}
        }
        if adds_stock(&ev.data) {
            for item in ev.data.items() {
                self.fill_backorders(policy, item, ev, seq, fx);
            }
        }
    }

    fn capture_order(
        &mut self,
        policy: &Policy,
        ev: &Event,
        o: &OrderCaptured,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let key = WorkflowKind::Order.key(&o.order);
        let hash = order_hash(o);
        if let Some(existing) = self.workflows.get(&key) {
            return repeat_or_conflict(existing, hash, &key);
        }
        let Some(chan) = policy.channel(&o.channel) else {
            return Outcome::Rejected(Rejection::Invalid {
                field: "channel".into(),
                reason: format!("unknown channel {:?}", o.channel.as_str()),
            });
        };
        for (i, line) in o.lines.iter().enumerate() {
            if !policy.knows_item(&line.item) {
                return Outcome::Rejected(Rejection::Invalid {
                    field: format!("lines[{i}].item"),
                    reason: format!("unknown item {:?}", line.item.as_str()),
                });
            }
        }
        let mut wf = Workflow {
            kind: WorkflowKind::Order,
            id: o.order.clone(),
            state: String::new(),
            doc: Doc::Order(OrderDoc {
                channel: o.channel.clone(),
                origin: o.origin.clone(),
                ship_to: o.ship_to.clone(),
                amount_minor: o.amount_minor,
                credit: o.credit.clone(),
                sold: o.sold,
                lines: o
                    .lines
                    .iter()
                    .map(|l| OrderLineState {
                        item: l.item.clone(),
                        qty: l.qty,
                        allocations: Vec::new(),
                        backordered: 0,
                        cancelled: 0,
                    })
                    .collect(),
            }),
            correlation_id: ev.correlation_id.clone(),
            created_at: ev.received_at,
            updated_at: ev.received_at,
            created_seq: seq,
            updated_seq: seq,
            steps: 0,
            request_hash: hash,
            deadline: None,
        };
        // Refused for want of stock before anything is recorded: not logged, nothing changes.
        let rule = policy.workflow.rule(chan);
        if !o.sold && !o.backorder && !rule.backorder && o.credit.decision != CreditDecision::Held {
            let locs = candidates(policy, chan, rule, &o.ship_to.region);
            let plans = plan_order(policy, rule, &locs, &o.lines, |id| {
                self.items.get(id).map(|a| &**a)
            });
            let short: Vec<Shortfall> = o
                .lines
                .iter()
                .zip(&plans)
                .filter(|(_, p)| p.backordered > 0)
                .map(|(l, p)| Shortfall {
                    item: l.item.clone(),
                    requested: l.qty,
                    available: l.qty - p.backordered,
                    short: p.backordered,
                })
                .collect();
            if !short.is_empty() {
                return Outcome::Insufficient(short);
            }
        }
        self.step(
            &mut wf,
            "captured",
            ev,
            seq,
            fx,
            format!("from {}", o.origin),
        );
        if o.credit.decision == CreditDecision::Held {
            let reason = format!("order {} held for credit: {}", o.order, o.credit.note);
            fx.exceptions.push(ExceptionRecord::open(
                ExceptionKind::CreditHold,
                &format!("credit:{}", o.order),
                key.clone(),
                Some(ev.correlation_id.clone()),
                reason.clone(),
                Some(ev.envelope_json()),
                ev.received_at,
            ));
            self.step(&mut wf, "held", ev, seq, fx, reason);
            return self.finish(wf, fx);
        }
        self.step(
            &mut wf,
            "validated",
            ev,
            seq,
            fx,
            format!("credit {:?}: {}", o.credit.decision, o.credit.note).to_lowercase(),
        );
        self.source_and_accept(policy, &mut wf, ev, seq, fx);
        self.finish(wf, fx)
    }

    /// Sources, allocates and accepts an order; posts it to the ERP and releases it to the
    /// warehouses; sets the shipment deadline.
    fn source_and_accept(
        &mut self,
        policy: &Policy,
        wf: &mut Workflow,
        ev: &Event,
        seq: u64,
        fx: &mut Effects,
    ) {
        let key = wf.key();
        let d = order_doc(wf).clone();
        let chan = policy.channel(&d.channel).expect("checked at capture");
        let rule = policy.workflow.rule(chan).clone();
        let locs = candidates(policy, chan, &rule, &d.ship_to.region);
        let lines: Vec<OrderLine> = d
            .lines
            .iter()
            .map(|l| OrderLine {
                item: l.item.clone(),
                qty: l.qty,
            })
            .collect();
        let plans = plan_order(policy, &rule, &locs, &lines, |id| {
            self.items.get(id).map(|a| &**a)
        });
        let backordered: i64 = plans.iter().map(|p| p.backordered).sum();
        let sources: Vec<String> = {
            let mut v: Vec<String> = plans
                .iter()
                .flat_map(|p| p.allocations.iter().map(|a| a.location.to_string()))
                .collect();
            v.dedup();
            let mut seen = Vec::new();
            v.retain(|l| {
                if seen.contains(l) {
                    false
                } else {
                    seen.push(l.clone());
                    true
                }
            });
            v
        };
        self.step(
            wf,
            "sourced",
            ev,
            seq,
            fx,
            format!(
                "from {}",
                if sources.is_empty() {
                    "nowhere yet".into()
                } else {
                    sources.join(", ")
                }
            ),
        );
        for plan in &plans {
            for a in &plan.allocations {
                self.allocate(policy, a, seq, fx);
            }
        }
        let Doc::Order(doc) = &mut wf.doc else {
            unreachable!()
        };
        for (line, plan) in doc.lines.iter_mut().zip(plans) {
            line.allocations = plan.allocations;
            line.backordered = plan.backordered;
            if plan.backordered > 0 {
                let waiting = self.backorders.entry(line.item.clone()).or_default();
                if !waiting.contains(&wf.id) {
                    waiting.push(wf.id.clone());
                }
            }
        }
        if backordered > 0 && d.sold {
            let reason = format!(
                "order {} was sold on {} with {backordered} units more than available; backordered",
                wf.id, d.channel
            );
            self.open_exception(
                fx,
                ev,
                ExceptionKind::OversellRisk,
                &key,
                &format!("{key}:oversold"),
                reason,
            );
        }
        let allocated: i64 = order_doc(wf).lines.iter().map(|l| l.allocated()).sum();
        let note = if backordered > 0 {
            format!("{allocated} allocated, {backordered} backordered")
        } else {
            format!("{allocated} allocated")
        };
        self.step(wf, "reserved", ev, seq, fx, note);
        self.step(wf, "accepted", ev, seq, fx, "posted to the ERP".into());
        let corr = ev.correlation_id.clone();
        fx.postings.push(Posting {
            to: PostTo::Erp,
            key: key.clone(),
            payload: order_message("order.accepted", wf),
            correlation_id: corr,
        });
        if allocated > 0 {
            self.release(wf, None, ev, fx);
            self.step(
                wf,
                "released",
                ev,
                seq,
                fx,
                format!("released to {}", sources.join(", ")),
            );
        } else {
            self.step(
                wf,
                "backordered",
                ev,
                seq,
                fx,
                "nothing in stock yet; waiting for supply".into(),
            );
        }
        wf.deadline = Some(ev.time.plus_secs(policy.workflow.shipment_sla_s));
        fx.timers_set.extend(deadline_timer(wf));
    }

    /// Release messages to each warehouse with allocations (all of them, or only `fill`'s).
    fn release(&self, wf: &Workflow, fill: Option<&[Allocation]>, ev: &Event, fx: &mut Effects) {
        let d = order_doc(wf);
        let allocs: Vec<&Allocation> = match fill {
            Some(f) => f.iter().collect(),
            None => d.lines.iter().flat_map(|l| l.allocations.iter()).collect(),
        };
        let mut locations: Vec<&LocationId> = allocs.iter().map(|a| &a.location).collect();
        let mut seen = Vec::new();
        locations.retain(|l| {
            if seen.contains(l) {
                false
            } else {
                seen.push(*l);
                true
            }
        });
        for loc in locations {
            let lines: Vec<serde_json::Value> = allocs
                .iter()
                .filter(|a| &a.location == loc)
                .map(|a| json!({"item": a.item, "qty": a.qty, "lot": a.lot}))
                .collect();
            let payload = json!({
                "type": "order.release", "order": wf.id, "channel": d.channel, "origin": d.origin,
                "location": loc, "ship_to": d.ship_to, "lines": lines, "backorder_fill": fill.is_some(),
            });
            fx.postings.push(Posting {
                to: PostTo::Warehouse(loc.clone()),
                key: wf.key(),
                payload,
                correlation_id: ev.correlation_id.clone(),
            });
        }
    }

    fn allocate(&mut self, policy: &Policy, a: &Allocation, seq: u64, fx: &mut Effects) {
        let loc = policy.location(&a.location).expect("planned from policy");
        let item = self.item_mut(&a.item, fx);
        item.last_seq = seq;
        let p = item.position_mut(loc, a.lot.as_ref());
        p.b_mut().allocated += a.qty;
        debug_assert!(
            p.b().available() >= 0,
            "an allocation never drives available below zero"
        );
    }

    fn fill_backorders(
        &mut self,
        policy: &Policy,
        item: &ItemId,
        ev: &Event,
        seq: u64,
        fx: &mut Effects,
    ) {
        let Some(waiting) = self.backorders.get(item).cloned() else {
            return;
        };
        for order in waiting {
            let key = WorkflowKind::Order.key(&order);
            let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) else {
                continue;
            };
            let d = order_doc(&wf).clone();
            let Some(chan) = policy.channel(&d.channel) else {
                continue;
            };
            let rule = policy.workflow.rule(chan).clone();
            let locs = candidates(policy, chan, &rule, &d.ship_to.region);
            let mut filled = Vec::new();
            let Doc::Order(doc) = &mut wf.doc else {
                continue;
            };
            for line in doc
                .lines
                .iter_mut()
                .filter(|l| &l.item == item && l.backordered > 0)
            {
                let fill_rule = SourcingRule {
                    ship_complete: false,
                    max_splits: u32::MAX - 1,
                    substitute: false,
                    ..rule.clone()
                };
                let plans = plan_order(
                    policy,
                    &fill_rule,
                    &locs,
                    &[OrderLine {
                        item: item.clone(),
                        qty: line.backordered,
                    }],
                    |id| self.items.get(id).map(|a| &**a),
                );
                for a in &plans[0].allocations {
                    line.backordered -= a.qty;
                    filled.push(a.clone());
                }
                for a in &plans[0].allocations {
                    match line
                        .allocations
                        .iter_mut()
                        .find(|x| x.item == a.item && x.location == a.location && x.lot == a.lot)
                    {
                        Some(x) => x.qty += a.qty,
                        None => line.allocations.push(a.clone()),
                    }
                }
            }
            if filled.is_empty() {
                // Nothing free where this order's channel sources: a later order of another
                // channel may still be filled from it.
                continue;
            }
            for a in &filled {
                self.allocate(policy, a, seq, fx);
            }
            let still = order_doc(&wf)
                .lines
                .iter()
                .any(|l| &l.item == item && l.backordered > 0);
            if !still && let Some(w) = self.backorders.get_mut(item) {
                w.retain(|o| o != &order);
            }
            let n: i64 = filled.iter().map(|a| a.qty).sum();
            self.release(&wf, Some(&filled), ev, fx);
            let to = if wf.state == "backordered" {
                "released".to_string()
            } else {
                wf.state.clone()
            };
            self.step(
                &mut wf,
                &to,
                ev,
                seq,
                fx,
                format!("backorder filled: {n} {item} allocated and released"),
            );
            self.finish(wf, fx);
        }
        if self.backorders.get(item).is_some_and(|w| w.is_empty()) {
            self.backorders.remove(item);
        }
    }

    fn cancel_order(
        &mut self,
        policy: &Policy,
        ev: &Event,
        order: &str,
        reason: &str,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let key = WorkflowKind::Order.key(order);
        let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) else {
            return not_found(&key);
        };
        if wf.is_final() {
            return Outcome::Workflow {
                view: Box::new(wf),
                repeat: true,
            };
        }
        let Doc::Order(d) = &mut wf.doc else {
            unreachable!()
        };
        let mut released = 0;
        let mut back: Vec<(ItemId, LocationId, Option<Lot>, i64, i64)> = Vec::new();
        for line in &mut d.lines {
            for a in &mut line.allocations {
                if a.qty > 0 || a.picked > 0 {
                    back.push((
                        a.item.clone(),
                        a.location.clone(),
                        a.lot.clone(),
                        a.qty,
                        a.picked,
                    ));
                    line.cancelled += a.qty + a.picked;
                    released += a.qty + a.picked;
                    a.qty = 0;
                    a.picked = 0;
                }
            }
            line.cancelled += line.backordered;
            line.backordered = 0;
        }
        for w in self.backorders.values_mut() {
            w.retain(|o| o != order);
        }
        for (item, location, lot, allocated, picked) in back {
            let loc = policy
                .location(&location)
                .expect("allocated at a configured location");
            let state = self.item_mut(&item, fx);
            state.last_seq = seq;
            let p = state.position_mut(loc, lot.as_ref());
            p.b_mut().allocated -= allocated;
            // Picked but not shipped: back on the shelf.
            p.b_mut().picked -= picked;
        }
        fx.timers_done.push(shipment_timer_id(order));
        wf.deadline = None;
        let payload = json!({"type": "order.cancelled", "order": order, "reason": reason});
        fx.postings.push(Posting {
            to: PostTo::Erp,
            key: key.clone(),
            payload: payload.clone(),
            correlation_id: ev.correlation_id.clone(),
        });
        let d = order_doc(&wf);
        let mut warehouses: Vec<LocationId> = d
            .lines
            .iter()
            .flat_map(|l| l.allocations.iter().map(|a| a.location.clone()))
            .collect();
        warehouses.sort();
        warehouses.dedup();
        for loc in warehouses {
            fx.postings.push(Posting {
                to: PostTo::Warehouse(loc),
                key: key.clone(),
                payload: payload.clone(),
                correlation_id: ev.correlation_id.clone(),
            });
        }
        fx.exceptions_resolved.push((
            credit_exception_id(order),
            ev.received_at,
            "order cancelled".into(),
        ));
        let shipped_any = d.lines.iter().any(|l| l.shipped() > 0);
        let to = if shipped_any { "closed" } else { "cancelled" };
        self.step(
            &mut wf,
            to,
            ev,
            seq,
            fx,
            format!("cancelled ({reason}): {released} units released"),
        );
        self.finish(wf, fx)
    }

    /// Why a command may not start workflow `key`: it exists (a repeat answers with it, other
    /// content is a conflict), or it names an unknown location or item. `None`: start it.
    fn refuse_start(
        &self,
        policy: &Policy,
        key: &str,
        hash: u64,
        locations: &[(&str, &LocationId)],
        lines: &[OrderLine],
    ) -> Option<Outcome> {
        if let Some(existing) = self.workflows.get(key) {
            return Some(repeat_or_conflict(existing, hash, key));
        }
        locations
            .iter()
            .find_map(|(field, l)| invalid_location(policy, field, l))
            .or_else(|| unknown_items(policy, lines))
    }

    fn authorize_return(
        &mut self,
        policy: &Policy,
        ev: &Event,
        r: &ReturnAuthorized,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let hash = data_hash(r);
        let key = WorkflowKind::Return.key(&r.rma);
        if let Some(o) =
            self.refuse_start(policy, &key, hash, &[("location", &r.location)], &r.lines)
        {
            return o;
        }
        let mut wf = new_workflow(
            WorkflowKind::Return,
            &r.rma,
            ev,
            seq,
            hash,
            Doc::Return(ReturnDoc {
                order: r.order.clone(),
                location: r.location.clone(),
                reason: r.reason.clone(),
                lines: r
                    .lines
                    .iter()
                    .map(|l| ReturnLineState {
                        item: l.item.clone(),
                        authorized: l.qty,
                        received: 0,
                        restocked: 0,
                        damaged: 0,
                        scrapped: 0,
                    })
                    .collect(),
            }),
        );
        self.step(&mut wf, "authorized", ev, seq, fx, r.reason.clone());
        self.finish(wf, fx)
    }

    fn request_transfer(
        &mut self,
        policy: &Policy,
        ev: &Event,
        t: &TransferRequested,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let hash = data_hash(t);
        let key = WorkflowKind::Transfer.key(&t.transfer);
        let locations = [("from", &t.from), ("to", &t.to)];
        if let Some(o) = self.refuse_start(policy, &key, hash, &locations, &t.lines) {
            return o;
        }
        let mut wf = new_workflow(
            WorkflowKind::Transfer,
            &t.transfer,
            ev,
            seq,
            hash,
            Doc::Transfer(TransferDoc {
                from: t.from.clone(),
                to: t.to.clone(),
                lines: t
                    .lines
                    .iter()
                    .map(|l| TransferLineState {
                        item: l.item.clone(),
                        qty: l.qty,
                        shipped: 0,
                        received: 0,
                        lost: 0,
                        closed: false,
                    })
                    .collect(),
            }),
        );
        let payload = json!({"type": "transfer.release", "transfer": t.transfer, "from": t.from, "to": t.to, "lines": t.lines});
        fx.postings.push(Posting {
            to: PostTo::Warehouse(t.from.clone()),
            key: key.clone(),
            payload,
            correlation_id: ev.correlation_id.clone(),
        });
        self.step(
            &mut wf,
            "requested",
            ev,
            seq,
            fx,
            format!("from {} to {}", t.from, t.to),
        );
        self.finish(wf, fx)
    }

    fn create_po(
        &mut self,
        policy: &Policy,
        ev: &Event,
        p: &PurchaseOrderCreated,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let hash = data_hash(p);
        let key = WorkflowKind::PurchaseOrder.key(&p.po);
        if let Some(o) =
            self.refuse_start(policy, &key, hash, &[("location", &p.location)], &p.lines)
        {
            return o;
        }
        if let Some(o) = self.incoming_beyond_bound(policy, ev, p, fx) {
            return o;
        }
        let ack_due_at = ev
            .time
            .plus_secs(p.ack_within_s.unwrap_or(policy.workflow.ack_timeout_s));
        let mut wf = new_workflow(
            WorkflowKind::PurchaseOrder,
            &p.po,
            ev,
            seq,
            hash,
            Doc::PurchaseOrder(PoDoc {
                partner: p.partner.clone(),
                location: p.location.clone(),
                expected_at: p.expected_at,
                ack: None,
                ack_due_at,
                lines: p
                    .lines
                    .iter()
                    .map(|l| PoLineState {
                        item: l.item.clone(),
                        qty: l.qty,
                        shipped: 0,
                        received: 0,
                    })
                    .collect(),
                asns: Vec::new(),
                pending: Vec::new(),
            }),
        );
        for line in &p.lines {
            self.open_supply(
                policy,
                &line.item,
                &p.location,
                &p.po,
                line.qty,
                p.expected_at,
                seq,
                fx,
            );
        }
        let payload = json!({"type": "purchase_order.created", "po": p.po, "partner": p.partner, "location": p.location, "lines": p.lines, "expected_at": p.expected_at});
        let to = match &p.partner {
            Some(partner) => PostTo::Partner(partner.clone()),
            None => PostTo::Erp,
        };
        fx.postings.push(Posting {
            to,
            key: key.clone(),
            payload,
            correlation_id: ev.correlation_id.clone(),
        });
        wf.deadline = Some(ack_due_at);
        fx.timers_set.extend(deadline_timer(&wf));
        self.step(
            &mut wf,
            "created",
            ev,
            seq,
            fx,
            format!("sent to {}", p.partner.as_deref().unwrap_or("the ERP")),
        );
        self.finish(wf, fx)
    }

    /// Refuses a purchase order whose open supply would take `incoming` of an item at its
    /// location beyond `±QTY_MAX` (checked before anything changes).
    fn incoming_beyond_bound(
        &self,
        policy: &Policy,
        ev: &Event,
        p: &PurchaseOrderCreated,
        fx: &mut Effects,
    ) -> Option<Outcome> {
        let l = policy.location(&p.location)?;
        for (i, line) in p.lines.iter().enumerate() {
            let now = self
                .items
                .get(&line.item)
                .and_then(|s| s.position(l, None))
                .map_or(0, |pos| pos.b().incoming);
            let added = p.lines[..=i]
                .iter()
                .filter(|x| x.item == line.item)
                .fold(0i64, |sum, x| sum.saturating_add(x.qty));
            let after = now.saturating_add(added);
            if !crossdock_model::event::qty_in_bound(after) {
                let reason = format!(
                    "purchase order {} would take incoming of {} at {} to {after}, beyond the bound of ±{}; \
                     not created",
                    p.po,
                    line.item,
                    p.location,
                    crossdock_model::event::QTY_MAX
                );
                fx.exception(
                    ev,
                    ExceptionKind::OutOfBounds,
                    format!("item:{}", line.item),
                    reason.clone(),
                );
                return Some(Outcome::Rejected(Rejection::Invalid {
                    field: format!("lines[{i}].qty"),
                    reason,
                }));
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn open_supply(
        &mut self,
        policy: &Policy,
        item: &ItemId,
        location: &LocationId,
        po: &str,
        qty: i64,
        expected_at: Timestamp,
        seq: u64,
        fx: &mut Effects,
    ) {
        let l = policy.location(location).expect("checked");
        let state = self.item_mut(item, fx);
        state.last_seq = seq;
        state.position_mut(l, None).b_mut().incoming += qty;
        match state
            .extras_mut()
            .supply
            .iter_mut()
            .find(|s| s.reference == po && s.location == l)
        {
            Some(line) => line.open += qty,
            None => state.extras_mut().supply.push(crate::state::SupplyLine {
                reference: po.to_string(),
                location: l,
                open: qty,
                expected_at,
            }),
        }
    }

    fn close_supply(
        &mut self,
        policy: &Policy,
        item: &ItemId,
        location: &LocationId,
        po: &str,
        qty: i64,
        fx: &mut Effects,
    ) {
        let l = policy.location(location).expect("checked");
        let state = self.item_mut(item, fx);
        if let Some(line) = state
            .extras_mut()
            .supply
            .iter_mut()
            .find(|s| s.reference == po && s.location == l)
        {
            let n = line.open.min(qty.max(0));
            line.open -= n;
            state.position_mut(l, None).b_mut().incoming -= n;
        }
        state.extras_mut().supply.retain(|s| s.open > 0);
    }

    fn receive_asn(
        &mut self,
        policy: &Policy,
        ev: &Event,
        a: &AsnReceived,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let key = WorkflowKind::PurchaseOrder.key(&a.po);
        let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) else {
            return quarantine(
                fx,
                ev,
                ExceptionKind::AsnMismatch,
                &key,
                format!(
                    "ASN {} names purchase order {} which is not known",
                    a.asn, a.po
                ),
            );
        };
        let Doc::PurchaseOrder(d) = &mut wf.doc else {
            unreachable!()
        };
        if d.asns.contains(&a.asn) {
            let state = wf.state.clone();
            self.step(
                &mut wf,
                &state,
                ev,
                seq,
                fx,
                format!("ASN {} again; already matched", a.asn),
            );
            return self.finish(wf, fx);
        }
        d.asns.push(a.asn.clone());
        let mut problems = Vec::new();
        for line in &a.lines {
            let problem = match ItemId::new(&line.item)
                .ok()
                .filter(|i| policy.knows_item(i))
            {
                None => Some(format!("unknown item {:?}", line.item)),
                Some(item) => match d.lines.iter_mut().find(|l| l.item == item) {
                    None => Some(format!("{} is not on the PO (substitution?)", line.item)),
                    Some(l) if l.shipped + line.qty > l.qty => Some(format!(
                        "over-shipment of {}: {} announced, {} ordered, {} announced before",
                        line.item, line.qty, l.qty, l.shipped
                    )),
                    Some(l) => {
                        l.shipped += line.qty;
                        None
                    }
                },
            };
            if let Some(problem) = problem {
                d.pending.push(PendingAsnLine {
                    asn: a.asn.clone(),
                    item: line.item.clone(),
                    qty: line.qty,
                    problem: problem.clone(),
                });
                problems.push(problem);
            }
        }
        if let Some(at) = a.expected_at {
            d.expected_at = at;
        }
        if problems.is_empty() {
            self.step(
                &mut wf,
                "asn_received",
                ev,
                seq,
                fx,
                format!("ASN {} matched line by line", a.asn),
            );
        } else {
            let reason = format!(
                "ASN {} for PO {} does not match: {}; accept or reject it",
                a.asn,
                a.po,
                problems.join("; ")
            );
            self.open_exception(
                fx,
                ev,
                ExceptionKind::AsnMismatch,
                &key,
                &format!("{key}:asn:{}", a.asn),
                reason.clone(),
            );
            self.step(&mut wf, "asn_hold", ev, seq, fx, reason);
        }
        self.finish(wf, fx)
    }

    fn decide_asn(
        &mut self,
        policy: &Policy,
        ev: &Event,
        dcs: &AsnDecided,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let key = WorkflowKind::PurchaseOrder.key(&dcs.po);
        let Some(mut wf) = self.workflows.get(&key).map(|w| (**w).clone()) else {
            return not_found(&key);
        };
        let Doc::PurchaseOrder(d) = &mut wf.doc else {
            unreachable!()
        };
        let pending: Vec<PendingAsnLine> = d
            .pending
            .iter()
            .filter(|p| p.asn == dcs.asn)
            .cloned()
            .collect();
        if pending.is_empty() {
            return Outcome::Rejected(Rejection::InvalidState(format!(
                "PO {} has no ASN {} waiting for a decision",
                dcs.po, dcs.asn
            )));
        }
        if dcs.accept {
            for p in &pending {
                if ItemId::new(&p.item)
                    .ok()
                    .filter(|i| policy.knows_item(i))
                    .is_none()
                {
                    return Outcome::Rejected(Rejection::Invalid {
                        field: "accept".into(),
                        reason: format!(
                            "item {:?} is unknown; add it to the item master or a crosswalk first, or reject",
                            p.item
                        ),
                    });
                }
            }
        }
        d.pending.retain(|p| p.asn != dcs.asn);
        let (loc, expected_at) = (d.location.clone(), d.expected_at);
        if dcs.accept {
            for p in &pending {
                let item = ItemId::new(&p.item).expect("checked above");
                let Doc::PurchaseOrder(d) = &mut wf.doc else {
                    unreachable!()
                };
                let extra = match d.lines.iter_mut().find(|l| l.item == item) {
                    Some(l) => {
                        // Accepting an over-shipment raises the ordered quantity to what ships.
                        let extra = (l.shipped + p.qty - l.qty).max(0);
                        l.qty += extra;
                        l.shipped += p.qty;
                        extra
                    }
                    None => {
                        d.lines.push(PoLineState {
                            item: item.clone(),
                            qty: p.qty,
                            shipped: p.qty,
                            received: 0,
                        });
                        p.qty
                    }
                };
                if extra > 0 {
                    self.open_supply(policy, &item, &loc, &dcs.po, extra, expected_at, seq, fx);
                }
            }
        }
        fx.exceptions_resolved.push((
            ExceptionRecord::open(
                ExceptionKind::AsnMismatch,
                &format!("{key}:asn:{}", dcs.asn),
                String::new(),
                None,
                String::new(),
                None,
                ev.received_at,
            )
            .id,
            ev.received_at,
            format!(
                "{}: {}",
                if dcs.accept { "accepted" } else { "rejected" },
                dcs.note
            ),
        ));
        let Doc::PurchaseOrder(d) = &wf.doc else {
            unreachable!()
        };
        let to = if !d.pending.is_empty() {
            "asn_hold"
        } else {
            "asn_received"
        };
        let note = format!(
            "ASN {} {} by a person: {}",
            dcs.asn,
            if dcs.accept { "accepted" } else { "rejected" },
            dcs.note
        );
        self.step(&mut wf, to, ev, seq, fx, note);
        self.finish(wf, fx)
    }

    /// Appends a step; `to == from` records an event that did not change the state.
    fn step(
        &mut self,
        wf: &mut Workflow,
        to: &str,
        ev: &Event,
        seq: u64,
        fx: &mut Effects,
        note: String,
    ) {
        fx.steps.push(Step {
            key: wf.key(),
            n: wf.steps,
            from: wf.state.clone(),
            to: to.to_string(),
            at: ev.received_at,
            seq,
            cause: format!("{}/{}", ev.source, ev.id),
            correlation_id: ev.correlation_id.clone(),
            note,
        });
        wf.steps += 1;
        wf.state = to.to_string();
        wf.updated_at = ev.received_at;
        wf.updated_seq = seq;
    }

    /// Keeps the new state (final workflows leave memory once persisted) and answers.
    fn finish(&mut self, wf: Workflow, fx: &mut Effects) -> Outcome {
        let key = wf.key();
        match fx.workflows.iter_mut().find(|w| w.key() == key) {
            Some(w) => *w = wf.clone(),
            None => fx.workflows.push(wf.clone()),
        }
        if wf.is_final() {
            self.workflows.remove(&key);
        } else {
            self.workflows.insert(key, Box::new(wf.clone()));
        }
        Outcome::Workflow {
            view: Box::new(wf),
            repeat: false,
        }
    }

    fn open_exception(
        &self,
        fx: &mut Effects,
        ev: &Event,
        kind: ExceptionKind,
        entity: &str,
        cause: &str,
        reason: String,
    ) {
        fx.exceptions.push(ExceptionRecord::open(
            kind,
            cause,
            entity.to_string(),
            Some(ev.correlation_id.clone()),
            reason,
            Some(ev.envelope_json()),
            ev.received_at,
        ));
    }
}

fn order_doc(wf: &Workflow) -> &OrderDoc {
    match &wf.doc {
        Doc::Order(d) => d,
        _ => unreachable!("an order workflow holds an order"),
    }
}

fn order_message(ty: &str, wf: &Workflow) -> serde_json::Value {
    let d = order_doc(wf);
    json!({
        "type": ty, "order": wf.id, "channel": d.channel, "origin": d.origin,
        "ship_to": d.ship_to, "amount_minor": d.amount_minor, "lines": d.lines,
    })
}

fn order_invoice(wf: &Workflow) -> serde_json::Value {
    let d = order_doc(wf);
    let lines: Vec<serde_json::Value> = d
        .lines
        .iter()
        .flat_map(|l| l.allocations.iter().filter(|a| a.shipped > 0).map(move |a| json!({"item": a.item, "ordered_item": l.item, "qty": a.shipped, "location": a.location})))
        .collect();
    json!({"type": "order.invoiced", "order": wf.id, "channel": d.channel, "origin": d.origin, "amount_minor": d.amount_minor, "lines": lines})
}

pub fn credit_exception_id(order: &str) -> String {
    ExceptionRecord::open(
        ExceptionKind::CreditHold,
        &format!("credit:{order}"),
        String::new(),
        None,
        String::new(),
        None,
        Timestamp::from_micros(0),
    )
    .id
}

pub fn ack_exception_id(po: &str) -> String {
    let key = WorkflowKind::PurchaseOrder.key(po);
    ExceptionRecord::open(
        ExceptionKind::PartnerAckTimeout,
        &format!("{key}:ack"),
        String::new(),
        None,
        String::new(),
        None,
        Timestamp::from_micros(0),
    )
    .id
}

fn new_workflow(
    kind: WorkflowKind,
    id: &str,
    ev: &Event,
    seq: u64,
    hash: u64,
    doc: Doc,
) -> Workflow {
    Workflow {
        kind,
        id: id.to_string(),
        state: String::new(),
        doc,
        correlation_id: ev.correlation_id.clone(),
        created_at: ev.received_at,
        updated_at: ev.received_at,
        created_seq: seq,
        updated_seq: seq,
        steps: 0,
        request_hash: hash,
        deadline: None,
    }
}

fn repeat_or_conflict(existing: &Workflow, hash: u64, key: &str) -> Outcome {
    if existing.request_hash == hash {
        Outcome::Workflow {
            view: Box::new(existing.clone()),
            repeat: true,
        }
    } else {
        Outcome::Rejected(Rejection::Conflict(format!(
            "{key} already exists with other content"
        )))
    }
}

fn not_found(key: &str) -> Outcome {
    Outcome::Rejected(Rejection::NotFound(format!(
        "no open {}",
        key.replace(':', " ")
    )))
}

fn quarantine(
    fx: &mut Effects,
    ev: &Event,
    kind: ExceptionKind,
    entity: &str,
    reason: String,
) -> Outcome {
    fx.exceptions.push(ExceptionRecord::open(
        kind,
        &format!("event:{}/{}", ev.source, ev.id),
        entity.to_string(),
        Some(ev.correlation_id.clone()),
        reason.clone(),
        Some(ev.envelope_json()),
        ev.received_at,
    ));
    Outcome::Quarantined { kind, reason }
}

fn invalid_location(policy: &Policy, field: &str, l: &LocationId) -> Option<Outcome> {
    policy.location(l).is_none().then(|| {
        Outcome::Rejected(Rejection::Invalid {
            field: field.into(),
            reason: format!("unknown location {:?}", l.as_str()),
        })
    })
}

fn unknown_items(policy: &Policy, lines: &[OrderLine]) -> Option<Outcome> {
    lines
        .iter()
        .enumerate()
        .find(|(_, l)| !policy.knows_item(&l.item))
        .map(|(i, l)| {
            Outcome::Rejected(Rejection::Invalid {
                field: format!("lines[{i}].item"),
                reason: format!("unknown item {:?}", l.item.as_str()),
            })
        })
}

/// Whether an applied event can make stock available (and so fill a backorder).
fn adds_stock(data: &EventData) -> bool {
    match data {
        EventData::Received(_) | EventData::Counted(_) | EventData::TransferReceived(_) => true,
        EventData::Adjusted(a) => a.delta > 0,
        EventData::StatusChanged(s) => s.to == crossdock_model::event::StockStatus::Sellable,
        EventData::ReturnInspected(r) => r.disposition == Disposition::Restock,
        _ => false,
    }
}

/// The workflow a command or partner document is about, if it is one.
pub fn workflow_key(data: &EventData) -> Option<String> {
    let (kind, id) = match data {
        EventData::OrderCaptured(d) => (WorkflowKind::Order, &d.order),
        EventData::OrderApproved(d) => (WorkflowKind::Order, &d.order),
        EventData::OrderCancelled(d) => (WorkflowKind::Order, &d.order),
        EventData::OrderShipmentDue(d) => (WorkflowKind::Order, &d.order),
        EventData::ReturnAuthorized(d) => (WorkflowKind::Return, &d.rma),
        EventData::TransferRequested(d) => (WorkflowKind::Transfer, &d.transfer),
        EventData::PurchaseOrderCreated(d) => (WorkflowKind::PurchaseOrder, &d.po),
        EventData::PurchaseOrderAcknowledged(d) => (WorkflowKind::PurchaseOrder, &d.po),
        EventData::PurchaseOrderAckDue(d) => (WorkflowKind::PurchaseOrder, &d.po),
        EventData::AsnReceived(d) => (WorkflowKind::PurchaseOrder, &d.po),
        EventData::AsnDecided(d) => (WorkflowKind::PurchaseOrder, &d.po),
        _ => return None,
    };
    Some(kind.key(id))
}

/// The workflow an input changes: a workflow command's, or the one a physical event names (a
/// pick or shipment of an order, a transfer's shipment or receipt, a return's receipt or
/// inspection, a receipt against a purchase order).
pub fn named_workflow(data: &EventData) -> Option<String> {
    Some(match data {
        EventData::Picked(d) => WorkflowKind::Order.key(&d.order),
        EventData::Shipped(d) => WorkflowKind::Order.key(&d.order),
        EventData::TransferShipped(d) => WorkflowKind::Transfer.key(&d.transfer),
        EventData::TransferReceived(d) => WorkflowKind::Transfer.key(&d.transfer),
        EventData::ReturnReceived(d) => WorkflowKind::Return.key(&d.rma),
        EventData::ReturnInspected(d) => WorkflowKind::Return.key(&d.rma),
        EventData::Received(d) => WorkflowKind::PurchaseOrder.key(d.reference.as_ref()?),
        other => return workflow_key(other),
    })
}

/// For a command that creates a workflow: the hash a repeat must match.
pub fn creation_hash(data: &EventData) -> Option<u64> {
    match data {
        EventData::OrderCaptured(o) => Some(order_hash(o)),
        EventData::ReturnAuthorized(r) => Some(data_hash(r)),
        EventData::TransferRequested(t) => Some(data_hash(t)),
        EventData::PurchaseOrderCreated(p) => Some(data_hash(p)),
        _ => None,
    }
}

/// The items a workflow input may touch: those it names, the workflow's (when it exists) and,
/// for an order, the substitutes the policy lists for them (sourcing may draw on them).
pub fn items_touched(policy: &Policy, data: &EventData, wf: Option<&Workflow>) -> Vec<ItemId> {
    let mut out: Vec<ItemId> = data.items().into_iter().cloned().collect();
    if let Some(wf) = wf {
        out.extend(wf.items());
    }
    let is_order = matches!(data, EventData::OrderCaptured(_))
        || wf.is_some_and(|w| w.kind == WorkflowKind::Order);
    with_substitutes(policy, &mut out, is_order);
    out
}

/// The items a live workflow may touch: its own and, for an order, their substitutes.
pub fn workflow_items(policy: &Policy, wf: &Workflow) -> Vec<ItemId> {
    let mut out = wf.items();
    with_substitutes(policy, &mut out, wf.kind == WorkflowKind::Order);
    out
}

fn with_substitutes(policy: &Policy, items: &mut Vec<ItemId>, is_order: bool) {
    if is_order {
        let subs: Vec<ItemId> = items
            .iter()
            .filter_map(|i| policy.workflow.substitutions.get(i))
            .flatten()
            .cloned()
            .collect();
        items.extend(subs);
    }
    items.sort();
    items.dedup();
}
