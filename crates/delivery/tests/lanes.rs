//! Lanes against an in-process target over a real SQLite store: what reaches the target, what is
//! parked, what the store keeps.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossdock_delivery::rate::RateConfig;
use crossdock_delivery::retry::{BreakerConfig, BreakerState, RetryConfig};
use crossdock_delivery::{
    Body, BoxFuture, Delivery, Failure, Lane, LaneConfig, LaneState, Message, MsgResult, Outcome,
    Target,
};
use crossdock_model::ExceptionKind;
use crossdock_store::sqlite::SqliteStore;
use crossdock_store::thread::StoreThread;
use crossdock_store::{
    CommitBatch, DeadLetterAction, DeadLetterFilter, DeadLetterStatus, ExceptionFilter, OutboxKind,
    OutboxRow, Store,
};

/// A channel in memory: applies availability messages, can refuse some items for good, and can
/// be switched off (every call fails as a 503 would).
#[derive(Default)]
struct FakeChannel {
    values: Mutex<HashMap<String, i64>>,
    applied: Mutex<Vec<(String, u64)>>,
    calls: Mutex<Vec<usize>>,
    refuse: Mutex<HashSet<String>>,
    down: AtomicBool,
    /// While set, calls wait (a slow channel), so that what arrives meanwhile queues up.
    paused: AtomicBool,
}

impl Target for FakeChannel {
    fn max_batch(&self) -> usize {
        50
    }

    fn send<'a>(&'a self, batch: &'a [Message]) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            while self.paused.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            self.calls.lock().unwrap().push(batch.len());
            if self.down.load(Ordering::SeqCst) {
                return Outcome::all(
                    batch.len(),
                    MsgResult::Failed(Failure::from_status(503, "down")),
                    Default::default(),
                );
            }
            let refuse = self.refuse.lock().unwrap().clone();
            let results = batch
                .iter()
                .map(|m| {
                    if refuse.contains(&m.key) {
                        return MsgResult::Failed(Failure::from_status(422, "unknown item"));
                    }
                    if let Body::Availability {
                        item, available, ..
                    } = &m.body
                    {
                        self.values.lock().unwrap().insert(item.clone(), *available);
                    }
                    self.applied
                        .lock()
                        .unwrap()
                        .push((m.key.clone(), m.ledger_seq));
                    MsgResult::Delivered
                })
                .collect();
            Outcome {
                results,
                feedback: Default::default(),
            }
        })
    }
}

struct Db(PathBuf);

impl Db {
    fn new() -> Db {
        let path =
            std::env::temp_dir().join(format!("crossdock-lanes-{:016x}.db", fastrand::u64(..)));
        let mut s = SqliteStore::open(&path).unwrap();
        s.migrate(1).unwrap();
        Db(path)
    }

