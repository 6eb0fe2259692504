//! Conversion between ledger state and store rows. Locations and channels are stored by name, so
//! reordering the config never scrambles stored state.

use crossdock_ledger::position::{Buckets, CountMark, Delta, DeltaWindow, TimeRule};
use crossdock_ledger::state::{Published, SupplyLine, TransferLine};
use crossdock_ledger::{
    ItemState, Ledger, Policy, Position, ResStatus, Reservation, Step, Workflow,
};
use crossdock_model::{ChannelId, Envelope, Event, ItemId, LocationId, Lot, Timestamp};
use crossdock_store::{
    EventRow, EventStatus, ItemStateRow, PartitionSnapshot, PositionRow, ReservationRow, StateRow,
    StepRow, Store, StoreError, WorkflowRow,
};
use serde::{Deserialize, Serialize};

/// A position's event-time bookkeeping, compact: it is rewritten on every change.
#[derive(Serialize, Deserialize, Default)]
struct RuleRow {
    /// Latest count: (time µs, tiebreak).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<(i64, u64)>,
    /// Deltas after it: (time µs, qty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    r: Vec<(i64, i64)>,
    /// Folded up to (time µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<i64>,
}

impl From<&TimeRule> for RuleRow {
    fn from(t: &TimeRule) -> Self {
        RuleRow {
            c: t.count.map(|c| (c.time.as_micros(), c.tiebreak)),
            r: t.recent()
                .iter()
                .map(|d| (d.time.as_micros(), d.qty))
                .collect(),
            f: t.folded_to().map(Timestamp::as_micros),
        }
    }
}

