//! One hub per store: a second holder is refused with the first one named, and the store is free
//! again once the first lets go (dropped here; a killed process is tested with the real binary
//! in `crates/cli/tests/single_hub.rs`). PostgreSQL cases use a fresh schema in the database at
//! `CROSSDOCK_TEST_PG_URL` and fail, not skip, when PostgreSQL is unreachable.

use crossdock_model::Timestamp;
use crossdock_store::{Holder, HubLock, StoreError};

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
    let first = HubLock::sqlite(&db, &holder(4242, "127.0.0.1:8080")).expect("free store");
    assert_eq!(first.holder().pid, 4242);
    assert_eq!(HubLock::sqlite_path(&db), dir.join("crossdock.db.lock"));

    let m = refusal(HubLock::sqlite(&db, &holder(7, "127.0.0.1:9090")));
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
    HubLock::sqlite(&dir.join("other.db"), &holder(7, "127.0.0.1:9090"))
        .expect("another file is free");

    drop(first);
    let second = HubLock::sqlite(&db, &holder(7, "127.0.0.1:9090")).expect("free once released");
    let m = refusal(HubLock::sqlite(&db, &holder(8, "x")));
    assert!(
        m.contains("pid 7") && m.contains("127.0.0.1:9090"),
        "the file names the new holder: {m}"
    );
    drop(second);
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
    let first =
        HubLock::postgres(&url, Some(&schema), &holder(4242, "10.0.0.1:8080")).expect("free");
    let m = refusal(HubLock::postgres(
        &url,
        Some(&schema),
        &holder(7, "10.0.0.2:8080"),
    ));
    for part in ["pid 4242", "dc-test", "10.0.0.1:8080", &schema] {
        assert!(m.contains(part), "{part:?} missing from {m:?}");
    }

    // Another schema of the same database is another store.
    let other = format!("{schema}_b");
    let b = HubLock::postgres(&url, Some(&other), &holder(7, "10.0.0.2:8080"))
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
    let third = loop {
        match HubLock::postgres(&url, Some(&schema), &holder(9, "10.0.0.3:8080")) {
            Ok(l) => break l,
            Err(StoreError::Held(_)) if started.elapsed().as_secs() < 10 => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("not released after the holder's connection died: {e}"),
        }
    };
    assert_eq!(third.holder().pid, 9);
    let m = refusal(HubLock::postgres(&url, Some(&schema), &holder(10, "x")));
    assert!(m.contains("pid 9") && !m.contains("pid 4242"), "{m}");
    drop(third);
    drop(first);
    admin
        .batch_execute(&format!(
            "DROP SCHEMA \"{schema}\" CASCADE; DROP SCHEMA \"{other}\" CASCADE"
        ))
        .unwrap();
}
