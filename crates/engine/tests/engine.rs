//! The engine against real stores (SQLite and the local PostgreSQL): restart reproduces state,
//! the stored log replays to the same positions, and repeats apply once.

mod common;

use std::sync::Arc;

use common::{Fresh, blocking, postgres, sqlite};
use crossdock_engine::{
    Engine, EngineConfig, EventReply, EventStatus, ReservationReply, StoreSpec, event_from_row,
};
use crossdock_ledger::{Buckets, Effects, Ledger, Policy};
use crossdock_model::event::{Adjusted, Counted, Received, ReserveLine, ShipLine, Shipped};
use crossdock_model::{ChannelId, Event, EventData, ItemId, LocationId, Timestamp};

fn policy() -> Arc<Policy> {
    common::policy(&["A", "B"])
}

fn ev(n: u64, data: EventData) -> Event {
    common::wms_event(n, data)
}

fn random_event(n: u64) -> Event {
    let item = ItemId::new(&format!("I{}", fastrand::u8(0..8))).unwrap();
    let location = LocationId::new(if fastrand::bool() { "A" } else { "B" }).unwrap();
    ev(
        n,
        match fastrand::u8(0..3) {
            0 => EventData::Received(Received {
                item,
                location,
                qty: fastrand::i64(1..50),
                lot: None,
                reference: None,
            }),
            1 => {
                let delta = fastrand::i64(1..10) * if fastrand::bool() { -1 } else { 1 };
                EventData::Adjusted(Adjusted {
                    item,
                    location,
                    delta,
                    reason: "r".into(),
                    lot: None,
                })
            }
            _ => EventData::Counted(Counted {
                item,
                location,
                qty: fastrand::i64(0..100),
                lot: None,
            }),
        },
    )
}

fn snapshot(engine: &Engine) -> Vec<(String, u16, Buckets)> {
    let mut out = Vec::new();
    for i in 0..8 {
        let id = ItemId::new(&format!("I{i}")).unwrap();
        if let Some((state, _)) = engine.item(&id) {
            out.extend(
                state
                    .positions
                    .iter()
                    .map(|p| (id.to_string(), p.location.0, p.b())),
            );
        }
    }
    out
}

