//! Partitions are a scaling knob only: any sequence of receipts, adjustments, counts,
//! reservations (of one line or several, released or committed) and orders (captured, and some
//! cancelled) gives the same answers and leaves the same positions with one partition and with
//! four, and the same again after the four-partition engine restarts from its store (the log
//! replayed into its state). Conservation and no oversell are checked on the way: on hand is
//! what came in less what went out, and no reservation or order takes a position's available
//! below zero.

mod common;

use std::sync::Arc;

use common::{blocking, sqlite};
use crossdock_engine::{Engine, EngineConfig, ReservationReply, WorkflowReply};
use crossdock_model::event::{Adjusted, Counted, Received, ReserveLine};
use crossdock_model::workflow::OrderLine;
use crossdock_model::{ChannelId, Event, EventData, ItemId, LocationId};
use proptest::prelude::*;

const ITEMS: u8 = 8;
const LOCATIONS: [&str; 2] = ["A", "B"];

#[derive(Debug, Clone)]
enum Op {
    Receive(u8, u8, i64),
    Adjust(u8, u8, i64),
    Count(u8, u8, i64),
    Reserve(u8, Vec<(u8, i64)>),
    Release(u8),
    Commit(u8),
    Order(u8, Vec<(u8, i64)>),
    Cancel(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let lines = proptest::collection::vec((0..ITEMS, 1i64..6), 1..4);
    prop_oneof![
        3 => (0..ITEMS, 0u8..2, 1i64..20).prop_map(|(i, l, q)| Op::Receive(i, l, q)),
        1 => (0..ITEMS, 0u8..2, -6i64..6).prop_map(|(i, l, q)| Op::Adjust(i, l, q)),
        1 => (0..ITEMS, 0u8..2, 0i64..15).prop_map(|(i, l, q)| Op::Count(i, l, q)),
        3 => (0u8..6, lines.clone()).prop_map(|(k, ls)| Op::Reserve(k, ls)),
        1 => (0u8..6).prop_map(Op::Release),
        1 => (0u8..6).prop_map(Op::Commit),
        2 => (0u8..4, lines).prop_map(|(k, ls)| Op::Order(k, ls)),
        1 => (0u8..4).prop_map(Op::Cancel),
    ]
}

fn item(i: u8) -> ItemId {
    ItemId::new(&format!("Q{i}")).unwrap()
}

fn physical(n: usize, data: EventData) -> Event {
    common::wms_event(n as u64, data)
}

/// What a step answered, in terms that do not depend on partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Event(bool),
    Held(Vec<(String, i64)>),
    Short,
    Refused,
    Workflow(String, Vec<(String, i64)>),
}

async fn run(engine: &Engine, n: usize, op: &Op) -> Answer {
    let loc = |l: u8| LocationId::new(LOCATIONS[l as usize]).unwrap();
    match op {
        Op::Receive(i, l, q) | Op::Adjust(i, l, q) | Op::Count(i, l, q) => {
            let data = match op {
                Op::Receive(..) => EventData::Received(Received {
                    item: item(*i),
                    location: loc(*l),
                    qty: *q,
                    lot: None,
                    reference: None,
                }),
                Op::Adjust(..) => EventData::Adjusted(Adjusted {
                    item: item(*i),
                    location: loc(*l),
                    delta: *q,
                    reason: "test".into(),
                    lot: None,
                }),
                _ => EventData::Counted(Counted {
                    item: item(*i),
                    location: loc(*l),
                    qty: *q,
                    lot: None,
                }),
            };
            let reply = engine.submit(physical(n, data)).await.unwrap();
            Answer::Event(matches!(
                reply,
                crossdock_engine::EventReply::Recorded { .. }
            ))
        }
        Op::Reserve(k, lines) => {
            let mut merged: Vec<ReserveLine> = Vec::new();
            for (i, q) in lines {
                match merged.iter_mut().find(|l| l.item == item(*i)) {
                    Some(l) => l.qty += q,
                    None => merged.push(ReserveLine {
                        item: item(*i),
                        qty: *q,
                    }),
                }
            }
            let reply = engine
                .reserve(
                    format!("r{k}-{n}"),
                    ChannelId::new("web").unwrap(),
                    merged,
                    3600,
                    format!("c{n}"),
                )
                .await
                .unwrap();
            reservation_answer(reply)
        }
        Op::Release(k) | Op::Commit(k) => {
            // The newest reservation of slot `k`, whatever it was.
            let Some(id) = LAST.with(|l| l.borrow().get(k).cloned()) else {
                return Answer::Refused;
            };
            let reply = engine
                .settle(id, matches!(op, Op::Commit(_)), format!("c{n}"))
                .await
                .unwrap();
            reservation_answer(reply)
        }
        Op::Order(k, lines) => {
            let mut merged: Vec<OrderLine> = Vec::new();
            for (i, q) in lines {
                match merged.iter_mut().find(|l| l.item == item(*i)) {
                    Some(l) => l.qty += q,
                    None => merged.push(OrderLine {
                        item: item(*i),
                        qty: *q,
                    }),
                }
            }
            let order = format!("O{k}-{n}");
            ORDERS.with(|o| o.borrow_mut().insert(*k, order.clone()));
            let capture = common::capture_order(&order, merged, &format!("c{n}"));
            workflow_answer(engine.workflow_command(capture).await.unwrap())
        }
        Op::Cancel(k) => {
            let Some(order) = ORDERS.with(|o| o.borrow().get(k).cloned()) else {
                return Answer::Refused;
            };
            let cancel = common::cancel_order(&order, &format!("c{n}"));
            workflow_answer(engine.workflow_command(cancel).await.unwrap())
        }
    }
}

