//! Workflows across partitions, on SQLite and the local PostgreSQL: an order whose lines hash to
//! three partitions is captured, allocated, restarted, shipped and invoiced exactly as with one
//! partition; each lender's log has the input's part row at the same sequence; a cancel after a
//! restart gives every allocation back.

mod common;

use std::sync::Arc;

use common::{Fresh, blocking, postgres, sqlite};
use crossdock_engine::{Engine, EngineConfig, EventReply, WorkflowReply, partition_of};
use crossdock_model::event::{Received, ShipLine, Shipped, is_wide_part};
use crossdock_model::workflow::OrderLine;
use crossdock_model::{Event, EventData, ItemId, LocationId, SourceId, Timestamp};

const PARTITIONS: u32 = 4;

/// Three items, each on a partition of its own.
fn items() -> Vec<ItemId> {
    let mut out: Vec<ItemId> = Vec::new();
    for i in 0.. {
        let id = ItemId::new(&format!("W{i}")).unwrap();
        let p = partition_of(&id, PARTITIONS);
        if out.iter().all(|o| partition_of(o, PARTITIONS) != p) {
            out.push(id);
        }
        if out.len() == 3 {
            return out;
        }
    }
    unreachable!()
}

async fn start(fresh: &Fresh) -> Arc<Engine> {
    let config = EngineConfig {
        partitions: PARTITIONS,
        ..EngineConfig::new(fresh.spec.clone())
    };
    blocking(|| Engine::start(config, common::policy(&["A"]))).unwrap()
}

fn stop(engine: Arc<Engine>) {
    engine.shutdown();
    drop(engine);
}

fn wms(id: &str, data: EventData) -> Event {
    Event {
        id: id.into(),
        source: SourceId::new("wms").unwrap(),
        time: Timestamp::now(),
        sequence: None,
        correlation_id: format!("c-{id}"),
        causation_id: None,
        data,
        received_at: Timestamp::now(),
    }
}

async fn receive(engine: &Engine, item: &ItemId, qty: i64) {
    let reply = engine
        .submit(wms(
            &format!("rcv-{item}"),
            EventData::Received(Received {
                item: item.clone(),
                location: LocationId::new("A").unwrap(),
                qty,
                lot: None,
                reference: None,
            }),
        ))
        .await
        .unwrap();
    assert!(matches!(reply, EventReply::Recorded { .. }), "{reply:?}");
}

fn capture(order: &str, items: &[ItemId], qty: i64) -> Event {
    let lines = items
        .iter()
        .map(|i| OrderLine {
            item: i.clone(),
            qty,
        })
        .collect();
    common::capture_order(order, lines, &format!("corr-{order}"))
}

/// (on_hand, allocated) of an item.
fn buckets(engine: &Engine, item: &ItemId) -> (i64, i64) {
    let (state, _) = engine.item(item).expect("the item has stock");
    let p = &state.positions[0];
    (p.b().on_hand, p.b().allocated)
}

fn state_of(reply: &WorkflowReply) -> String {
    match reply {
        WorkflowReply::Done { workflow, .. } => workflow.state.clone(),
        other => panic!("expected a workflow, got {other:?}"),
    }
}

