//! A resequenced source with four partitions, on SQLite and the local PostgreSQL: its events are
//! put in line by the partition of the source and applied by the partitions of their items, in
//! sequence order; duplicates are recognised, a gap is given up after the wait, held events
//! survive a restart, and a stop at either point of a forward (the original durable and its copy
//! not, or the copy durable and the original not yet marked) applies the event exactly once.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Fresh, blocking, postgres, sqlite};
use crossdock_engine::{Engine, EngineConfig, EventReply, partition_of, partition_of_key};
use crossdock_model::event::{Received, is_forward_copy};
use crossdock_model::{Event, EventData, ItemId, LocationId, SourceId, Timestamp};
use crossdock_store::{CommitBatch, EventRow, EventStatus, SourceSeqRow};

const PARTITIONS: u32 = 4;

fn config(fresh: &Fresh) -> EngineConfig {
    EngineConfig {
        partitions: PARTITIONS,
        ..EngineConfig::new(fresh.spec.clone())
    }
}

async fn start(fresh: &Fresh) -> Arc<Engine> {
    let config = config(fresh);
    blocking(|| Engine::start(config, common::sequenced_policy(&["A"], 1))).unwrap()
}

fn stop(engine: Arc<Engine>) {
    engine.shutdown();
    drop(engine);
}

/// Eight items, two on each partition.
fn items() -> Vec<ItemId> {
    let mut per = BTreeMap::<u32, Vec<ItemId>>::new();
    for i in 0.. {
        let id = ItemId::new(&format!("S{i}")).unwrap();
        let list = per.entry(partition_of(&id, PARTITIONS)).or_default();
        if list.len() < 2 {
            list.push(id);
        }
        if per.len() == PARTITIONS as usize && per.values().all(|l| l.len() == 2) {
            return per.into_values().flatten().collect();
        }
    }
    unreachable!()
}

/// Event `n` of the sequenced source: `n` units of item `n % 8`.
fn event(n: u64) -> Event {
    let items = items();
    Event {
        id: format!("e-{n}"),
        source: SourceId::new("wms").unwrap(),
        // Fixed, so a resend is the same event.
        time: Timestamp::from_micros(1_796_083_200_000_000 + n as i64 * 1_000_000),
        sequence: Some(n),
        correlation_id: format!("c-{n}"),
        causation_id: None,
        data: EventData::Received(Received {
            item: items[(n % 8) as usize].clone(),
            location: LocationId::new("A").unwrap(),
            qty: n as i64,
            lot: None,
            reference: None,
        }),
        received_at: Timestamp::now(),
    }
}

/// On hand per item once the events `applied` are in.
fn expected(applied: &[u64]) -> Vec<i64> {
    let mut out = vec![0; 8];
    for &n in applied {
        out[(n % 8) as usize] += n as i64;
    }
    out
}

fn on_hand(engine: &Engine) -> Vec<i64> {
    items()
        .iter()
        .map(|i| {
            engine
                .item(i)
                .map_or(0, |(s, _)| s.positions[0].b().on_hand)
        })
        .collect()
}

