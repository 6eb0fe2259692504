//! One test suite, run against both store implementations.
//!
//! Every case is a plain function over `&mut dyn Store` (or over a [`Fixture`] when it needs more
//! than one connection); the `suite!` macro instantiates all of them once per backend.
//!
//! * `sqlite`: a fresh database file under the temp directory, removed afterwards.
//! * `postgres`: a fresh schema `cd_test_<random>` in the database at `CROSSDOCK_TEST_PG_URL`
//!   (default `host=127.0.0.1 user=postgres dbname=test`), dropped afterwards. These tests fail,
//!   not skip, when PostgreSQL is unreachable.

use std::path::PathBuf;

use crossdock_model::event::key_hash;
use crossdock_model::{ExceptionKind, ExceptionRecord, ExceptionStatus, Timestamp};
use crossdock_store::postgres::PgStore;
use crossdock_store::sqlite::SqliteStore;
use crossdock_store::{
    Ack, AtsRow, ChangeRow, CommitBatch, DeadLetterAction, DeadLetterFilter, DeadLetterStatus,
    EventRow, EventStatus, ExceptionFilter, ExceptionStatusChange, ItemStateRow, NewDeadLetter,
    OutboxKind, OutboxRow, PartitionSnapshot, PositionRow, ReservationRow, RunRow, SourceSeqRow,
    StepRow, Store, StoreError, StoredOutbox, TimerRow, TraceRows, VarianceRow, WorkflowFilter,
    WorkflowRow,
};

/// The partition count every store case migrates with.
const PARTITIONS: u32 = 4;

const DEFAULT_PG_URL: &str = "host=127.0.0.1 user=postgres dbname=test";

/// A fresh, empty database for one test, removed when dropped.
trait Fixture {
    fn new() -> Self
    where
        Self: Sized;
    /// A new connection to the database (not migrated).
    fn open(&self) -> Box<dyn Store>;
}

struct SqliteDb {
    path: PathBuf,
}

impl Fixture for SqliteDb {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "crossdock-store-test-{:016x}.db",
            fastrand::u64(..)
        ));
        SqliteDb { path }
    }

    fn open(&self) -> Box<dyn Store> {
        Box::new(SqliteStore::open(&self.path).expect("open SQLite store"))
    }
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

struct PgDb {
    url: String,
    schema: String,
}

impl Fixture for PgDb {
    fn new() -> Self {
        let url =
            std::env::var("CROSSDOCK_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string());
        PgDb {
            url,
            schema: format!("cd_test_{:016x}", fastrand::u64(..)),
        }
    }

    fn open(&self) -> Box<dyn Store> {
        match PgStore::connect(&self.url, Some(&self.schema)) {
            Ok(store) => Box::new(store),
            Err(e) => panic!(
                "PostgreSQL is required at {:?} (set CROSSDOCK_TEST_PG_URL): {e}",
                self.url
            ),
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        match ::postgres::Client::connect(&self.url, ::postgres::NoTls) {
            Ok(mut client) => {
                if let Err(e) = client.batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                    self.schema
                )) {
                    eprintln!("could not drop test schema {}: {e}", self.schema);
                }
            }
            Err(e) => eprintln!("could not connect to drop test schema {}: {e}", self.schema),
        }
    }
}

macro_rules! suite {
    ($module:ident, $fixture:ty) => {
        mod $module {
            use super::*;

            suite!(@store $fixture;
                case_commit_then_load,
                case_partitions_are_separate,
                case_failed_commit_duplicate_in_batch_writes_nothing,
                case_failed_commit_against_stored_writes_nothing,
                case_find_event,
                case_key_hashes,
                case_read_events_pages,
                case_events_naming_an_item,
                case_exceptions,
                case_timers,
                case_upserts_overwrite,
                case_event_status_releases_held,
                case_outbox_order,
                case_migrate_twice,
                case_empty_commit_is_noop,
                case_acks_remove_delivered_rows_and_keep_the_newest_value,
                case_park_moves_to_the_dlq_and_supersedes_older_letters,
                case_retry_and_discard_dead_letters,
                case_webhook_receipts_keep_the_first_answer,
                case_a_message_parked_again_reopens_its_record,
                case_control_numbers_move_forward_and_wrap,
                case_exception_status_changes_are_audited,
                case_workflows_keep_their_latest_state_and_history,
                case_journal_history_and_runs,
                case_trace_gathers_what_a_correlation_id_touched,
            );
            suite!(@fixture $fixture;
                case_reopen_keeps_data,
                case_second_connection_sees_commits,
                case_concurrent_writers,
                case_other_partition_count_is_refused,
            );
        }
    };
    (@store $fixture:ty; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let db = <$fixture>::new();
                let mut store = db.open();
                store.migrate(PARTITIONS).expect("migrate");
                super::$case(&mut *store);
            }
        )*
    };
    (@fixture $fixture:ty; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                super::$case(&<$fixture>::new());
            }
        )*
    };
}

suite!(sqlite, SqliteDb);
suite!(postgres, PgDb);

// ---------------------------------------------------------------------------------------------
// Rows

/// Values with the top bit set, to check that u64 columns round-trip bit-exactly.
const HIGH: u64 = 0x8000_0000_0000_0000;

fn event(partition: u32, seq: u64, source: &str, id: &str) -> EventRow {
    EventRow {
        partition,
        seq,
        source: source.to_string(),
        id: id.to_string(),
        ty: "crossdock.stock.received".to_string(),
        time_us: 1_700_000_000_000_000 + seq as i64,
        received_at_us: 1_700_000_000_500_000 + seq as i64,
        correlation_id: format!("corr-{id}"),
        payload_hash: HIGH | key_hash(source, id) >> 1,
        status: EventStatus::Applied,
        envelope: format!(
            r#"{{"specversion":"1.0","source":"{source}","id":"{id}","data":{{"qty":{seq}}}}}"#
        ),
    }
}

fn held(event: EventRow) -> EventRow {
    EventRow {
        status: EventStatus::Held,
        ..event
    }
}

fn position(partition: u32, item: &str, location: &str, lot: &str, on_hand: i64) -> PositionRow {
    PositionRow {
        partition,
        item: item.to_string(),
        location: location.to_string(),
        lot: lot.to_string(),
        on_hand,
        quarantined: 1,
        damaged: 2,
        returns_pending: 3,
        picked: 4,
        allocated: 5,
        reserved: 6,
        in_transit: 7,
        incoming: 8,
        safety_stock: -9,
        extra: if lot.is_empty() {
            String::new()
        } else {
            r#"{"count_mark":3}"#.to_string()
        },
        updated_seq: HIGH | on_hand as u64,
    }
}

fn item(partition: u32, item: &str, state: &str) -> ItemStateRow {
    ItemStateRow {
        partition,
        item: item.to_string(),
        state: state.to_string(),
    }
}

fn reservation(partition: u32, id: &str, status: &str, seq: u64) -> ReservationRow {
    ReservationRow {
        partition,
        id: id.to_string(),
        channel: "shopify".to_string(),
        status: status.to_string(),
        lines: r#"[{"item":"SKU-1","location":"DC1","qty":2}]"#.to_string(),
        request_hash: HIGH | seq,
        expires_at_us: 1_700_000_900_000_000,
        created_seq: seq,
        updated_seq: seq + 1,
    }
}

fn source_seq(partition: u32, source: &str, next_expected: u64) -> SourceSeqRow {
    SourceSeqRow {
        partition,
        source: source.to_string(),
        next_expected,
    }
}

