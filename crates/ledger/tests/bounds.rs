//! Quantities and times at and beyond their bounds: nothing wraps, nothing leaves `±QTY_MAX`, and
//! every refusal leaves an exception naming what it refused.

use std::collections::HashMap;

use crossdock_ledger::state::hub_command;
use crossdock_ledger::{
    ChannelPolicy, Effects, Ledger, Outcome, OwnershipRule, Policy, Rejection, SourcePolicy,
};
use crossdock_model::event::{
    Adjusted, Counted, Disposition, EventData, Picked, QTY_MAX, Received, ReservationRequested,
    ReserveLine, ReturnInspected, ReturnReceived, ShipLine, Shipped, StatusChanged, StockStatus,
    SupplyExpected, TransferReceived, TransferShipped,
};
use crossdock_model::{ChannelId, Event, ExceptionKind, ItemId, LocationId, SourceId, Timestamp};
use proptest::prelude::*;

const NOW_US: i64 = 1_796_400_000_000_000; // 2026-12-04T...

fn policy() -> Policy {
    let locs = vec![LocationId::new("A").unwrap(), LocationId::new("B").unwrap()];
    let mut sources = HashMap::new();
    sources.insert(
        SourceId::new("wms").unwrap(),
        SourcePolicy {
            rules: vec![OwnershipRule {
                types: vec![
                    "inventory.*".into(),
                    "transfer.*".into(),
                    "return.*".into(),
                    "supply.*".into(),
                ],
                locations: None,
            }],
            sequenced: false,
        },
    );
    let channels = vec![ChannelPolicy::plain(
        ChannelId::new("web").unwrap(),
        vec![crossdock_ledger::LocIdx(0), crossdock_ledger::LocIdx(1)],
    )];
    Policy::new(None, locs, channels, sources)
}

fn item() -> ItemId {
    ItemId::new("I").unwrap()
}

fn loc(l: u8) -> LocationId {
    LocationId::new(if l == 0 { "A" } else { "B" }).unwrap()
}

fn event(n: usize, data: EventData) -> Event {
    Event {
        id: format!("e{n}"),
        source: SourceId::new("wms").unwrap(),
        time: Timestamp::from_micros(NOW_US - 1_000_000_000 + n as i64 * 1_000_000),
        sequence: None,
        correlation_id: format!("c{n}"),
        causation_id: None,
        data,
        received_at: Timestamp::from_micros(NOW_US),
    }
}

fn adjust(n: usize, delta: i64) -> Event {
    event(
        n,
        EventData::Adjusted(Adjusted {
            item: item(),
            location: loc(0),
            delta,
            reason: "r".into(),
            lot: None,
        }),
    )
}

fn reserve(n: usize, qty: i64) -> Event {
    let mut e = hub_command(
        format!("reserve:{n}"),
        Timestamp::from_micros(NOW_US),
        format!("c{n}"),
        EventData::ReservationRequested(ReservationRequested {
            reservation: format!("r{n}"),
            channel: ChannelId::new("web").unwrap(),
            lines: vec![ReserveLine { item: item(), qty }],
            ttl_s: 60,
        }),
    );
    e.received_at = Timestamp::from_micros(NOW_US);
    e
}

fn on_hand(l: &Ledger) -> i64 {
    l.item(&item())
        .map_or(0, |s| s.positions.iter().map(|p| p.b().on_hand).sum())
}

fn apply(l: &mut Ledger, policy: &Policy, ev: &Event) -> (Outcome, Effects) {
    let mut fx = Effects::default();
    let out = l.apply(policy, ev, &mut fx);
    l.finish_batch(policy, &mut fx);
    (out, fx)
}

/// The issue's repro: an adjustment of i64::MIN, then -1000, then a reservation of a million.
#[test]
fn an_adjustment_of_i64_min_cannot_conjure_stock() {
    let policy = policy();
    let mut l = Ledger::new();
    let (out, fx) = apply(&mut l, &policy, &adjust(1, i64::MIN));
    assert!(
        matches!(&out, Outcome::Rejected(Rejection::Invalid { field, .. }) if field == "data.delta"),
        "{out:?}"
    );
    assert_eq!(
        fx.exceptions.len(),
        1,
        "a refused input leaves an exception"
    );
    assert_eq!(fx.exceptions[0].kind, ExceptionKind::SchemaViolation);
    assert!(fx.exceptions[0].raw.is_some(), "the raw input is kept");
    let (out, _) = apply(&mut l, &policy, &adjust(2, -1000));
    assert_eq!(out, Outcome::Applied);
    assert_eq!(on_hand(&l), -1000);
    let (out, _) = apply(&mut l, &policy, &reserve(3, 1_000_000));
    assert!(matches!(out, Outcome::Insufficient(_)), "{out:?}");
}