/// Random movements, repeats and reservations (on `partitions` partitions: some of them across
/// several), then a restart and a replay of each partition's stored log through the pure ledger:
/// both reproduce every position (conservation), whatever the partition count.
async fn restart_and_replay_reproduce_state(fresh: Fresh, partitions: u32) {
    let policy = policy();
    let config = EngineConfig {
        partitions,
        ..EngineConfig::new(fresh.spec.clone())
    };
    let engine = blocking(|| Engine::start(config.clone(), policy.clone())).unwrap();
    let mut events: Vec<Event> = (0..400).map(random_event).collect();
    // Repeat a fifth of them: each must be answered as a duplicate and applied once.
    let repeats: Vec<Event> = events
        .iter()
        .filter(|_| fastrand::u8(0..5) == 0)
        .cloned()
        .collect();
    events.extend(repeats.clone());
    let replies = engine.submit_many(events).await;
    let duplicates = replies
        .iter()
        .filter(|r| matches!(r, Ok(EventReply::Duplicate { .. })))
        .count();
    assert_eq!(duplicates, repeats.len());
    assert!(replies.iter().all(|r| r.is_ok()));
    for k in 0..20 {
        // Every other reservation has a second line (on another partition, most of the time).
        let mut lines = vec![ReserveLine {
            item: ItemId::new(&format!("I{}", k % 8)).unwrap(),
            qty: 3,
        }];
        if k % 2 == 1 {
            lines.push(ReserveLine {
                item: ItemId::new(&format!("I{}", (k + 3) % 8)).unwrap(),
                qty: 2,
            });
        }
        let reply = engine
            .reserve(
                format!("r{k}"),
                ChannelId::new("web").unwrap(),
                lines,
                600,
                format!("rc{k}"),
            )
            .await
            .unwrap();
        assert!(
            matches!(
                reply,
                ReservationReply::Done { .. } | ReservationReply::Insufficient(_)
            ),
            "{reply:?}"
        );
        if k % 5 == 0 {
            engine
                .settle(format!("r{k}"), k % 10 == 0, format!("sc{k}"))
                .await
                .unwrap();
        }
    }
    let before = snapshot(&engine);
    assert!(!before.is_empty());
    engine.shutdown();
    drop(engine);

    // Restart from the store.
    let engine = blocking(|| Engine::start(config, policy.clone())).unwrap();
    assert_eq!(
        snapshot(&engine),
        before,
        "restart reproduces every position"
    );
    engine.shutdown();
    drop(engine);

    // Replay each partition's stored log from empty through the pure ledger.
    let mut store = blocking(|| fresh.spec.open()).unwrap();
    let mut replayed = Vec::new();
    for partition in 0..partitions {
        let mut ledger = Ledger::new();
        let mut after = 0;
        loop {
            let rows = blocking(|| store.read_events(partition, after, 1000)).unwrap();
            if rows.is_empty() {
                break;
            }
            for row in rows {
                after = row.seq;
                assert_eq!(row.status, EventStatus::Applied);
                let mut fx = Effects::default();
                assert!(
                    ledger
                        .apply(&policy, &event_from_row(&row).unwrap(), &mut fx)
                        .is_logged()
                );
            }
        }
        replayed.extend(ledger.items().flat_map(|(id, s)| {
            s.positions
                .iter()
                .map(move |p| (id.to_string(), p.location.0, p.b()))
        }));
    }
    replayed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut expected = before.clone();
    expected.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(
        replayed, expected,
        "conservation: the log explains every bucket"
    );
    blocking(move || drop(store));
    blocking(|| (fresh.cleanup)());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_restart_and_replay_reproduce_state() {
    restart_and_replay_reproduce_state(sqlite("engine"), 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_restart_and_replay_reproduce_state_with_four_partitions() {
    restart_and_replay_reproduce_state(sqlite("engine"), 4).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_and_replay_reproduce_state_with_four_partitions() {
    restart_and_replay_reproduce_state(postgres("engine"), 4).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_and_replay_reproduce_state() {
    restart_and_replay_reproduce_state(postgres("engine"), 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_split_items_and_keep_each_item_whole() {
    let fresh = sqlite("engine");
    let config = EngineConfig {
        partitions: 4,
        ..EngineConfig::new(fresh.spec.clone())
    };
    let engine = Engine::start(config.clone(), policy()).unwrap();
    let events: Vec<Event> = (0..300).map(random_event).collect();
    let replies = engine.submit_many(events).await;
    assert!(
        replies
            .iter()
            .all(|r| matches!(r, Ok(EventReply::Recorded { .. })))
    );
    assert_eq!(engine.ledger_seqs().len(), 4);
    assert!(
        engine.ledger_seqs().iter().filter(|s| **s > 0).count() >= 2,
        "items spread over partitions"
    );
    let before = snapshot(&engine);
    engine.shutdown();
    drop(engine);
    let engine = Engine::start(config.clone(), policy()).unwrap();
    assert_eq!(snapshot(&engine), before);
    engine.shutdown();
    // A shipment across partitions is applied in each item's own partition, once.
    let items: Vec<ItemId> = (0..8)
        .map(|i| ItemId::new(&format!("I{i}")).unwrap())
        .collect();
    let on_hand = |e: &Engine, i: &ItemId| {
        e.item(i).map_or(0, |(s, _)| {
            s.positions.iter().map(|p| p.b().on_hand).sum::<i64>()
        })
    };
    let engine = Engine::start(config.clone(), policy()).unwrap();
    let before: Vec<i64> = items.iter().map(|i| on_hand(&engine, i)).collect();
    let lines: Vec<ShipLine> = items
        .iter()
        .map(|i| ShipLine {
            item: i.clone(),
            location: LocationId::new("A").unwrap(),
            qty: 1,
        })
        .collect();
    let ship = ev(
        10_000,
        EventData::Shipped(Shipped {
            order: "o-1".into(),
            shipment: None,
            lines,
        }),
    );
    assert!(matches!(
        engine.submit(ship.clone()).await,
        Ok(EventReply::Recorded {
            status: EventStatus::Applied,
            ..
        })
    ));
    assert!(
        matches!(engine.submit(ship).await, Ok(EventReply::Duplicate { .. })),
        "a resent shipment is a repeat"
    );
    let after: Vec<i64> = items.iter().map(|i| on_hand(&engine, i)).collect();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(*a, b - 1, "every line applied once");
    }
    engine.shutdown();
    drop(engine);
    let wrong = EngineConfig {
        partitions: 2,
        ..EngineConfig::new(fresh.spec.clone())
    };
    let err = Engine::start(wrong, policy())
        .err()
        .expect("partition count is fixed")
        .to_string();
    assert!(err.contains("4 partitions"), "{err}");
    // Without a configured count the store keeps the one it was written with.
    let default = EngineConfig {
        partitions: 2,
        partitions_fixed: false,
        ..EngineConfig::new(fresh.spec.clone())
    };
    let engine = Engine::start(default, policy()).unwrap();
    assert_eq!(engine.partitions(), 4);
    let kept: Vec<i64> = items.iter().map(|i| on_hand(&engine, i)).collect();
    assert_eq!(kept, after);
    engine.shutdown();
    drop(engine);
    (fresh.cleanup)();
}

mod idempotency {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

        /// Idempotency: any stream in which events repeat (in the same batch or later ones)
        /// leaves the same positions as the stream without repeats, and every repeat is answered
        /// as a duplicate of the original.
        #[test]
        fn repeats_apply_once(
            kinds in proptest::collection::vec((0u8..3, 0u8..4, 0u8..2, 1i64..40), 1..60),
            repeat_at in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
        ) {
            let policy = policy();
            let events: Vec<Event> = kinds
                .iter()
                .enumerate()
                .map(|(n, (kind, item, loc, qty))| {
                    let item = ItemId::new(&format!("I{item}")).unwrap();
                    let location = LocationId::new(if *loc == 0 { "A" } else { "B" }).unwrap();
                    ev(n as u64, match kind {
                        0 => EventData::Received(Received { item, location, qty: *qty, lot: None, reference: None }),
                        1 => EventData::Adjusted(Adjusted { item, location, delta: -*qty, reason: "r".into(), lot: None }),
                        _ => EventData::Counted(Counted { item, location, qty: *qty, lot: None }),
                    })
                })
                .collect();
            // Interleave repeats of earlier events.
            let mut stream = Vec::new();
            let mut repeats = repeat_at.iter();
            for (n, e) in events.iter().enumerate() {
                stream.push(e.clone());
                if let Some(at) = repeats.next() {
                    stream.push(events[at.index(n + 1)].clone());
                }
            }
            let mut expected = Ledger::new();
            for e in &events {
                let mut fx = Effects::default();
                expected.apply(&policy, e, &mut fx);
            }
            let fresh = sqlite("engine");
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let (replies, got) = runtime.block_on(async {
                let engine = Engine::start(EngineConfig::new(fresh.spec.clone()), policy.clone()).unwrap();
                // Half through one batch, half one by one, so repeats meet both in-batch and stored originals.
                let half = stream.len() / 2;
                let mut replies = engine.submit_many(stream[..half].to_vec()).await;
                for e in &stream[half..] {
                    replies.push(engine.submit(e.clone()).await);
                }
                let got = snapshot(&engine);
                engine.shutdown();
                (replies, got)
            });
            (fresh.cleanup)();
            let duplicates = replies.iter().filter(|r| matches!(r, Ok(EventReply::Duplicate { .. }))).count();
            prop_assert_eq!(duplicates, stream.len() - events.len());
            let mut want: Vec<_> = expected
                .items()
                .flat_map(|(id, s)| s.positions.iter().map(move |p| (id.to_string(), p.location.0, p.b())))
                .collect();
            want.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            prop_assert_eq!(got, want);
        }
    }
}

mod commit_failure {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use crossdock_engine::StoreFactory;
    use crossdock_store::{CommitBatch, PartitionSnapshot, Store, StoreError};

    /// A real SQLite store whose commits fail while `fail` is set, as a full disk would, and
    /// take `slow_ms` longer, as a busy disk would.
    struct Flaky {
        inner: Box<dyn Store>,
        fail: Arc<AtomicBool>,
        slow_ms: Arc<AtomicU64>,
    }

    /// Delivery's tables are not under test here: straight through.
    impl crossdock_store::DeliveryStore for Flaky {
        fn lane_backlog(
            &mut self,
            e: &str,
        ) -> crossdock_store::Result<Vec<crossdock_store::OutboxRow>> {
            self.inner.lane_backlog(e)
        }
        fn sent_values(
            &mut self,
            e: &str,
        ) -> crossdock_store::Result<Vec<crossdock_store::SentRow>> {
            self.inner.sent_values(e)
        }
        fn record_results(
            &mut self,
            e: &str,
            x: &[crossdock_model::ExceptionRecord],
            parks: &[crossdock_store::NewDeadLetter],
            acks: &[crossdock_store::Ack],
            at: i64,
        ) -> crossdock_store::Result<()> {
            self.inner.record_results(e, x, parks, acks, at)
        }
        fn dead_letters(
            &mut self,
            f: &crossdock_store::DeadLetterFilter,
        ) -> crossdock_store::Result<Vec<crossdock_store::DeadLetter>> {
            self.inner.dead_letters(f)
        }
        fn dead_letter_counts(&mut self) -> crossdock_store::Result<Vec<(String, u64)>> {
            self.inner.dead_letter_counts()
        }
        fn act_on_dead_letters(
            &mut self,
            f: &crossdock_store::DeadLetterFilter,
            action: crossdock_store::DeadLetterAction,
            actor: &str,
            note: &str,
            at: i64,
        ) -> crossdock_store::Result<Vec<crossdock_store::DeadLetter>> {
            self.inner.act_on_dead_letters(f, action, actor, note, at)
        }
        fn audit_log(
            &mut self,
            limit: u32,
        ) -> crossdock_store::Result<Vec<crossdock_store::AuditRow>> {
            self.inner.audit_log(limit)
        }
        fn webhook_receipt(
            &mut self,
            c: &str,
            id: &str,
        ) -> crossdock_store::Result<Option<String>> {
            self.inner.webhook_receipt(c, id)
        }
        fn next_control_numbers(
            &mut self,
            scope: &str,
            count: u32,
            max: u64,
        ) -> crossdock_store::Result<u64> {
            self.inner.next_control_numbers(scope, count, max)
        }
        fn set_exception_status(
            &mut self,
            id: &str,
            status: crossdock_model::ExceptionStatus,
            actor: &str,
            note: &str,
            at: i64,
        ) -> crossdock_store::Result<Option<crossdock_model::ExceptionRecord>> {
            self.inner.set_exception_status(id, status, actor, note, at)
        }
        fn record_webhook(
            &mut self,
            c: &str,
            id: &str,
            topic: &str,
            outcome: &str,
            at: i64,
        ) -> crossdock_store::Result<()> {
            self.inner.record_webhook(c, id, topic, outcome, at)
        }
    }

    /// The exceptions work queue's reads and moves are not under test here: straight through.
    impl crossdock_store::ExceptionStore for Flaky {
        fn query_exceptions(
            &mut self,
            q: &crossdock_store::ExceptionQuery,
        ) -> crossdock_store::Result<Vec<crossdock_store::QueueRecord>> {
            self.inner.query_exceptions(q)
        }
        fn count_exceptions(
            &mut self,
            q: &crossdock_store::ExceptionQuery,
        ) -> crossdock_store::Result<
            Vec<(
                crossdock_model::ExceptionKind,
                crossdock_model::ExceptionStatus,
                u64,
            )>,
        > {
            self.inner.count_exceptions(q)
        }
        fn transition_exceptions(
            &mut self,
            ids: &[String],
            to: crossdock_model::ExceptionStatus,
            from: &[crossdock_model::ExceptionStatus],
            actor: &str,
            note: &str,
            at: i64,
        ) -> crossdock_store::Result<Vec<crossdock_store::Transition>> {
            self.inner
                .transition_exceptions(ids, to, from, actor, note, at)
        }
        fn note_exception(
            &mut self,
            id: &str,
            actor: &str,
            note: &str,
            at: i64,
        ) -> crossdock_store::Result<Option<crossdock_store::QueueRecord>> {
            self.inner.note_exception(id, actor, note, at)
        }
        fn mark_exception(
            &mut self,
            id: &str,
            mark: crossdock_store::QueueMark,
            note: Option<(&str, &str)>,
            at: i64,
        ) -> crossdock_store::Result<bool> {
            self.inner.mark_exception(id, mark, note, at)
        }
        fn count_attempt(&mut self, id: &str, at: i64) -> crossdock_store::Result<u32> {
            self.inner.count_attempt(id, at)
        }
        fn parked_letter_of(&mut self, id: &str) -> crossdock_store::Result<Option<i64>> {
            self.inner.parked_letter_of(id)
        }
        fn sent_at(&mut self, e: &str, k: &str) -> crossdock_store::Result<Option<i64>> {
            self.inner.sent_at(e, k)
        }
    }

    /// Reconciliation's tables are not under test here: straight through.
    impl crossdock_store::TraceStore for Flaky {
        fn trace(
            &mut self,
            correlation_id: &str,
            limit: u32,
        ) -> crossdock_store::Result<crossdock_store::TraceRows> {
            self.inner.trace(correlation_id, limit)
        }
    }

    impl crossdock_store::ReconStore for Flaky {
        fn changes_since(
            &mut self,
            p: u32,
            since: i64,
            after: i64,
            up_to: u64,
        ) -> crossdock_store::Result<Vec<crossdock_store::ChangeRow>> {
            self.inner.changes_since(p, since, after, up_to)
        }
        fn item_journal_after(
            &mut self,
            p: u32,
            item: &str,
            after: i64,
        ) -> crossdock_store::Result<(
            Vec<crossdock_store::ChangeRow>,
            Vec<crossdock_store::AtsRow>,
        )> {
            self.inner.item_journal_after(p, item, after)
        }
        fn sent_as_of(
            &mut self,
            key: &str,
            at: i64,
        ) -> crossdock_store::Result<Vec<crossdock_store::SentRow>> {
            self.inner.sent_as_of(key, at)
        }
        fn save_run(
            &mut self,
            run: &crossdock_store::RunRow,
            v: &[crossdock_store::VarianceRow],
        ) -> crossdock_store::Result<()> {
            self.inner.save_run(run, v)
        }
        fn find_run(
            &mut self,
            id: &str,
        ) -> crossdock_store::Result<Option<crossdock_store::RunRow>> {
            self.inner.find_run(id)
        }
        fn list_runs(
            &mut self,
            source: Option<&str>,
            limit: u32,
        ) -> crossdock_store::Result<Vec<crossdock_store::RunRow>> {
            self.inner.list_runs(source, limit)
        }
        fn run_variances(
            &mut self,
            id: &str,
            after: Option<u32>,
            limit: u32,
        ) -> crossdock_store::Result<Vec<crossdock_store::VarianceRow>> {
            self.inner.run_variances(id, after, limit)
        }
        fn run_variance_counts(
            &mut self,
            id: &str,
        ) -> crossdock_store::Result<Vec<(String, String, u64)>> {
            self.inner.run_variance_counts(id)
        }
    }

    impl Store for Flaky {
        fn migrate(&mut self, partitions: u32) -> crossdock_store::Result<()> {
            self.inner.migrate(partitions)
        }
        fn recorded_partitions(&mut self) -> crossdock_store::Result<Option<u32>> {
            self.inner.recorded_partitions()
        }
        fn load_partition(&mut self, partition: u32) -> crossdock_store::Result<PartitionSnapshot> {
            self.inner.load_partition(partition)
        }
        fn load_partition_with(
            &mut self,
            partition: u32,
            rows: &mut dyn FnMut(crossdock_store::StateRow) -> crossdock_store::Result<()>,
        ) -> crossdock_store::Result<PartitionSnapshot> {
            self.inner.load_partition_with(partition, rows)
        }
        fn commit(&mut self, batch: &CommitBatch) -> crossdock_store::Result<()> {
            let slow = self.slow_ms.load(Ordering::SeqCst);
            if slow > 0 {
                std::thread::sleep(std::time::Duration::from_millis(slow));
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Corrupt("injected: disk full".into()));
            }
            self.inner.commit(batch)
        }
        fn commit_all(&mut self, batches: &[&CommitBatch]) -> crossdock_store::Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Corrupt("injected: disk full".into()));
            }
            self.inner.commit_all(batches)
        }
        fn find_event(
            &mut self,
            source: &str,
            id: &str,
        ) -> crossdock_store::Result<Option<crossdock_store::EventRow>> {
            self.inner.find_event(source, id)
        }
        fn key_hashes(&mut self, partition: u32) -> crossdock_store::Result<Vec<u64>> {
            self.inner.key_hashes(partition)
        }
        fn read_events(
            &mut self,
            partition: u32,
            after: u64,
            limit: u32,
        ) -> crossdock_store::Result<Vec<crossdock_store::EventRow>> {
            self.inner.read_events(partition, after, limit)
        }
        fn events_naming(
            &mut self,
            partition: u32,
            item: &str,
            from_seq: u64,
            limit: u32,
        ) -> crossdock_store::Result<Vec<crossdock_store::EventRow>> {
            self.inner.events_naming(partition, item, from_seq, limit)
        }
        fn find_reservation(
            &mut self,
            id: &str,
        ) -> crossdock_store::Result<Option<crossdock_store::ReservationRow>> {
            self.inner.find_reservation(id)
        }
        fn find_workflow(
            &mut self,
            key: &str,
        ) -> crossdock_store::Result<
            Option<(crossdock_store::WorkflowRow, Vec<crossdock_store::StepRow>)>,
        > {
            self.inner.find_workflow(key)
        }
        fn list_workflows(
            &mut self,
            filter: &crossdock_store::WorkflowFilter,
        ) -> crossdock_store::Result<Vec<crossdock_store::WorkflowRow>> {
            self.inner.list_workflows(filter)
        }
        fn list_exceptions(
            &mut self,
            f: &crossdock_store::ExceptionFilter,
        ) -> crossdock_store::Result<Vec<crossdock_model::ExceptionRecord>> {
            self.inner.list_exceptions(f)
        }
        fn exception_counts(
            &mut self,
        ) -> crossdock_store::Result<Vec<(crossdock_model::ExceptionKind, u64)>> {
            self.inner.exception_counts()
        }
        fn outbox(
            &mut self,
            endpoint: Option<&str>,
            limit: u32,
        ) -> crossdock_store::Result<Vec<crossdock_store::StoredOutbox>> {
            self.inner.outbox(endpoint, limit)
        }
    }

    fn received(n: u64, qty: i64) -> Event {
        ev(
            n,
            EventData::Received(Received {
                item: ItemId::new("I0").unwrap(),
                location: LocationId::new("A").unwrap(),
                qty,
                lot: None,
                reference: None,
            }),
        )
    }

    fn on_hand(engine: &Engine) -> i64 {
        engine
            .item(&ItemId::new("I0").unwrap())
            .map_or(0, |(s, _)| s.positions[0].b().on_hand)
    }

    /// A failed commit answers its callers with an error, leaves nothing applied (not in the view,
    /// not in the store), and the partition reloads and carries on.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_commit_fails_its_callers_and_the_engine_recovers() {
        let fresh = sqlite("engine");
        let fail = Arc::new(AtomicBool::new(false));
        let (spec, flag) = (fresh.spec.clone(), fail.clone());
        let factory = StoreFactory(Arc::new(move || {
            Ok(Box::new(Flaky {
                inner: spec.open()?,
                fail: flag.clone(),
                slow_ms: Arc::new(AtomicU64::new(0)),
            }) as Box<dyn Store>)
        }));
        let config = EngineConfig::new(StoreSpec::Custom(factory));
        let engine = Engine::start(config.clone(), policy()).unwrap();
        assert!(matches!(
            engine.submit(received(1, 10)).await,
            Ok(EventReply::Recorded { .. })
        ));

        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let failed = engine
            .submit_many(vec![received(2, 100), received(3, 1000)])
            .await;
        assert!(
            failed
                .iter()
                .all(|r| matches!(r, Err(crossdock_engine::EngineError::Store(_)))),
            "{failed:?}"
        );
        assert_eq!(
            on_hand(&engine),
            10,
            "queries never see what did not commit"
        );

        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        // The first batch after the failure may still meet the poisoned pipeline; retry as a client would.
        let mut reply = engine.submit(received(2, 100)).await;
        for _ in 0..10 {
            if reply.is_ok() {
                break;
            }
            reply = engine.submit(received(2, 100)).await;
        }
        assert!(
            matches!(reply, Ok(EventReply::Recorded { .. })),
            "{reply:?}"
        );
        assert_eq!(on_hand(&engine), 110, "e2 applied once, e3 never");
        engine.shutdown();
        drop(engine);

        let engine = Engine::start(EngineConfig::new(fresh.spec.clone()), policy()).unwrap();
        assert_eq!(
            on_hand(&engine),
            110,
            "the store agrees with what was answered"
        );
        engine.shutdown();
        (fresh.cleanup)();
    }

    /// Two postings to one warehouse for one order, made by two inputs committed in one batch
    /// (two receipts each filling a backordered line), carry the ledger sequence of the input
    /// that made each: a lane keys ordered messages (and their idempotency keys and acks) by
    /// endpoint, key and sequence, so sharing one would lose the second release.
    #[tokio::test(flavor = "multi_thread")]
    async fn postings_of_one_key_committed_together_keep_their_own_sequences() {
        use crossdock_engine::{OutboxSink, PostingRoutes, WorkflowReply};
        use crossdock_model::event::{Credit, CreditDecision, OrderCaptured, OrderLine, ShipTo};
        use crossdock_store::OutboxRow;

        let fresh = sqlite("engine");
        let slow = Arc::new(AtomicU64::new(0));
        let (spec, s) = (fresh.spec.clone(), slow.clone());
        let factory = StoreFactory(Arc::new(move || {
            Ok(Box::new(Flaky {
                inner: spec.open()?,
                fail: Arc::new(AtomicBool::new(false)),
                slow_ms: s.clone(),
            }) as Box<dyn Store>)
        }));
        let batches: Arc<std::sync::Mutex<Vec<Vec<OutboxRow>>>> = Arc::default();
        let seen = batches.clone();
        let sink: OutboxSink = Arc::new(move |rows: &[OutboxRow]| {
            seen.lock().unwrap().push(rows.to_vec());
        });
        let mut config = EngineConfig::new(StoreSpec::Custom(factory));
        config.outbox.postings = Arc::new(PostingRoutes {
            warehouses: [("A".to_string(), "wh-a".to_string())].into(),
            ..PostingRoutes::default()
        });
        config.outbox.on_commit = Some(sink);
        let engine = Engine::start(config, policy()).unwrap();
        let item = |i: &str| ItemId::new(i).unwrap();
        let capture = crossdock_ledger::state::hub_command(
            "order:O1:capture".into(),
            Timestamp::now(),
            "c-o1".into(),
            EventData::OrderCaptured(OrderCaptured {
                order: "O1".into(),
                channel: ChannelId::new("web").unwrap(),
                lines: vec![
                    OrderLine {
                        item: item("I1"),
                        qty: 2,
                    },
                    OrderLine {
                        item: item("I2"),
                        qty: 3,
                    },
                ],
                ship_to: ShipTo {
                    name: None,
                    region: "X".into(),
                    country: None,
                    postal_code: None,
                },
                amount_minor: 0,
                credit: Credit {
                    decision: CreditDecision::NotRequired,
                    note: String::new(),
                },
                sold: false,
                backorder: true,
                origin: "test".into(),
            }),
        );
        assert!(matches!(
            engine.workflow_command(capture).await,
            Ok(WorkflowReply::Done { .. })
        ));
        let receipt = move |n: u64, i: &str, qty: i64| {
            ev(
                n,
                EventData::Received(Received {
                    item: item(i),
                    location: LocationId::new("A").unwrap(),
                    qty,
                    lot: None,
                    reference: None,
                }),
            )
        };
        // Slow commits back the pipeline up, so the two receipts wait in the queue together and
        // are applied in one batch.
        slow.store(300, Ordering::SeqCst);
        let engine = Arc::new(engine);
        let mut fillers = Vec::new();
        for n in 0..4 {
            let e = engine.clone();
            fillers.push(tokio::spawn(async move {
                e.submit(receipt(10 + n, "I9", 1)).await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
        let replies = engine
            .submit_many(vec![receipt(20, "I1", 2), receipt(21, "I2", 3)])
            .await;
        assert!(replies.iter().all(|r| r.is_ok()), "{replies:?}");
        for f in fillers {
            f.await.unwrap().unwrap();
        }
        slow.store(0, Ordering::SeqCst);
        let batches = batches.lock().unwrap().clone();
        let fills: Vec<&Vec<OutboxRow>> = batches
            .iter()
            .filter(|b| b.iter().filter(|r| r.endpoint == "wh-a").count() == 2)
            .collect();
        assert_eq!(fills.len(), 1, "both fills in one batch: {batches:?}");
        let seqs: Vec<u64> = fills[0]
            .iter()
            .filter(|r| r.endpoint == "wh-a")
            .map(|r| {
                assert_eq!(r.key, "order:O1");
                assert!(
                    r.payload.contains("\"backorder_fill\":true"),
                    "{}",
                    r.payload
                );
                r.ledger_seq
            })
            .collect();
        assert!(
            seqs[0] < seqs[1],
            "each posting has its input's sequence: {seqs:?}"
        );
        engine.shutdown();
        (fresh.cleanup)();
    }
}
