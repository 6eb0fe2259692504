//! Reservations across partitions, on SQLite and the local PostgreSQL: held whole or refused
//! whole, released, committed and expired part by part; and a crash after every step of the
//! protocol resolves to all or nothing with every hold settled.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Fresh, blocking, postgres, sqlite};
use crossdock_engine::{
    Engine, EngineConfig, EventReply, ReservationReply, partition_of, partition_of_key,
};
use crossdock_ledger::state::hub_command;
use crossdock_ledger::{Policy, ResStatus};
use crossdock_model::event::{
    CrossBegun, CrossDecided, CrossLine, OwnPart, Received, ReservationRef, ReservationRequested,
    ReserveLine, cross_part_id,
};
use crossdock_model::{ChannelId, Event, EventData, ItemId, LocationId, SourceId, Timestamp};

const PARTITIONS: u32 = 4;

fn policy() -> Arc<Policy> {
    common::policy(&["A"])
}

/// Three items, each on its own partition, none on partition 0.
fn items() -> Vec<ItemId> {
    let mut out: Vec<ItemId> = Vec::new();
    for i in 0.. {
        let id = ItemId::new(&format!("I{i}")).unwrap();
        let p = partition_of(&id, PARTITIONS);
        if p != 0 && out.iter().all(|o| partition_of(o, PARTITIONS) != p) {
            out.push(id);
        }
        if out.len() == 3 {
            return out;
        }
    }
    unreachable!()
}

/// A reservation id coordinated by the partition of the second item (so the coordinator's
/// writer also holds a part, and its timers must find it there, not on partition 0).
fn reservation_id(name: &str) -> String {
    let c = partition_of(&items()[1], PARTITIONS);
    (0..)
        .map(|i| format!("{name}-{i}"))
        .find(|id| partition_of_key(id, PARTITIONS) == c)
        .unwrap()
}

fn config(fresh: &Fresh) -> EngineConfig {
    EngineConfig {
        partitions: PARTITIONS,
        ..EngineConfig::new(fresh.spec.clone())
    }
}

async fn start(fresh: &Fresh) -> Arc<Engine> {
    let config = config(fresh);
    blocking(|| Engine::start(config, policy())).unwrap()
}

fn stop(engine: Arc<Engine>) {
    engine.shutdown();
    drop(engine);
}

async fn receive(engine: &Engine, n: u32, item: &ItemId, qty: i64) {
    let ev = Event {
        id: format!("rcv-{n}-{item}"),
        source: SourceId::new("wms").unwrap(),
        time: Timestamp::now(),
        sequence: None,
        correlation_id: "c".into(),
        causation_id: None,
        data: EventData::Received(Received {
            item: item.clone(),
            location: LocationId::new("A").unwrap(),
            qty,
            lot: None,
            reference: None,
        }),
        received_at: Timestamp::now(),
    };
    let reply = engine.submit(ev).await.unwrap();
    assert!(matches!(reply, EventReply::Recorded { .. }), "{reply:?}");
}

/// (reserved, allocated, available) of an item.
fn buckets(engine: &Engine, item: &ItemId) -> (i64, i64, i64) {
    let (state, _) = engine.item(item).expect("the item has stock");
    let p = &state.positions[0];
    (p.b().reserved, p.b().allocated, p.b().available())
}

fn lines(items: &[ItemId], qty: &[i64]) -> Vec<ReserveLine> {
    items
        .iter()
        .zip(qty)
        .map(|(item, &qty)| ReserveLine {
            item: item.clone(),
            qty,
        })
        .collect()
}

async fn reserve(engine: &Engine, id: &str, items: &[ItemId], qty: &[i64]) -> ReservationReply {
    engine
        .reserve(
            id.into(),
            ChannelId::new("web").unwrap(),
            lines(items, qty),
            600,
            format!("corr-{id}"),
        )
        .await
        .unwrap()
}