/// Each adjustment is in bounds, but together they would take on_hand beyond them: the one that
/// would is quarantined, names the position, and changes nothing.
#[test]
fn a_sum_beyond_the_bound_is_refused_naming_the_position() {
    let policy = policy();
    let mut l = Ledger::new();
    assert_eq!(
        apply(&mut l, &policy, &adjust(1, -QTY_MAX)).0,
        Outcome::Applied
    );
    let before = l.item(&item()).unwrap().clone();
    let (out, fx) = apply(&mut l, &policy, &adjust(2, -1));
    let Outcome::Quarantined { kind, reason } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(*kind, ExceptionKind::OutOfBounds);
    assert!(
        reason.contains("on_hand of I at A to -1000000000001"),
        "{reason}"
    );
    assert!(
        out.is_logged(),
        "quarantined inputs are logged, so a repeat gets the same answer"
    );
    assert_eq!(fx.exceptions.len(), 1);
    assert_eq!(fx.exceptions[0].entity, "item:I");
    assert!(fx.changes.is_empty(), "nothing journaled: nothing changed");
    assert_eq!(**l.item(&item()).unwrap(), *before);
    // Moving back towards zero is fine.
    assert_eq!(apply(&mut l, &policy, &adjust(3, 5)).0, Outcome::Applied);
    assert_eq!(on_hand(&l), -QTY_MAX + 5);
}

/// A shipment whose second line would overflow applies neither line.
#[test]
fn a_multi_line_event_is_refused_whole() {
    let policy = policy();
    let mut l = Ledger::new();
    let receive = |n, l: u8, qty| {
        event(
            n,
            EventData::Received(Received {
                item: item(),
                location: loc(l),
                qty,
                lot: None,
                reference: None,
            }),
        )
    };
    assert_eq!(
        apply(&mut l, &policy, &receive(1, 0, 10)).0,
        Outcome::Applied
    );
    assert_eq!(apply(&mut l, &policy, &adjust(2, 20)).0, Outcome::Applied);
    for n in 3..5 {
        let ship = event(
            n,
            EventData::Shipped(Shipped {
                order: "o".into(),
                shipment: None,
                lines: vec![ShipLine {
                    item: item(),
                    location: loc(1),
                    qty: QTY_MAX,
                }],
            }),
        );
        let out = apply(&mut l, &policy, &ship).0;
        if n == 3 {
            assert_eq!(out, Outcome::Applied);
        } else {
            assert!(
                matches!(
                    out,
                    Outcome::Quarantined {
                        kind: ExceptionKind::OutOfBounds,
                        ..
                    }
                ),
                "{out:?}"
            );
        }
    }
    let state = l.item(&item()).unwrap();
    let b = state
        .positions
        .iter()
        .find(|p| p.location.0 == 1)
        .unwrap()
        .b();
    assert_eq!((b.on_hand, b.picked), (-QTY_MAX, -QTY_MAX));
    assert_eq!(on_hand(&l), 30 - QTY_MAX);
}

/// A count dated far in the future is refused with an exception; later receipts still apply.
#[test]
fn a_count_from_the_future_cannot_freeze_an_item() {
    let policy = policy();
    let mut l = Ledger::new();
    let mut count = event(
        1,
        EventData::Counted(Counted {
            item: item(),
            location: loc(0),
            qty: 7,
            lot: None,
        }),
    );
    count.time = Timestamp::parse_rfc3339("9999-12-31T00:00:00Z").unwrap();
    let (out, fx) = apply(&mut l, &policy, &count);
    assert!(
        matches!(&out, Outcome::Rejected(Rejection::Invalid { field, .. }) if field == "time"),
        "{out:?}"
    );
    assert!(!out.is_logged());
    assert_eq!(fx.exceptions[0].kind, ExceptionKind::OutOfBounds);
    assert!(
        fx.exceptions[0].reason.contains("after the hub's clock"),
        "{}",
        fx.exceptions[0].reason
    );
    let receive = event(
        2,
        EventData::Received(Received {
            item: item(),
            location: loc(0),
            qty: 4,
            lot: None,
            reference: None,
        }),
    );
    assert_eq!(apply(&mut l, &policy, &receive).0, Outcome::Applied);
    assert_eq!(on_hand(&l), 4, "the receipt changed on_hand");
}

