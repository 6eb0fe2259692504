//! `crossdock bench delivery-*`: the hub's engine and delivery lanes in this process on a fresh
//! embedded store, publishing to the Shopify simulator over loopback HTTP. Commits are timed
//! where they happen (a hook on the committer); requests are timed by the simulator as their
//! head arrives, before it reads the body.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossdock_engine::Engine;
use crossdock_model::{Envelope, Event, Timestamp};
use crossdock_server::Hub;
use crossdock_sim::{ShopifyConfig, ShopifySim, ShopifyThrottle};
use crossdock_store::OutboxRow;

use crate::bench::{Common, median};

type Result<T> = std::result::Result<T, String>;

/// Commit instants of outbox rows, by item.
type Commits = Arc<Mutex<Vec<(String, Instant)>>>;

struct Rig {
    hub: Hub,
    sim: ShopifySim,
    commits: Commits,
    dir: PathBuf,
}

impl Rig {
    /// A hub with `items` items on one location and a `shopify` channel published to a fresh
    /// simulator with `throttle`; the lane's limit is the same (`rate` points/s, bucket `burst`).
    async fn start(dir: &Path, items: usize, throttle: ShopifyThrottle, fifo: bool) -> Result<Rig> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let sim = ShopifySim::start(ShopifyConfig {
            throttle,
            ..ShopifyConfig::default()
        })
        .await
        .map_err(|e| format!("simulator: {e}"))?;
        let mut list = String::from("item\n");
        let mut xwalk = String::from("item,external_id\n");
        for i in 1..=items {
            list.push_str(&format!("SKU-{i}\n"));
            xwalk.push_str(&format!("SKU-{i},{i}\n"));
            sim.insert_item(i as u64, 0);
        }
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
        };
        write("items.csv", &list)?;
        write("shopify-items.csv", &xwalk)?;
        write("shop-token", "shpat_simulator")?;
        write("admin-token", "bench-admin-token-0123456789")?;
        let order = if fifo { "fifo" } else { "risk_first" };
        write(
            "crossdock.toml",
            &format!(
                r#"[server]
data_dir = "data"
[engine]
batch_max = 10000
queue_max = 200000
[master]
items_file = "items.csv"
[[locations]]
id = "DC-EAST"
[[sources]]
id = "bench"
[[sources.owns]]
types = ["inventory.*"]
[[channels]]
id = "shopify"
locations = ["DC-EAST"]
low_stock = 3
[[tokens]]
name = "admin"
secret_file = "admin-token"
scopes = ["admin"]
[[endpoints]]
channel = "shopify"
kind = "shopify"
crosswalk = "shopify-items.csv"
secrets_file = {{ access_token = "shop-token" }}
order = "{order}"
rate = {{ kind = "cost", rate = {rate}, burst = {burst} }}
[endpoints.shopify]
shop_url = "{url}"
location_id = "1"
"#,
                rate = throttle.restore_rate,
                burst = throttle.maximum_available,
                url = sim.url(),
            ),
        )?;
        let config = crossdock_server::config::load(&dir.join("crossdock.toml")).map_err(|p| {
            p.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let commits: Commits = Arc::default();
        let seen = commits.clone();
        let observe: crossdock_engine::OutboxSink = Arc::new(move |rows: &[OutboxRow]| {
            let now = Instant::now();
            let mut c = seen.lock().expect("commits");
            c.extend(rows.iter().map(|r| (r.key.clone(), now)));
        });
        let hub =
            crossdock_server::start_observed(&config, Some(observe)).map_err(|e| e.to_string())?;
        hub.delivery.start();
        Ok(Rig {
            hub,
            sim,
            commits,
            dir: dir.to_path_buf(),
        })
    }

    async fn stop(self, common: &Common) {
        self.hub.delivery.shutdown().await;
        self.hub.engine.shutdown();
        self.sim.stop().await;
        if common.dir.is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Waits until the simulator shows `want(i)` for every item `1..=items`.
    async fn wait_for(
        &self,
        items: usize,
        within: Duration,
        want: impl Fn(usize) -> Option<i64>,
    ) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let shown = self.sim.quantities();
            let off = (1..=items)
                .filter(|i| {
                    want(*i).is_some_and(|w| {
                        shown
                            .get(&format!("gid://shopify/InventoryItem/{i}"))
                            .or_else(|| shown.get(&i.to_string()))
                            != Some(&w)
                    })
                })
                .count();
            if off == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{off} items not published after {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn event(n: usize, ty: &str, data: serde_json::Value) -> Result<Event> {
    let env: Envelope = serde_json::from_value(serde_json::json!({
        "specversion": "1.0", "id": format!("b-{n}"), "source": "bench", "type": ty,
        "time": Timestamp::now(), "data": data,
    }))
    .map_err(|e| e.to_string())?;
    Event::from_envelope(&env, Timestamp::now(), || format!("bench-{n}")).map_err(|e| e.to_string())
}

fn received(n: usize, item: usize, qty: i64) -> Result<Event> {
    event(
        n,
        "inventory.received.v1",
        serde_json::json!({"item": format!("SKU-{item}"), "location": "DC-EAST", "qty": qty}),
    )
}

fn adjusted(n: usize, item: usize, delta: i64) -> Result<Event> {
    event(
        n,
        "inventory.adjusted.v1",
        serde_json::json!({"item": format!("SKU-{item}"), "location": "DC-EAST", "delta": delta, "reason": "bench"}),
    )
}

async fn submit(engine: &Engine, events: Vec<Event>) -> Result<()> {
    for r in engine.submit_many(events).await {
        r.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Per item, the receive instants of the requests that named it, in order.
fn request_times(sim: &ShopifySim) -> HashMap<String, Vec<Instant>> {
    let mut by_item: HashMap<String, Vec<Instant>> = HashMap::new();
    for r in sim.requests() {
        if r.status != Some(200) {
            continue;
        }
        for id in r.items {
            let n = id.rsplit('/').next().unwrap_or(&id).to_string();
            by_item
                .entry(format!("SKU-{n}"))
                .or_default()
                .push(r.received_at);
        }
    }
    by_item
}

/// The first request naming `item` that arrived at or after `at`.
fn first_after(times: &HashMap<String, Vec<Instant>>, item: &str, at: Instant) -> Option<Instant> {
    let t = times.get(item)?;
    let i = t.partition_point(|x| *x < at);
    t.get(i).copied()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run_dir(common: &Common, name: &str, run: usize) -> PathBuf {
    let base = common.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("crossdock-bench-{}", std::process::id()))
    });
    base.join(format!("{name}-{run}"))
}

/// Commit → first byte of the channel request carrying the change, at `rate` events/s for
/// `seconds`, against an unthrottled simulator.
pub async fn latency(rate: usize, seconds: u64, items: usize, common: &Common) -> Result<()> {
    let unthrottled = ShopifyThrottle {
        maximum_available: 1e9,
        restore_rate: 1e9,
    };
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for run in 0..common.runs {
        let rig = Rig::start(
            &run_dir(common, "delivery-latency", run),
            items,
            unthrottled,
            false,
        )
        .await?;
        let tick = Duration::from_millis(10);
        let per_tick = (rate / 100).max(1);
        let total = rate * seconds as usize;
        let mut n = 0;
        let mut next = Instant::now();
        let mut tasks = Vec::new();
        while n < total {
            let batch: Vec<Event> = (0..per_tick)
                .map(|k| received(n + k, (n + k) % items + 1, 1))
                .collect::<Result<_>>()?;
            n += per_tick;
            let engine = rig.hub.engine.clone();
            tasks.push(tokio::spawn(async move { submit(&engine, batch).await }));
            next += tick;
            tokio::time::sleep_until(next.into()).await;
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        // Every item ends at its number of receipts; wait until the channel shows it.
        let counts: Vec<i64> = (0..items)
            .map(|i| ((total - i) as f64 / items as f64).ceil() as i64)
            .collect();
        rig.wait_for(items, Duration::from_secs(60), |i| Some(counts[i - 1]))
            .await?;
        let times = request_times(&rig.sim);
        let commits = std::mem::take(&mut *rig.commits.lock().expect("commits"));
        let mut lat: Vec<f64> = commits
            .iter()
            .filter_map(|(item, at)| {
                first_after(&times, item, *at).map(|t| (t - *at).as_secs_f64() * 1e3)
            })
            .collect();
        let missing = commits.len() - lat.len();
        lat.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        let (p50, p99, max) = (pct(&lat, 0.5), pct(&lat, 0.99), pct(&lat, 1.0));
        let stats = rig.sim.stats();
        println!(
            "run {run}: {} commits of changes, {} requests, commit→first byte p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({missing} not matched), violations {}",
            commits.len(),
            stats.requests_received,
            stats.rate_limit_violations
        );
        p50s.push(p50);
        p99s.push(p99);
        rig.stop(common).await;
    }
    println!(
        "delivery-latency: {rate} events/s for {seconds} s over {items} items: median p50 {:.2} ms, median p99 {:.2} ms",
        median(p50s),
        median(p99s)
    );
    Ok(())
}

/// 10,000 items change at once, `crossing` of them to zero; the time until every zero crossing
/// is on the channel, risk-first and FIFO in the same run, at Shopify Standard limits.
pub async fn priority(items: usize, crossing: usize, common: &Common) -> Result<()> {
    let mut ratios = Vec::new();
    let mut risk = Vec::new();
    let mut fifo = Vec::new();
    for run in 0..common.runs {
        let mut pair = [0.0f64; 2];
        for (k, order_fifo) in [false, true].into_iter().enumerate() {
            let name = if order_fifo { "fifo" } else { "risk_first" };
            let rig = Rig::start(
                &run_dir(common, &format!("delivery-priority-{name}"), run),
                items,
                ShopifyThrottle::STANDARD,
                order_fifo,
            )
            .await?;
            // Everything in stock and on the channel first.
            submit(
                &rig.hub.engine,
                (1..=items)
                    .map(|i| received(i, i, 10))
                    .collect::<Result<_>>()?,
            )
            .await?;
            rig.wait_for(items, Duration::from_secs(120), |_| Some(10))
                .await?;
            // Let the shop's bucket fill again, as after a quiet spell.
            while rig.sim.currently_available() < ShopifyThrottle::STANDARD.maximum_available * 0.99
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            // The burst: `crossing` items spread evenly drop to zero, the rest gain one.
            let step = items / crossing.max(1);
            let zero: Vec<usize> = (0..crossing).map(|c| c * step + step / 2 + 1).collect();
            let events: Vec<Event> = (1..=items)
                .map(|i| {
                    if zero.contains(&i) {
                        adjusted(items + i, i, -10)
                    } else {
                        adjusted(items + i, i, 1)
                    }
                })
                .collect::<Result<_>>()?;
            rig.sim.take_requests();
            rig.commits.lock().expect("commits").clear();
            submit(&rig.hub.engine, events).await?;
            let start = rig
                .commits
                .lock()
                .expect("commits")
                .iter()
                .map(|c| c.1)
                .min()
                .ok_or("no commit")?;
            rig.wait_for(items, Duration::from_secs(120), |i| {
                Some(if zero.contains(&i) { 0 } else { 11 })
            })
            .await?;
            let times = request_times(&rig.sim);
            let last_zero = zero
                .iter()
                .filter_map(|i| first_after(&times, &format!("SKU-{i}"), start))
                .max()
                .ok_or("no zero crossing published")?;
            let all = (1..=items)
                .filter_map(|i| first_after(&times, &format!("SKU-{i}"), start))
                .max()
                .ok_or("nothing published")?;
            let secs = (last_zero - start).as_secs_f64();
            let stats = rig.sim.stats();
            println!(
                "run {run} {name}: every zero crossing on the channel after {:.3} s, every change after {:.3} s; violations {}",
                secs,
                (all - start).as_secs_f64(),
                stats.rate_limit_violations
            );
            pair[k] = secs;
            rig.stop(common).await;
        }
        risk.push(pair[0]);
        fifo.push(pair[1]);
        ratios.push(pair[0] / pair[1]);
    }
    println!(
        "delivery-priority: {items} items, {crossing} crossing zero, Shopify Standard: risk-first {:.3} s, FIFO {:.3} s (medians); risk-first ÷ FIFO median {:.4}",
        median(risk),
        median(fifo),
        median(ratios)
    );
    Ok(())
}

/// A burst of `events` changes over `items` items at Shopify Standard limits: outbox rows per
/// request sent and per quantity written.
pub async fn coalesce(items: usize, events: usize, common: &Common) -> Result<()> {
    let mut per_request = Vec::new();
    for run in 0..common.runs {
        let rig = Rig::start(
            &run_dir(common, "delivery-coalesce", run),
            items,
            ShopifyThrottle::STANDARD,
            false,
        )
        .await?;
        let mut counts = vec![0i64; items];
        let mut list = Vec::with_capacity(events);
        for n in 0..events {
            let i = fastrand::usize(0..items);
            counts[i] += 1;
            list.push(received(n, i + 1, 1)?);
        }
        for chunk in list.chunks(10_000) {
            submit(&rig.hub.engine, chunk.to_vec()).await?;
        }
        rig.wait_for(items, Duration::from_secs(300), |i| {
            (counts[i - 1] > 0).then_some(counts[i - 1])
        })
        .await?;
        let rows = rig.commits.lock().expect("commits").len();
        let stats = rig.sim.stats();
        let ratio = rows as f64 / stats.requests_accepted.max(1) as f64;
        println!(
            "run {run}: {events} events, {rows} availability changes committed, {} requests, {} quantities written: {ratio:.1} changes per request, {:.1} per quantity written; violations {}",
            stats.requests_accepted,
            stats.items_applied,
            rows as f64 / stats.items_applied.max(1) as f64,
            stats.rate_limit_violations
        );
        per_request.push(ratio);
        rig.stop(common).await;
    }
    println!(
        "delivery-coalesce: {items} items, {events} events: median {:.1} changes per request",
        median(per_request)
    );
    Ok(())
}