impl From<RuleRow> for TimeRule {
    fn from(r: RuleRow) -> Self {
        TimeRule {
            count: r.c.map(|(t, tiebreak)| CountMark {
                time: Timestamp::from_micros(t),
                tiebreak,
            }),
            window: (!r.r.is_empty() || r.f.is_some()).then(|| {
                let recent = r.r.into_iter().map(|(t, qty)| Delta {
                    time: Timestamp::from_micros(t),
                    qty,
                });
                Box::new(DeltaWindow {
                    recent: recent.collect(),
                    folded_to: r.f.map(Timestamp::from_micros),
                })
            }),
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct ItemExtra {
    /// Last published ATS per channel: (channel, ats, ledger seq).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    published: Vec<(String, i64, u64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    supply: Vec<SupplyJson>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    transfers: Vec<TransferJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oversell_hold: Option<String>,
    last_seq: u64,
}

#[derive(Serialize, Deserialize)]
struct SupplyJson {
    reference: String,
    location: String,
    open: i64,
    expected_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct TransferJson {
    transfer: String,
    to: String,
    open: i64,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub fn item_rows(
    policy: &Policy,
    partition: u32,
    id: &ItemId,
    item: &ItemState,
) -> (Vec<PositionRow>, ItemStateRow) {
    let positions = item
        .positions
        .iter()
        .map(|p| {
            let b = p.b();
            PositionRow {
                partition,
                item: id.to_string(),
                location: policy.location_name(p.location).to_string(),
                lot: p.lot.as_ref().map(|l| l.to_string()).unwrap_or_default(),
                on_hand: b.on_hand,
                quarantined: b.quarantined,
                damaged: b.damaged,
                returns_pending: b.returns_pending,
                picked: b.picked,
                allocated: b.allocated,
                reserved: b.reserved,
                in_transit: b.in_transit,
                incoming: b.incoming,
                safety_stock: b.safety_stock,
                extra: if p.rule == TimeRule::default() {
                    String::new()
                } else {
                    serde_json::to_string(&RuleRow::from(&p.rule)).expect("time rule serializes")
                },
                updated_seq: item.last_seq,
            }
        })
        .collect();
    let extra = ItemExtra {
        published: item
            .published
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (policy.channels[i].id.to_string(), p.ats, p.seq)))
            .collect(),
        supply: item
            .supply()
            .iter()
            .map(|s| SupplyJson {
                reference: s.reference.clone(),
                location: policy.location_name(s.location).to_string(),
                open: s.open,
                expected_at: s.expected_at,
            })
            .collect(),
        transfers: item
            .transfers()
            .iter()
            .map(|t| TransferJson {
                transfer: t.transfer.clone(),
                to: policy.location_name(t.to).to_string(),
                open: t.open,
            })
            .collect(),
        oversell_hold: item.oversell_hold().map(str::to_string),
        last_seq: item.last_seq,
    };
    let row = ItemStateRow {
        partition,
        item: id.to_string(),
        state: serde_json::to_string(&extra).expect("item state serializes"),
    };
    (positions, row)
}

pub fn reservation_row(partition: u32, r: &Reservation) -> ReservationRow {
    ReservationRow {
        partition,
        id: r.id.clone(),
        channel: r.channel.to_string(),
        status: r.status.as_str().to_string(),
        lines: reservation_body(r),
        request_hash: r.request_hash,
        expires_at_us: r.expires_at.as_micros(),
        created_seq: r.created_seq,
        updated_seq: r.updated_seq,
    }
}

pub fn reservation_from_row(row: &ReservationRow) -> Result<Reservation, StoreError> {
    let (lines, cross) = reservation_lines(&row.lines)?;
    Ok(Reservation {
        id: row.id.clone(),
        channel: ChannelId::new(&row.channel).map_err(corrupt)?,
        status: ResStatus::parse(&row.status)
            .ok_or_else(|| corrupt(format!("reservation status {:?}", row.status)))?,
        request_hash: row.request_hash,
        expires_at: Timestamp::from_micros(row.expires_at_us),
        created_seq: row.created_seq,
        updated_seq: row.updated_seq,
        lines,
        cross,
    })
}

/// The `lines` column: the lines as a JSON array, or for the coordinator's record of a
/// cross-partition reservation `{"lines": [...], "cross": {...}}` (how it is split).
fn reservation_body(r: &Reservation) -> String {
    match &r.cross {
        None => serde_json::to_string(&r.lines),
        Some(cross) => serde_json::to_string(&CrossBody {
            lines: r.lines.clone(),
            cross: Some(cross.clone()),
        }),
    }
    .expect("lines serialize")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CrossBody {
    lines: Vec<crossdock_ledger::ResLine>,
    cross: Option<crossdock_ledger::reservation::Cross>,
}

/// The lines and split of a reservation, from the `lines` column.
type LinesAndCross = (
    Vec<crossdock_ledger::ResLine>,
    Option<crossdock_ledger::reservation::Cross>,
);

fn reservation_lines(raw: &str) -> Result<LinesAndCross, StoreError> {
    if raw.trim_start().starts_with('{') {
        let body: CrossBody = serde_json::from_str(raw).map_err(corrupt)?;
        return Ok((body.lines, body.cross));
    }
    Ok((serde_json::from_str(raw).map_err(corrupt)?, None))
}

pub fn event_row(partition: u32, seq: u64, ev: &Event, status: EventStatus) -> EventRow {
    EventRow {
        partition,
        seq,
        source: ev.source.to_string(),
        id: ev.id.clone(),
        ty: ev.data.type_name().to_string(),
        time_us: ev.time.as_micros(),
        received_at_us: ev.received_at.as_micros(),
        correlation_id: ev.correlation_id.clone(),
        payload_hash: ev.payload_hash(),
        status,
        envelope: ev.envelope_json(),
    }
}

pub fn event_from_row(row: &EventRow) -> Result<Event, StoreError> {
    let env: Envelope = serde_json::from_str(&row.envelope).map_err(corrupt)?;
    Event::from_envelope(&env, Timestamp::from_micros(row.received_at_us), || {
        row.correlation_id.clone()
    })
    .map_err(|e| corrupt(format!("logged event {}/{}: {e}", row.source, row.id)))
}

/// Loads a partition's ledger from the store. Positions and item states are built into the
/// ledger row by row as the store reads them (see [`Store::load_partition_with`]), so a restart
/// never holds every row beside the state made of them. Returns the rest of the snapshot too
/// (its timers and reservations arm timers).
pub fn load_ledger(
    policy: &Policy,
    store: &mut dyn Store,
    partition: u32,
) -> Result<(Ledger, PartitionSnapshot), StoreError> {
    let mut ledger = Ledger::new();
    // Rows come in item order: the id of the item being filled is reused for its next rows.
    let mut current: Option<ItemId> = None;
    let snap = store.load_partition_with(partition, &mut |row| {
        let name = match &row {
            StateRow::Position(row) => &row.item,
            StateRow::Item(row) => &row.item,
        };
        let id = match current.take() {
            Some(id) if id.as_str() == name => id,
            _ => ItemId::new(name).map_err(corrupt)?,
        };
        let item = ledger.restore_item(&id);
        current = Some(id);
        match row {
            StateRow::Position(row) => restore_position(policy, item, &row),
            StateRow::Item(row) => restore_item_state(policy, item, &row),
        }
    })?;
    ledger.seq = snap.last_seq;
    restore_rest(&mut ledger, &snap)?;
    Ok((ledger, snap))
}

/// Adds a stored position to its item, keeping the item's positions in (location, lot) order.
fn restore_position(
    policy: &Policy,
    item: &mut ItemState,
    row: &PositionRow,
) -> Result<(), StoreError> {
    let location = LocationId::new(&row.location).map_err(corrupt)?;
    let Some(loc) = policy.location(&location) else {
        return Err(StoreError::Config(format!(
            "stored stock at location {location} which the config no longer has; add it back to [[locations]]"
        )));
    };
    let lot = if row.lot.is_empty() {
        None
    } else {
        Some(Lot::new(&row.lot).map_err(corrupt)?)
    };
    let mut p = Position::new(loc, lot);
    p.set_b(Buckets {
        on_hand: row.on_hand,
        quarantined: row.quarantined,
        damaged: row.damaged,
        returns_pending: row.returns_pending,
        picked: row.picked,
        allocated: row.allocated,
        reserved: row.reserved,
        in_transit: row.in_transit,
        incoming: row.incoming,
        safety_stock: row.safety_stock,
    });
    if !row.extra.is_empty() {
        p.rule = serde_json::from_str::<RuleRow>(&row.extra)
            .map_err(corrupt)?
            .into();
    }
    let at = item
        .positions
        .partition_point(|q| (q.location, &q.lot) < (p.location, &p.lot));
    item.positions.insert(at, p);
    Ok(())
}

/// Fills in an item's published values, supply, transfers, hold and sequence from its stored row.
fn restore_item_state(
    policy: &Policy,
    item: &mut ItemState,
    row: &ItemStateRow,
) -> Result<(), StoreError> {
    let extra: ItemExtra = serde_json::from_str(&row.state).map_err(corrupt)?;
    item.published = std::iter::repeat_n(None, policy.channels.len()).collect();
    for (name, ats, seq) in extra.published {
        // A channel removed from the config simply stops being tracked.
        if let Some(c) = ChannelId::new(&name).ok().and_then(|c| policy.channel(&c)) {
            item.published[c.0 as usize] = Some(Published { ats, seq });
        }
    }
    let loc = |name: &str| {
        LocationId::new(name)
            .ok()
            .and_then(|l| policy.location(&l))
            .ok_or_else(|| {
                StoreError::Config(format!(
                    "stored state names location {name} which the config no longer has"
                ))
            })
    };
    for s in extra.supply {
        item.extras_mut().supply.push(SupplyLine {
            reference: s.reference,
            location: loc(&s.location)?,
            open: s.open,
            expected_at: s.expected_at,
        });
    }
    for t in extra.transfers {
        item.extras_mut().transfers.push(TransferLine {
            transfer: t.transfer,
            to: loc(&t.to)?,
            open: t.open,
        });
    }
    item.extras_mut().oversell_hold = extra.oversell_hold;
    item.tidy();
    item.last_seq = extra.last_seq;
    Ok(())
}

/// Everything of a partition's ledger but its items: reservations, source sequences, held
/// events and live workflows.
fn restore_rest(ledger: &mut Ledger, snap: &PartitionSnapshot) -> Result<(), StoreError> {
    for row in &snap.reservations {
        ledger.insert_reservation(reservation_from_row(row)?);
    }
    for row in &snap.source_seqs {
        ledger.restore_source(
            crossdock_model::SourceId::new(&row.source).map_err(corrupt)?,
            row.next_expected,
        );
    }
    for row in snap
        .held_events
        .iter()
        .filter(|r| r.status == EventStatus::Held)
    {
        ledger.restore_held(row.seq, event_from_row(row)?);
    }
    let mut workflows = snap
        .workflows
        .iter()
        .map(workflow_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    // Oldest first, so orders waiting for the same stock keep their turn.
    workflows.sort_by_key(|w| w.created_seq);
    for wf in workflows {
        ledger.insert_workflow(wf);
    }
    Ok(())
}

pub fn workflow_row(partition: u32, wf: &Workflow) -> WorkflowRow {
    WorkflowRow {
        partition,
        key: wf.key(),
        kind: wf.kind.as_str().to_string(),
        id: wf.id.clone(),
        state: wf.state.clone(),
        is_final: wf.is_final(),
        doc: serde_json::to_string(wf).expect("a workflow serializes"),
        updated_at_us: wf.updated_at.as_micros(),
        updated_seq: wf.updated_seq,
    }
}

pub fn workflow_from_row(row: &WorkflowRow) -> Result<Workflow, StoreError> {
    serde_json::from_str(&row.doc)
        .map_err(|e| StoreError::Corrupt(format!("workflow {}: {e}", row.key)))
}

pub fn step_row(s: &Step) -> StepRow {
    StepRow {
        key: s.key.clone(),
        n: s.n,
        from: s.from.clone(),
        to: s.to.clone(),
        at_us: s.at.as_micros(),
        seq: s.seq,
        cause: s.cause.clone(),
        correlation_id: s.correlation_id.clone(),
        note: s.note.clone(),
    }
}
