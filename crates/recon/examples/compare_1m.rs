//! Times the comparison alone on 1,000,000 item-locations (250,000 items at 4 locations, one
//! variance per 1,000 items), three times:
//! `cargo run --release -p crossdock-recon --example compare_1m`.

use crossdock_model::{ItemId, LocationId, Timestamp};
use crossdock_recon::{LedgerRow, SnapshotRow, Tolerance, compare};

fn main() {
    let n = 1_000_000usize;
    let items: Vec<ItemId> = (0..n / 4)
        .map(|i| ItemId::new(&format!("SKU-{i}")).expect("valid id"))
        .collect();
    let locations: Vec<LocationId> = (0..4)
        .map(|i| LocationId::new(&format!("DC-{i}")).expect("valid id"))
        .collect();
    let mut snapshot = Vec::with_capacity(n);
    let mut ledger = Vec::with_capacity(n);
    for (k, item) in items.iter().enumerate() {
        for location in &locations {
            let qty = (k % 100) as i64;
            snapshot.push(SnapshotRow {
                item: item.clone(),
                location: location.clone(),
                qty: qty + i64::from(k % 1000 == 0),
                status: None,
                lot: None,
            });
            ledger.push(LedgerRow {
                item: item.clone(),
                location: location.clone(),
                lot: None,
                on_hand: qty,
                quarantined: 0,
                damaged: 0,
            });
        }
    }
    let at = Timestamp::from_micros(0);
    for run in 0..3 {
        let started = std::time::Instant::now();
        let report = compare(&snapshot, &ledger, Tolerance::default(), at, at, 3600);
        println!(
            "run {run}: {n} item-locations compared in {:.3} s, {} variances",
            started.elapsed().as_secs_f64(),
            report.variances.len()
        );
    }
}
