//! Property tests of the ledger invariants (DESIGN section 4).

use std::collections::HashMap;

use crossdock_ledger::state::hub_command;
use crossdock_ledger::{
    Buffer, ChannelPolicy, Effects, Ledger, Outcome, OwnershipRule, Policy, SourcePolicy,
};
use crossdock_model::event::{
    Adjusted, Counted, EventData, Received, ReservationRef, ReservationRequested, ReserveLine,
    ShipLine, Shipped,
};
use crossdock_model::{ChannelId, Event, ItemId, LocationId, SourceId, Timestamp};
use proptest::prelude::*;

fn policy() -> Policy {
    let locs = vec![LocationId::new("A").unwrap(), LocationId::new("B").unwrap()];
    let a = crossdock_ledger::LocIdx(0);
    let b = crossdock_ledger::LocIdx(1);
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
    let channels = vec![
        ChannelPolicy::plain(ChannelId::new("web").unwrap(), vec![a, b]),
        ChannelPolicy {
            buffer: Buffer::Percent(10),
            ..ChannelPolicy::plain(ChannelId::new("b2b").unwrap(), vec![a])
        },
    ];
    Policy::new(None, locs, channels, sources)
}

fn item(i: u8) -> ItemId {
    ItemId::new(&format!("I{i}")).unwrap()
}

fn loc(l: u8) -> LocationId {
    LocationId::new(if l == 0 { "A" } else { "B" }).unwrap()
}

fn event(n: usize, secs: i64, data: EventData) -> Event {
    Event {
        id: format!("e{n}"),
        source: SourceId::new("wms").unwrap(),
        time: Timestamp::from_micros(secs * 1_000_000),
        sequence: None,
        correlation_id: format!("c{n}"),
        causation_id: None,
        data,
        received_at: Timestamp::from_micros(1_000_000_000),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Receive {
        item: u8,
        loc: u8,
        qty: i64,
    },
    Adjust {
        item: u8,
        loc: u8,
        delta: i64,
    },
    Count {
        item: u8,
        loc: u8,
        qty: i64,
    },
    Ship {
        item: u8,
        loc: u8,
        qty: i64,
    },
    Reserve {
        res: u8,
        item: u8,
        qty: i64,
        item2: Option<(u8, i64)>,
    },
    Release {
        res: u8,
    },
    Commit {
        res: u8,
    },
    Expire {
        res: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8, 0..2u8, 1..50i64).prop_map(|(item, loc, qty)| Op::Receive { item, loc, qty }),
        (0..3u8, 0..2u8, -20..20i64)
            .prop_filter("nonzero", |t| t.2 != 0)
            .prop_map(|(item, loc, delta)| Op::Adjust { item, loc, delta }),
        (0..3u8, 0..2u8, 0..80i64).prop_map(|(item, loc, qty)| Op::Count { item, loc, qty }),
        (0..3u8, 0..2u8, 1..10i64).prop_map(|(item, loc, qty)| Op::Ship { item, loc, qty }),
        (
            0..6u8,
            0..3u8,
            1..40i64,
            proptest::option::of((0..3u8, 1..20i64))
        )
            .prop_map(|(res, item, qty, item2)| Op::Reserve {
                res,
                item,
                qty,
                item2
            }),
        (0..6u8).prop_map(|res| Op::Release { res }),
        (0..6u8).prop_map(|res| Op::Commit { res }),
        (0..6u8).prop_map(|res| Op::Expire { res }),
    ]
}

fn to_event(n: usize, op: &Op) -> Event {
    let t = n as i64;
    let hub = |id: String, data| {
        let mut e = hub_command(
            id,
            Timestamp::from_micros(t * 1_000_000),
            format!("c{n}"),
            data,
        );
        e.received_at = Timestamp::from_micros(1_000_000_000);
        e
    };
    let r = |res: &u8| ReservationRef {
        reservation: format!("r{res}"),
    };
    match op {
        Op::Receive {
            item: i,
            loc: l,
            qty,
        } => event(
            n,
            t,
            EventData::Received(Received {
                item: item(*i),
                location: loc(*l),
                qty: *qty,
                lot: None,
                reference: None,
            }),
        ),
        Op::Adjust {
            item: i,
            loc: l,
            delta,
        } => event(
            n,
            t,
            EventData::Adjusted(Adjusted {
                item: item(*i),
                location: loc(*l),
                delta: *delta,
                reason: "cycle".into(),
                lot: None,
            }),
        ),
        Op::Count {
            item: i,
            loc: l,
            qty,
        } => event(
            n,
            t,
            EventData::Counted(Counted {
                item: item(*i),
                location: loc(*l),
                qty: *qty,
                lot: None,
            }),
        ),
        Op::Ship {
            item: i,
            loc: l,
            qty,
        } => event(
            n,
            t,
            EventData::Shipped(Shipped {
                order: "o".into(),
                shipment: None,
                lines: vec![ShipLine {
                    item: item(*i),
                    location: loc(*l),
                    qty: *qty,
                }],
            }),
        ),
        Op::Reserve {
            res,
            item: i,
            qty,
            item2,
        } => {
            let mut lines = vec![ReserveLine {
                item: item(*i),
                qty: *qty,
            }];
            if let Some((i2, q2)) = item2
                && i2 != i
            {
                lines.push(ReserveLine {
                    item: item(*i2),
                    qty: *q2,
                });
            }
            hub(
                format!("reserve:r{res}:{n}"),
                EventData::ReservationRequested(ReservationRequested {
                    reservation: format!("r{res}"),
                    channel: ChannelId::new(if res % 2 == 0 { "web" } else { "b2b" }).unwrap(),
                    lines,
                    ttl_s: 60,
                }),
            )
        }
        Op::Release { res } => hub(
            format!("release:{n}"),
            EventData::ReservationReleased(r(res)),
        ),
        Op::Commit { res } => hub(
            format!("commit:{n}"),
            EventData::ReservationCommitted(r(res)),
        ),
        Op::Expire { res } => hub(format!("expire:{n}"), EventData::ReservationExpired(r(res))),
    }
}

