//! The exceptions work queue's store methods ([`ExceptionStore`]), on both implementations:
//! filtered and paged reads, counts, lifecycle moves enforced by the store, and the queue's
//! per-record bookkeeping.
//!
//! PostgreSQL runs at `CROSSDOCK_TEST_PG_URL` (default `host=127.0.0.1 user=postgres
//! dbname=test`) in a fresh schema dropped afterwards; these tests fail, not skip, without it.

use crossdock_model::{ExceptionKind, ExceptionRecord, ExceptionStatus, Timestamp};
use crossdock_store::postgres::PgStore;
use crossdock_store::sqlite::SqliteStore;
use crossdock_store::{
    Ack, CommitBatch, Cursor, ExceptionQuery, OutboxKind, OutboxRow, QueueMark, Store, Transition,
};

fn record(id: &str, kind: ExceptionKind, entity: &str, at_us: i64) -> ExceptionRecord {
    ExceptionRecord {
        id: id.to_string(),
        kind,
        status: ExceptionStatus::Open,
        entity: entity.to_string(),
        correlation_id: Some(format!("corr-{id}")),
        reason: format!("reason for {id}"),
        raw: Some(format!("raw {id}")),
        created_at: Timestamp::from_micros(at_us),
        updated_at: Timestamp::from_micros(at_us),
    }
}

/// Six records: three files of a partner, a token, two items; created at 10, 20, … 60.
fn seed(s: &mut dyn Store) {
    s.add_exceptions(&[
        record("ex-a", ExceptionKind::UnknownItem, "file:acme/a.csv#2", 10),
        record("ex-b", ExceptionKind::UnknownItem, "file:acme/a.csv#3", 20),
        record("ex-c", ExceptionKind::UomMismatch, "file:acme/b.x12#1", 30),
        record("ex-d", ExceptionKind::SchemaViolation, "token:east", 40),
        record("ex-e", ExceptionKind::OversellRisk, "item:SKU-1", 50),
        record("ex-f", ExceptionKind::OversellRisk, "item:SKU-10", 60),
    ])
    .unwrap();
}

fn ids(s: &mut dyn Store, q: ExceptionQuery) -> Vec<String> {
    s.query_exceptions(&ExceptionQuery { limit: 100, ..q })
        .unwrap()
        .into_iter()
        .map(|r| r.record.id)
        .collect()
}

fn filters_and_pages(s: &mut dyn Store) {
    seed(s);
    assert_eq!(
        ids(s, ExceptionQuery::default()),
        ["ex-f", "ex-e", "ex-d", "ex-c", "ex-b", "ex-a"],
        "newest first"
    );
    let q = |f: fn(&mut ExceptionQuery)| {
        let mut q = ExceptionQuery::default();
        f(&mut q);
        q
    };
    assert_eq!(
        ids(
            s,
            q(|q| q.kinds = vec![ExceptionKind::UnknownItem, ExceptionKind::UomMismatch])
        ),
        ["ex-c", "ex-b", "ex-a"]
    );
    assert_eq!(
        ids(s, q(|q| q.entity_prefix = Some("file:acme/a.csv".into()))),
        ["ex-b", "ex-a"]
    );
    assert_eq!(
        ids(s, q(|q| q.entity_prefix = Some("item:SKU-1".into()))),
        ["ex-f", "ex-e"],
        "a prefix, not a word"
    );
    assert_eq!(
        ids(s, q(|q| q.entity_prefix = Some("item:SKU-1%".into()))),
        Vec::<String>::new(),
        "no wildcards"
    );
    assert_eq!(
        ids(s, q(|q| q.correlation_id = Some("corr-ex-d".into()))),
        ["ex-d"]
    );
    assert_eq!(
        ids(
            s,
            q(|q| {
                q.since_us = Some(20);
                q.until_us = Some(40);
            })
        ),
        ["ex-c", "ex-b"],
        "since is inclusive, until exclusive"
    );
    assert_eq!(
        ids(
            s,
            q(|q| q.ids = vec!["ex-a".into(), "ex-f".into(), "ex-zz".into()])
        ),
        ["ex-f", "ex-a"]
    );

    // Pages in both orders, without gaps or repeats.
    for oldest_first in [false, true] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .query_exceptions(&ExceptionQuery {
                    after: after.clone(),
                    oldest_first,
                    limit: 4,
                    ..ExceptionQuery::default()
                })
                .unwrap();
            seen.extend(page.iter().map(|r| r.record.id.clone()));
            match page.last() {
                Some(last) if page.len() == 4 => {
                    after = Some(Cursor {
                        created_at_us: last.record.created_at.as_micros(),
                        id: last.record.id.clone(),
                    })
                }
                _ => break,
            }
        }
        let mut want = vec!["ex-f", "ex-e", "ex-d", "ex-c", "ex-b", "ex-a"];
        if oldest_first {
            want.reverse();
        }
        assert_eq!(seen, want, "oldest_first {oldest_first}");
    }

    let mut counts = s
        .count_exceptions(&ExceptionQuery {
            entity_prefix: Some("file:".into()),
            ..ExceptionQuery::default()
        })
        .unwrap();
    counts.sort_by_key(|c| c.0.as_str());
    assert_eq!(
        counts,
        [
            (ExceptionKind::UnknownItem, ExceptionStatus::Open, 2),
            (ExceptionKind::UomMismatch, ExceptionStatus::Open, 1),
        ]
    );
}

