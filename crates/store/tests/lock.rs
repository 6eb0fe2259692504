//! One hub per store: a second holder is refused with the first one named, and the store is free
//! again once the first lets go (dropped here; a killed process is tested with the real binary
//! in `crates/cli/tests/single_hub.rs`). PostgreSQL cases use a fresh schema in the database at
//! `CROSSDOCK_TEST_PG_URL` and fail, not skip, when PostgreSQL is unreachable.

use crossdock_model::Timestamp;
use std::time::Duration;

use crossdock_store::{Holder, HubLock, StoreError};

/// How long each attempt tries for a held store (the hub tries for seconds).
const WAIT: Duration = Duration::from_millis(200);

fn holder(pid: u32, listen: &str) -> Holder {
    Holder {
        pid,
        host: "dc-test".into(),
        listen: listen.into(),
        started_at: Timestamp::parse_rfc3339("2026-11-23T10:00:00Z").unwrap(),
    }
}

fn refusal(r: crossdock_store::Result<HubLock>) -> String {
    match r {
        Err(StoreError::Held(m)) => m,
        other => panic!("expected the store to be held, got {other:?}"),
    }
}

#[test]
fn sqlite_second_holder_is_refused_naming_the_first() {
    let dir = std::env::temp_dir().join(format!("crossdock-lock-{:016x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("crossdock.db");
    let first =
        HubLock::sqlite_within(&db, &holder(4242, "127.0.0.1:8080"), WAIT).expect("free store");
    assert_eq!(first.holder().pid, 4242);
    assert_eq!(HubLock::sqlite_path(&db), dir.join("crossdock.db.lock"));

    let m = refusal(HubLock::sqlite_within(
        &db,
        &holder(7, "127.0.0.1:9090"),
        WAIT,
    ));
    for part in [
        "pid 4242",
        "dc-test",
        "127.0.0.1:8080",
        "2026-11-23T10:00:00Z",
        "crossdock.db.lock",
    ] {
        assert!(m.contains(part), "{part:?} missing from {m:?}");
    }
    assert!(!m.contains("9090"), "names the holder, not the asker: {m}");

    // Another database in the same folder is another store.
    HubLock::sqlite_within(&dir.join("other.db"), &holder(7, "127.0.0.1:9090"), WAIT)
        .expect("another file is free");

    drop(first);
    let second = HubLock::sqlite_within(&db, &holder(7, "127.0.0.1:9090"), WAIT)
        .expect("free once released");
    let m = refusal(HubLock::sqlite_within(&db, &holder(8, "x"), WAIT));
    assert!(
        m.contains("pid 7") && m.contains("127.0.0.1:9090"),
        "the file names the new holder: {m}"
    );
    // A holder that lets go while another waits (a hub killed and restarted at once): the
    // waiter takes the store.
    let started = std::time::Instant::now();
    let letting_go = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(second);
    });
    let third = HubLock::sqlite_within(&db, &holder(9, "x"), Duration::from_secs(5))
        .expect("taken once the holder let go");
    assert!(started.elapsed() >= Duration::from_millis(250));
    letting_go.join().unwrap();
    drop(third);
    std::fs::remove_dir_all(&dir).unwrap();
}

const DEFAULT_PG_URL: &str = "host=127.0.0.1 user=postgres dbname=test";

fn pg_url() -> String {
    std::env::var("CROSSDOCK_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into())
}

#[test]
fn postgres_second_holder_is_refused_until_the_first_connection_dies() {
    let schema = format!("cd_lock_{:016x}", fastrand::u64(..));
    let url = pg_url();
    let first = HubLock::postgres_within(&url, Some(&schema), &holder(4242, "10.0.0.1:8080"), WAIT)
        .expect("free");
    let m = refusal(HubLock::postgres_within(
        &url,
        Some(&schema),
        &holder(7, "10.0.0.2:8080"),
        WAIT,
    ));
    for part in ["pid 4242", "dc-test", "10.0.0.1:8080", &schema] {
        assert!(m.contains(part), "{part:?} missing from {m:?}");
    }

    // Another schema of the same database is another store.
    let other = format!("{schema}_b");
    let b = HubLock::postgres_within(&url, Some(&other), &holder(7, "10.0.0.2:8080"), WAIT)
        .expect("another schema is free");
    drop(b);

    // The holder's connection dies (as it does with its process): the lock goes with it, and
    // the row it left names nobody.
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("postgres is running");
    let killed = admin
        .query_one(
            &format!(
                "SELECT pg_terminate_backend(backend_pid) FROM \"{schema}\".hub_holder WHERE id = 1"
            ),
            &[],
        )
        .unwrap()
        .get::<_, bool>(0);
    assert!(killed);
    let started = std::time::Instant::now();
    let third = match HubLock::postgres_within(
        &url,
        Some(&schema),
        &holder(9, "10.0.0.3:8080"),
        Duration::from_secs(10),
    ) {
        Ok(l) => l,
        Err(e) => panic!("not released after the holder's connection died: {e}"),
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(third.holder().pid, 9);
    let m = refusal(HubLock::postgres_within(
        &url,
        Some(&schema),
        &holder(10, "x"),
        WAIT,
    ));
    assert!(m.contains("pid 9") && !m.contains("pid 4242"), "{m}");
    drop(third);
    drop(first);
    admin
        .batch_execute(&format!(
            "DROP SCHEMA \"{schema}\" CASCADE; DROP SCHEMA \"{other}\" CASCADE"
        ))
        .unwrap();
}