/// Every position of every item, as comparable data.
fn positions(l: &Ledger) -> Vec<(String, u16, crossdock_ledger::Buckets)> {
    let mut out: Vec<_> = l
        .items()
        .flat_map(|(id, s)| {
            s.positions
                .iter()
                .map(move |p| (id.to_string(), p.location.0, p.b()))
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Conservation: replaying exactly the logged inputs from empty reproduces every position.
    #[test]
    fn replaying_the_log_reproduces_positions(ops in proptest::collection::vec(op(), 1..80)) {
        let policy = policy();
        let mut live = Ledger::new();
        let mut log = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            let ev = to_event(n, op);
            let mut fx = Effects::default();
            if live.apply(&policy, &ev, &mut fx).is_logged() {
                log.push(ev);
            }
            live.finish_batch(&policy, &mut fx);
        }
        let mut replayed = Ledger::new();
        for ev in &log {
            let mut fx = Effects::default();
            prop_assert!(replayed.apply(&policy, ev, &mut fx).is_logged());
            replayed.finish_batch(&policy, &mut fx);
        }
        prop_assert_eq!(positions(&live), positions(&replayed));
        prop_assert_eq!(live.seq, log.len() as u64);
    }

    /// The journal is exact: summing every change per position gives the position, and the
    /// ledger after the first k inputs equals the final ledger minus the changes of the rest.
    #[test]
    fn the_journal_adds_up_to_the_positions(
        ops in proptest::collection::vec(op(), 1..80),
        cut in 0usize..80,
    ) {
        let policy = policy();
        let mut ledger = Ledger::new();
        let mut changes = Vec::new();
        let mut at_cut = None;
        for (n, op) in ops.iter().enumerate() {
            if n == cut {
                at_cut = Some((positions(&ledger), changes.len()));
            }
            let mut fx = Effects::default();
            ledger.apply(&policy, &to_event(n, op), &mut fx);
            ledger.finish_batch(&policy, &mut fx);
            changes.append(&mut fx.changes);
        }
        let sum = |changes: &[crossdock_ledger::PositionChange], sign: i64, start: Vec<(String, u16, crossdock_ledger::Buckets)>| {
            let mut by: std::collections::BTreeMap<(String, u16), crossdock_ledger::Buckets> =
                start.into_iter().map(|(i, l, b)| ((i, l), b)).collect();
            for c in changes {
                let b = by.entry((c.item.to_string(), c.location.0)).or_default();
                let zero = crossdock_ledger::Buckets::default();
                // b + delta, or b - delta when backing out.
                *b = if sign > 0 { b.minus(&zero.minus(&c.delta)) } else { b.minus(&c.delta) };
            }
            by.into_iter()
                .filter(|(_, b)| *b != crossdock_ledger::Buckets::default())
                .map(|((i, l), b)| (i, l, b))
                .collect::<Vec<_>>()
        };
        let nonzero = |ps: Vec<(String, u16, crossdock_ledger::Buckets)>| {
            ps.into_iter().filter(|p| p.2 != crossdock_ledger::Buckets::default()).collect::<Vec<_>>()
        };
        prop_assert_eq!(sum(&changes, 1, Vec::new()), nonzero(positions(&ledger)));
        if let Some((before, k)) = at_cut {
            prop_assert_eq!(sum(&changes[k..], -1, positions(&ledger)), nonzero(before));
        }
    }

    /// No oversell: a reservation never leaves a position it drew from below zero, and with no
    /// physical stock loss, available never goes negative under any interleaving.
    #[test]
    fn reservations_never_drive_available_below_zero(ops in proptest::collection::vec(op(), 1..120)) {
        let policy = policy();
        let mut ledger = Ledger::new();
        for (n, op) in ops.iter().enumerate() {
            // Only stock-increasing physical events, so any negative would be the reservation's fault.
            let op = match op {
                Op::Adjust { .. } | Op::Count { .. } | Op::Ship { .. } => continue,
                other => other.clone(),
            };
            let mut fx = Effects::default();
            let out = ledger.apply(&policy, &to_event(n, &op), &mut fx);
            if let Outcome::Reservation { view, repeat: false } = &out {
                let requested: i64 = match &op { Op::Reserve { qty, item2, item: i, .. } => {
                    qty + item2.filter(|(i2, _)| i2 != i).map_or(0, |x| x.1)
                } _ => view.lines.iter().map(|l| l.qty).sum() };
                prop_assert_eq!(view.lines.iter().map(|l| l.qty).sum::<i64>(), requested, "all or nothing");
            }
            for (id, s) in ledger.items() {
                for p in &s.positions {
                    prop_assert!(p.b().available() >= 0, "{} at {:?}: {:?} after {:?}", id, p.location, p.b(), op);
                    prop_assert!(p.b().reserved >= 0 && p.b().allocated >= 0);
                }
            }
        }
    }

    /// Any arrival order of the same deltas and counts converges to the in-order state.
    #[test]
    fn permutations_of_deltas_and_counts_converge(
        moves in proptest::collection::vec((0..3u8, -30..60i64), 1..30),
        order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
    ) {
        let policy = policy();
        // Distinct times: move k happens at second k.
        let events: Vec<Event> = moves.iter().enumerate().map(|(k, (kind, qty))| {
            let data = match kind {
                0 => EventData::Counted(Counted { item: item(0), location: loc(0), qty: qty.abs(), lot: None }),
                _ if *qty == 0 => EventData::Received(Received { item: item(0), location: loc(0), qty: 1, lot: None, reference: None }),
                _ => EventData::Adjusted(Adjusted { item: item(0), location: loc(0), delta: *qty, reason: "r".into(), lot: None }),
            };
            event(k, k as i64, data)
        }).collect();
        let run = |evs: &[Event]| {
            let mut l = Ledger::new();
            for ev in evs {
                let mut fx = Effects::default();
                l.apply(&policy, ev, &mut fx);
            }
            positions(&l)
        };
        let in_order = run(&events);
        let mut shuffled = events.clone();
        let mut seed = order;
        for i in (1..shuffled.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (seed >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(run(&shuffled), in_order);
    }
}

#[test]
fn multi_line_reservation_is_all_or_nothing_and_commit_allocates() {
    let policy = policy();
    let mut l = Ledger::new();
    let mut fx = Effects::default();
    for (n, (i, q)) in [(0u8, 10i64), (1, 3)].iter().enumerate() {
        l.apply(
            &policy,
            &to_event(
                n,
                &Op::Receive {
                    item: *i,
                    loc: 0,
                    qty: *q,
                },
            ),
            &mut fx,
        );
    }
    let big = to_event(
        5,
        &Op::Reserve {
            res: 0,
            item: 0,
            qty: 5,
            item2: Some((1, 4)),
        },
    );
    match l.apply(&policy, &big, &mut fx) {
        Outcome::Insufficient(short) => {
            assert_eq!(short.len(), 1);
            assert_eq!(
                (
                    short[0].item.as_str(),
                    short[0].requested,
                    short[0].available
                ),
                ("I1", 4, 3)
            );
        }
        other => panic!("expected shortfall, got {other:?}"),
    }
    assert_eq!(
        l.item(&item(0)).unwrap().positions[0].b().reserved,
        0,
        "nothing held on failure"
    );
    let ok = to_event(
        6,
        &Op::Reserve {
            res: 0,
            item: 0,
            qty: 5,
            item2: Some((1, 3)),
        },
    );
    assert!(matches!(
        l.apply(&policy, &ok, &mut fx),
        Outcome::Reservation { repeat: false, .. }
    ));
    assert!(matches!(
        l.apply(&policy, &ok, &mut fx),
        Outcome::Reservation { repeat: true, .. }
    ));
    assert!(matches!(
        l.apply(&policy, &to_event(7, &Op::Commit { res: 0 }), &mut fx),
        Outcome::Reservation { .. }
    ));
    let p = &l.item(&item(0)).unwrap().positions[0].b();
    assert_eq!((p.reserved, p.allocated, p.available()), (0, 5, 5));
    assert_eq!(
        l.apply(&policy, &to_event(8, &Op::Expire { res: 0 }), &mut fx),
        Outcome::Noop
    );
    // A cancelled order gives its allocation back; a second cancel is a repeat, not a change.
    assert!(matches!(
        l.apply(&policy, &to_event(9, &Op::Release { res: 0 }), &mut fx),
        Outcome::Reservation { repeat: false, .. }
    ));
    let p = &l.item(&item(0)).unwrap().positions[0].b();
    assert_eq!((p.reserved, p.allocated, p.available()), (0, 0, 10));
    assert!(!matches!(
        l.apply(&policy, &to_event(10, &Op::Release { res: 0 }), &mut fx),
        Outcome::Reservation { repeat: false, .. }
    ));
}