async fn through_the_protocol(fresh: Fresh) {
    let engine = start(&fresh).await;
    let items = items();
    for item in &items {
        receive(&engine, 0, item, 10).await;
    }

    // Held whole: every part holds its lines; the record has them all.
    let a = reservation_id("a");
    let reply = reserve(&engine, &a, &items, &[3, 4, 5]).await;
    let ReservationReply::Done {
        reservation,
        repeat: false,
    } = &reply
    else {
        panic!("{reply:?}")
    };
    assert_eq!(reservation.status, ResStatus::Held);
    assert_eq!(reservation.lines.iter().map(|l| l.qty).sum::<i64>(), 12);
    for (item, q) in items.iter().zip([3, 4, 5]) {
        assert_eq!(buckets(&engine, item), (q, 0, 10 - q));
    }
    // A repeat gets the same answer and holds nothing more.
    let again = reserve(&engine, &a, &items, &[3, 4, 5]).await;
    assert!(
        matches!(&again, ReservationReply::Done { repeat: true, reservation } if reservation.status == ResStatus::Held),
        "{again:?}"
    );
    // Other lines under the same id are a conflict.
    let other = reserve(&engine, &a, &items, &[1, 1, 1]).await;
    assert!(matches!(other, ReservationReply::Rejected(_)), "{other:?}");

    // Refused whole: one line short, nothing held anywhere, the shortfall named.
    let b = reservation_id("b");
    let reply = reserve(&engine, &b, &items, &[1, 1, 6]).await;
    let ReservationReply::Insufficient(short) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(short.len(), 1);
    assert_eq!(
        (short[0].item.clone(), short[0].short),
        (items[2].clone(), 1)
    );
    for (item, q) in items.iter().zip([3, 4, 5]) {
        assert_eq!(buckets(&engine, item).0, q, "nothing more held for {item}");
    }
    let stored = engine.reservation(&b).await.unwrap().unwrap();
    assert_eq!(stored.status, ResStatus::Aborted);
    // Asked again once there is stock, it is held.
    receive(&engine, 1, &items[2], 1).await;
    let reply = reserve(&engine, &b, &items, &[1, 1, 6]).await;
    assert!(
        matches!(&reply, ReservationReply::Done { reservation, .. } if reservation.status == ResStatus::Held),
        "{reply:?}"
    );

    // Commit turns every part into an allocation; release gives back every part.
    let reply = engine.settle(a.clone(), true, "c".into()).await.unwrap();
    assert!(
        matches!(&reply, ReservationReply::Done { reservation, .. } if reservation.status == ResStatus::Committed),
        "{reply:?}"
    );
    assert_eq!(buckets(&engine, &items[0]), (1, 3, 6));
    let reply = engine.settle(b.clone(), false, "c".into()).await.unwrap();
    assert!(
        matches!(&reply, ReservationReply::Done { reservation, .. } if reservation.status == ResStatus::Released),
        "{reply:?}"
    );
    for (item, alloc) in items.iter().zip([3, 4, 5]) {
        assert_eq!(buckets(&engine, item).0, 0, "nothing reserved on {item}");
        assert_eq!(buckets(&engine, item).1, alloc);
    }
    // Releasing the committed one gives the allocations back.
    engine.settle(a.clone(), false, "c".into()).await.unwrap();
    for item in &items {
        let (reserved, allocated, _) = buckets(&engine, item);
        assert_eq!((reserved, allocated), (0, 0), "{item}");
    }

    // Expiry: the record's timer expires it, and the driver releases every part.
    let e = reservation_id("e");
    let reply = engine
        .reserve(
            e.clone(),
            ChannelId::new("web").unwrap(),
            lines(&items, &[1, 1, 1]),
            1,
            "corr-e".into(),
        )
        .await
        .unwrap();
    assert!(
        matches!(&reply, ReservationReply::Done { reservation, .. } if reservation.status == ResStatus::Held),
        "{reply:?}"
    );
    assert_eq!(buckets(&engine, &items[0]).0, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = engine.reservation(&e).await.unwrap().unwrap().status;
        let reserved: Vec<i64> = items.iter().map(|i| buckets(&engine, i).0).collect();
        if status == ResStatus::Expired && reserved == [0, 0, 0] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expiry: record {status:?}, reserved {reserved:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Across a restart the records are there as they were.
    stop(engine);
    let engine = start(&fresh).await;
    assert_eq!(
        engine.reservation(&a).await.unwrap().unwrap().status,
        ResStatus::Released
    );
    stop(engine);
    blocking(|| (fresh.cleanup)());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_cross_partition_reservations_are_all_or_nothing() {
    through_the_protocol(sqlite("cross")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_cross_partition_reservations_are_all_or_nothing() {
    through_the_protocol(postgres("cross")).await;
}

/// The protocol's steps, as the engine takes them; a crash stops after any prefix.
#[derive(Debug, Clone, Copy)]
enum Step {
    Begin,
    Hold(usize),
    Decide,
    Settle(usize),
}

async fn hub(engine: &Engine, event: Event) {
    let reply = engine.submit(event).await.unwrap();
    assert!(
        matches!(reply, EventReply::Recorded { .. } | EventReply::Rejected(_)),
        "{reply:?}"
    );
}

/// Runs the steps the engine would take for reservation `id` up to (not including) `crash_at`,
/// with a decision of `held` and then `then` (release or commit) at the coordinator.
async fn partial(
    engine: &Engine,
    id: &str,
    items: &[ItemId],
    then: Option<bool>,
    crash_at: usize,
) -> Vec<Step> {
    let nonce = 7;
    let channel = ChannelId::new("web").unwrap();
    // The record begins while the parts are held: either may be durable first, so a part held
    // before its record begins is one of the crash points.
    // The coordinator is the partition of the second item: its lines are held by the command
    // that begins the record, as the engine does.
    let mut steps = vec![Step::Hold(0), Step::Begin];
    steps.extend((2..items.len()).map(Step::Hold));
    steps.push(Step::Decide);
    if then.is_some() {
        steps.extend((0..items.len()).map(Step::Settle));
    }
    let partitions: Vec<u32> = items.iter().map(|i| partition_of(i, PARTITIONS)).collect();
    let part = |k: usize| cross_part_id(id, nonce, partitions[k]);
    for step in steps.iter().take(crash_at) {
        let now = Timestamp::now();
        match *step {
            Step::Begin => {
                hub(
                    engine,
                    hub_command(
                        format!("begin:{id}"),
                        now,
                        "c".into(),
                        EventData::CrossBegun(CrossBegun {
                            reservation: id.into(),
                            channel: channel.clone(),
                            lines: lines(items, &[2, 2, 2]),
                            ttl_s: 600,
                            nonce,
                            partitions: partitions.clone(),
                            prepare_s: 1,
                            own: Some(OwnPart {
                                partition: partitions[1],
                                lines: lines(&items[1..=1], &[2]),
                                ttl_s: 1200,
                            }),
                        }),
                    ),
                )
                .await
            }
            Step::Hold(k) => {
                hub(
                    engine,
                    hub_command(
                        format!("reserve:{}", part(k)),
                        now,
                        "c".into(),
                        EventData::ReservationRequested(ReservationRequested {
                            reservation: part(k),
                            channel: channel.clone(),
                            lines: lines(&items[k..=k], &[2]),
                            ttl_s: 1200,
                        }),
                    ),
                )
                .await
            }
            Step::Decide => {
                hub(
                    engine,
                    hub_command(
                        format!("decide:{id}"),
                        now,
                        "c".into(),
                        EventData::CrossDecided(CrossDecided {
                            reservation: id.into(),
                            nonce,
                            held: true,
                            lines: items
                                .iter()
                                .map(|i| CrossLine {
                                    item: i.clone(),
                                    location: LocationId::new("A").unwrap(),
                                    lot: None,
                                    qty: 2,
                                })
                                .collect(),
                        }),
                    ),
                )
                .await;
                if let Some(commit) = then {
                    let r = ReservationRef {
                        reservation: id.into(),
                    };
                    let data = if commit {
                        EventData::ReservationCommitted(r)
                    } else {
                        EventData::ReservationReleased(r)
                    };
                    let reply = engine
                        .reservation_command_at(
                            partition_of_key(id, PARTITIONS),
                            hub_command(format!("then:{id}"), now, "c".into(), data),
                        )
                        .await
                        .unwrap();
                    assert!(matches!(reply, ReservationReply::Done { .. }), "{reply:?}");
                }
            }
            Step::Settle(k) => {
                let reply = engine
                    .settle(part(k), then == Some(true), "c".into())
                    .await
                    .unwrap();
                assert!(matches!(reply, ReservationReply::Done { .. }), "{reply:?}");
            }
        }
    }
    steps
}

/// A crash after every prefix of the protocol: after a restart (and the decision's deadline),
/// every item holds all or none of its lines, as the coordinator's record says, nothing is
/// below zero, and no hold outlives the decision.
async fn crash_at_every_step(fresh: Fresh) {
    let items = items();
    for then in [None, Some(false), Some(true)] {
        let engine = start(&fresh).await;
        let steps = {
            let id = reservation_id("probe");
            partial(&engine, &id, &items, then, 0).await
        };
        stop(engine);
        for crash_at in 0..=steps.len() {
            let id = reservation_id(&format!("crash-{then:?}-{crash_at}"));
            let engine = start(&fresh).await;
            for item in &items {
                receive(
                    &engine,
                    crash_at as u32 + 100 * then.map_or(0, |c| c as u32 + 1),
                    item,
                    2,
                )
                .await;
            }
            let before: Vec<_> = items.iter().map(|i| buckets(&engine, i)).collect();
            partial(&engine, &id, &items, then, crash_at).await;
            // Crash: the engine stops where it is; nothing else runs.
            stop(engine);
            let engine = start(&fresh).await;
            // The decision's deadline (1 s) passes; the timer aborts what was not decided.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let record = engine.reservation(&id).await.unwrap().map(|r| r.status);
                let after: Vec<_> = items.iter().map(|i| buckets(&engine, i)).collect();
                let expected: Vec<(i64, i64, i64)> = before
                    .iter()
                    .map(|&(r, a, avail)| match record {
                        Some(ResStatus::Held) => (r + 2, a, avail - 2),
                        Some(ResStatus::Committed) => (r, a + 2, avail - 2),
                        _ => (r, a, avail),
                    })
                    .collect();
                let settled = record != Some(ResStatus::Preparing);
                if settled && after == expected {
                    for (_, _, avail) in &after {
                        assert!(*avail >= 0);
                    }
                    let want = match (
                        crash_at
                            > steps
                                .iter()
                                .position(|s| matches!(s, Step::Decide))
                                .unwrap(),
                        then,
                    ) {
                        (false, _) => [None, Some(ResStatus::Aborted)].contains(&record),
                        (true, None) => record == Some(ResStatus::Held),
                        (true, Some(false)) => record == Some(ResStatus::Released),
                        (true, Some(true)) => record == Some(ResStatus::Committed),
                    };
                    assert!(
                        want,
                        "crash after {crash_at} steps ({then:?}): record {record:?}"
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "crash after {crash_at} steps ({then:?}): record {record:?}, items {after:?}, expected {expected:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Whatever was held goes back when released.
            if engine
                .reservation(&id)
                .await
                .unwrap()
                .is_some_and(|r| r.status == ResStatus::Held || r.status == ResStatus::Committed)
            {
                engine.settle(id.clone(), false, "c".into()).await.unwrap();
                for (item, b) in items.iter().zip(&before) {
                    assert_eq!(buckets(&engine, item), *b, "released: {item}");
                }
            }
            stop(engine);
        }
    }
    blocking(|| (fresh.cleanup)());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_a_crash_at_every_step_resolves_to_all_or_nothing() {
    crash_at_every_step(sqlite("cross")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_a_crash_at_every_step_resolves_to_all_or_nothing() {
    crash_at_every_step(postgres("cross")).await;
}