fn timer(partition: u32, id: &str, due_at_us: i64) -> TimerRow {
    TimerRow {
        partition,
        id: id.to_string(),
        due_at_us,
        command: format!(r#"{{"type":"expire","id":"{id}"}}"#),
    }
}

fn outbox(partition: u32, endpoint: &str, key: &str, ledger_seq: u64, priority: u8) -> OutboxRow {
    OutboxRow {
        partition,
        endpoint: endpoint.to_string(),
        key: key.to_string(),
        ledger_seq,
        priority,
        kind: OutboxKind::Latest,
        payload: format!(r#"{{"key":"{key}","seq":{ledger_seq}}}"#),
        correlation_id: None,
        created_at_us: 1_700_000_000_000_000 + ledger_seq as i64,
    }
}

fn exception(id: &str, kind: ExceptionKind, at_us: i64) -> ExceptionRecord {
    ExceptionRecord {
        id: id.to_string(),
        kind,
        status: ExceptionStatus::Open,
        entity: format!("item:{id}"),
        correlation_id: None,
        reason: format!("reason for {id}"),
        raw: None,
        created_at: Timestamp::from_micros(at_us),
        updated_at: Timestamp::from_micros(at_us),
    }
}

/// A batch for `partition` touching every table.
fn full_batch(partition: u32) -> CommitBatch {
    let p = partition;
    let source = format!("wms-{p}");
    CommitBatch {
        partition,
        events: vec![
            event(p, 1, &source, &format!("e-{p}-1")),
            held(event(p, 2, &source, &format!("e-{p}-2"))),
            held(event(p, 3, &source, &format!("e-{p}-3"))),
        ],
        positions: vec![
            position(p, &format!("SKU-{p}"), "DC1", "", 10),
            position(p, &format!("SKU-{p}"), "DC1", "LOT-7", 20),
            position(p, &format!("SKU-{p}b"), "DC2", "", 30),
        ],
        items: vec![
            item(p, &format!("SKU-{p}"), r#"{"last_seq":3}"#),
            item(p, &format!("SKU-{p}b"), "{}"),
        ],
        reservations: vec![
            reservation(p, &format!("r-{p}-held"), "held", 1),
            reservation(p, &format!("r-{p}-committed"), "committed", 2),
            reservation(p, &format!("r-{p}-released"), "released", 3),
            reservation(p, &format!("r-{p}-expired"), "expired", 4),
        ],
        source_seqs: vec![source_seq(p, &source, 4), source_seq(p, "erp", HIGH | 9)],
        outbox: vec![outbox(p, "shopify", &format!("SKU-{p}"), 3, 0)],
        exceptions: vec![exception(
            &format!("ex-{p}"),
            ExceptionKind::SequenceGap,
            100,
        )],
        timers_set: vec![
            timer(p, &format!("t-{p}-a"), 500),
            timer(p, &format!("t-{p}-b"), 400),
        ],
        workflows: vec![
            workflow(p, &format!("SO-{p}"), "released", false),
            workflow(p, &format!("SO-{p}-done"), "closed", true),
        ],
        steps: vec![step(&format!("order:SO-{p}"), 0, "", "captured")],
        last_seq: 3,
        ..CommitBatch::default()
    }
}

fn workflow(partition: u32, id: &str, state: &str, is_final: bool) -> WorkflowRow {
    WorkflowRow {
        partition,
        key: format!("order:{id}"),
        kind: "order".into(),
        id: id.into(),
        state: state.into(),
        is_final,
        doc: format!(r#"{{"id":"{id}","state":"{state}"}}"#),
        updated_at_us: 1_000 + i64::from(partition),
        updated_seq: HIGH | 3,
    }
}

fn step(key: &str, n: u32, from: &str, to: &str) -> StepRow {
    StepRow {
        key: key.into(),
        n,
        from: from.into(),
        to: to.into(),
        at_us: 1_000 + i64::from(n),
        seq: HIGH | u64::from(n),
        cause: format!("wms-1/e-{n}"),
        correlation_id: "corr-1".into(),
        note: format!("step {n}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Assertions

fn sorted<T: Clone, K: Ord>(rows: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut rows = rows.to_vec();
    rows.sort_by_key(key);
    rows
}

/// Compares snapshots; only held events have a defined order, so the rest is compared as sets.
fn assert_snapshot(actual: &PartitionSnapshot, expected: &PartitionSnapshot) {
    let position_key = |p: &PositionRow| (p.item.clone(), p.location.clone(), p.lot.clone());
    assert_eq!(actual.last_seq, expected.last_seq, "last_seq");
    assert_eq!(
        sorted(&actual.positions, position_key),
        sorted(&expected.positions, position_key),
        "positions"
    );
    assert_eq!(
        sorted(&actual.items, |i| i.item.clone()),
        sorted(&expected.items, |i| i.item.clone()),
        "items"
    );
    assert_eq!(
        sorted(&actual.reservations, |r| r.id.clone()),
        sorted(&expected.reservations, |r| r.id.clone()),
        "reservations"
    );
    assert_eq!(
        sorted(&actual.source_seqs, |s| s.source.clone()),
        sorted(&expected.source_seqs, |s| s.source.clone()),
        "source_seqs"
    );
    assert_eq!(actual.held_events, expected.held_events, "held_events");
    assert_eq!(
        sorted(&actual.timers, |t| t.id.clone()),
        sorted(&expected.timers, |t| t.id.clone()),
        "timers"
    );
    assert_eq!(
        sorted(&actual.workflows, |w| w.key.clone()),
        sorted(&expected.workflows, |w| w.key.clone()),
        "workflows"
    );
}

/// What loading `partition` should give after committing `batch` to an empty store.
fn expected_snapshot(batch: &CommitBatch) -> PartitionSnapshot {
    PartitionSnapshot {
        last_seq: batch.last_seq,
        positions: batch.positions.clone(),
        items: batch.items.clone(),
        reservations: batch
            .reservations
            .iter()
            .filter(|r| r.status == "held" || r.status == "committed")
            .cloned()
            .collect(),
        source_seqs: batch.source_seqs.clone(),
        held_events: batch
            .events
            .iter()
            .filter(|e| e.status == EventStatus::Held)
            .cloned()
            .collect(),
        timers: batch.timers_set.clone(),
        workflows: batch
            .workflows
            .iter()
            .filter(|w| !w.is_final)
            .cloned()
            .collect(),
    }
}

fn all_exceptions(s: &mut dyn Store) -> Vec<ExceptionRecord> {
    let list = s
        .list_exceptions(&ExceptionFilter {
            limit: 1000,
            ..ExceptionFilter::default()
        })
        .unwrap();
    sorted(&list, |x| x.id.clone())
}

fn sorted_counts(s: &mut dyn Store) -> Vec<(&'static str, u64)> {
    let counts: Vec<_> = s
        .exception_counts()
        .unwrap()
        .into_iter()
        .map(|(k, n)| (k.as_str(), n))
        .collect();
    sorted(&counts, |c| c.0)
}

fn outbox_rows(s: &mut dyn Store, endpoint: Option<&str>, limit: u32) -> Vec<OutboxRow> {
    s.outbox(endpoint, limit)
        .unwrap()
        .into_iter()
        .map(|o| o.row)
        .collect()
}

fn assert_store_empty(s: &mut dyn Store) {
    for p in 0..PARTITIONS {
        assert_snapshot(&s.load_partition(p).unwrap(), &PartitionSnapshot::default());
        assert!(
            s.key_hashes(p).unwrap().is_empty(),
            "key hashes of partition {p}"
        );
        assert!(
            s.read_events(p, 0, 100).unwrap().is_empty(),
            "events of partition {p}"
        );
    }
    assert!(s.outbox(None, 100).unwrap().is_empty(), "outbox");
    assert!(all_exceptions(s).is_empty(), "exceptions");
    assert!(s.exception_counts().unwrap().is_empty(), "exception counts");
}

// ---------------------------------------------------------------------------------------------
// Cases over one connection (migrated with PARTITIONS)

fn case_commit_then_load(s: &mut dyn Store) {
    let batch = full_batch(1);
    s.commit(&batch).unwrap();

    let snapshot = s.load_partition(1).unwrap();
    assert_snapshot(&snapshot, &expected_snapshot(&batch));
    assert_eq!(
        snapshot
            .held_events
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(
        snapshot.reservations.len(),
        2,
        "only held and committed reservations are live"
    );

    assert_snapshot(&s.load_partition(0).unwrap(), &PartitionSnapshot::default());
    assert_eq!(outbox_rows(s, None, 10), batch.outbox);
    assert_eq!(all_exceptions(s), batch.exceptions);
}

fn case_partitions_are_separate(s: &mut dyn Store) {
    let mut b0 = full_batch(0);
    b0.source_seqs.push(source_seq(0, "shared", 5));
    b0.last_seq = 30;
    let mut b1 = full_batch(1);
    b1.source_seqs.push(source_seq(1, "shared", 7));
    b1.last_seq = 10;
    s.commit(&b0).unwrap();
    s.commit(&b1).unwrap();

    assert_snapshot(&s.load_partition(0).unwrap(), &expected_snapshot(&b0));
    assert_snapshot(&s.load_partition(1).unwrap(), &expected_snapshot(&b1));
    assert_snapshot(&s.load_partition(2).unwrap(), &PartitionSnapshot::default());
    assert_eq!(s.read_events(0, 0, 100).unwrap(), b0.events);
    assert_eq!(s.read_events(1, 0, 100).unwrap(), b1.events);
    assert_eq!(s.key_hashes(0).unwrap().len(), b0.events.len());
}

fn case_failed_commit_duplicate_in_batch_writes_nothing(s: &mut dyn Store) {
    let mut batch = full_batch(0);
    let mut duplicate = event(0, 4, "wms-0", "e-0-1");
    duplicate.payload_hash = 1;
    batch.events.push(duplicate);
    batch.outbox.push(outbox(0, "amazon", "SKU-0", 4, 1));
    batch.last_seq = 4;
    assert!(
        s.commit(&batch).is_err(),
        "a repeated (source, id) in one batch must fail"
    );
    assert_store_empty(s);

    // The same holds for a repeated log position.
    let mut batch = full_batch(0);
    batch.events.push(event(0, 1, "wms-0", "e-0-other"));
    assert!(
        s.commit(&batch).is_err(),
        "a repeated (partition, seq) must fail"
    );
    assert_store_empty(s);

    // The store is still usable.
    let batch = full_batch(0);
    s.commit(&batch).unwrap();
    assert_snapshot(&s.load_partition(0).unwrap(), &expected_snapshot(&batch));
}

fn case_failed_commit_against_stored_writes_nothing(s: &mut dyn Store) {
    let first = full_batch(2);
    s.commit(&first).unwrap();
    let before = s.load_partition(2).unwrap();
    let events_before = s.read_events(2, 0, 100).unwrap();
    let outbox_before = s.outbox(None, 100).unwrap();
    let exceptions_before = all_exceptions(s);

    let second = CommitBatch {
        partition: 2,
        events: vec![event(2, 4, "wms-2", "e-2-4"), event(2, 5, "wms-2", "e-2-1")],
        event_status: vec![(2, 2, EventStatus::Applied)],
        positions: vec![
            position(2, "SKU-2", "DC1", "", 99),
            position(2, "SKU-new", "DC1", "", 1),
        ],
        items: vec![item(2, "SKU-2", r#"{"changed":true}"#)],
        reservations: vec![
            reservation(2, "r-2-held", "released", 5),
            reservation(2, "r-2-new", "held", 5),
        ],
        source_seqs: vec![source_seq(2, "wms-2", 6)],
        outbox: vec![outbox(2, "shopify", "SKU-2", 5, 0)],
        exceptions: vec![exception("ex-new", ExceptionKind::UnknownItem, 200)],
        exception_status: vec![ExceptionStatusChange {
            id: "ex-2".to_string(),
            status: ExceptionStatus::Resolved,
            at_us: 300,
            actor: "ops".to_string(),
            note: "done".to_string(),
        }],
        timers_set: vec![timer(2, "t-2-new", 900)],
        timers_done: vec!["t-2-a".to_string()],
        workflows: vec![workflow(2, "SO-2", "cancelled", true)],
        steps: vec![step("order:SO-2", 1, "released", "cancelled")],
        changes: vec![change(2, 5, 0, "SKU-2", 1_000, 2_000, 3)],
        ats: vec![ats_row("SKU-2", "shopify", 2_000, 5, 9)],
        last_seq: 5,
    };
    assert!(
        s.commit(&second).is_err(),
        "an event whose (source, id) is already logged must fail"
    );
    assert_eq!(
        s.find_workflow("order:SO-2")
            .unwrap()
            .expect("from the first batch")
            .0
            .state,
        "released",
        "a failed commit changes no workflow"
    );

    assert_snapshot(&s.load_partition(2).unwrap(), &before);
    assert_eq!(s.read_events(2, 0, 100).unwrap(), events_before);
    assert_eq!(s.outbox(None, 100).unwrap(), outbox_before);
    assert_eq!(all_exceptions(s), exceptions_before);
    assert_eq!(
        s.find_reservation("r-2-held").unwrap().unwrap().status,
        "held"
    );
    assert!(s.find_reservation("r-2-new").unwrap().is_none());
    assert!(s.find_event("wms-2", "e-2-4").unwrap().is_none());
}

fn case_find_event(s: &mut dyn Store) {
    let mut logged = event(3, HIGH | 5, "wms-east", "e-17");
    logged.payload_hash = u64::MAX - 1;
    logged.status = EventStatus::Quarantined;
    logged.envelope = r#"{"note":"ünïcødé ✓ and 'quotes' \"too\""}"#.to_string();
    let batch = CommitBatch {
        partition: 3,
        events: vec![logged.clone(), event(3, 1, "wms-west", "e-17")],
        last_seq: 1,
        ..CommitBatch::default()
    };
    s.commit(&batch).unwrap();

    assert_eq!(s.find_event("wms-east", "e-17").unwrap(), Some(logged));
    assert_eq!(
        s.find_event("wms-west", "e-17").unwrap(),
        Some(batch.events[1].clone())
    );
    assert_eq!(s.find_event("wms-east", "e-18").unwrap(), None);
    assert_eq!(s.find_event("wms-north", "e-17").unwrap(), None);
    assert_eq!(s.find_event("", "").unwrap(), None);
}

fn case_key_hashes(s: &mut dyn Store) {
    let mut seq = 0;
    for chunk in 0..3 {
        let events: Vec<_> = (0..20)
            .map(|i| {
                seq += 1;
                event(
                    2,
                    seq,
                    &format!("src-{}", i % 3),
                    &format!("id-{chunk}-{i}"),
                )
            })
            .collect();
        s.commit(&CommitBatch {
            partition: 2,
            events,
            last_seq: seq,
            ..CommitBatch::default()
        })
        .unwrap();
    }
    s.commit(&CommitBatch {
        partition: 3,
        events: vec![event(3, 1, "other", "x")],
        last_seq: 1,
        ..CommitBatch::default()
    })
    .unwrap();

    let expected: Vec<u64> = s
        .read_events(2, 0, 1000)
        .unwrap()
        .iter()
        .map(|e| key_hash(&e.source, &e.id))
        .collect();
    assert_eq!(expected.len(), 60);
    assert_eq!(
        sorted(&s.key_hashes(2).unwrap(), |h| *h),
        sorted(&expected, |h| *h)
    );
    assert_eq!(s.key_hashes(3).unwrap(), [key_hash("other", "x")]);
    assert!(s.key_hashes(0).unwrap().is_empty());
}

fn case_read_events_pages(s: &mut dyn Store) {
    let mut expected = Vec::new();
    for (first, count) in [(1, 10), (11, 10), (21, 5)] {
        let events: Vec<_> = (first..first + count)
            .map(|seq| event(0, seq, "wms", &format!("e-{seq}")))
            .collect();
        expected.extend(events.iter().cloned());
        let other = vec![event(1, first, "wms", &format!("other-{first}"))];
        s.commit(&CommitBatch {
            partition: 0,
            events,
            last_seq: first + count - 1,
            ..CommitBatch::default()
        })
        .unwrap();
        s.commit(&CommitBatch {
            partition: 1,
            events: other,
            last_seq: first,
            ..CommitBatch::default()
        })
        .unwrap();
    }

    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = s.read_events(0, after, 10).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().seq;
        pages.push(page);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(pages.concat(), expected);
    assert_eq!(s.read_events(0, 7, 3).unwrap(), expected[7..10]);
    assert!(s.read_events(0, 25, 10).unwrap().is_empty());
    assert!(s.read_events(0, 0, 0).unwrap().is_empty());
    assert_eq!(s.read_events(1, 0, 100).unwrap().len(), 3);
}

fn case_events_naming_an_item(s: &mut dyn Store) {
    let named = |seq: u64, data: &str| EventRow {
        envelope: format!(r#"{{"specversion":"1.0","id":"n-{seq}","data":{data}}}"#),
        ..event(0, seq, "wms", &format!("n-{seq}"))
    };
    let events = vec![
        named(1, r#"{"item":"SKU-1","qty":1}"#),
        named(2, r#"{"item":"SKU-10","qty":1}"#),
        named(
            3,
            r#"{"lines":[{"item":"SKU-2","qty":1},{"item":"SKU-1","qty":2}]}"#,
        ),
        named(4, r#"{"item":"sku-1","qty":1}"#),
        named(5, r#"{"reservation":"r-1"}"#),
        named(6, r#"{"item":"SKU-1","qty":3}"#),
        named(7, r#"{"item":"a\"b","qty":1}"#),
    ];
    s.commit(&CommitBatch {
        partition: 0,
        events,
        last_seq: 7,
        ..CommitBatch::default()
    })
    .unwrap();
    s.commit(&CommitBatch {
        partition: 1,
        events: vec![EventRow {
            partition: 1,
            id: "p1-1".into(),
            ..named(1, r#"{"item":"SKU-1"}"#)
        }],
        last_seq: 1,
        ..CommitBatch::default()
    })
    .unwrap();
    let seqs = |rows: Vec<EventRow>| rows.iter().map(|r| r.seq).collect::<Vec<_>>();
    // Newest first; not SKU-10, not another case, not another partition.
    assert_eq!(seqs(s.events_naming(0, "SKU-1", 0, 10).unwrap()), [6, 3, 1]);
    assert_eq!(seqs(s.events_naming(0, "SKU-1", 0, 2).unwrap()), [6, 3]);
    assert_eq!(
        seqs(s.events_naming(0, "SKU-1", 2, 10).unwrap()),
        [6, 3],
        "from_seq bounds the rows read"
    );
    assert_eq!(seqs(s.events_naming(0, "sku-1", 0, 10).unwrap()), [4]);
    assert_eq!(seqs(s.events_naming(0, "a\"b", 0, 10).unwrap()), [7]);
    assert_eq!(seqs(s.events_naming(1, "SKU-1", 0, 10).unwrap()), [1]);
    assert!(s.events_naming(0, "SKU-9", 0, 10).unwrap().is_empty());
    let row = &s.events_naming(0, "SKU-2", 0, 10).unwrap()[0];
    assert_eq!((row.seq, row.id.as_str()), (3, "n-3"));
}

fn case_exceptions(s: &mut dyn Store) {
    let oversell = exception("ex-oversell", ExceptionKind::OversellRisk, 100);
    let unknown = exception("ex-unknown", ExceptionKind::UnknownItem, 200);
    let acknowledged = ExceptionRecord {
        status: ExceptionStatus::Acknowledged,
        correlation_id: Some("corr-9".to_string()),
        raw: Some(r#"{"sku":"???"}"#.to_string()),
        ..exception("ex-acked", ExceptionKind::UnknownItem, 300)
    };
    let resolved = ExceptionRecord {
        status: ExceptionStatus::Resolved,
        ..exception("ex-resolved", ExceptionKind::DeliveryFailed, 50)
    };
    s.commit(&CommitBatch {
        partition: 0,
        exceptions: vec![
            oversell.clone(),
            unknown.clone(),
            acknowledged.clone(),
            resolved.clone(),
        ],
        ..CommitBatch::default()
    })
    .unwrap();
    assert_eq!(
        all_exceptions(s),
        sorted(
            &[
                oversell.clone(),
                unknown.clone(),
                acknowledged.clone(),
                resolved.clone()
            ],
            |x| x.id.clone()
        )
    );
    assert_eq!(
        sorted_counts(s),
        [("oversell_risk", 1), ("unknown_item", 2)]
    );

    // A record is inserted once; a repeat (even within one batch) leaves the first as it is.
    let repeat = ExceptionRecord {
        reason: "another reason".to_string(),
        ..oversell.clone()
    };
    let fresh = exception("ex-fresh", ExceptionKind::SequenceGap, 400);
    let fresh_repeat = ExceptionRecord {
        reason: "second".to_string(),
        ..fresh.clone()
    };
    s.commit(&CommitBatch {
        partition: 0,
        exceptions: vec![repeat, fresh.clone(), fresh_repeat],
        ..CommitBatch::default()
    })
    .unwrap();
    let list = all_exceptions(s);
    assert_eq!(list.iter().find(|x| x.id == oversell.id), Some(&oversell));
    assert_eq!(list.iter().find(|x| x.id == fresh.id), Some(&fresh));

    // Status changes, including one for a record opened in the same batch.
    let same_batch = exception("ex-same-batch", ExceptionKind::OversellRisk, 500);
    let change = |id: &str, status, at_us| ExceptionStatusChange {
        id: id.to_string(),
        status,
        at_us,
        actor: "ops@example.com".to_string(),
        note: "checked".to_string(),
    };
    s.commit(&CommitBatch {
        partition: 0,
        exceptions: vec![same_batch.clone()],
        exception_status: vec![
            change(&unknown.id, ExceptionStatus::Resolved, 600),
            change(&same_batch.id, ExceptionStatus::Resolved, 700),
            change("ex-missing", ExceptionStatus::Resolved, 800),
        ],
        ..CommitBatch::default()
    })
    .unwrap();
    let unknown_now = ExceptionRecord {
        status: ExceptionStatus::Resolved,
        updated_at: Timestamp::from_micros(600),
        ..unknown.clone()
    };
    let same_batch_now = ExceptionRecord {
        status: ExceptionStatus::Resolved,
        updated_at: Timestamp::from_micros(700),
        ..same_batch.clone()
    };
    let list = all_exceptions(s);
    assert_eq!(list.len(), 6);
    assert_eq!(list.iter().find(|x| x.id == unknown.id), Some(&unknown_now));
    assert_eq!(
        list.iter().find(|x| x.id == same_batch.id),
        Some(&same_batch_now)
    );
    assert_eq!(
        sorted_counts(s),
        [
            ("oversell_risk", 1),
            ("sequence_gap", 1),
            ("unknown_item", 1)
        ]
    );

    // Filters.
    let ids = |s: &mut dyn Store, kind, status, limit| {
        let list = s
            .list_exceptions(&ExceptionFilter {
                kind,
                status,
                limit,
            })
            .unwrap();
        sorted(&list.into_iter().map(|x| x.id).collect::<Vec<_>>(), |id| {
            id.clone()
        })
    };
    assert_eq!(
        ids(s, Some(ExceptionKind::UnknownItem), None, 100),
        ["ex-acked", "ex-unknown"]
    );
    assert_eq!(
        ids(s, None, Some(ExceptionStatus::Open), 100),
        ["ex-fresh", "ex-oversell"]
    );
    assert_eq!(
        ids(s, None, Some(ExceptionStatus::Resolved), 100),
        ["ex-resolved", "ex-same-batch", "ex-unknown"]
    );
    assert_eq!(
        ids(
            s,
            Some(ExceptionKind::UnknownItem),
            Some(ExceptionStatus::Acknowledged),
            100
        ),
        ["ex-acked"]
    );
    assert!(ids(s, Some(ExceptionKind::AsnMismatch), None, 100).is_empty());
    assert_eq!(ids(s, None, None, 2).len(), 2);
    assert!(ids(s, None, None, 0).is_empty());
}

fn case_timers(s: &mut dyn Store) {
    s.commit(&CommitBatch {
        partition: 0,
        timers_set: vec![
            timer(0, "t1", 100),
            timer(0, "t2", 200),
            timer(1, "t3", 300),
        ],
        ..CommitBatch::default()
    })
    .unwrap();
    assert_eq!(
        sorted(&s.load_partition(0).unwrap().timers, |t| t.id.clone()),
        [timer(0, "t1", 100), timer(0, "t2", 200)]
    );
    assert_eq!(s.load_partition(1).unwrap().timers, [timer(1, "t3", 300)]);

    // Setting an existing timer moves it; done deletes; an unknown id is harmless.
    let moved = TimerRow {
        command: "moved".to_string(),
        ..timer(0, "t2", 250)
    };
    s.commit(&CommitBatch {
        partition: 0,
        timers_set: vec![moved.clone(), timer(0, "t4", 50)],
        timers_done: vec!["t1".to_string(), "t4".to_string(), "never-set".to_string()],
        ..CommitBatch::default()
    })
    .unwrap();
    assert_eq!(s.load_partition(0).unwrap().timers, [moved]);

    s.commit(&CommitBatch {
        partition: 0,
        timers_done: vec!["t2".to_string()],
        ..CommitBatch::default()
    })
    .unwrap();
    assert!(s.load_partition(0).unwrap().timers.is_empty());
    assert_eq!(s.load_partition(1).unwrap().timers.len(), 1);
}

fn case_upserts_overwrite(s: &mut dyn Store) {
    let first = full_batch(1);
    s.commit(&first).unwrap();

    let second = CommitBatch {
        partition: 1,
        positions: vec![
            position(1, "SKU-1", "DC1", "", 11),
            // The same key twice in one batch: the last one wins.
            position(1, "SKU-1", "DC1", "LOT-7", 21),
            position(1, "SKU-1", "DC1", "LOT-7", 22),
        ],
        items: vec![item(1, "SKU-1", "{\"v\":1}"), item(1, "SKU-1", "{\"v\":2}")],
        reservations: vec![
            reservation(1, "r-1-held", "committed", 7),
            reservation(1, "r-1-committed", "released", 8),
            reservation(1, "r-1-expired", "held", 9),
        ],
        source_seqs: vec![source_seq(1, "wms-1", 10), source_seq(1, "wms-1", 11)],
        last_seq: 8,
        ..CommitBatch::default()
    };
    s.commit(&second).unwrap();

    let expected = PartitionSnapshot {
        last_seq: 8,
        positions: vec![
            position(1, "SKU-1", "DC1", "", 11),
            position(1, "SKU-1", "DC1", "LOT-7", 22),
            position(1, "SKU-1b", "DC2", "", 30),
        ],
        items: vec![item(1, "SKU-1", "{\"v\":2}"), item(1, "SKU-1b", "{}")],
        reservations: vec![
            reservation(1, "r-1-held", "committed", 7),
            reservation(1, "r-1-expired", "held", 9),
        ],
        source_seqs: vec![source_seq(1, "wms-1", 11), source_seq(1, "erp", HIGH | 9)],
        held_events: first.events[1..].to_vec(),
        timers: first.timers_set.clone(),
        workflows: vec![workflow(1, "SO-1", "released", false)],
    };
    assert_snapshot(&s.load_partition(1).unwrap(), &expected);
    assert_eq!(
        s.find_reservation("r-1-committed").unwrap(),
        Some(reservation(1, "r-1-committed", "released", 8))
    );
    assert_eq!(
        s.find_reservation("r-1-released").unwrap(),
        Some(first.reservations[2].clone())
    );
    assert_eq!(s.find_reservation("r-missing").unwrap(), None);
}

fn case_event_status_releases_held(s: &mut dyn Store) {
    let e1 = held(event(0, 1, "wms", "e1"));
    let e2 = held(event(0, 2, "wms", "e2"));
    let e3 = held(event(0, 3, "wms", "e3"));
    s.commit(&CommitBatch {
        partition: 0,
        events: vec![e1.clone(), e2.clone()],
        last_seq: 2,
        ..CommitBatch::default()
    })
    .unwrap();
    assert_eq!(
        s.load_partition(0).unwrap().held_events,
        [e1.clone(), e2.clone()]
    );

    // e1 released as applied, e3 logged held and released (quarantined) in the same batch.
    s.commit(&CommitBatch {
        partition: 0,
        events: vec![e3.clone()],
        event_status: vec![
            (0, 1, EventStatus::Applied),
            (0, 3, EventStatus::Quarantined),
        ],
        last_seq: 3,
        ..CommitBatch::default()
    })
    .unwrap();
    let snapshot = s.load_partition(0).unwrap();
    assert_eq!(snapshot.held_events, [e2]);
    assert_eq!(snapshot.last_seq, 3);
    assert_eq!(
        s.find_event("wms", "e1").unwrap().unwrap().status,
        EventStatus::Applied
    );
    assert_eq!(
        s.find_event("wms", "e3").unwrap().unwrap().status,
        EventStatus::Quarantined
    );
}

fn case_outbox_order(s: &mut dyn Store) {
    let a1 = outbox(0, "a", "SKU-1", 1, 2);
    let b1 = outbox(0, "b", "SKU-1", 1, 1);
    let a2 = outbox(0, "a", "SKU-2", 2, 0);
    let a3 = outbox(1, "a", "SKU-3", HIGH | 3, 1);
    let b2 = outbox(1, "b", "SKU-3", 3, 2);
    s.commit(&CommitBatch {
        partition: 0,
        outbox: vec![a1.clone(), b1.clone(), a2.clone()],
        ..CommitBatch::default()
    })
    .unwrap();
    s.commit(&CommitBatch {
        partition: 1,
        outbox: vec![a3.clone(), b2.clone()],
        ..CommitBatch::default()
    })
    .unwrap();

    let all: Vec<StoredOutbox> = s.outbox(None, 100).unwrap();
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase: {all:?}"
    );
    assert_eq!(
        outbox_rows(s, None, 100),
        [a1.clone(), b1.clone(), a2.clone(), a3.clone(), b2.clone()]
    );
    assert_eq!(outbox_rows(s, Some("a"), 100), [a1.clone(), a2.clone(), a3]);
    assert_eq!(outbox_rows(s, Some("a"), 2), [a1, a2]);
    assert_eq!(outbox_rows(s, Some("b"), 100), [b1, b2]);
    assert!(outbox_rows(s, Some("c"), 100).is_empty());
    assert_eq!(outbox_rows(s, None, 3).len(), 3);
}

fn case_migrate_twice(s: &mut dyn Store) {
    s.migrate(PARTITIONS).unwrap();
    s.commit(&full_batch(0)).unwrap();
    s.migrate(PARTITIONS).unwrap();
    match s.migrate(PARTITIONS + 1) {
        Err(StoreError::Config(message)) => {
            assert!(message.contains(&PARTITIONS.to_string()), "{message}");
            assert!(message.contains(&(PARTITIONS + 1).to_string()), "{message}");
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
    // The refusal changed nothing.
    s.migrate(PARTITIONS).unwrap();
    assert_snapshot(
        &s.load_partition(0).unwrap(),
        &expected_snapshot(&full_batch(0)),
    );
}

fn case_empty_commit_is_noop(s: &mut dyn Store) {
    let batch = full_batch(0);
    s.commit(&batch).unwrap();
    s.commit(&CommitBatch {
        partition: 0,
        last_seq: 0,
        ..CommitBatch::default()
    })
    .unwrap();
    assert_eq!(s.load_partition(0).unwrap().last_seq, batch.last_seq);
}

// ---------------------------------------------------------------------------------------------
// Cases over several connections

fn case_reopen_keeps_data(db: &dyn Fixture) {
    let batches = [full_batch(0), full_batch(3)];
    {
        let mut s = db.open();
        s.migrate(PARTITIONS).unwrap();
        for batch in &batches {
            s.commit(batch).unwrap();
        }
    }
    let mut s = db.open();
    s.migrate(PARTITIONS).unwrap();
    for batch in &batches {
        assert_snapshot(
            &s.load_partition(batch.partition).unwrap(),
            &expected_snapshot(batch),
        );
        assert_eq!(
            s.read_events(batch.partition, 0, 100).unwrap(),
            batch.events
        );
        let first = &batch.events[0];
        assert_eq!(
            s.find_event(&first.source, &first.id).unwrap().as_ref(),
            Some(first)
        );
    }
    assert_eq!(
        outbox_rows(&mut *s, None, 100),
        [batches[0].outbox.clone(), batches[1].outbox.clone()].concat()
    );
    assert_eq!(all_exceptions(&mut *s).len(), 2);
}

fn case_second_connection_sees_commits(db: &dyn Fixture) {
    let mut writer = db.open();
    writer.migrate(PARTITIONS).unwrap();
    let mut reader = db.open();
    reader.migrate(PARTITIONS).unwrap();
    assert_snapshot(
        &reader.load_partition(2).unwrap(),
        &PartitionSnapshot::default(),
    );

    let batch = full_batch(2);
    writer.commit(&batch).unwrap();
    assert_snapshot(
        &reader.load_partition(2).unwrap(),
        &expected_snapshot(&batch),
    );
    assert_eq!(
        reader.find_reservation("r-2-held").unwrap(),
        Some(batch.reservations[0].clone())
    );
}

fn case_concurrent_writers(db: &dyn Fixture) {
    const BATCHES: u64 = 20;
    const PER_BATCH: u64 = 50;
    let mut reader = db.open();
    reader.migrate(PARTITIONS).unwrap();
    let writers: Vec<_> = (0..2u32)
        .map(|p| {
            let mut s = db.open();
            s.migrate(PARTITIONS).unwrap();
            std::thread::spawn(move || {
                for b in 0..BATCHES {
                    let events = (1..=PER_BATCH)
                        .map(|i| {
                            let seq = b * PER_BATCH + i;
                            event(p, seq, "wms", &format!("p{p}-{seq}"))
                        })
                        .collect();
                    let batch = CommitBatch {
                        partition: p,
                        events,
                        positions: vec![position(p, &format!("SKU-{p}"), "DC1", "", b as i64)],
                        outbox: vec![outbox(p, "shopify", &format!("SKU-{p}"), b, 2)],
                        last_seq: (b + 1) * PER_BATCH,
                        ..CommitBatch::default()
                    };
                    s.commit(&batch).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    for p in 0..2 {
        let snapshot = reader.load_partition(p).unwrap();
        assert_eq!(snapshot.last_seq, BATCHES * PER_BATCH);
        assert_eq!(
            snapshot.positions,
            [position(
                p,
                &format!("SKU-{p}"),
                "DC1",
                "",
                BATCHES as i64 - 1
            )]
        );
        let events = reader.read_events(p, 0, 10_000).unwrap();
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=BATCHES * PER_BATCH).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        reader.outbox(None, 1000).unwrap().len(),
        2 * BATCHES as usize
    );
}

fn case_other_partition_count_is_refused(db: &dyn Fixture) {
    let mut first = db.open();
    first.migrate(2).unwrap();
    let mut second = db.open();
    assert!(matches!(second.migrate(3), Err(StoreError::Config(_))));
    second.migrate(2).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Delivery: acks, the dead-letter queue, the audit log

fn commit_outbox(s: &mut dyn Store, rows: Vec<OutboxRow>) {
    let batch = CommitBatch {
        partition: 0,
        outbox: rows,
        last_seq: 1,
        ..CommitBatch::default()
    };
    s.commit(&batch).unwrap();
}

fn ordered(endpoint: &str, key: &str, ledger_seq: u64) -> OutboxRow {
    OutboxRow {
        kind: OutboxKind::Ordered,
        correlation_id: Some(format!("corr-{ledger_seq}")),
        ..outbox(0, endpoint, key, ledger_seq, 2)
    }
}

fn latest_ack(key: &str, ledger_seq: u64, value: i64) -> Ack {
    Ack {
        key: key.to_string(),
        kind: OutboxKind::Latest,
        ledger_seq,
        delivered: true,
        value: Some(value),
        correlation_id: None,
    }
}

fn letter(row: OutboxRow, at_us: i64) -> NewDeadLetter {
    let id = format!(
        "delivery_failed:{}:{}:{}",
        row.endpoint, row.key, row.ledger_seq
    );
    NewDeadLetter {
        row,
        reason: "the target refused it".into(),
        attempts: 3,
        last_status: Some(422),
        last_response: r#"{"error":"no such item"}"#.into(),
        exception: exception(&id, ExceptionKind::DeliveryFailed, at_us),
    }
}

fn parked(endpoint: Option<&str>) -> DeadLetterFilter {
    DeadLetterFilter {
        endpoint: endpoint.map(str::to_string),
        status: Some(DeadLetterStatus::Parked),
        limit: 100,
        ..DeadLetterFilter::default()
    }
}

fn case_acks_remove_delivered_rows_and_keep_the_newest_value(s: &mut dyn Store) {
    commit_outbox(
        s,
        vec![
            outbox(0, "shop", "A", 5, 2),
            outbox(0, "shop", "A", 7, 2),
            outbox(0, "shop", "A", 9, 0),
            outbox(0, "shop", "B", 6, 1),
            outbox(0, "other", "A", 5, 2),
            ordered("shop", "doc", 10),
            ordered("shop", "doc", 11),
        ],
    );
    let backlog = s.lane_backlog("shop").unwrap();
    assert_eq!(backlog.len(), 6, "only this endpoint's rows");
    assert_eq!(backlog[5].kind, OutboxKind::Ordered);
    assert_eq!(backlog[5].correlation_id.as_deref(), Some("corr-11"));

    let doc = Ack {
        key: "doc".into(),
        kind: OutboxKind::Ordered,
        ledger_seq: 10,
        delivered: true,
        value: None,
        correlation_id: Some("corr-11".into()),
    };
    s.record_acks("shop", &[latest_ack("A", 7, 40), doc], 100)
        .unwrap();
    let left: Vec<(String, u64)> = s
        .lane_backlog("shop")
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.ledger_seq))
        .collect();
    assert_eq!(
        left,
        [
            ("A".to_string(), 9),
            ("B".to_string(), 6),
            ("doc".to_string(), 11)
        ],
        "a latest ack removes its key up to its sequence; an ordered ack removes only itself"
    );
    assert_eq!(
        s.lane_backlog("other").unwrap().len(),
        1,
        "other endpoints untouched"
    );

    // An ack from an older sequence never replaces the newer value recorded.
    s.record_acks("shop", &[latest_ack("A", 9, 38)], 200)
        .unwrap();
    s.record_acks("shop", &[latest_ack("A", 8, 39)], 300)
        .unwrap();
    let sent = s.sent_values("shop").unwrap();
    assert_eq!(
        sent.len(),
        1,
        "only delivered latest values are recorded: {sent:?}"
    );
    assert_eq!(
        (sent[0].ledger_seq, sent[0].value, sent[0].sent_at_us),
        (9, Some(38), 200)
    );
    assert!(s.sent_values("other").unwrap().is_empty());
}

fn case_park_moves_to_the_dlq_and_supersedes_older_letters(s: &mut dyn Store) {
    commit_outbox(
        s,
        vec![
            outbox(0, "shop", "A", 5, 2),
            outbox(0, "shop", "A", 6, 2),
            ordered("shop", "doc", 7),
        ],
    );
    s.park(&[letter(outbox(0, "shop", "A", 5, 2), 1_000)])
        .unwrap();
    let keys: Vec<u64> = s
        .lane_backlog("shop")
        .unwrap()
        .iter()
        .map(|r| r.ledger_seq)
        .collect();
    assert_eq!(
        keys,
        [6, 7],
        "the parked row left the outbox, newer ones stayed"
    );

    s.park(&[
        letter(outbox(0, "shop", "A", 6, 2), 2_000),
        letter(ordered("shop", "doc", 7), 2_000),
    ])
    .unwrap();
    assert!(s.lane_backlog("shop").unwrap().is_empty());
    let all = s
        .dead_letters(&DeadLetterFilter {
            limit: 100,
            ..DeadLetterFilter::default()
        })
        .unwrap();
    let status: Vec<(String, u64, DeadLetterStatus)> = all
        .iter()
        .map(|l| (l.row.key.clone(), l.row.ledger_seq, l.status))
        .collect();
    assert_eq!(
        status,
        [
            ("A".to_string(), 5, DeadLetterStatus::Superseded),
            ("A".to_string(), 6, DeadLetterStatus::Parked),
            ("doc".to_string(), 7, DeadLetterStatus::Parked),
        ]
    );
    let doc = &all[2];
    assert_eq!(doc.row.kind, OutboxKind::Ordered);
    assert_eq!((doc.attempts, doc.last_status), (3, Some(422)));
    assert_eq!(doc.last_response, r#"{"error":"no such item"}"#);
    assert_eq!(doc.row.correlation_id.as_deref(), Some("corr-7"));
    assert_eq!(s.dead_letter_counts().unwrap(), [("shop".to_string(), 2)]);

    let exceptions = all_exceptions(s);
    assert_eq!(
        exceptions.len(),
        3,
        "one delivery_failed record per parked message"
    );
    assert!(
        exceptions
            .iter()
            .all(|x| x.kind == ExceptionKind::DeliveryFailed)
    );
    let superseded = exceptions
        .iter()
        .find(|x| x.id == "delivery_failed:shop:A:5")
        .unwrap();
    assert_eq!(
        superseded.status,
        ExceptionStatus::Resolved,
        "{superseded:?}"
    );
    assert_eq!(
        exceptions
            .iter()
            .filter(|x| x.status == ExceptionStatus::Open)
            .count(),
        2,
        "the parked letters' records stay open"
    );
}

fn case_retry_and_discard_dead_letters(s: &mut dyn Store) {
    commit_outbox(
        s,
        vec![outbox(0, "shop", "A", 5, 2), outbox(0, "shop", "B", 6, 1)],
    );
    commit_outbox(s, vec![outbox(0, "hook", "C", 7, 2)]);
    s.park(&[
        letter(outbox(0, "shop", "A", 5, 2), 1_000),
        letter(outbox(0, "shop", "B", 6, 1), 1_000),
        letter(outbox(0, "hook", "C", 7, 2), 1_000),
    ])
    .unwrap();
    let ids: Vec<i64> = s
        .dead_letters(&parked(None))
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids.len(), 3);

    let retried = s
        .act_on_dead_letters(
            &DeadLetterFilter {
                ids: Some(vec![ids[0]]),
                limit: 100,
                ..DeadLetterFilter::default()
            },
            DeadLetterAction::Retry,
            "ops@example.com",
            "item created on the channel",
            5_000,
        )
        .unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].status, DeadLetterStatus::Retried);
    assert_eq!(retried[0].actor, "ops@example.com");
    let back = s.lane_backlog("shop").unwrap();
    assert_eq!(back.len(), 1, "a retried letter is back in the outbox");
    assert_eq!((back[0].key.as_str(), back[0].ledger_seq), ("A", 5));

    // By filter: everything parked for one endpoint.
    let discarded = s
        .act_on_dead_letters(
            &parked(Some("hook")),
            DeadLetterAction::Discard,
            "ops",
            "gone",
            6_000,
        )
        .unwrap();
    assert_eq!(discarded.len(), 1);
    assert_eq!(discarded[0].row.key, "C");
    assert!(
        s.lane_backlog("hook").unwrap().is_empty(),
        "discard does not requeue"
    );

    // Acting again on letters no longer parked changes nothing.
    let again = s
        .act_on_dead_letters(
            &DeadLetterFilter {
                ids: Some(ids.clone()),
                limit: 100,
                ..DeadLetterFilter::default()
            },
            DeadLetterAction::Discard,
            "ops",
            "again",
            7_000,
        )
        .unwrap();
    assert_eq!(again.len(), 1, "only B was still parked");
    assert_eq!(again[0].row.key, "B");
    assert!(s.dead_letters(&parked(None)).unwrap().is_empty());

    let statuses: Vec<ExceptionStatus> = {
        let mut x = all_exceptions(s);
        x.sort_by(|a, b| a.id.cmp(&b.id));
        x.into_iter().map(|x| x.status).collect()
    };
    assert_eq!(
        statuses,
        [
            ExceptionStatus::Discarded,
            ExceptionStatus::Replayed,
            ExceptionStatus::Discarded
        ],
        "hook:C discarded, shop:A replayed, shop:B discarded"
    );
    let audit = s.audit_log(10).unwrap();
    assert_eq!(
        audit.len(),
        3,
        "one audit row per action that changed something"
    );
    assert_eq!(audit[0].action, "dlq.discard");
    assert_eq!(audit[0].note, "again");
    assert_eq!(audit[2].action, "dlq.retry");
    assert_eq!(audit[2].actor, "ops@example.com");
    assert!(audit[2].detail.contains(&ids[0].to_string()));
}

fn case_webhook_receipts_keep_the_first_answer(s: &mut dyn Store) {
    assert_eq!(s.webhook_receipt("shop", "w-1").unwrap(), None);
    s.record_webhook(
        "shop",
        "w-1",
        "orders/create",
        r#"{"status":"reserved"}"#,
        10,
    )
    .unwrap();
    s.record_webhook("shop", "w-1", "orders/create", r#"{"status":"other"}"#, 20)
        .unwrap();
    assert_eq!(
        s.webhook_receipt("shop", "w-1").unwrap().as_deref(),
        Some(r#"{"status":"reserved"}"#)
    );
    assert_eq!(
        s.webhook_receipt("other", "w-1").unwrap(),
        None,
        "ids are per channel"
    );
}

fn case_a_message_parked_again_reopens_its_record(s: &mut dyn Store) {
    commit_outbox(s, vec![outbox(0, "shop", "A", 5, 2)]);
    s.park(&[letter(outbox(0, "shop", "A", 5, 2), 1_000)])
        .unwrap();
    s.act_on_dead_letters(
        &parked(None),
        DeadLetterAction::Retry,
        "ops",
        "try again",
        2_000,
    )
    .unwrap();
    assert_eq!(all_exceptions(s)[0].status, ExceptionStatus::Replayed);
    // Refused again: the same record is open again, with the new reason.
    let mut again = letter(outbox(0, "shop", "A", 5, 2), 3_000);
    again.exception.reason = "refused a second time".into();
    s.record_results("shop", &[], &[again], &[], 3_000).unwrap();
    let x = all_exceptions(s);
    assert_eq!(x.len(), 1, "{x:?}");
    assert_eq!(x[0].status, ExceptionStatus::Open);
    assert_eq!(x[0].reason, "refused a second time");
    assert!(
        s.lane_backlog("shop").unwrap().is_empty(),
        "parked again, out of the outbox"
    );
    assert_eq!(s.dead_letters(&parked(None)).unwrap().len(), 1);
}

fn case_control_numbers_move_forward_and_wrap(s: &mut dyn Store) {
    assert_eq!(
        s.next_control_numbers("acme/isa", 1, 999_999_999).unwrap(),
        1
    );
    assert_eq!(
        s.next_control_numbers("acme/isa", 3, 999_999_999).unwrap(),
        2
    );
    assert_eq!(
        s.next_control_numbers("acme/isa", 1, 999_999_999).unwrap(),
        5
    );
    assert_eq!(
        s.next_control_numbers("other/isa", 1, 999_999_999).unwrap(),
        1
    );
    assert_eq!(s.next_control_numbers("small", 2, 3).unwrap(), 1);
    assert_eq!(s.next_control_numbers("small", 1, 3).unwrap(), 3);
    assert_eq!(
        s.next_control_numbers("small", 1, 3).unwrap(),
        1,
        "wraps after max"
    );
}

fn case_exception_status_changes_are_audited(s: &mut dyn Store) {
    let rec = ExceptionRecord::open(
        ExceptionKind::UnknownItem,
        "edi\0acme\0line-1",
        "edi:acme/1/1/0001/1".into(),
        None,
        "item X is unknown".into(),
        Some("LIN**UP*X~".into()),
        Timestamp::from_micros(10),
    );
    s.add_exceptions(std::slice::from_ref(&rec)).unwrap();
    let changed = s
        .set_exception_status(&rec.id, ExceptionStatus::Replayed, "ops", "items fixed", 20)
        .unwrap()
        .expect("the record exists");
    assert_eq!(changed.status, ExceptionStatus::Replayed);
    assert_eq!(changed.raw.as_deref(), Some("LIN**UP*X~"));
    assert!(
        s.set_exception_status("nope", ExceptionStatus::Resolved, "ops", "", 30)
            .unwrap()
            .is_none()
    );
    let audit = s.audit_log(10).unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "ops");
    assert_eq!(audit[0].action, "replayed");
    assert_eq!(audit[0].subject, format!("exception:{}", rec.id));
    // Raised again (still unknown after a replay): the record opens again.
    s.add_exceptions(std::slice::from_ref(&rec)).unwrap();
    let open = s
        .list_exceptions(&ExceptionFilter {
            kind: Some(ExceptionKind::UnknownItem),
            status: Some(ExceptionStatus::Open),
            limit: 10,
        })
        .unwrap();
    assert_eq!(open.len(), 1);
}

fn case_workflows_keep_their_latest_state_and_history(s: &mut dyn Store) {
    s.commit(&full_batch(1)).unwrap();
    let mut next = workflow(1, "SO-1", "shipped", false);
    next.doc = r#"{"state":"shipped"}"#.into();
    next.updated_at_us = 5_000;
    s.commit(&CommitBatch {
        partition: 1,
        workflows: vec![workflow(1, "SO-1", "picked", false), next.clone()],
        steps: vec![
            step("order:SO-1", 1, "captured", "picked"),
            step("order:SO-1", 2, "picked", "shipped"),
            // A step written again (a batch retried) is kept once.
            step("order:SO-1", 0, "", "captured"),
        ],
        last_seq: 4,
        ..CommitBatch::default()
    })
    .unwrap();
    let (row, steps) = s.find_workflow("order:SO-1").unwrap().expect("stored");
    assert_eq!(row, next, "the last state in a batch wins");
    assert_eq!(
        steps
            .iter()
            .map(|x| (x.n, x.to.as_str()))
            .collect::<Vec<_>>(),
        [(0, "captured"), (1, "picked"), (2, "shipped")]
    );
    assert_eq!(steps[2], step("order:SO-1", 2, "picked", "shipped"));
    assert!(s.find_workflow("order:nope").unwrap().is_none());
    // Listing: most recently changed first, by state; final ones are listed too.
    let all = s
        .list_workflows(&WorkflowFilter {
            kind: "order".into(),
            state: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(
        all.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["SO-1", "SO-1-done"]
    );
    let closed = s
        .list_workflows(&WorkflowFilter {
            kind: "order".into(),
            state: Some("closed".into()),
            limit: 10,
        })
        .unwrap();
    assert_eq!(closed.len(), 1);
    assert!(closed[0].is_final);
    assert!(
        s.list_workflows(&WorkflowFilter {
            kind: "return".into(),
            state: None,
            limit: 10,
        })
        .unwrap()
        .is_empty()
    );
    // Only workflows in progress are loaded.
    let live = s.load_partition(1).unwrap().workflows;
    assert_eq!(live, vec![next]);
}

fn change(
    p: u32,
    seq: u64,
    n: u32,
    item: &str,
    time_us: i64,
    at_us: i64,
    on_hand: i64,
) -> ChangeRow {
    let mut delta = [0; 10];
    delta[0] = on_hand;
    delta[6] = -on_hand;
    ChangeRow {
        partition: p,
        seq,
        n,
        item: item.to_string(),
        location: "DC1".to_string(),
        lot: String::new(),
        time_us,
        at_us,
        delta,
    }
}

fn ats_row(item: &str, channel: &str, at_us: i64, seq: u64, ats: i64) -> AtsRow {
    AtsRow {
        item: item.to_string(),
        channel: channel.to_string(),
        at_us,
        seq,
        ats,
        previous: ats.checked_sub(2),
    }
}

fn case_journal_history_and_runs(s: &mut dyn Store) {
    let batch = |seq: u64, changes: Vec<ChangeRow>, ats: Vec<AtsRow>| CommitBatch {
        partition: 0,
        changes,
        ats,
        last_seq: seq,
        ..CommitBatch::default()
    };
    s.commit(&batch(
        1,
        vec![
            change(0, 1, 0, "A", 100, 1_000, 5),
            change(0, 1, 1, "B", 100, 1_000, 7),
        ],
        vec![
            ats_row("A", "shop", 1_000, 1, 5),
            ats_row("A", "amazon", 1_000, 1, 4),
        ],
    ))
    .unwrap();
    s.commit(&batch(
        2,
        vec![change(0, 2, 0, "A", 900, 2_000, -2)],
        vec![ats_row("A", "shop", 2_000, 2, 3)],
    ))
    .unwrap();
    s.commit(&batch(
        3,
        vec![change(0, 3, 0, "A", 50, 3_000, 1)],
        Vec::new(),
    ))
    .unwrap();

    // Committed since a time, up to a sequence, in ledger order, buckets intact.
    let since = s.changes_since(0, 1_500, 0, 2).unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(
        (
            since[0].seq,
            since[0].time_us,
            since[0].delta[0],
            since[0].delta[6]
        ),
        (2, 900, -2, 2)
    );
    assert_eq!(s.changes_since(0, 0, 0, 3).unwrap().len(), 4);
    assert!(
        s.changes_since(1, 0, 0, 3).unwrap().is_empty(),
        "other partition"
    );
    let happened_later: Vec<u64> = s
        .changes_since(0, 0, 100, 3)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(
        happened_later,
        vec![2],
        "only inputs that happened after the time"
    );
    // An item's journal after a time: its changes and availabilities, in commit order.
    let (changes, ats) = s.item_journal_after(0, "A", 1_000).unwrap();
    let later: Vec<(u64, i64)> = changes.iter().map(|c| (c.seq, c.at_us)).collect();
    assert_eq!(later, vec![(2, 2_000), (3, 3_000)]);
    let ats: Vec<(String, i64, Option<i64>)> = ats
        .into_iter()
        .map(|a| (a.channel, a.ats, a.previous))
        .collect();
    assert_eq!(ats, vec![("shop".to_string(), 3, Some(1))]);
    let (all, all_ats) = s.item_journal_after(0, "A", 0).unwrap();
    assert_eq!((all.len(), all_ats.len()), (3, 3));
    assert!(
        s.item_journal_after(1, "A", 0).unwrap().0.is_empty(),
        "other partition"
    );
    assert!(
        s.item_journal_after(0, "Z", 0).unwrap().0.is_empty(),
        "other item"
    );

    // Every delivered value is kept, not only the newest.
    s.record_acks("shop", &[latest_ack("A", 1, 5)], 1_100)
        .unwrap();
    s.record_acks("shop", &[latest_ack("A", 2, 3)], 2_100)
        .unwrap();
    let sent = |s: &mut dyn Store, t: i64| -> Vec<(String, Option<i64>)> {
        s.sent_as_of("A", t)
            .unwrap()
            .into_iter()
            .map(|r| (r.endpoint, r.value))
            .collect()
    };
    assert_eq!(sent(s, 1_000), vec![]);
    assert_eq!(sent(s, 1_500), vec![("shop".into(), Some(5))]);
    assert_eq!(sent(s, 9_000), vec![("shop".into(), Some(3))]);

    // Runs with their variances, paged.
    let run = RunRow {
        id: "rec-1".into(),
        source: "erp".into(),
        kind: "csv".into(),
        started_by: "api".into(),
        as_of_us: 10,
        started_at_us: 20,
        finished_at_us: 30,
        status: "done".into(),
        rows: 3,
        counts: r#"{"match":1,"quantity_variance":2}"#.into(),
        digest: "00ff".into(),
        error: String::new(),
    };
    let variance = |n: u32| VarianceRow {
        run_id: "rec-1".into(),
        n,
        item: format!("I{n}"),
        location: "DC1".into(),
        lot: String::new(),
        class: "quantity_variance".into(),
        source_qty: Some(5),
        ledger_qty: None,
        delta: 5,
        detail: String::new(),
        action: "corrected".into(),
        reference: format!("ev-{n}"),
    };
    let elsewhere = |n: u32, location: &str, class: &str| VarianceRow {
        location: location.into(),
        class: class.into(),
        ..variance(n)
    };
    s.save_run(
        &run,
        &[
            variance(0),
            variance(1),
            variance(2),
            elsewhere(3, "DC0", "missing_in_crossdock"),
            elsewhere(4, "DC1", "missing_in_crossdock"),
            elsewhere(5, "DC0", "quantity_variance"),
        ],
    )
    .unwrap();
    assert_eq!(
        s.run_variance_counts("rec-1").unwrap(),
        vec![
            ("DC0".to_string(), "missing_in_crossdock".to_string(), 1),
            ("DC0".to_string(), "quantity_variance".to_string(), 1),
            ("DC1".to_string(), "missing_in_crossdock".to_string(), 1),
            ("DC1".to_string(), "quantity_variance".to_string(), 3),
        ]
    );
    assert!(s.run_variance_counts("rec-2").unwrap().is_empty());
    assert_eq!(s.find_run("rec-1").unwrap(), Some(run.clone()));
    assert_eq!(s.find_run("rec-2").unwrap(), None);
    assert_eq!(s.list_runs(Some("erp"), 10).unwrap(), vec![run.clone()]);
    assert!(s.list_runs(Some("wms"), 10).unwrap().is_empty());
    let page = s.run_variances("rec-1", Some(0), 1).unwrap();
    assert_eq!(page, vec![variance(1)]);
    assert_eq!(s.run_variances("rec-1", None, 10).unwrap().len(), 6);
    assert!(s.save_run(&run, &[]).is_err(), "a run id is stored once");
}

fn case_trace_gathers_what_a_correlation_id_touched(s: &mut dyn Store) {
    let traced = |mut e: EventRow| {
        e.correlation_id = "PO-77".into();
        e
    };
    let with = |row: OutboxRow| OutboxRow {
        correlation_id: Some("PO-77".into()),
        ..row
    };
    // Commit 1: an unrelated event, then the document's first event (seq 2).
    s.commit(&CommitBatch {
        partition: 0,
        events: vec![
            event(0, 1, "wms", "other"),
            traced(event(0, 2, "erp", "po-1")),
        ],
        changes: vec![
            change(0, 1, 0, "B", 10, 1_000, 9),
            change(0, 2, 1, "A", 20, 1_000, 5),
        ],
        ats: vec![
            ats_row("A", "shop", 1_000, 2, 5),
            ats_row("B", "shop", 1_000, 1, 9),
        ],
        outbox: vec![
            with(outbox(0, "shop", "A", 2, 1)),
            with(outbox(0, "erp", "po", 2, 2)),
        ],
        steps: vec![StepRow {
            correlation_id: "PO-77".into(),
            ..step("purchase_order:PO-77", 0, "", "open")
        }],
        last_seq: 2,
        ..CommitBatch::default()
    })
    .unwrap();
    // Commit 2 changes nothing it journals; commit 3 holds the document's second event.
    s.commit(&CommitBatch {
        partition: 0,
        events: vec![event(0, 3, "wms", "noop")],
        last_seq: 3,
        ..CommitBatch::default()
    })
    .unwrap();
    s.commit(&CommitBatch {
        partition: 1,
        events: vec![EventRow {
            received_at_us: 1_700_000_000_600_000,
            ..traced(event(1, 1, "wms", "rcv-1"))
        }],
        changes: vec![change(1, 1, 0, "C", 30, 2_000, 4)],
        last_seq: 1,
        ..CommitBatch::default()
    })
    .unwrap();
    let ack = Ack {
        key: "A".into(),
        kind: OutboxKind::Latest,
        ledger_seq: 2,
        delivered: true,
        value: Some(5),
        correlation_id: Some("PO-77".into()),
    };
    s.record_acks("shop", &[ack], 3_000).unwrap();
    let erp = outbox_rows(s, Some("erp"), 10).remove(0);
    s.park(&[letter(erp, 4_000)]).unwrap();

    let t = s.trace("PO-77", 100).unwrap();
    let ids: Vec<&str> = t.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["po-1", "rcv-1"],
        "the document's events, as received"
    );
    let changes: Vec<(u32, u64, &str)> = t
        .changes
        .iter()
        .map(|c| (c.partition, c.seq, c.item.as_str()))
        .collect();
    assert_eq!(
        changes,
        vec![(0, 2, "A"), (1, 1, "C")],
        "only its own changes"
    );
    let ats: Vec<(&str, i64)> = t.ats.iter().map(|a| (a.item.as_str(), a.ats)).collect();
    assert_eq!(ats, vec![("A", 5)]);
    assert_eq!(t.steps.len(), 1);
    assert_eq!(t.steps[0].to, "open");
    assert!(t.outbox.is_empty(), "delivered and parked: none waiting");
    assert_eq!(t.deliveries.len(), 1);
    let d = &t.deliveries[0];
    assert_eq!(
        (
            d.endpoint.as_str(),
            d.key.as_str(),
            d.outcome.as_str(),
            d.value,
            d.at_us
        ),
        ("shop", "A", "delivered", Some(5), 3_000)
    );
    assert_eq!(t.dead_letters.len(), 1);
    assert_eq!(t.dead_letters[0].row.endpoint, "erp");
    let carried: Vec<Option<(u64, Option<i64>)>> = t
        .carried
        .iter()
        .map(|c| c.as_ref().map(|s| (s.ledger_seq, s.value)))
        .collect();
    assert_eq!(carried, vec![Some((2, Some(5)))], "A's change reached shop");

    assert_eq!(s.trace("nothing", 100).unwrap(), TraceRows::default());
    // An input without a correlation id of its own is found by its key.
    let own = s.trace("event:wms/other", 100).unwrap();
    assert!(own.events.is_empty(), "its stored correlation id differs");
    s.commit(&CommitBatch {
        partition: 2,
        events: vec![EventRow {
            correlation_id: "event:wms/solo".into(),
            ..event(2, 1, "wms", "solo")
        }],
        changes: vec![change(2, 1, 0, "D", 40, 5_000, 2)],
        last_seq: 1,
        ..CommitBatch::default()
    })
    .unwrap();
    let own = s.trace("event:wms/solo", 100).unwrap();
    assert_eq!(own.events.len(), 1);
    assert_eq!(own.changes.len(), 1);
    assert_eq!(own.changes[0].item, "D");
    let first = s.trace("PO-77", 1).unwrap();
    assert_eq!(first.events.len(), 1, "limited");
    assert_eq!(first.changes.len(), 1, "changes of the events returned");
}
