//! What the trace index on `events (correlation_id)` costs a commit: the same batches of 10,000
//! events (random v4-UUID correlation ids, as the HTTP edge gives events that name none) committed
//! into two fresh SQLite stores, one with the index and one with it dropped (the schema before
//! it), alternating which goes first. Prints each run and the medians.
//!
//! `cargo run --release -p crossdock-store --example trace_index_cost [batches]`

use std::time::Instant;

use crossdock_store::sqlite::SqliteStore;
use crossdock_store::{CommitBatch, EventRow, EventStatus, Store};

const BATCH: u64 = 10_000;

fn uuid_like(rng: &mut u64) -> String {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

fn batch(n: u64, rng: &mut u64) -> CommitBatch {
    let events = (0..BATCH)
        .map(|i| {
            let seq = n * BATCH + i + 1;
            EventRow {
                partition: 0,
                seq,
                source: "wms-east".into(),
                id: format!("e-{seq}"),
                ty: "inventory.received.v1".into(),
                time_us: 1_700_000_000_000_000 + seq as i64,
                received_at_us: 1_700_000_000_000_000 + seq as i64,
                correlation_id: uuid_like(rng),
                payload_hash: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                status: EventStatus::Applied,
                envelope: format!(
                    r#"{{"specversion":"1.0","id":"e-{seq}","source":"wms-east","type":"inventory.received.v1","data":{{"item":"SKU-{}","location":"DC-EAST","qty":1}}}}"#,
                    seq % 1000
                ),
            }
        })
        .collect();
    CommitBatch {
        partition: 0,
        events,
        last_seq: (n + 1) * BATCH,
        ..CommitBatch::default()
    }
}

/// Seconds to commit `batches` batches into a fresh store, with or without the index.
fn run(indexed: bool, batches: u64, seed: u64) -> f64 {
    let dir = std::env::temp_dir().join(format!(
        "crossdock-trace-index-{}-{indexed}-{seed}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("crossdock.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.migrate(1).unwrap();
    if !indexed {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP INDEX events_correlation").unwrap();
    }
    let mut rng = seed | 1;
    let batches: Vec<CommitBatch> = (0..batches).map(|n| batch(n, &mut rng)).collect();
    let started = Instant::now();
    for b in &batches {
        store.commit(b).unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let batches: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("batches: a number"))
        .unwrap_or(100);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for r in 0..3u64 {
        let order = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for indexed in order {
            let s = run(indexed, batches, 0x5eed + r);
            let rate = (batches * BATCH) as f64 / s;
            println!(
                "run {r}: {} events {} the index: {s:.2} s = {rate:.0} events/s",
                batches * BATCH,
                if indexed { "with" } else { "without" }
            );
            if indexed {
                with.push(rate)
            } else {
                without.push(rate)
            }
        }
    }
    let (w, wo) = (median(with), median(without));
    println!(
        "median: {w:.0} events/s with the index, {wo:.0} without; ratio {:.3}",
        w / wo
    );
}
