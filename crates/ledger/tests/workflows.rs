//! Order sourcing and the workflow invariants: an allocation never drives available below zero,
//! and replaying the logged inputs reproduces positions and workflows.

use std::collections::HashMap;

use crossdock_ledger::state::hub_command;
use crossdock_ledger::{
    ChannelPolicy, Doc, Effects, Ledger, OwnershipRule, Policy, SourcePolicy, SourcingRule,
    Workflow,
};
use crossdock_model::event::{
    Counted, Credit, CreditDecision, EventData, OrderCancelled, OrderCaptured, OrderLine, Received,
    ShipTo,
};
use crossdock_model::{ChannelId, Event, ItemId, LocationId, SourceId, Timestamp};
use proptest::prelude::*;

fn policy(rule: SourcingRule) -> Policy {
    let locs = ["A", "B", "C"]
        .map(|l| LocationId::new(l).unwrap())
        .to_vec();
    let all = (0..3).map(crossdock_ledger::LocIdx).collect();
    let mut sources = HashMap::new();
    sources.insert(
        SourceId::new("wms").unwrap(),
        SourcePolicy {
            rules: vec![OwnershipRule {
                types: vec!["inventory.*".into()],
                locations: None,
            }],
            sequenced: false,
        },
    );
    let mut p = Policy::new(
        None,
        locs,
        vec![ChannelPolicy::plain(ChannelId::new("web").unwrap(), all)],
        sources,
    );
    p.workflow.default_rule = rule;
    p.workflow
        .regions
        .insert(crossdock_ledger::LocIdx(2), vec!["CA".into()]);
    p
}

fn physical(n: usize, data: EventData) -> Event {
    Event {
        id: format!("e{n}"),
        source: SourceId::new("wms").unwrap(),
        time: Timestamp::from_micros(n as i64 * 1_000_000),
        sequence: None,
        correlation_id: format!("c{n}"),
        causation_id: None,
        data,
        received_at: Timestamp::from_micros(n as i64 * 1_000_000),
    }
}

fn stock(n: usize, item: &str, loc: &str, qty: i64) -> Event {
    physical(
        n,
        EventData::Counted(Counted {
            item: ItemId::new(item).unwrap(),
            location: LocationId::new(loc).unwrap(),
            qty,
            lot: None,
        }),
    )
}

fn capture(order: &str, lines: &[(&str, i64)], region: &str) -> Event {
    let mut e = hub_command(
        format!("order:{order}:capture"),
        Timestamp::from_micros(10_000_000),
        format!("corr-{order}"),
        EventData::OrderCaptured(OrderCaptured {
            order: order.into(),
            channel: ChannelId::new("web").unwrap(),
            lines: lines
                .iter()
                .map(|(i, q)| OrderLine {
                    item: ItemId::new(i).unwrap(),
                    qty: *q,
                })
                .collect(),
            ship_to: ShipTo {
                region: region.into(),
                ..ShipTo::default()
            },
            amount_minor: 0,
            credit: Credit {
                decision: CreditDecision::NotRequired,
                note: String::new(),
            },
            sold: false,
            backorder: false,
            origin: "test".into(),
        }),
    );
    e.received_at = Timestamp::from_micros(10_000_000);
    e
}

/// Where each line was allocated: (item, location, qty), and what was backordered.
fn allocations(l: &Ledger, order: &str) -> (Vec<(String, String, i64)>, i64) {
    let wf = l.workflow(&format!("order:{order}")).expect("order open");
    let Doc::Order(d) = &wf.doc else { panic!() };
    let allocs = d
        .lines
        .iter()
        .flat_map(|x| x.allocations.iter())
        .map(|a| (a.item.to_string(), a.location.to_string(), a.qty))
        .collect();
    (allocs, d.lines.iter().map(|x| x.backordered).sum())
}

fn run(p: &Policy, events: &[Event]) -> Ledger {
    let mut l = Ledger::new();
    for e in events {
        let mut fx = Effects::default();
        let out = l.apply(p, e, &mut fx);
        if out.is_logged() {
            l.seq += 1;
        }
        l.finish_batch(p, &mut fx);
    }
    l
}

#[test]
fn ship_complete_takes_the_location_with_everything_and_else_the_one_covering_most() {
    let p = policy(SourcingRule {
        ship_complete: true,
        max_splits: 0,
        backorder: true,
        ..SourcingRule::default()
    });
    let setup = vec![
        stock(1, "X", "A", 5),
        stock(2, "Y", "A", 1),
        stock(3, "X", "B", 5),
        stock(4, "Y", "B", 5),
    ];
    let mut events = setup.clone();
    events.push(capture("o1", &[("X", 3), ("Y", 3)], "NY"));
    let l = run(&p, &events);
    let (allocs, back) = allocations(&l, "o1");
    assert_eq!(
        allocs,
        [("X".into(), "B".into(), 3), ("Y".into(), "B".into(), 3)]
    );
    assert_eq!(back, 0);
    // Nobody has everything: B covers 5 + 5 of 6 + 6, A only 5 + 1.
    let mut events = setup;
    events.push(capture("o2", &[("X", 6), ("Y", 6)], "NY"));
    let l = run(&p, &events);
    let (allocs, back) = allocations(&l, "o2");
    assert!(allocs.iter().all(|a| a.1 == "B"), "{allocs:?}");
    assert_eq!(back, 2);
}

