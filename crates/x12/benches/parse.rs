//! Parsing and rendering throughput on a large 846: 100,000 LIN loops (LIN, PID, two QTY).
//!
//! `cargo bench -p crossdock-x12 --bench parse`
//!
//! Prints the median of several runs: reading (tokenize + envelope + typed read) in MB/s,
//! transaction sets/s and LIN loops/s, the time of each step, and the time to render.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crossdock_x12::sets::{InventoryItem, ProductId, QualifiedQuantity};
use crossdock_x12::tokenizer::tokenize;
use crossdock_x12::{
    Date, Decimal, InventoryAdvice846, OutboundEnvelope, Time, TypedSet, parse, render,
};

const LOOPS: usize = 100_000;
const RUNS: usize = 7;

fn advice() -> TypedSet {
    let quantity = |qualifier: &str, n: usize| QualifiedQuantity {
        qualifier: qualifier.into(),
        quantity: Some(Decimal::from_i64(i64::try_from(n).unwrap_or(i64::MAX))),
        unit: Some("EA".into()),
        dates: Vec::new(),
    };
    let items = (0..LOOPS)
        .map(|i| InventoryItem {
            assigned_id: Some((i + 1).to_string()),
            product_ids: vec![
                ProductId {
                    qualifier: "VN".into(),
                    id: format!("SKU-{i:06}"),
                },
                ProductId {
                    qualifier: "UP".into(),
                    id: format!("{:012}", 400_000_000_000u64 + i as u64),
                },
            ],
            description: Some(format!("Widget model {i}")),
            quantities: vec![quantity("33", i % 500), quantity("17", i % 700)],
            ..InventoryItem::default()
        })
        .collect();
    InventoryAdvice846 {
        purpose: "00".into(),
        report_type: "DD".into(),
        reference: "INV-BENCH".into(),
        date: Date::new(2024, 1, 1),
        items,
        ..InventoryAdvice846::default()
    }
    .into()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// The median time of `RUNS` runs of `f` (dropping the result is not timed).
fn measure<T>(mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                let out = black_box(f());
                let elapsed = start.elapsed();
                drop(out);
                elapsed
            })
            .collect(),
    )
}

fn main() {
    let envelope = OutboundEnvelope::new(
        ("ZZ", "BENCH"),
        ("ZZ", "PARTNER"),
        1,
        1,
        Date::new(2024, 1, 1).expect("date"),
        Time::hm(12, 0).expect("time"),
    );
    let set = advice();
    let sets = std::slice::from_ref(&set);
    let text = render(&envelope, sets).expect("renders");
    let bytes = text.as_bytes();
    let megabytes = bytes.len() as f64 / 1e6;
    let segments = text.lines().count();

    // Reading is parsing (tokenize + envelope) and the typed read of every set.
    let read = || {
        let document = parse(bytes).expect("parses");
        let mut diagnostics = Vec::new();
        let typed: Vec<TypedSet> = document
            .sets()
            .filter_map(|(_, set)| TypedSet::read(set, &mut diagnostics))
            .collect();
        assert!(diagnostics.is_empty() && document.diagnostics.is_empty());
        (document, typed)
    };
    let (document, typed) = read();
    let loops = match typed.first() {
        Some(TypedSet::InventoryAdvice(advice)) => advice.items.len(),
        _ => 0,
    };
    assert_eq!(loops, LOOPS);
    let (_, parsed_set) = document.sets().next().expect("a set");

    let tokenizing = measure(|| tokenize(bytes));
    let parsing = measure(|| parse(bytes));
    let typing = measure(|| TypedSet::read(parsed_set, &mut Vec::new()));
    let reading = measure(read);
    let rendering = measure(|| render(&envelope, sets));

    let seconds = reading.as_secs_f64();
    println!(
        "846 with {LOOPS} LIN loops: {megabytes:.1} MB, {segments} segments; median of {RUNS} runs"
    );
    println!(
        "read (tokenize + envelope + typed): {:>8.1} ms  {:>7.1} MB/s  {:>6.1} sets/s  {:>9.0} LIN loops/s",
        seconds * 1e3,
        megabytes / seconds,
        1.0 / seconds,
        LOOPS as f64 / seconds
    );
    println!(
        "  tokenize:                         {:>8.1} ms",
        tokenizing.as_secs_f64() * 1e3
    );
    println!(
        "  tokenize + envelope:              {:>8.1} ms",
        parsing.as_secs_f64() * 1e3
    );
    println!(
        "  typed read:                       {:>8.1} ms",
        typing.as_secs_f64() * 1e3
    );
    println!(
        "render:                             {:>8.1} ms  {:>7.1} MB/s",
        rendering.as_secs_f64() * 1e3,
        megabytes / rendering.as_secs_f64()
    );
}
