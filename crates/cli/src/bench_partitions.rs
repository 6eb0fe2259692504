//! `crossdock bench reserve --lines L --partitions N`: reservations whose L lines are each on
//! another partition (the cross-partition protocol), against 1-line reservations on a hub with
//! the same partitions, in the same run; zero oversell checked after each.

use hyper::Method;
use hyper::body::Bytes;
use serde_json::json;

use crate::bench::{
    Common, Hub, TOKEN, cleanup, load, median, percentile, report, run_dir, send_batches,
};
use crossdock_cli::client::Client;
use crossdock_engine::partition_of;
use crossdock_model::ItemId;

type Result<T> = std::result::Result<T, String>;

pub(crate) async fn reserve_across(
    items: usize,
    requests: usize,
    lines: usize,
    partitions: u32,
    common: &Common,
) -> Result<()> {
    // With one partition every line is on it: the cost of the lines without the protocol.
    if partitions > 1 && lines > partitions as usize {
        return Err(format!(
            "{lines} lines on distinct partitions need at least {lines} partitions"
        ));
    }
    let connections = common.connections.unwrap_or(64);
    // The items of each partition, so every line of a request can be put on another one.
    let mut by_partition: Vec<Vec<usize>> = vec![Vec::new(); partitions as usize];
    for i in 0..items {
        let id = ItemId::new(&format!("B-{i}")).map_err(|e| e.to_string())?;
        by_partition[partition_of(&id, partitions) as usize].push(i);
    }
    if by_partition.iter().any(Vec::is_empty) {
        return Err(format!("{items} items leave a partition empty; use more"));
    }
    // Enough stock for every request: this measures the protocol, not refusals.
    let stock = (requests * lines) as i64;
    let mut single = Vec::new();
    let mut across = Vec::new();
    for run in 0..common.runs {
        for (width, out) in [(1, &mut single), (lines, &mut across)] {
            let dir = run_dir(common, &format!("reserve-{width}"), run);
            let (hub, _) = Hub::start_partitioned(&dir, partitions, common).await?;
            let seed = Bytes::from(
                (0..items)
                    .map(|i| {
                        json!({"specversion": "1.0", "id": format!("seed-{i}"), "source": "bench",
                            "type": "inventory.counted.v1", "time": crossdock_model::Timestamp::now(),
                            "data": {"item": format!("B-{i}"), "location": "DC-EAST", "qty": stock}})
                        .to_string()
                            + "\n"
                    })
                    .collect::<String>(),
            );
            send_batches(&hub.addr, vec![seed], 1).await?;
            let parts = by_partition.clone();
            let (rate, lat) = load(&hub.addr, requests, connections, move |i| {
                // `width` distinct partitions, one item on each (distinct items of the one
                // partition when there is only one).
                let mut chosen: Vec<usize> = Vec::with_capacity(width);
                let mut ps: Vec<usize> = Vec::with_capacity(width);
                while chosen.len() < width {
                    let p = fastrand::usize(..parts.len());
                    let item = parts[p][fastrand::usize(..parts[p].len())];
                    if (parts.len() == 1 || !ps.contains(&p)) && !chosen.contains(&item) {
                        ps.push(p);
                        chosen.push(item);
                    }
                }
                let lines: Vec<_> = chosen
                    .iter()
                    .map(|item| json!({"item": format!("B-{item}"), "qty": 1}))
                    .collect();
                let body = json!({"id": format!("r{run}-{width}-{i}"), "channel": "shopify",
                    "lines": lines, "ttl_s": 3600});
                (
                    Method::POST,
                    "/v1/reservations".into(),
                    Bytes::from(body.to_string()),
                    201,
                )
            })
            .await?;
            let held = check(&hub.addr, items).await?;
            let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
            println!(
                "run {run}: {width}-line reservations, {partitions} partitions: {rate:.0}/s, p50 {p50:.2} ms, \
                 p99 {p99:.2} ms; {held} units held, 0 oversold ({connections} connections)"
            );
            if held != (requests * width) as i64 {
                return Err(format!(
                    "{held} units held for {requests} requests of {width} units"
                ));
            }
            out.push((rate, p50, p99));
            hub.stop();
            cleanup(common, &dir);
        }
    }
    let ratio =
        median(across.iter().map(|r| r.0).collect()) / median(single.iter().map(|r| r.0).collect());
    report("1-line reservations", single);
    let name = if partitions > 1 {
        format!("{lines}-line reservations across {lines} partitions")
    } else {
        format!("{lines}-line reservations on the one partition")
    };
    report(&name, across);
    println!("{lines}-line / 1-line = {ratio:.2}x");
    Ok(())
}

/// Units reserved over every item, failing on any position below zero.
async fn check(addr: &str, items: usize) -> Result<i64> {
    let mut c = Client::connect(addr, TOKEN)
        .await
        .map_err(|e| e.to_string())?;
    let mut held = 0;
    for i in 0..items {
        let r = c
            .get(&format!("/v1/items/B-{i}/positions"))
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        for p in v["positions"].as_array().ok_or("no positions")? {
            let available = p["available"].as_i64().ok_or("no available")?;
            if available < 0 {
                return Err(format!("oversell: B-{i} available {available}"));
            }
            held += p["reserved"].as_i64().unwrap_or(0);
        }
    }
    Ok(held)
}
