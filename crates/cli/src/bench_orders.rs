//! `crossdock bench orders`: order capture over HTTP at a fixed rate, each order asking the ERP
//! credit-check simulator first, against the real binary on loopback.
//!
//! Open loop: order `i` is due at `start + i / rate` whatever happened to the earlier ones, and
//! its latency is measured from that due time, so a hub that falls behind shows it in the
//! percentiles (no coordinated omission). Afterwards every position is checked: nothing may be
//! allocated beyond what is on hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossdock_cli::client::Client;
use crossdock_sim::credit::{CreditConfig, CreditSim};
use hyper::Method;
use hyper::body::Bytes;
use serde_json::json;

use crate::bench::{Common, Hub, TOKEN, cleanup, median, percentile, run_dir, send_batches};

type Result<T> = std::result::Result<T, String>;

/// Units of each item on hand at each of the two locations.
const STOCK: i64 = 100;

pub async fn orders(
    rate: usize,
    seconds: u64,
    lines: usize,
    items: usize,
    credit_ms: u64,
    partitions: u32,
    common: &Common,
) -> Result<()> {
    let connections = common.connections.unwrap_or(64);
    let total = rate * seconds as usize;
    let mut runs = Vec::new();
    for run in 0..common.runs {
        let credit = CreditSim::start(CreditConfig {
            latency: Duration::from_millis(credit_ms),
            limit_minor: i64::MAX,
        })
        .await
        .map_err(|e| format!("credit simulator: {e}"))?;
        let dir = run_dir(common, "orders", run);
        let extra = format!(
            "[workflows]\n[workflows.credit]\nurl = \"{}\"\ntimeout_ms = 250\nfallback = \"hold\"\n",
            credit.url()
        );
        let (hub, _) =
            Hub::start_with_engine(&dir, &format!("partitions = {partitions}"), &extra).await?;
        let seed: Vec<String> = (0..items)
            .flat_map(|i| ["DC-EAST", "DC-WEST"].map(move |loc| (i, loc)))
            .map(|(i, loc)| {
                json!({"specversion": "1.0", "id": format!("seed-{i}-{loc}"), "source": "bench",
                    "type": "inventory.counted.v1", "time": "2026-11-23T00:00:00Z",
                    "data": {"item": format!("B-{i}"), "location": loc, "qty": STOCK}})
                .to_string()
                    + "\n"
            })
            .collect();
        // At most 10,000 lines per batch, as the API takes them.
        let batches = seed
            .chunks(10_000)
            .map(|c| Bytes::from(c.concat()))
            .collect();
        send_batches(&hub.addr, batches, 1).await?;

        let next = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let start = Instant::now() + Duration::from_millis(200);
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (next, accepted, refused) = (next.clone(), accepted.clone(), refused.clone());
            let addr = hub.addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = Client::connect(&addr, TOKEN)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut lat: Vec<(u32, u32)> = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, String>(lat);
                    }
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                    let mut rng = fastrand::Rng::with_seed(i as u64);
                    let mut chosen: Vec<usize> = Vec::with_capacity(lines);
                    while chosen.len() < lines.min(items) {
                        let item = rng.usize(..items);
                        if !chosen.contains(&item) {
                            chosen.push(item);
                        }
                    }
                    let body = json!({
                        "id": format!("o{run}-{i}"), "channel": "shopify",
                        "lines": chosen.iter().map(|k| json!({"item": format!("B-{k}"), "qty": 1 + rng.i64(0..3)})).collect::<Vec<_>>(),
                        "ship_to": {"region": if i % 2 == 0 { "NY" } else { "CA" }},
                        "amount_minor": 10_000,
                    });
                    let r = c
                        .send(
                            Method::POST,
                            "/v1/orders",
                            "application/json",
                            Bytes::from(body.to_string()),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    lat.push((
                        due.elapsed().as_micros().min(u128::from(u32::MAX)) as u32,
                        (i * 1000 / rate) as u32,
                    ));
                    match r.status {
                        201 => accepted.fetch_add(1, Ordering::Relaxed),
                        409 => refused.fetch_add(1, Ordering::Relaxed),
                        other => {
                            return Err(format!(
                                "order {i} answered {other}: {}",
                                String::from_utf8_lossy(&r.body)
                            ));
                        }
                    };
                }
            }));
        }
        let mut timed = Vec::with_capacity(total);
        for t in tasks {
            timed.extend(t.await.map_err(|e| e.to_string())??);
        }
        let elapsed = start.elapsed().as_secs_f64();
        // Where the slow answers were: the seconds holding most of the slowest 1%.
        let mut lat: Vec<u32> = timed.iter().map(|t| t.0).collect();
        lat.sort_unstable();
        let cut = lat[lat.len() * 99 / 100];
        let mut slow_by_second = std::collections::BTreeMap::<u32, usize>::new();
        for (l, at_ms) in &timed {
            if *l >= cut {
                *slow_by_second.entry(at_ms / 1000).or_default() += 1;
            }
        }
        let mut worst: Vec<(u32, usize)> = slow_by_second.into_iter().collect();
        worst.sort_by_key(|w| std::cmp::Reverse(w.1));
        worst.truncate(5);
        println!("run {run}: the slowest 1% by second of the run (second, count): {worst:?}");

        // Zero oversell: no position allocates more than it has.
        let mut c = Client::connect(&hub.addr, TOKEN)
            .await
            .map_err(|e| e.to_string())?;
        let mut allocated_total = 0;
        for i in 0..items {
            let r = c
                .get(&format!("/v1/items/B-{i}/positions"))
                .await
                .map_err(|e| e.to_string())?;
            let v: serde_json::Value =
                serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
            for p in v["positions"].as_array().ok_or("no positions")? {
                let available = p["available"].as_i64().ok_or("no available")?;
                if available < 0 {
                    return Err(format!("oversell: B-{i} available {available}"));
                }
                allocated_total += p["allocated"].as_i64().unwrap_or(0);
            }
        }
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        let achieved = total as f64 / elapsed;
        println!(
            "run {run}: {achieved:.0} orders/s offered {rate}/s for {seconds} s, p50 {p50:.2} ms, p99 {p99:.2} ms; \
             {} accepted, {} refused (out of stock), {allocated_total} units allocated of {} in stock, 0 oversold; \
             {} credit checks ({lines} lines per order, {connections} connections)",
            accepted.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            STOCK * 2 * items as i64,
            credit.calls(),
        );
        runs.push((achieved, p50, p99));
        hub.stop();
        credit.stop().await;
        cleanup(common, &dir);
    }
    let rate = median(runs.iter().map(|r| r.0).collect());
    let p50 = median(runs.iter().map(|r| r.1).collect());
    let p99 = median(runs.iter().map(|r| r.2).collect());
    println!("order capture median: {rate:.0} orders/s, p50 {p50:.2} ms, p99 {p99:.2} ms");
    Ok(())
}
