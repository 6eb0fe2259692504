//! `crossdock bench reconcile`: a snapshot of N item-locations reconciled by the real binary on
//! loopback, against a hub holding the same N positions: the time from sending the snapshot to
//! the answer (parse, the ledger backed out to the snapshot's time, the comparison, the run and
//! its variance rows stored) and the hub's peak resident memory during the run.
//!
//! The snapshot differs from the ledger in one row per 1,000, and events that happened after
//! the snapshot's time (one per 1,000 positions) are applied before it is sent, so the run backs
//! them out and reports exactly the injected variances.

use std::time::{Duration, Instant};

use hyper::Method;
use hyper::body::Bytes;
use serde_json::{Value, json};

use crossdock_cli::client::Client;

use crate::bench::{Common, Hub, TOKEN, cleanup, median, run_dir, send_batches};

type Result<T> = std::result::Result<T, String>;

const SOURCE: &str = r#"
[[reconciliation.sources]]
name = "bench"
kind = "csv"
[reconciliation.sources.actions]
default = "report"
"#;

/// Events loading `positions` positions: item `k / 2` at DC-EAST or DC-WEST by `k % 2`.
fn load_batches(positions: usize, time: &str, prefix: &str, every: usize) -> Vec<Bytes> {
    let lines: Vec<String> = (0..positions)
        .step_by(every)
        .map(|k| {
            json!({
                "specversion": "1.0", "id": format!("{prefix}-{k}"), "source": "bench",
                "type": if prefix == "load" { "inventory.counted.v1" } else { "inventory.received.v1" },
                "time": time,
                "data": {"item": format!("B-{}", k / 2), "location": location(k), "qty": qty(k)},
            })
            .to_string()
        })
        .collect();
    lines
        .chunks(10_000)
        .map(|c| Bytes::from(c.join("\n") + "\n"))
        .collect()
}

fn location(k: usize) -> &'static str {
    if k.is_multiple_of(2) {
        "DC-EAST"
    } else {
        "DC-WEST"
    }
}

fn qty(k: usize) -> i64 {
    1 + (k % 97) as i64
}

pub async fn reconcile(positions: usize, common: &Common) -> Result<()> {
    let (mut secs, mut peaks, mut before) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..common.runs {
        let dir = run_dir(common, "reconcile", run);
        let (hub, _) = Hub::start_with(&dir, SOURCE).await?;
        let loaded = send_batches(
            &hub.addr,
            load_batches(positions, "2026-11-23T00:00:00Z", "load", 1),
            2,
        )
        .await?;
        // The snapshot is as of 06:00; receipts at 07:00 (one per 1,000 positions) are work in
        // flight the hub has already applied.
        send_batches(
            &hub.addr,
            load_batches(positions, "2026-11-23T07:00:00Z", "later", 1000),
            1,
        )
        .await?;
        let mut csv = String::with_capacity(positions * 24);
        csv.push_str("item,location,qty\n");
        for k in 0..positions {
            let drift = i64::from(k % 1000 == 1);
            csv.push_str(&format!("B-{},{},{}\n", k / 2, location(k), qty(k) + drift));
        }
        let expected = (0..positions).filter(|k| k % 1000 == 1).count() as u64;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = hub.memory_mib("VmRSS")?;
        hub.reset_peak()?;
        let mut client = Client::connect(&hub.addr, TOKEN)
            .await
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let reply = client
            .send(
                Method::POST,
                "/v1/reconciliations?source=bench&as_of=2026-11-23T06:00:00Z",
                "text/csv",
                Bytes::from(csv),
            )
            .await
            .map_err(|e| e.to_string())?;
        let took = started.elapsed().as_secs_f64();
        let peak = hub.memory_mib("VmHWM")?;
        let answer: Value = serde_json::from_slice(&reply.body).map_err(|e| e.to_string())?;
        if reply.status != 201 {
            return Err(format!("reconciliation refused: {} {answer}", reply.status));
        }
        let want = json!({"match": positions as u64 - expected, "quantity_variance": expected});
        if answer["counts"] != want {
            return Err(format!(
                "expected counts {want}, the hub answered {}",
                answer["counts"]
            ));
        }
        println!(
            "run {run}: {positions} item-locations ({loaded} loaded) reconciled in {took:.3} s, \
             {expected} variances found; hub RSS {rss:.0} MiB before, peak {peak:.0} MiB during"
        );
        secs.push(took);
        peaks.push(peak);
        before.push(rss);
        hub.stop();
        cleanup(common, &dir);
    }
    println!(
        "reconcile median: {:.3} s for {positions} item-locations; hub peak RSS {:.0} MiB \
         (holding the positions: {:.0} MiB)",
        median(secs),
        median(peaks),
        median(before)
    );
    Ok(())
}
