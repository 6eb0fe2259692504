//! `crossdock bench ...`: starts the real binary as a child process on loopback with a fresh
//! embedded store, drives it from this process over HTTP, and prints medians over several runs.
//! The load generator shares the machine's cores with the hub, as it would in CI.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use hyper::Method;
use hyper::body::Bytes;
use serde_json::json;

use crossdock_cli::client::Client;

const TOKEN_VAR: &str = "CROSSDOCK_BENCH_TOKEN";
pub(crate) const TOKEN: &str = "bench-token-0123456789abcdef";

#[derive(Args, Clone)]
pub struct Common {
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Concurrent connections of the load generator.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Keep the hub's data directories here instead of a temporary folder.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run the hub on this PostgreSQL database (a fresh schema per run, dropped after it)
    /// instead of the embedded SQLite store; `ingest` and `reserve` only.
    #[arg(long)]
    pub postgres: Option<String>,
}

#[derive(Subcommand)]
pub enum BenchWhat {
    /// Durable NDJSON batch ingest (events/s).
    Ingest {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Distinct items the events spread over (each batch touches min(batch, items) items).
        #[arg(long, default_value_t = 100_000)]
        items: usize,
        /// The hub's partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Single-event HTTP ingest (events/s, latency percentiles).
    Http {
        #[arg(long, default_value_t = 200_000)]
        requests: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Availability queries (queries/s, latency percentiles).
    Atp {
        #[arg(long, default_value_t = 400_000)]
        requests: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Reservations on hot items, checked for oversell, against a pgbench baseline.
    Reserve {
        #[arg(long, default_value_t = 100)]
        items: usize,
        #[arg(long, default_value_t = 200_000)]
        requests: usize,
        /// Seconds of pgbench per run.
        #[arg(long, default_value_t = 10)]
        pgbench_s: u64,
        #[arg(long, default_value = "host=127.0.0.1 user=postgres dbname=test")]
        pg: String,
        /// Lines per reservation; above 1, each line's item is on another partition, and every
        /// run also measures 1-line reservations on the same partitions (no pgbench).
        #[arg(long, default_value_t = 1)]
        lines: usize,
        /// The hub's partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Resident memory of the hub holding N positions, and the peak of a restart loading them.
    Memory {
        #[arg(long, default_value_t = 1_000_000)]
        positions: usize,
        #[command(flatten)]
        common: Common,
    },
    /// `crossdock import positions` of an N-row snapshot: rows/s and peak memory of the
    /// importer and of the hub.
    Import {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Time from start to ready with N events in the log.
    Restart {
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Order capture over HTTP at a fixed rate (open loop), each with an ERP credit check
    /// against the simulator: latency from the scheduled send, and a no-oversell check.
    Orders {
        #[arg(long, default_value_t = 2_000)]
        rate: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        lines: usize,
        #[arg(long, default_value_t = 1_000)]
        items: usize,
        /// The credit simulator's answer time.
        #[arg(long, default_value_t = 5)]
        credit_ms: u64,
        /// The hub's partitions: above 1, an order whose lines are on several runs wide (its
        /// partition borrows the others' items for each step).
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[command(flatten)]
        common: Common,
    },
    /// A snapshot of N item-locations reconciled against a hub holding them: seconds and the
    /// hub's peak memory during the run.
    Reconcile {
        #[arg(long, default_value_t = 1_000_000)]
        positions: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Commit → first byte of the channel request, against an unthrottled Shopify simulator.
    DeliveryLatency {
        #[arg(long, default_value_t = 10_000)]
        rate: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 10_000)]
        items: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Time until every zero crossing is published: risk-first against FIFO, Shopify Standard.
    DeliveryPriority {
        #[arg(long, default_value_t = 10_000)]
        items: usize,
        #[arg(long, default_value_t = 500)]
        crossing: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Availability changes coalesced per request under a burst, Shopify Standard.
    DeliveryCoalesce {
        #[arg(long, default_value_t = 1_000)]
        items: usize,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[command(flatten)]
        common: Common,
    },
}

pub fn run(what: BenchWhat) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async {
        match what {
            BenchWhat::Ingest {
                events,
                batch,
                items,
                partitions,
                common,
            } => ingest(events, batch, items, partitions, &common).await,
            BenchWhat::Http { requests, common } => http(requests, &common).await,
            BenchWhat::Atp { requests, common } => atp(requests, &common).await,
            BenchWhat::Reserve {
                items,
                requests,
                lines,
                partitions,
                common,
                ..
            } if lines > 1 => {
                crate::bench_partitions::reserve_across(items, requests, lines, partitions, &common)
                    .await
            }
            BenchWhat::Reserve {
                items,
                requests,
                pgbench_s,
                pg,
                partitions,
                common,
                ..
            } => reserve(items, requests, pgbench_s, &pg, partitions, &common).await,
            BenchWhat::Memory { positions, common } => memory(positions, &common).await,
            BenchWhat::Restart { events, common } => restart(events, &common).await,
            BenchWhat::Import { rows, common } => import(rows, &common).await,
            BenchWhat::Reconcile { positions, common } => {
                crate::bench_reconcile::reconcile(positions, &common).await
            }
            BenchWhat::Orders {
                rate,
                seconds,
                lines,
                items,
                credit_ms,
                partitions,
                common,
            } => {
                crate::bench_orders::orders(
                    rate, seconds, lines, items, credit_ms, partitions, &common,
                )
                .await
            }
            BenchWhat::DeliveryLatency {
                rate,
                seconds,
                items,
                common,
            } => crate::bench_delivery::latency(rate, seconds, items, &common).await,
            BenchWhat::DeliveryPriority {
                items,
                crossing,
                common,
            } => crate::bench_delivery::priority(items, crossing, &common).await,
            BenchWhat::DeliveryCoalesce {
                items,
                events,
                common,
            } => crate::bench_delivery::coalesce(items, events, &common).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

/// A hub child process on a free loopback port.
pub(crate) struct Hub {
    child: Child,
    pub(crate) addr: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn write_config(dir: &Path, extra: &str) -> Result<PathBuf> {
    write_config_with(dir, "", extra)
}

/// The benchmark's config with more `[engine]` keys (`engine`) and more tables (`extra`).
fn write_config_with(dir: &Path, engine: &str, extra: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join("crossdock.toml");
    let text = format!(
        r#"[server]
data_dir = "data"
[engine]
batch_max = 10000
queue_max = 200000
{engine}
[[locations]]
id = "DC-EAST"
[[locations]]
id = "DC-WEST"
[[sources]]
id = "bench"
[[sources.owns]]
types = ["inventory.*", "transfer.*", "return.*", "supply.*"]
[[channels]]
id = "shopify"
locations = ["DC-EAST", "DC-WEST"]
[[channels]]
id = "b2b"
locations = ["DC-EAST"]
buffer = "10%"
[[tokens]]
name = "bench"
secret_env = "{TOKEN_VAR}"
scopes = ["admin"]
{extra}
"#
    );
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    Ok(path)
}

impl Hub {
    async fn start(dir: &Path) -> Result<(Hub, Duration)> {
        Self::start_with(dir, "").await
    }

    /// Like [`Hub::start`], with more config (appended to the benchmark's).
    pub(crate) async fn start_with(dir: &Path, extra: &str) -> Result<(Hub, Duration)> {
        Self::start_config(write_config(dir, extra)?).await
    }

    /// Like [`Hub::start_with`], with more `[engine]` keys.
    pub(crate) async fn start_with_engine(
        dir: &Path,
        engine: &str,
        extra: &str,
    ) -> Result<(Hub, Duration)> {
        Self::start_config(write_config_with(dir, engine, extra)?).await
    }

    /// A hub with `partitions` partitions.
    /// A hub with `partitions` partitions, on the store `common` asks for.
    pub(crate) async fn start_partitioned(
        dir: &Path,
        partitions: u32,
        common: &Common,
    ) -> Result<(Hub, Duration)> {
        let store = match &common.postgres {
            Some(url) => format!(
                "[store]\nkind = \"postgres\"\nurl = {url:?}\nschema = {:?}\n",
                pg_schema(dir)
            ),
            None => String::new(),
        };
        Self::start_config(write_config_with(
            dir,
            &format!("partitions = {partitions}"),
            &store,
        )?)
        .await
    }

    async fn start_config(config: PathBuf) -> Result<(Hub, Duration)> {
        let addr = format!("127.0.0.1:{}", free_port());
        let started = Instant::now();
        let child = std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", &addr])
            .env(TOKEN_VAR, TOKEN)
            .env(
                "CROSSDOCK_LOG",
                std::env::var("CROSSDOCK_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the hub: {e}"))?;
        let mut hub = Hub { child, addr };
        let ready = hub.wait_ready(started).await?;
        Ok((hub, ready))
    }

    async fn wait_ready(&mut self, started: Instant) -> Result<Duration> {
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the hub exited during start: {status}"));
            }
            if let Ok(mut c) = Client::connect(&self.addr, TOKEN).await
                && let Ok(r) = c.get("/readyz").await
                && r.status == 200
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err("the hub did not become ready in 300 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts measuring the peak resident memory (`VmHWM`) afresh (Linux `clear_refs` 5).
    pub(crate) fn reset_peak(&self) -> Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .map_err(|e| format!("cannot reset the peak memory mark: {e}"))
    }

    /// Resident memory now (`VmRSS`) or at its peak (`VmHWM`), in MiB.
    pub(crate) fn memory_mib(&self, field: &str) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .map_err(|e| e.to_string())?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {field}"))?;
        Ok(kb / 1024.0)
    }

    pub(crate) fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

pub(crate) fn run_dir(common: &Common, name: &str, run: usize) -> PathBuf {
    let base = common.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("crossdock-bench-{}", std::process::id()))
    });
    let dir = base.join(format!("{name}-{run}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub(crate) fn cleanup(common: &Common, dir: &Path) {
    if let Some(url) = &common.postgres {
        let _ = std::process::Command::new("psql")
            .args(["-q", "-d", url, "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", pg_schema(dir)))
            .output();
    }
    if common.dir.is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The PostgreSQL schema of a run's hub, named after its data directory.
fn pg_schema(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    format!("bench_{:016x}", h.finish())
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

pub(crate) fn percentile(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[i]) / 1000.0
}

fn event_line(id: &str, item: usize, location: &str, qty: i64, ty: &str) -> String {
    json!({
        "specversion": "1.0", "id": id, "source": "bench", "type": ty,
        "time": "2026-11-23T00:00:00Z",
        "data": {"item": format!("B-{item}"), "location": location, "qty": qty},
    })
    .to_string()
}

fn ndjson_batches(prefix: &str, events: usize, batch: usize, items: usize, ty: &str) -> Vec<Bytes> {
    (0..events)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|chunk| {
            let mut body = String::with_capacity(chunk.len() * 200);
            for &k in chunk {
                // Each pass over the items alternates location, so `items` items at two
                // locations are `2 * items` positions (alternating by `k % 2` gave an even
                // item count only one location per item).
                let loc = if (k / items).is_multiple_of(2) {
                    "DC-EAST"
                } else {
                    "DC-WEST"
                };
                body.push_str(&event_line(
                    &format!("{prefix}-{k}"),
                    k % items,
                    loc,
                    1 + (k % 7) as i64,
                    ty,
                ));
                body.push('\n');
            }
            Bytes::from(body)
        })
        .collect()
}

/// Sends prepared NDJSON bodies over `connections` connections; checks every line was applied.
pub(crate) async fn send_batches(
    addr: &str,
    bodies: Vec<Bytes>,
    connections: usize,
) -> Result<usize> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (bodies, next, addr) = (bodies.clone(), next.clone(), addr.to_string());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&addr, TOKEN)
                .await
                .map_err(|e| e.to_string())?;
            let mut applied = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<usize, String>(applied);
                };
                let r = c
                    .send(
                        Method::POST,
                        "/v1/events",
                        "application/x-ndjson",
                        body.clone(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status != 200 {
                    return Err(format!(
                        "batch answered {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
                applied += r
                    .body
                    .split(|b| *b == b'\n')
                    .filter(|l| l.windows(9).any(|w| w == b"\"applied\""))
                    .count();
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| e.to_string())??;
    }
    Ok(total)
}

async fn ingest(
    events: usize,
    batch: usize,
    items: usize,
    partitions: u32,
    common: &Common,
) -> Result<()> {
    let connections = common.connections.unwrap_or(2);
    let mut rates = Vec::new();
    for run in 0..common.runs {
        let dir = run_dir(common, "ingest", run);
        let (hub, _) = Hub::start_partitioned(&dir, partitions, common).await?;
        let bodies = ndjson_batches(
            &format!("r{run}"),
            events,
            batch,
            items,
            "inventory.received.v1",
        );
        let started = Instant::now();
        let applied = send_batches(&hub.addr, bodies, connections).await?;
        let secs = started.elapsed().as_secs_f64();
        if applied != events {
            return Err(format!("{applied} of {events} events applied"));
        }
        let rate = events as f64 / secs;
        println!(
            "run {run}: {events} events over {items} items in {secs:.2} s = {rate:.0} events/s \
             (batches of {batch}, {connections} connections)"
        );
        rates.push(rate);
        hub.stop();
        cleanup(common, &dir);
    }
    println!("ingest median: {:.0} events/s", median(rates));
    Ok(())
}

/// Runs `requests` requests made by `make` over `connections` connections; returns (rate, sorted latencies).
pub(crate) async fn load<F>(
    addr: &str,
    requests: usize,
    connections: usize,
    make: F,
) -> Result<(f64, Vec<u32>)>
where
    F: Fn(usize) -> (Method, String, Bytes, u16) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (make, next, addr) = (make.clone(), next.clone(), addr.to_string());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&addr, TOKEN)
                .await
                .map_err(|e| e.to_string())?;
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return Ok::<Vec<u32>, String>(lat);
                }
                let (method, path, body, expect) = make(i);
                let t = Instant::now();
                let r = c
                    .send(method, &path, "application/json", body)
                    .await
                    .map_err(|e| e.to_string())?;
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                if r.status != expect && !(expect == 201 && r.status == 409) {
                    return Err(format!(
                        "{path} answered {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    let rate = requests as f64 / started.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok((rate, all))
}

pub(crate) fn report(name: &str, runs: Vec<(f64, f64, f64)>) {
    let rate = median(runs.iter().map(|r| r.0).collect());
    let p50 = median(runs.iter().map(|r| r.1).collect());
    let p99 = median(runs.iter().map(|r| r.2).collect());
    println!("{name} median: {rate:.0}/s, p50 {p50:.2} ms, p99 {p99:.2} ms");
}

async fn http(requests: usize, common: &Common) -> Result<()> {
    let connections = common.connections.unwrap_or(64);
    let mut runs = Vec::new();
    for run in 0..common.runs {
        let dir = run_dir(common, "http", run);
        let (hub, _) = Hub::start(&dir).await?;
        let bodies: Arc<Vec<Bytes>> = Arc::new(
            (0..requests)
                .map(|k| {
                    let loc = if k % 2 == 0 { "DC-EAST" } else { "DC-WEST" };
                    Bytes::from(event_line(
                        &format!("h{run}-{k}"),
                        k % 10_000,
                        loc,
                        1,
                        "inventory.received.v1",
                    ))
                })
                .collect(),
        );
        let (rate, lat) = load(&hub.addr, requests, connections, move |i| {
            (Method::POST, "/v1/events".into(), bodies[i].clone(), 200)
        })
        .await?;
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        println!(
            "run {run}: {rate:.0} events/s, p50 {p50:.2} ms, p99 {p99:.2} ms ({connections} connections)"
        );
        runs.push((rate, p50, p99));
        hub.stop();
        cleanup(common, &dir);
    }
    report("single-event ingest", runs);
    Ok(())
}

async fn atp(requests: usize, common: &Common) -> Result<()> {
    let connections = common.connections.unwrap_or(32);
    let items = 10_000;
    let mut runs = Vec::new();
    for run in 0..common.runs {
        let dir = run_dir(common, "atp", run);
        let (hub, _) = Hub::start(&dir).await?;
        send_batches(
            &hub.addr,
            ndjson_batches("seed", items * 2, 10_000, items, "inventory.counted.v1"),
            2,
        )
        .await?;
        let (rate, lat) = load(&hub.addr, requests, connections, move |i| {
            let channel = if i % 2 == 0 { "shopify" } else { "b2b" };
            (
                Method::GET,
                format!("/v1/availability?item=B-{}&channel={channel}", i % items),
                Bytes::new(),
                200,
            )
        })
        .await?;
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        println!(
            "run {run}: {rate:.0} queries/s, p50 {p50:.2} ms, p99 {p99:.2} ms ({connections} connections)"
        );
        runs.push((rate, p50, p99));
        hub.stop();
        cleanup(common, &dir);
    }
    report("ATP", runs);
    Ok(())
}

async fn reserve(
    items: usize,
    requests: usize,
    pgbench_s: u64,
    pg: &str,
    partitions: u32,
    common: &Common,
) -> Result<()> {
    let connections = common.connections.unwrap_or(64);
    // Enough stock that most requests succeed, little enough that the hottest items run out.
    let stock_per_item = (requests / items) as i64;
    let mut runs = Vec::new();
    let mut baselines = Vec::new();
    for run in 0..common.runs {
        let dir = run_dir(common, "reserve", run);
        let (hub, _) = Hub::start_partitioned(&dir, partitions, common).await?;
        let seed: Vec<Bytes> = vec![Bytes::from(
            (0..items)
                .map(|i| {
                    json!({"specversion": "1.0", "id": format!("seed-{i}"), "source": "bench",
                        "type": "inventory.counted.v1", "time": "2026-11-23T00:00:00Z",
                        "data": {"item": format!("B-{i}"), "location": "DC-EAST", "qty": stock_per_item}})
                    .to_string()
                        + "\n"
                })
                .collect::<String>(),
        )];
        send_batches(&hub.addr, seed, 1).await?;
        let (rate, lat) = load(&hub.addr, requests, connections, move |i| {
            let body = json!({"id": format!("r{run}-{i}"), "channel": "shopify",
                "lines": [{"item": format!("B-{}", fastrand::usize(..items)), "qty": 1}], "ttl_s": 3600});
            (Method::POST, "/v1/reservations".into(), Bytes::from(body.to_string()), 201)
        })
        .await?;
        // Zero oversell: every item's reserved equals what was granted and available never < 0.
        let mut c = Client::connect(&hub.addr, TOKEN)
            .await
            .map_err(|e| e.to_string())?;
        let mut reserved_total = 0;
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
                reserved_total += p["reserved"].as_i64().unwrap_or(0);
            }
        }
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        println!(
            "run {run}: {rate:.0} reservations/s, p50 {p50:.2} ms, p99 {p99:.2} ms; {reserved_total} units held of \
             {} in stock, 0 oversold ({connections} connections, {items} items)",
            stock_per_item * items as i64
        );
        runs.push((rate, p50, p99));
        hub.stop();
        cleanup(common, &dir);
        baselines.push(pgbench(items, stock_per_item, connections, pgbench_s, pg)?);
    }
    report("reservations", runs.clone());
    let ours = median(runs.iter().map(|r| r.0).collect());
    let base = median(baselines);
    println!(
        "pgbench baseline median: {base:.0} tps; crossdock / pgbench = {:.2}x",
        ours / base
    );
    Ok(())
}

/// The reserve-if-available transaction a team would otherwise write, run by pgbench.
fn pgbench(items: usize, stock: i64, connections: usize, secs: u64, pg: &str) -> Result<f64> {
    let psql = |sql: &str| -> Result<()> {
        let out = std::process::Command::new("psql")
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-d", pg, "-c", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    psql("DROP TABLE IF EXISTS bench_stock")?;
    psql(&format!(
        "CREATE TABLE bench_stock (item int PRIMARY KEY, on_hand bigint NOT NULL, reserved bigint NOT NULL);
         INSERT INTO bench_stock SELECT g, {stock}, 0 FROM generate_series(1, {items}) g;"
    ))?;
    let script = std::env::temp_dir().join(format!("crossdock-pgbench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "\\set item random(1, {items})\n\
             BEGIN;\n\
             SELECT on_hand - reserved FROM bench_stock WHERE item = :item FOR UPDATE;\n\
             UPDATE bench_stock SET reserved = reserved + 1 WHERE item = :item AND on_hand - reserved >= 1;\n\
             COMMIT;\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let out = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &connections.to_string(),
            "-j",
            "2",
            "-T",
            &secs.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(pg_dbname(pg))
        .args(pg_args(pg))
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| {
            l.trim_start_matches("tps = ")
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .ok_or_else(|| {
            format!(
                "no tps in pgbench output: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    println!("pgbench: {tps:.0} tps ({connections} clients, {items} items, {secs} s)");
    let _ = std::fs::remove_file(&script);
    psql("DROP TABLE bench_stock")?;
    Ok(tps)
}

fn pg_field<'a>(pg: &'a str, key: &str) -> Option<&'a str> {
    pg.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn pg_dbname(pg: &str) -> String {
    pg_field(pg, "dbname").unwrap_or("postgres").to_string()
}

fn pg_args(pg: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(h) = pg_field(pg, "host") {
        out.extend(["-h".to_string(), h.to_string()]);
    }
    if let Some(u) = pg_field(pg, "user") {
        out.extend(["-U".to_string(), u.to_string()]);
    }
    out
}

async fn memory(positions: usize, common: &Common) -> Result<()> {
    let (mut rss, mut restart_peaks, mut ratios, mut restart_rss) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..common.runs {
        let dir = run_dir(common, "memory", run);
        let (hub, _) = Hub::start(&dir).await?;
        let before = hub.memory_mib("VmRSS")?;
        // Two locations per item: positions / 2 items.
        let bodies = ndjson_batches(
            "pos",
            positions,
            10_000,
            positions / 2,
            "inventory.counted.v1",
        );
        send_batches(&hub.addr, bodies, 2).await?;
        // Steady state: the last batches' buffers are freed once their answers are out.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = hub.memory_mib("VmRSS")?;
        let peak = hub.memory_mib("VmHWM")?;
        println!(
            "run {run}: {positions} positions, RSS {after:.0} MiB, peak {peak:.0} MiB during the \
             import (empty hub {before:.0} MiB)"
        );
        rss.push(after);
        hub.stop();
        // The restart: the same data loaded by a new process. Its peak (`VmHWM` once ready)
        // is the load's, since nothing else has run yet.
        let (hub, ready) = Hub::start(&dir).await?;
        let load_peak = hub.memory_mib("VmHWM")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let loaded = hub.memory_mib("VmRSS")?;
        println!(
            "run {run}: restart ready in {:.2} s, peak {load_peak:.0} MiB during the load \
             ({:.2}x the steady {after:.0} MiB), RSS {loaded:.0} MiB after it",
            ready.as_secs_f64(),
            load_peak / after,
        );
        restart_peaks.push(load_peak);
        ratios.push(load_peak / after);
        restart_rss.push(loaded);
        hub.stop();
        cleanup(common, &dir);
    }
    println!(
        "memory median: {:.0} MiB RSS with {positions} positions; restart peak {:.0} MiB \
         ({:.2}x the steady RSS), {:.0} MiB RSS after the restart",
        median(rss),
        median(restart_peaks),
        median(ratios),
        median(restart_rss),
    );
    Ok(())
}

/// Peak resident memory (`VmHWM`) of a running process, in MiB.
fn peak_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

async fn import(rows: usize, common: &Common) -> Result<()> {
    let (mut rates, mut importer_peaks, mut hub_peaks) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..common.runs {
        let dir = run_dir(common, "import", run);
        let (hub, _) = Hub::start(&dir).await?;
        // Two locations per item; the file is different each run, so nothing is a repeat.
        let csv = dir.join("positions.csv");
        let mut text = String::with_capacity(rows * 28);
        text.push_str("item,location,qty\n");
        for i in 0..rows {
            let loc = if i % 2 == 0 { "DC-EAST" } else { "DC-WEST" };
            text.push_str(&format!("ITEM-{},{loc},{}\n", i / 2, (i + run) % 1000));
        }
        std::fs::write(&csv, text).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut child =
            std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
                .args(["import", "positions"])
                .arg(&csv)
                .args(["--url", &format!("http://{}", hub.addr), "--token", TOKEN])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start the importer: {e}"))?;
        let mut importer_peak: f64 = 0.0;
        let status = loop {
            if let Some(p) = peak_mib(child.id()) {
                importer_peak = importer_peak.max(p);
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let secs = started.elapsed().as_secs_f64();
        if !status.success() {
            return Err(format!("the import failed: {status}"));
        }
        let hub_peak = hub.memory_mib("VmHWM")?;
        let rate = rows as f64 / secs;
        println!(
            "run {run}: {rows} rows in {secs:.2} s = {rate:.0} rows/s; peak RSS importer \
             {importer_peak:.0} MiB, hub {hub_peak:.0} MiB"
        );
        rates.push(rate);
        importer_peaks.push(importer_peak);
        hub_peaks.push(hub_peak);
        hub.stop();
        cleanup(common, &dir);
    }
    println!(
        "import median: {:.0} rows/s; peak RSS importer {:.0} MiB, hub {:.0} MiB",
        median(rates),
        median(importer_peaks),
        median(hub_peaks)
    );
    Ok(())
}

async fn restart(events: usize, common: &Common) -> Result<()> {
    let dir = run_dir(common, "restart", 0);
    let (hub, _) = Hub::start(&dir).await?;
    let chunk = 1_000_000;
    let mut sent = 0;
    while sent < events {
        let n = chunk.min(events - sent);
        let bodies = ndjson_batches(
            &format!("e{sent}"),
            n,
            10_000,
            100_000,
            "inventory.received.v1",
        );
        send_batches(&hub.addr, bodies, 2).await?;
        sent += n;
        println!("loaded {sent} events");
    }
    hub.stop();
    let mut times = Vec::new();
    for run in 0..common.runs {
        let (hub, ready) = Hub::start(&dir).await?;
        println!(
            "run {run}: ready in {:.2} s with {events} events in the log",
            ready.as_secs_f64()
        );
        times.push(ready.as_secs_f64());
        hub.stop();
    }
    println!(
        "restart median: {:.2} s to ready with {events} events",
        median(times)
    );
    print_store_size(&dir);
    cleanup(common, &dir);
    Ok(())
}

fn print_store_size(dir: &Path) {
    let db = dir.join("data").join("crossdock.db");
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!("store file: {:.0} MiB", size as f64 / 1_048_576.0);
}