fn moves_are_conditional_and_audited(s: &mut dyn Store) {
    seed(s);
    use ExceptionStatus::*;
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = s
        .transition_exceptions(
            &ids(&["ex-a", "ex-zz"]),
            Acknowledged,
            &[Open],
            "ops",
            "mine",
            100,
        )
        .unwrap();
    match &out[0] {
        Transition::Changed(r) => {
            assert_eq!(r.record.status, Acknowledged);
            assert_eq!((r.actor.as_str(), r.note.as_str()), ("ops", "mine"));
            assert_eq!(r.record.updated_at.as_micros(), 100);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(out[1], Transition::Missing);
    // Not from acknowledged: refused, the record as it is.
    let out = s
        .transition_exceptions(&ids(&["ex-a"]), Acknowledged, &[Open], "other", "no", 110)
        .unwrap();
    match &out[0] {
        Transition::Refused(r) => {
            assert_eq!(r.record.status, Acknowledged);
            assert_eq!(r.actor, "ops", "unchanged");
        }
        other => panic!("{other:?}"),
    }
    let out = s
        .transition_exceptions(
            &ids(&["ex-a", "ex-b"]),
            Resolved,
            &[Open, Acknowledged],
            "ops",
            "done",
            120,
        )
        .unwrap();
    assert!(
        out.iter().all(|t| matches!(t, Transition::Changed(_))),
        "{out:?}"
    );
    let out = s
        .transition_exceptions(
            &ids(&["ex-a"]),
            Discarded,
            &[Open, Acknowledged],
            "ops",
            "late",
            130,
        )
        .unwrap();
    assert!(matches!(&out[0], Transition::Refused(r) if r.record.status == Resolved));
    let audit = s.audit_log(100).unwrap();
    let mine: Vec<(&str, &str, &str)> = audit
        .iter()
        .filter(|a| a.subject == "exception:ex-a")
        .map(|a| (a.action.as_str(), a.note.as_str(), a.detail.as_str()))
        .collect();
    assert_eq!(
        mine,
        [
            ("resolved", "done", r#"{"from":"acknowledged"}"#),
            ("acknowledged", "mine", r#"{"from":"open"}"#),
        ],
        "refused moves leave no row"
    );
    // A note without a move: the status stays, the note and an audit row say why.
    let noted = s
        .note_exception("ex-d", "crossdock", "replay failed: still refused", 135)
        .unwrap()
        .expect("the record exists");
    assert_eq!(
        (
            noted.record.status,
            noted.actor.as_str(),
            noted.note.as_str()
        ),
        (Open, "crossdock", "replay failed: still refused")
    );
    assert!(
        s.note_exception("ex-zz", "crossdock", "x", 136)
            .unwrap()
            .is_none()
    );
    assert_eq!(s.audit_log(1).unwrap()[0].action, "noted");
    // The hub reopens a replayed record whose input failed again.
    s.transition_exceptions(
        &ids(&["ex-c"]),
        Replayed,
        &[Open, Acknowledged],
        "crossdock",
        "try",
        140,
    )
    .unwrap();
    let out = s
        .transition_exceptions(
            &ids(&["ex-c"]),
            Open,
            &[Replayed, Open],
            "crossdock",
            "failed",
            150,
        )
        .unwrap();
    assert!(matches!(&out[0], Transition::Changed(r) if r.record.status == Open));
    assert_eq!(s.audit_log(1).unwrap()[0].action, "reopened");
}

fn queue_bookkeeping(s: &mut dyn Store) {
    seed(s);
    assert_eq!(s.count_attempt("ex-a", 100).unwrap(), 1);
    assert_eq!(s.count_attempt("ex-a", 200).unwrap(), 2);
    assert_eq!(s.count_attempt("ex-zz", 200).unwrap(), 0);
    // Raised again (the replay failed): the count survives the reopen.
    s.transition_exceptions(
        &["ex-a".into()],
        ExceptionStatus::Replayed,
        &[ExceptionStatus::Open],
        "q",
        "",
        210,
    )
    .unwrap();
    s.add_exceptions(&[record(
        "ex-a",
        ExceptionKind::UnknownItem,
        "file:acme/a.csv#2",
        220,
    )])
    .unwrap();
    let due = ids(
        s,
        ExceptionQuery {
            statuses: vec![ExceptionStatus::Open],
            attempted_before_us: Some(150),
            attempts_below: Some(5),
            kinds: vec![ExceptionKind::UnknownItem],
            ..ExceptionQuery::default()
        },
    );
    assert_eq!(due, ["ex-b"], "ex-a was attempted at 200");
    let a = &s
        .query_exceptions(&ExceptionQuery {
            ids: vec!["ex-a".into()],
            limit: 1,
            ..ExceptionQuery::default()
        })
        .unwrap()[0];
    assert_eq!(
        (a.record.status, a.attempts, a.attempted_at_us),
        (ExceptionStatus::Open, 2, Some(200))
    );

    assert!(
        s.mark_exception("ex-b", QueueMark::Held, Some(("crossdock", "gave up")), 300)
            .unwrap()
    );
    assert!(
        !s.mark_exception("ex-b", QueueMark::Held, Some(("crossdock", "again")), 310)
            .unwrap(),
        "once"
    );
    assert!(
        s.mark_exception("ex-b", QueueMark::Notified, None, 320)
            .unwrap()
    );
    assert!(
        !s.mark_exception("ex-b", QueueMark::Notified, None, 330)
            .unwrap()
    );
    assert!(
        s.mark_exception("ex-e", QueueMark::Corrected, None, 340)
            .unwrap()
    );
    let b = &s
        .query_exceptions(&ExceptionQuery {
            held: Some(true),
            limit: 10,
            ..ExceptionQuery::default()
        })
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(
        (
            b[0].record.id.as_str(),
            b[0].note.as_str(),
            b[0].held_at_us,
            b[0].notified_at_us
        ),
        ("ex-b", "gave up", Some(300), Some(320))
    );
    assert_eq!(
        ids(
            s,
            ExceptionQuery {
                held: Some(true),
                notified: Some(false),
                ..ExceptionQuery::default()
            }
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(
            s,
            ExceptionQuery {
                corrected: Some(true),
                ..ExceptionQuery::default()
            }
        ),
        ["ex-e"]
    );
    let audit = s.audit_log(1).unwrap();
    assert_eq!(
        (audit[0].action.as_str(), audit[0].note.as_str()),
        ("queue.held", "gave up")
    );
}

fn delivery_lookups(s: &mut dyn Store) {
    assert_eq!(s.sent_at("shop", "SKU-1").unwrap(), None);
    let row = OutboxRow {
        partition: 0,
        endpoint: "shop".into(),
        key: "SKU-1".into(),
        ledger_seq: 7,
        priority: 2,
        kind: OutboxKind::Latest,
        payload: "{}".into(),
        correlation_id: None,
        created_at_us: 1,
    };
    s.commit(&CommitBatch {
        outbox: vec![row],
        last_seq: 7,
        ..CommitBatch::default()
    })
    .unwrap();
    let ack = || Ack {
        key: "SKU-1".into(),
        kind: OutboxKind::Latest,
        ledger_seq: 7,
        delivered: true,
        value: Some(3),
        correlation_id: None,
    };
    s.record_acks("shop", &[ack()], 100).unwrap();
    assert_eq!(s.sent_at("shop", "SKU-1").unwrap(), Some(100));
    // The same value written again (a resync after drift) records its new time.
    s.record_acks("shop", &[ack()], 200).unwrap();
    assert_eq!(s.sent_at("shop", "SKU-1").unwrap(), Some(200));
    assert_eq!(s.parked_letter_of("ex-none").unwrap(), None);
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    let path = std::env::temp_dir().join(format!(
                        "crossdock-queue-test-{:016x}.db",
                        fastrand::u64(..)
                    ));
                    {
                        let mut s = super::SqliteStore::open(&path).unwrap();
                        super::Store::migrate(&mut s, 1).unwrap();
                        super::$case(&mut s);
                    }
                    for suffix in ["", "-wal", "-shm"] {
                        let mut p = path.clone().into_os_string();
                        p.push(suffix);
                        let _ = std::fs::remove_file(p);
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $case() {
                    let url = std::env::var("CROSSDOCK_TEST_PG_URL")
                        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
                    let schema = format!("cd_queue_{:016x}", fastrand::u64(..));
                    let result = std::panic::catch_unwind(|| {
                        let mut s = super::PgStore::connect(&url, Some(&schema))
                            .expect("PostgreSQL is required (set CROSSDOCK_TEST_PG_URL)");
                        super::Store::migrate(&mut s, 1).unwrap();
                        super::$case(&mut s);
                    });
                    if let Ok(mut c) = ::postgres::Client::connect(&url, ::postgres::NoTls) {
                        let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
                    }
                    if let Err(e) = result {
                        std::panic::resume_unwind(e);
                    }
                }
            )*
        }
    };
}

both!(
    filters_and_pages,
    moves_are_conditional_and_audited,
    queue_bookkeeping,
    delivery_lookups,
);
