//! The embedded store's WAL is copied back into the database file by the checkpoint thread, not
//! by commits.

use std::time::{Duration, Instant};

use crossdock_store::Store;
use crossdock_store::sqlite::{Checkpointer, SqliteStore};

#[test]
fn the_checkpoint_thread_copies_the_wal_back() {
    let dir = std::env::temp_dir().join(format!(
        "crossdock-checkpoint-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hub.db");
    let mut store = SqliteStore::open(&path).unwrap();
    // The schema lands in the WAL; below the autocheckpoint limit nothing copies it back.
    store.migrate(1).unwrap();
    let main_size = || std::fs::metadata(&path).unwrap().len();
    let wal = dir.join("hub.db-wal");
    let before = main_size();
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the schema is in the WAL"
    );
    let checkpointer = Checkpointer::spawn(&path, Duration::from_millis(20)).unwrap();
    let started = Instant::now();
    while main_size() <= before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the database file never grew past {before} bytes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(checkpointer);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