    fn open(&self) -> Box<dyn Store> {
        Box::new(SqliteStore::open(&self.0).unwrap())
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn row(key: &str, seq: u64, available: i64) -> OutboxRow {
    OutboxRow {
        partition: 0,
        endpoint: "shop".into(),
        key: key.into(),
        ledger_seq: seq,
        priority: 2,
        kind: OutboxKind::Latest,
        payload: format!(
            r#"{{"item":"{key}","channel":"shop","available":{available},"ledger_seq":{seq}}}"#
        ),
        correlation_id: None,
        created_at_us: 1,
    }
}

/// Commits `rows` like the engine would and hands them to delivery like its committer does.
fn commit(store: &mut dyn Store, delivery: &Delivery, rows: Vec<OutboxRow>) {
    let batch = CommitBatch {
        outbox: rows,
        last_seq: 1,
        ..CommitBatch::default()
    };
    store.commit(&batch).unwrap();
    delivery.on_commit(&batch.outbox);
}

fn config() -> LaneConfig {
    LaneConfig {
        endpoint: "shop".into(),
        target: "fake".into(),
        rate: RateConfig::token(1000.0, 100.0),
        retry: RetryConfig {
            base_ms: 20,
            cap_ms: 200,
            max_attempts: 5,
        },
        breaker: BreakerConfig {
            failures: 3,
            open_ms: 200,
            open_max_ms: 400,
        },
        call_timeout: Duration::from_secs(5),
        fifo: false,
    }
}

fn start(db: &Db, channel: Arc<FakeChannel>) -> Arc<Delivery> {
    let lane = Lane::new(config(), channel);
    let delivery = Delivery::new(StoreThread::spawn("delivery", db.open()), vec![lane]);
    delivery.start();
    delivery
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_values_arrive_and_the_outbox_empties() {
    let db = Db::new();
    let channel = Arc::new(FakeChannel::default());
    channel.paused.store(true, Ordering::SeqCst);
    let delivery = start(&db, channel.clone());
    let mut store = db.open();
    for round in 0..20u64 {
        let rows = (0..30)
            .map(|i| {
                row(
                    &format!("SKU-{i}"),
                    round * 100 + i,
                    (round * 10 + i) as i64,
                )
            })
            .collect();
        commit(store.as_mut(), &delivery, rows);
    }
    channel.paused.store(false, Ordering::SeqCst);
    eventually("every item shows its newest value", || {
        let v = channel.values.lock().unwrap();
        (0..30).all(|i| v.get(&format!("SKU-{i}")) == Some(&(190 + i)))
    })
    .await;
    eventually("the outbox is empty", || {
        store.lane_backlog("shop").unwrap().is_empty()
    })
    .await;
    // Coalesced: at most the first call's 30 (taken before the rest arrived) and then the
    // newest value of each item, never one older than one delivered.
    let applied = channel.applied.lock().unwrap().clone();
    assert!(
        applied.len() <= 60,
        "{} messages sent for 600 rows",
        applied.len()
    );
    let mut last: HashMap<String, u64> = HashMap::new();
    for (key, seq) in applied {
        let prev = last.insert(key.clone(), seq);
        assert!(
            prev.is_none_or(|p| p < seq),
            "{key} went from {prev:?} to {seq}"
        );
    }
    let sent = store.sent_values("shop").unwrap();
    assert_eq!(sent.len(), 30);
    assert!(sent.iter().all(|s| s.ledger_seq >= 1900));
    delivery.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_item_is_parked_alone_and_can_be_retried() {
    let db = Db::new();
    let channel = Arc::new(FakeChannel::default());
    channel.refuse.lock().unwrap().insert("BAD".into());
    let delivery = start(&db, channel.clone());
    let mut store = db.open();
    let mut rows: Vec<OutboxRow> = (0..20).map(|i| row(&format!("SKU-{i}"), i, 5)).collect();
    rows.push(row("BAD", 100, 7));
    commit(store.as_mut(), &delivery, rows);

    eventually("the refused item is parked", || {
        !store.dead_letters(&parked()).unwrap().is_empty()
    })
    .await;
    eventually("all other items arrive", || {
        channel.values.lock().unwrap().len() == 20
    })
    .await;
    let letters = store.dead_letters(&parked()).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].row.key, "BAD");
    assert_eq!(letters[0].attempts, 1, "a permanent refusal is not retried");
    assert_eq!(letters[0].last_status, Some(422));
    assert!(letters[0].last_response.contains("unknown item"));
    let exceptions = store
        .list_exceptions(&ExceptionFilter {
            kind: Some(ExceptionKind::DeliveryFailed),
            limit: 10,
            ..ExceptionFilter::default()
        })
        .unwrap();
    assert_eq!(exceptions.len(), 1);
    assert_eq!(exceptions[0].entity, "item:BAD");
    let status = delivery.status().await.unwrap();
    assert_eq!(status[0].dead_letters, 1);
    assert_eq!(
        status[0].lane.breaker,
        BreakerState::Closed,
        "a refusal is not an outage"
    );

    // The item is fixed on the channel; an operator retries it.
    channel.refuse.lock().unwrap().clear();
    let retried = delivery
        .act(
            parked(),
            DeadLetterAction::Retry,
            "ops".into(),
            "created the listing".into(),
        )
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    eventually("the retried item arrives", || {
        channel.values.lock().unwrap().get("BAD") == Some(&7)
    })
    .await;
    assert!(store.dead_letters(&parked()).unwrap().is_empty());
    assert_eq!(store.audit_log(5).unwrap()[0].action, "dlq.retry");
    delivery.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_opens_the_breaker_keeps_coalescing_and_parks_nothing() {
    let db = Db::new();
    let channel = Arc::new(FakeChannel::default());
    channel.down.store(true, Ordering::SeqCst);
    let delivery = start(&db, channel.clone());
    let mut store = db.open();
    for round in 0..10u64 {
        commit(
            store.as_mut(),
            &delivery,
            (0..10)
                .map(|i| row(&format!("SKU-{i}"), round * 10 + i, round as i64))
                .collect(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = delivery.status().await.unwrap();
    assert!(
        status[0].lane.breaker_opened >= 1,
        "the breaker opened: {status:?}"
    );
    assert!(
        matches!(
            status[0].lane.state,
            LaneState::BreakerOpen | LaneState::BackingOff
        ),
        "{status:?}"
    );
    assert_eq!(
        status[0].lane.depth.by_priority[2], 10,
        "one pending value per item"
    );
    assert!(status[0].lane.last_error.is_some());
    let calls_while_down = channel.calls.lock().unwrap().len();
    assert!(
        calls_while_down < 20,
        "{calls_while_down} calls in 1 s of outage: the breaker held them"
    );

    channel.down.store(false, Ordering::SeqCst);
    eventually("every item shows the newest value", || {
        let v = channel.values.lock().unwrap();
        (0..10).all(|i| v.get(&format!("SKU-{i}")) == Some(&9))
    })
    .await;
    eventually("the breaker closed and the lane is idle", || {
        let s = delivery.lane("shop").unwrap().status();
        s.breaker == BreakerState::Closed && s.state == LaneState::Idle
    })
    .await;
    assert!(
        store
            .dead_letters(&DeadLetterFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .is_empty()
    );
    delivery.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_lane_resumes_from_the_store_and_never_goes_back() {
    let db = Db::new();
    let channel = Arc::new(FakeChannel::default());
    channel.down.store(true, Ordering::SeqCst);
    let delivery = start(&db, channel.clone());
    let mut store = db.open();
    commit(
        store.as_mut(),
        &delivery,
        (0..10)
            .map(|i| row(&format!("SKU-{i}"), 10 + i, 1))
            .collect(),
    );
    delivery.shutdown().await;
    drop(delivery);

    // An older value still in the outbox for SKU-0, and a newer one for SKU-1, seen at start.
    store
        .commit(&CommitBatch {
            outbox: vec![row("SKU-0", 5, 99), row("SKU-1", 50, 2)],
            last_seq: 2,
            ..CommitBatch::default()
        })
        .unwrap();
    channel.down.store(false, Ordering::SeqCst);
    let delivery = start(&db, channel.clone());
    eventually("the backlog is delivered", || {
        store.lane_backlog("shop").unwrap().is_empty()
    })
    .await;
    let v = channel.values.lock().unwrap().clone();
    assert_eq!(v.get("SKU-0"), Some(&1), "seq 5 must not overwrite seq 10");
    assert_eq!(v.get("SKU-1"), Some(&2));
    assert_eq!(v.len(), 10);
    delivery.shutdown().await;
}

fn parked() -> DeadLetterFilter {
    DeadLetterFilter {
        status: Some(DeadLetterStatus::Parked),
        limit: 100,
        ..DeadLetterFilter::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_committer_never_handed_over_are_found_by_a_rescan() {
    let db = Db::new();
    let channel = Arc::new(FakeChannel::default());
    let delivery = start(&db, channel.clone());
    let mut store = db.open();
    // The lane has read its backlog once a handed-over row comes through.
    commit(&mut *store, &delivery, vec![row("SKU-0", 2, 1)]);
    eventually("the lane is running", || {
        channel.values.lock().unwrap().get("SKU-0") == Some(&1)
    })
    .await;
    // Committed, but (as after a commit that reported failure) never given to the lanes.
    store
        .commit(&CommitBatch {
            outbox: vec![row("SKU-1", 3, 7)],
            last_seq: 3,
            ..CommitBatch::default()
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(channel.values.lock().unwrap().get("SKU-1"), None);
    delivery.rescan();
    eventually("the row is delivered", || {
        channel.values.lock().unwrap().get("SKU-1") == Some(&7)
    })
    .await;
    delivery.shutdown().await;
}
