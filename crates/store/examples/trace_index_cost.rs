//! What the trace index on `events (correlation_id)` costs a commit: the same batches of 10,000
//! events committed into fresh SQLite stores without the index (the schema before it); with it,
//! the events naming no correlation id (they get their own key, which the partial index leaves
//! out: the common case of a warehouse feed); and with it, every event naming a random v4 UUID
//! (the worst case). The order of the three changes each run. Prints each run and the medians.
//!
//! `cargo run --release -p crossdock-store --example trace_index_cost [batches]`

use std::time::Instant;

use crossdock_model::event::own_correlation;
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

fn batch(n: u64, rng: &mut u64, named: bool) -> CommitBatch {
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
                correlation_id: if named {
                    uuid_like(rng)
                } else {
                    own_correlation("wms-east", &format!("e-{seq}"))
                },
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

/// Seconds to commit `batches` batches into a fresh store, with or without the index, each event
/// naming a random correlation id or none (its own key).
fn run(indexed: bool, named: bool, batches: u64, seed: u64) -> f64 {
    let dir = std::env::temp_dir().join(format!(
        "crossdock-trace-index-{}-{indexed}-{named}-{seed}",
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
    let batches: Vec<CommitBatch> = (0..batches).map(|n| batch(n, &mut rng, named)).collect();
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
    let modes = [
        ("without the index, random ids", false, true),
        (
            "with the index, no ids named (own keys, left out of it)",
            true,
            false,
        ),
        ("with the index, every event naming a random id", true, true),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for r in 0..3u64 {
        for k in 0..modes.len() {
            // A different mode goes first each run.
            let m = (k + r as usize) % modes.len();
            let (name, indexed, named) = modes[m];
            let s = run(indexed, named, batches, 0x5eed + r);
            let rate = (batches * BATCH) as f64 / s;
            println!(
                "run {r}: {} events {name}: {s:.2} s = {rate:.0} events/s",
                batches * BATCH
            );
            rates[m].push(rate);
        }
    }
    let base = median(rates[0].clone());
    for (m, (name, ..)) in modes.iter().enumerate() {
        let rate = median(rates[m].clone());
        println!(
            "median {name}: {rate:.0} events/s, {:.3} of without",
            rate / base
        );
    }
}