async fn across(fresh: Fresh) {
    let items = items();
    let engine = start(&fresh).await;
    for item in &items {
        receive(&engine, item, 10).await;
    }

    let reply = engine
        .workflow_command(capture("O1", &items, 3))
        .await
        .unwrap();
    assert_eq!(state_of(&reply), "released", "{reply:?}");
    for item in &items {
        assert_eq!(
            buckets(&engine, item),
            (10, 3),
            "{item} allocated in its own partition"
        );
    }
    // A repeat is recognised, and allocates nothing more.
    let again = engine
        .workflow_command(capture("O1", &items, 3))
        .await
        .unwrap();
    assert!(
        matches!(again, WorkflowReply::Done { repeat: true, .. }),
        "{again:?}"
    );
    for item in &items {
        assert_eq!(buckets(&engine, item), (10, 3));
    }

    // Restarted: the allocations and the workflow are as they were, and the shipment naming
    // the order (its lines on three partitions) closes it.
    stop(engine);
    let engine = start(&fresh).await;
    for item in &items {
        assert_eq!(buckets(&engine, item), (10, 3), "{item} after the restart");
    }
    let shipment = wms(
        "ship-O1",
        EventData::Shipped(Shipped {
            order: "O1".into(),
            shipment: Some("SH-1".into()),
            lines: items
                .iter()
                .map(|i| ShipLine {
                    item: i.clone(),
                    location: LocationId::new("A").unwrap(),
                    qty: 3,
                })
                .collect(),
        }),
    );
    let shipped = engine.submit(shipment.clone()).await.unwrap();
    assert!(
        matches!(shipped, EventReply::Recorded { .. }),
        "{shipped:?}"
    );
    for item in &items {
        assert_eq!(buckets(&engine, item), (7, 0), "{item} shipped");
    }
    let (row, steps) = engine.workflow("order:O1").await.unwrap().expect("stored");
    assert_eq!(row.state, "closed");
    let states: Vec<&str> = steps.iter().map(|s| s.to.as_str()).collect();
    assert!(
        states.ends_with(&["shipped", "invoiced", "closed"]),
        "{states:?}"
    );

    // The shipment sent again after a restart (its order closed, so no longer live): a repeat,
    // wherever the engine now routes it.
    stop(engine);
    let engine = start(&fresh).await;
    let again = engine.submit(shipment.clone()).await.unwrap();
    assert!(matches!(again, EventReply::Duplicate { .. }), "{again:?}");
    for item in &items {
        assert_eq!(buckets(&engine, item), (7, 0), "{item} shipped once");
    }

    // Another order, cancelled after a restart: every allocation goes back.
    let reply = engine
        .workflow_command(capture("O2", &items, 2))
        .await
        .unwrap();
    assert_eq!(state_of(&reply), "released");
    stop(engine);
    let engine = start(&fresh).await;
    let cancel = common::cancel_order("O2", "corr-O2");
    let reply = engine.workflow_command(cancel).await.unwrap();
    assert_eq!(state_of(&reply), "cancelled", "{reply:?}");
    for item in &items {
        assert_eq!(buckets(&engine, item), (7, 0), "{item} after the cancel");
    }
    stop(engine);

    // Each input's changes are logged where they happened: the input in its home, a part row
    // at the same sequence in each partition that lent it items.
    let spec = fresh.spec.clone();
    let logs = blocking(move || {
        let mut store = spec.open().unwrap();
        (0..PARTITIONS)
            .map(|p| store.read_events(p, 0, 10_000).unwrap())
            .collect::<Vec<_>>()
    });
    let ship_home = logs
        .iter()
        .flatten()
        .find(|e| e.id == "ship-O1")
        .expect("the shipment is logged");
    let parts: Vec<_> = logs
        .iter()
        .flatten()
        .filter(|e| is_wide_part(&e.id) && e.id.starts_with("ship-O1"))
        .collect();
    assert_eq!(parts.len(), 2, "two lenders: {parts:?}");
    assert!(
        parts
            .iter()
            .all(|p| p.seq == ship_home.seq && p.partition != ship_home.partition)
    );
    blocking(|| (fresh.cleanup)());
}

/// On SQLite a lender lends what it applied without waiting for it to commit (one committer
/// commits every partition's batches in order): when such a batch fails, the wide input built on
/// it fails too, and nothing of either is seen.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_a_wide_input_on_a_lender_batch_that_fails_fails_with_it() {
    let fresh = sqlite("wide-fail");
    let items = items();
    let engine = start(&fresh).await;
    for item in &items {
        receive(&engine, item, 10).await;
    }
    // A real SQLite failure: the commit of the batch that logs event `boom` is refused, after
    // a moment's work (so the order below is lent the receipt's state before it fails).
    let Fresh { spec, .. } = &fresh;
    let crossdock_engine::StoreSpec::Sqlite(path) = spec else {
        unreachable!()
    };
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.id = 'boom' BEGIN \
             SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 \
             FROM c WHERE x < 3000000) SELECT x FROM c); \
             SELECT RAISE(ABORT, 'injected: the disk refused this batch'); END;",
        )
        .unwrap();
    let boom = wms(
        "boom",
        EventData::Received(Received {
            item: items[1].clone(),
            location: LocationId::new("A").unwrap(),
            qty: 100,
            lot: None,
            reference: None,
        }),
    );
    // The receipt is queued first (a future's first poll queues it), then the order.
    let (received, ordered) = tokio::join!(engine.submit(boom), async {
        tokio::task::yield_now().await;
        engine.workflow_command(capture("OF", &items, 2)).await
    });
    assert!(received.is_err(), "{received:?}");
    assert!(
        ordered.is_err(),
        "built on a batch that failed: {ordered:?}"
    );
    for item in &items {
        assert_eq!(buckets(&engine, item), (10, 0), "{item}: nothing of either");
    }
    // Tried again once the failing batch is behind: the order is held whole.
    let mut reply = engine.workflow_command(capture("OF", &items, 2)).await;
    for _ in 0..10 {
        if reply.is_ok() {
            break;
        }
        reply = engine.workflow_command(capture("OF", &items, 2)).await;
    }
    assert_eq!(state_of(&reply.unwrap()), "released");
    for item in &items {
        assert_eq!(buckets(&engine, item), (10, 2), "{item}");
    }
    stop(engine);
    let engine = start(&fresh).await;
    for item in &items {
        assert_eq!(buckets(&engine, item), (10, 2), "{item} after a restart");
    }
    stop(engine);
    blocking(|| (fresh.cleanup)());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_an_order_across_partitions_runs_as_on_one() {
    across(sqlite("wide")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_an_order_across_partitions_runs_as_on_one() {
    across(postgres("wide")).await;
}