/// Waits until every item shows `want` (events released from the resequencer are applied after
/// the caller that released them is answered).
async fn converges(engine: &Engine, want: &[i64], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = on_hand(engine);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: on hand {now:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(engine: &Engine, n: u64) -> EventReply {
    engine.submit(event(n)).await.unwrap()
}

fn status_of(reply: &EventReply) -> EventStatus {
    match reply {
        EventReply::Recorded { status, .. } => *status,
        other => panic!("expected a recorded event, got {other:?}"),
    }
}

/// The home of the source and the original's row of event `n`.
fn original(fresh: &Fresh, n: u64) -> EventRow {
    let spec = fresh.spec.clone();
    blocking(move || {
        let mut store = spec.open().unwrap();
        store
            .find_event("wms", &format!("e-{n}"))
            .unwrap()
            .expect("logged")
    })
}

/// Waits until the original of event `n` is marked applied (its copies answered).
async fn marked(fresh: &Fresh, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while original(fresh, n).status != EventStatus::Applied {
        assert!(Instant::now() < deadline, "{n} is marked applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every partition's log: the originals (by sequence) each copy came from, in log order.
fn copies_in_log_order(fresh: &Fresh) -> Vec<Vec<u64>> {
    let spec = fresh.spec.clone();
    blocking(move || {
        let mut store = spec.open().unwrap();
        (0..PARTITIONS)
            .map(|p| {
                let rows = store.read_events(p, 0, 100_000).unwrap();
                rows.iter()
                    .filter(|r| is_forward_copy(&r.id))
                    .map(|r| {
                        r.id.trim_start_matches("e-")
                            .split('#')
                            .next()
                            .unwrap()
                            .parse()
                            .unwrap()
                    })
                    .collect()
            })
            .collect()
    })
}

async fn resequenced_across_partitions(fresh: Fresh) {
    let home = partition_of_key("wms", PARTITIONS);
    let engine = start(&fresh).await;

    // 1 (the first number seen starts the stream), then 2..=40 out of order: each reply says
    // held until its turn, applied when in line.
    let mut order: Vec<u64> = (2..=40).collect();
    fastrand::Rng::with_seed(7).shuffle(&mut order);
    order.insert(0, 1);
    let mut next = 1;
    let mut arrived = std::collections::BTreeSet::new();
    for &n in &order {
        let reply = send(&engine, n).await;
        arrived.insert(n);
        if n == next {
            assert_eq!(status_of(&reply), EventStatus::Applied, "{n}: {reply:?}");
            while arrived.contains(&next) {
                next += 1;
            }
        } else {
            assert_eq!(status_of(&reply), EventStatus::Held, "{n}: {reply:?}");
        }
    }
    let mut applied: Vec<u64> = (1..=40).collect();
    converges(&engine, &expected(&applied), "all 40 in").await;

    // Duplicates are recognised by the source's partition and change nothing.
    for n in [1, 17, 40] {
        let reply = send(&engine, n).await;
        assert!(
            matches!(reply, EventReply::Duplicate { .. }),
            "{n}: {reply:?}"
        );
    }
    assert_eq!(on_hand(&engine), expected(&applied));

    // A gap: 42 waits for 41, which never comes; after the wait 42 applies and the gap is
    // an exception on the source's partition.
    assert_eq!(status_of(&send(&engine, 42).await), EventStatus::Held);
    applied.push(42);
    converges(&engine, &expected(&applied), "42 after the gap's wait").await;
    let (gaps, _) = engine
        .exceptions(crossdock_store::ExceptionFilter {
            kind: Some(crossdock_model::ExceptionKind::SequenceGap),
            status: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(
        gaps[0].reason.contains("skipped sequence 41..=41"),
        "{:?}",
        gaps[0]
    );

    // Held events survive a restart.
    assert_eq!(status_of(&send(&engine, 45).await), EventStatus::Held);
    stop(engine);
    let engine = start(&fresh).await;
    assert_eq!(on_hand(&engine), expected(&applied), "45 is still held");
    assert_eq!(status_of(&send(&engine, 43).await), EventStatus::Applied);
    assert_eq!(status_of(&send(&engine, 44).await), EventStatus::Applied);
    applied.extend([43, 44, 45]);
    converges(&engine, &expected(&applied), "45 released after a restart").await;
    marked(&fresh, 45).await;
    stop(engine);
    assert_eq!(original(&fresh, 45).partition, home);

    // A stop after a copy committed and before its original was marked: forwarded again at
    // start, a repeat, applied once.
    let row = original(&fresh, 44);
    let spec = fresh.spec.clone();
    blocking(move || {
        let mut store = spec.open().unwrap();
        let batch = CommitBatch {
            partition: row.partition,
            event_status: vec![(row.partition, row.seq, EventStatus::Forwarding)],
            last_seq: store.load_partition(row.partition).unwrap().last_seq,
            ..Default::default()
        };
        store.commit(&batch).unwrap();
    });
    let engine = start(&fresh).await;
    marked(&fresh, 44).await;
    assert_eq!(
        on_hand(&engine),
        expected(&applied),
        "44 is not applied twice"
    );
    stop(engine);

    // A stop after the original was put in line and before its copy was sent: the row as the
    // source's partition commits it, with the source's next sequence moved on.
    let ev = event(46);
    let spec = fresh.spec.clone();
    blocking(move || {
        let mut store = spec.open().unwrap();
        let last_seq = store.load_partition(home).unwrap().last_seq + 1;
        let batch = CommitBatch {
            partition: home,
            events: vec![EventRow {
                partition: home,
                seq: last_seq,
                source: "wms".into(),
                id: ev.id.clone(),
                ty: ev.data.type_name().into(),
                time_us: ev.time.as_micros(),
                received_at_us: ev.received_at.as_micros(),
                correlation_id: ev.correlation_id.clone(),
                payload_hash: ev.payload_hash(),
                status: EventStatus::Forwarding,
                envelope: ev.envelope_json(),
            }],
            source_seqs: vec![SourceSeqRow {
                partition: home,
                source: "wms".into(),
                next_expected: 47,
            }],
            last_seq,
            ..Default::default()
        };
        store.commit(&batch).unwrap();
    });
    let engine = start(&fresh).await;
    applied.push(46);
    converges(&engine, &expected(&applied), "46 forwarded at start").await;
    assert_eq!(status_of(&send(&engine, 47).await), EventStatus::Applied);
    applied.push(47);
    converges(&engine, &expected(&applied), "47 after 46").await;
    marked(&fresh, 46).await;
    marked(&fresh, 47).await;
    stop(engine);

    // Each partition applied the source's events in sequence order.
    let logs = copies_in_log_order(&fresh);
    let mut seen: Vec<u64> = logs.iter().flatten().copied().collect();
    for (p, log) in logs.iter().enumerate() {
        assert!(
            log.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: {log:?}"
        );
    }
    seen.sort_unstable();
    applied.sort_unstable();
    assert_eq!(seen, applied, "every event has exactly one copy");
    blocking(|| (fresh.cleanup)());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_a_resequenced_source_spans_partitions() {
    resequenced_across_partitions(sqlite("seq")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_a_resequenced_source_spans_partitions() {
    resequenced_across_partitions(postgres("seq")).await;
}