/// Quantities drawn from the whole i64 range, biased to the edges.
fn qty() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(QTY_MAX),
        Just(-QTY_MAX),
        Just(QTY_MAX + 1),
        Just(-QTY_MAX - 1),
        Just(0i64),
        (QTY_MAX - 5..=QTY_MAX),
        (-50..50i64),
        any::<i64>(),
    ]
}

fn arbitrary_event() -> impl Strategy<Value = (u8, u8, i64)> {
    (0..12u8, 0..2u8, qty())
}

fn to_event(n: usize, (kind, l, q): (u8, u8, i64)) -> Event {
    let (i, at, other) = (item(), loc(l), loc(1 - l));
    let data = match kind {
        0 => EventData::Received(Received {
            item: i,
            location: at,
            qty: q,
            lot: None,
            reference: None,
        }),
        1 => EventData::Adjusted(Adjusted {
            item: i,
            location: at,
            delta: q,
            reason: "r".into(),
            lot: None,
        }),
        2 => EventData::Counted(Counted {
            item: i,
            location: at,
            qty: q,
            lot: None,
        }),
        3 => EventData::StatusChanged(StatusChanged {
            item: i,
            location: at,
            qty: q,
            from: StockStatus::Sellable,
            to: StockStatus::Damaged,
            lot: None,
        }),
        4 => EventData::Picked(Picked {
            order: "o".into(),
            item: i,
            location: at,
            qty: q,
        }),
        5 => EventData::Shipped(Shipped {
            order: "o".into(),
            shipment: None,
            lines: vec![
                ShipLine {
                    item: i.clone(),
                    location: at.clone(),
                    qty: q,
                },
                ShipLine {
                    item: i,
                    location: at,
                    qty: q,
                },
            ],
        }),
        6 => EventData::TransferShipped(TransferShipped {
            transfer: "t".into(),
            item: i,
            from: at,
            to: other,
            qty: q,
        }),
        7 => EventData::TransferReceived(TransferReceived {
            transfer: "t".into(),
            item: i,
            location: at,
            qty: q,
        }),
        8 => EventData::ReturnReceived(ReturnReceived {
            rma: "r".into(),
            item: i,
            location: at,
            qty: q,
        }),
        9 => EventData::ReturnInspected(ReturnInspected {
            rma: "r".into(),
            item: i,
            location: at,
            qty: q,
            disposition: Disposition::Damaged,
        }),
        10 => EventData::SupplyExpected(SupplyExpected {
            reference: "po".into(),
            item: i,
            location: at,
            qty: q,
            expected_at: Timestamp::from_micros(NOW_US),
        }),
        _ => return reserve(n, q),
    };
    event(n, data)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Arbitrary i64 quantities through every kind of input never leave a bucket outside
    /// ±QTY_MAX (nor wrap), every refusal leaves an exception, and replaying what was logged
    /// gives the same positions.
    #[test]
    fn no_bucket_ever_leaves_the_bound(evs in proptest::collection::vec(arbitrary_event(), 1..60)) {
        let policy = policy();
        let mut live = Ledger::new();
        let mut log = Vec::new();
        for (n, e) in evs.into_iter().enumerate() {
            let ev = to_event(n, e);
            let (out, fx) = apply(&mut live, &policy, &ev);
            match &out {
                Outcome::Rejected(Rejection::Invalid { .. }) | Outcome::Quarantined { .. } => {
                    prop_assert!(!fx.exceptions.is_empty(), "{:?} refused without an exception", out);
                }
                _ => {}
            }
            if out.is_logged() {
                log.push(ev);
            }
            for (id, s) in live.items() {
                for p in &s.positions {
                    prop_assert!(p.b().out_of_bound().is_none(), "{} {:?}: {:?}", id, p.location, p.b());
                }
            }
        }
        let mut replayed = Ledger::new();
        for ev in &log {
            apply(&mut replayed, &policy, ev);
        }
        let all = |l: &Ledger| -> Vec<_> {
            let mut v: Vec<_> = l.items().flat_map(|(_, s)| s.positions.iter().map(|p| (p.location, p.b()))).collect();
            v.sort_by_key(|x| x.0);
            v
        };
        prop_assert_eq!(all(&live), all(&replayed));
    }
}