thread_local! {
    static LAST: std::cell::RefCell<std::collections::HashMap<u8, String>> = Default::default();
    static ORDERS: std::cell::RefCell<std::collections::HashMap<u8, String>> = Default::default();
}

fn reservation_answer(reply: ReservationReply) -> Answer {
    match reply {
        ReservationReply::Done { reservation, .. } => {
            let mut lines: Vec<(String, i64)> = reservation
                .lines
                .iter()
                .map(|l| (format!("{}@{}", l.item, l.location), l.qty))
                .collect();
            lines.sort();
            Answer::Held(lines)
        }
        ReservationReply::Insufficient(_) => Answer::Short,
        ReservationReply::Rejected(_) => Answer::Refused,
    }
}

fn workflow_answer(reply: WorkflowReply) -> Answer {
    match reply {
        WorkflowReply::Done { workflow, .. } => {
            let mut allocated: Vec<(String, i64)> = match &workflow.doc {
                crossdock_ledger::workflow::Doc::Order(d) => d
                    .lines
                    .iter()
                    .flat_map(|l| l.allocations.iter())
                    .map(|a| (format!("{}@{}", a.item, a.location), a.qty))
                    .collect(),
                _ => Vec::new(),
            };
            allocated.sort();
            Answer::Workflow(workflow.state.clone(), allocated)
        }
        WorkflowReply::Insufficient(_) => Answer::Short,
        WorkflowReply::Rejected(_) => Answer::Refused,
    }
}

/// Every position: (item, location, on_hand, reserved, allocated, available).
type Positions = Vec<(String, String, i64, i64, i64, i64)>;

fn positions(engine: &Engine) -> Positions {
    let mut out = Vec::new();
    for i in 0..ITEMS {
        if let Some((state, _)) = engine.item(&item(i)) {
            for p in &state.positions {
                out.push((
                    item(i).to_string(),
                    LOCATIONS[p.location.0 as usize].to_string(),
                    p.b().on_hand,
                    p.b().reserved,
                    p.b().allocated,
                    p.b().available(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Runs `ops` on a fresh engine with `partitions`: the answers, the positions, and (when
/// `restart`) the positions after a restart.
fn play(ops: &[Op], partitions: u32, restart: bool) -> (Vec<Answer>, Positions, Option<Positions>) {
    let fresh = sqlite("equivalence");
    let config = EngineConfig {
        partitions,
        ..EngineConfig::new(fresh.spec.clone())
    };
    let policy = common::policy(&LOCATIONS);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    LAST.with(|l| l.borrow_mut().clear());
    ORDERS.with(|o| o.borrow_mut().clear());
    let out = runtime.block_on(async {
        let engine: Arc<Engine> = Engine::start(config.clone(), policy.clone()).unwrap();
        let mut answers = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            if let Op::Reserve(k, _) = op {
                LAST.with(|l| l.borrow_mut().insert(*k, format!("r{k}-{n}")));
            }
            let answer = run(&engine, n, op).await;
            // No oversell: a hold or an allocation never leaves available below zero where
            // only receipts moved stock (adjustments and counts may, and are oversell risk).
            if matches!(answer, Answer::Held(_) | Answer::Workflow(..))
                && ops[..=n]
                    .iter()
                    .all(|o| !matches!(o, Op::Adjust(..) | Op::Count(..)))
            {
                for p in positions(&engine) {
                    assert!(p.5 >= 0, "available below zero after {op:?}: {p:?}");
                }
            }
            answers.push(answer);
        }
        let before = positions(&engine);
        engine.shutdown();
        drop(engine);
        let after = if restart {
            let engine = Engine::start(config, policy).unwrap();
            let p = positions(&engine);
            engine.shutdown();
            Some(p)
        } else {
            None
        };
        (answers, before, after)
    });
    blocking(|| (fresh.cleanup)());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    #[test]
    fn four_partitions_answer_and_hold_exactly_as_one(ops in proptest::collection::vec(op(), 1..40)) {
        let (one_answers, one, _) = play(&ops, 1, false);
        let (four_answers, four, restarted) = play(&ops, 4, true);
        prop_assert_eq!(&one_answers, &four_answers);
        prop_assert_eq!(&one, &four);
        prop_assert_eq!(Some(four.clone()), restarted, "restart reproduces the state");
        // Conservation where only receipts moved stock in: on hand is what came in.
        if ops.iter().all(|o| !matches!(o, Op::Adjust(..) | Op::Count(..))) {
            let received: i64 = ops.iter().map(|o| match o { Op::Receive(_, _, q) => *q, _ => 0 }).sum();
            let on_hand: i64 = four.iter().map(|p| p.2).sum();
            prop_assert_eq!(received, on_hand);
        }
    }
}