#[test]
fn splits_stop_at_the_limit_and_the_ship_to_region_goes_first() {
    let p = policy(SourcingRule {
        max_splits: 1,
        backorder: true,
        ..SourcingRule::default()
    });
    let l = run(
        &p,
        &[
            stock(1, "X", "A", 2),
            stock(2, "X", "B", 2),
            stock(3, "X", "C", 2),
            capture("o1", &[("X", 6)], "CA"),
        ],
    );
    let (allocs, back) = allocations(&l, "o1");
    // C serves CA, then A; B would be a third location.
    assert_eq!(
        allocs,
        [("X".into(), "C".into(), 2), ("X".into(), "A".into(), 2)]
    );
    assert_eq!(back, 2);
}

#[derive(Debug, Clone)]
enum Op {
    Receive(u8, u8, i64),
    Capture(u8, Vec<(u8, i64)>),
    Cancel(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8, 0..3u8, 1..6i64).prop_map(|(i, l, q)| Op::Receive(i, l, q)),
        (0..6u8, proptest::collection::vec((0..3u8, 1..5i64), 1..3))
            .prop_map(|(o, lines)| Op::Capture(o, lines)),
        (0..6u8).prop_map(Op::Cancel),
    ]
}

fn to_event(n: usize, op: &Op) -> Event {
    match op {
        Op::Receive(i, l, q) => physical(
            n,
            EventData::Received(Received {
                item: ItemId::new(&format!("I{i}")).unwrap(),
                location: LocationId::new(["A", "B", "C"][*l as usize]).unwrap(),
                qty: *q,
                lot: None,
                reference: None,
            }),
        ),
        Op::Capture(o, lines) => {
            let mut merged: Vec<(String, i64)> = Vec::new();
            for (i, q) in lines {
                let item = format!("I{i}");
                match merged.iter_mut().find(|m| m.0 == item) {
                    Some(m) => m.1 += q,
                    None => merged.push((item, *q)),
                }
            }
            let lines: Vec<(&str, i64)> = merged.iter().map(|(i, q)| (i.as_str(), *q)).collect();
            capture(
                &format!("o{o}"),
                &lines,
                if n.is_multiple_of(2) { "CA" } else { "NY" },
            )
        }
        Op::Cancel(o) => hub_command(
            format!("order:o{o}:cancel"),
            Timestamp::from_micros(20_000_000),
            "corr".into(),
            EventData::OrderCancelled(OrderCancelled {
                order: format!("o{o}"),
                reason: "test".into(),
            }),
        ),
    }
}

fn workflows(l: &Ledger) -> Vec<Workflow> {
    let mut v: Vec<Workflow> = l.workflows().cloned().collect();
    v.sort_by_key(|w| w.key());
    v
}

proptest! {
    #[test]
    fn orders_never_oversell_and_replay_reproduces_them(ops in proptest::collection::vec(op(), 1..60)) {
        let p = policy(SourcingRule { max_splits: 1, backorder: true, ..SourcingRule::default() });
        let events: Vec<Event> = ops.iter().enumerate().map(|(n, o)| to_event(n, o)).collect();
        let mut l = Ledger::new();
        let mut logged = Vec::new();
        for e in &events {
            let mut fx = Effects::default();
            let out = l.apply(&p, e, &mut fx);
            if out.is_logged() {
                l.seq += 1;
                logged.push(e.clone());
            }
            l.finish_batch(&p, &mut fx);
            for (_, state) in l.items() {
                for pos in &state.positions {
                    prop_assert!(pos.b().available() >= 0, "available {} after {:?}", pos.b().available(), e.data);
                    prop_assert!(pos.b().allocated >= 0);
                }
            }
        }
        let again = run(&p, &logged);
        prop_assert_eq!(workflows(&l), workflows(&again));
        let positions = |l: &Ledger| {
            let mut v: Vec<(String, u16, crossdock_ledger::Buckets)> = l
                .items()
                .flat_map(|(i, s)| s.positions.iter().map(move |p| (i.to_string(), p.location.0, p.b())))
                .collect();
            v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            v
        };
        prop_assert_eq!(positions(&l), positions(&again));
    }
}
