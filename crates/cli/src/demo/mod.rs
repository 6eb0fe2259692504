//! `crossdock demo`: one command, no set-up. Runs a whole distributor against an embedded hub:
//! an ERP (purchase orders, the credit check), three regional WMS (one of them a 3PL with a
//! sequenced feed), a transport system, Shopify, Amazon, a B2B portal on WooCommerce and a retail
//! chain trading by EDI, all on loopback with the simulators' real rate limits; customers order
//! as retail demand does (or as a purchase history did); faults are injected on schedule; at the
//! end the hub is asked what happened and a summary is printed.
//!
//! The hub runs in this process exactly as `crossdock serve` runs it (`crossdock_server::start`
//! and `serve`, the config generated as TOML and checked by the same loader) with the embedded
//! SQLite store in a fresh data folder. Every other system is a client of its HTTP API, its
//! webhooks or its partner folder, with its own token: the demo proves nothing by reaching
//! inside.
//!
//! - `world.rs`: the distributor, the items, the tokens and the generated config;
//! - `demand.rs`: the built-in demand and the history replay;
//! - `actors.rs`: ERP, WMS and transport; `channels.rs`: customers at each storefront;
//! - `faults.rs`: what is injected when; `summary.rs`: what the hub says afterwards.

mod actors;
mod api;
mod channels;
mod demand;
mod faults;
mod summary;
mod world;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossdock_sim::credit::{CreditConfig, CreditSim};
use crossdock_sim::{
    AmazonConfig, AmazonSim, RateLimit, ShopifyConfig, ShopifySim, WebhookConfig, WebhookSim,
    WooConfig, WooSim,
};

use actors::{Erp, Tms, Warehouse};
use api::{Api, Tally, get};
use channels::{Partner, Storefronts};
use world::{Channel, DCS, Item, Tokens};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How long customers order, in seconds (setup and the final drain come on top).
    #[arg(long, default_value_t = 90)]
    duration: u64,
    /// Replay a purchase history instead of the built-in demand: whitespace-separated
    /// `customer_id yyyymmdd number_of_cds dollar_value` lines (the CDNOW format), compressed
    /// into the run.
    #[arg(long)]
    history: Option<PathBuf>,
    /// Address the hub listens on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Keep the hub's config and data in this folder (new or empty) instead of a temporary one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seed of the built-in demand and of the systems' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the summary as JSON on stdout; progress goes to stderr.
    #[arg(long)]
    json: bool,
    /// Keep the hub running after the summary, to browse the dashboard, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    /// The hub's partitions (`[engine] partitions`): every feature works the same with any.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    partitions: u32,
}

/// Items in the demo's master.
const ITEMS: usize = 120;
const DURATION_MIN_S: u64 = 5;
const DURATION_MAX_S: u64 = 86_400;
/// The Shopify store's location.
const SHOPIFY_LOCATION: u64 = 71_234_567;

/// What every actor shares.
pub struct Ctx {
    pub api: Api,
    pub tokens: Tokens,
    pub items: Vec<Item>,
    /// Item id → index into `items`.
    pub index: HashMap<String, usize>,
    pub tally: Tally,
    pub progress: Progress,
    /// The 3PL's feed misbehaves while this is on.
    pub disorder: AtomicBool,
    /// When customers started ordering.
    started: std::sync::OnceLock<Instant>,
    pub seed: u64,
    /// Items sold since the ERP last looked.
    touched: Mutex<BTreeSet<usize>>,
    /// One order per item at a time (see `channels.rs`).
    pub item_locks: Vec<tokio::sync::Mutex<()>>,
}

impl Ctx {
    /// The customers start now.
    fn go(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// When the customers started (now, before they have).
    pub fn started(&self) -> Instant {
        *self.started.get().unwrap_or(&Instant::now())
    }

    pub fn touch(&self, items: &[usize]) {
        self.touched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(items.iter().copied());
    }

    pub fn touched_take(&self) -> BTreeSet<usize> {
        std::mem::take(&mut *self.touched.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Progress lines, stamped with the time since the start.
pub struct Progress {
    started: Instant,
    to_stderr: bool,
}

impl Progress {
    pub fn say(&self, msg: &str) {
        let line = format!("[{:>6.1}s] {msg}", self.started.elapsed().as_secs_f64());
        if self.to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

/// Bad input: said on stderr, exit 2.
fn refuse(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("crossdock demo: {msg}");
    ExitCode::from(2)
}

pub fn run(args: DemoArgs) -> ExitCode {
    if !(DURATION_MIN_S..=DURATION_MAX_S).contains(&args.duration) {
        return refuse(format!(
            "--duration must be between {DURATION_MIN_S} and {DURATION_MAX_S} seconds, got {}",
            args.duration
        ));
    }
    let run = Duration::from_secs(args.duration);
    let plan = match &args.history {
        None => demand::built_in(args.seed, run, ITEMS),
        Some(path) => match demand::read_history(path) {
            Ok(purchases) => {
                demand::from_history(&purchases, run, ITEMS, &path.display().to_string())
            }
            Err(e) => return refuse(format!("--history: {e}")),
        },
    };
    let (dir, keep) = match &args.data_dir {
        Some(d) => match fresh_dir(d) {
            Ok(()) => (d.clone(), true),
            Err(e) => return refuse(format!("--data-dir {}: {e}", d.display())),
        },
        None => {
            let d = std::env::temp_dir()
                .join(format!("crossdock-demo-{}", uuid::Uuid::new_v4().simple()));
            if let Err(e) = std::fs::create_dir_all(&d) {
                return refuse(format!("cannot create {}: {e}", d.display()));
            }
            (d, false)
        }
    };
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    if let Err(e) = init_logs(&dir.join("crossdock.log")) {
        return refuse(format!("cannot write the log: {e}"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(demo(&args, plan, &dir, keep));
    runtime.shutdown_timeout(Duration::from_secs(2));
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    code
}

/// A `--data-dir` must be new or empty: the demo starts from nothing.
fn fresh_dir(d: &Path) -> Result<(), String> {
    match std::fs::read_dir(d) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(
                    "is not empty; give a new or empty folder (the demo starts from an empty hub)"
                        .into(),
                )
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(d).map_err(|e| format!("cannot create: {e}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The hub's JSON logs go to a file in the data folder, so the terminal shows the demo.
fn init_logs(path: &Path) -> std::io::Result<()> {
    use tracing_subscriber::EnvFilter;
    let file = std::fs::File::create(path)?;
    let filter =
        EnvFilter::try_from_env("CROSSDOCK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(Mutex::new(file))
        .init();
    Ok(())
}

/// The simulators, started before the hub so its config can point at them.
struct Sims {
    shopify: Arc<ShopifySim>,
    amazon: Arc<AmazonSim>,
    woo: Arc<WooSim>,
    erp: Arc<WebhookSim>,
    wms: Vec<Arc<WebhookSim>>,
    credit: CreditSim,
}

async fn start_sims(items: &[Item], webhook_secret: &str) -> std::io::Result<Sims> {
    let shopify = ShopifySim::start(ShopifyConfig {
        location_ids: vec![SHOPIFY_LOCATION],
        ..ShopifyConfig::default()
    })
    .await?;
    let amazon = AmazonSim::start(AmazonConfig::default()).await?;
    let woo = WooSim::start(WooConfig {
        // The portal's host allows 10 requests a second.
        rate_limit: Some(RateLimit::new(10.0, 20.0)),
        ..WooConfig::default()
    })
    .await?;
    for i in items {
        shopify.insert_item(i.shopify_id, 0);
        amazon.insert_item(&i.id, 0);
        woo.insert_product(i.woo_id, 0);
    }
    let hook = || WebhookConfig {
        secret: webhook_secret.as_bytes().to_vec(),
        ..WebhookConfig::default()
    };
    let erp = WebhookSim::start(hook()).await?;
    let mut wms = Vec::new();
    for _ in &DCS {
        wms.push(Arc::new(WebhookSim::start(hook()).await?));
    }
    let credit = CreditSim::start(CreditConfig {
        latency: Duration::from_millis(3),
        limit_minor: 5_000_000,
    })
    .await?;
    Ok(Sims {
        shopify: Arc::new(shopify),
        amazon: Arc::new(amazon),
        woo: Arc::new(woo),
        erp: Arc::new(erp),
        wms,
        credit,
    })
}

async fn demo(args: &DemoArgs, plan: demand::Plan, dir: &Path, keep: bool) -> ExitCode {
    let progress = Progress {
        started: Instant::now(),
        to_stderr: args.json,
    };
    let items = world::items(ITEMS);
    let webhook_secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let shopify_secret = format!("shpss_{}", uuid::Uuid::new_v4().simple());
    let sims = match start_sims(&items, &webhook_secret).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crossdock demo: cannot start the simulators: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            return refuse(format!(
                "cannot listen on {}: {e} (--listen 127.0.0.1:0 picks a free port)",
                args.listen
            ));
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let tokens = Tokens::generate();
    let amazon_config = sims.amazon.config().clone();
    let targets = world::Targets {
        shopify_url: sims.shopify.url().to_string(),
        shopify_location: SHOPIFY_LOCATION,
        shopify_access_token: sims.shopify.config().access_token.clone(),
        shopify_webhook_secret: shopify_secret.clone(),
        amazon_url: sims.amazon.url().to_string(),
        amazon_lwa_url: sims.amazon.token_url(),
        amazon_seller: amazon_config.seller_id.clone(),
        amazon_marketplace: amazon_config.marketplace_ids[0].clone(),
        amazon_refresh_token: amazon_config.refresh_token.clone(),
        amazon_client_id: amazon_config.client_id.clone(),
        amazon_client_secret: amazon_config.client_secret.clone(),
        woo_url: sims.woo.url().to_string(),
        woo_key: sims.woo.config().consumer_key.clone(),
        woo_secret: sims.woo.config().consumer_secret.clone(),
        erp_url: sims.erp.url().to_string(),
        credit_url: sims.credit.url(),
        wms_urls: [0, 1, 2].map(|i| sims.wms[i].url().to_string()),
        webhook_secret,
    };
    let recon_interval_s = (args.duration / 4).clamp(5, 600);
    let config_path = match world::write(
        dir,
        &addr.to_string(),
        &items,
        &tokens,
        &targets,
        recon_interval_s,
        args.partitions,
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("crossdock demo: cannot write the config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match crossdock_server::config::load(&config_path) {
        Ok(c) => Arc::new(c),
        Err(problems) => {
            for p in &problems {
                eprintln!("{}: {p}", config_path.display());
            }
            eprintln!("crossdock demo: the generated config has problems (a bug in the demo)");
            return ExitCode::FAILURE;
        }
    };
    let hub = match tokio::task::block_in_place(|| crossdock_server::start(&config)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("crossdock demo: the hub cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop_hub, hub_stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = hub.engine.clone();
    let server = tokio::spawn(crossdock_server::serve(
        listener,
        hub,
        config.clone(),
        async move {
            let _ = hub_stopped.await;
        },
    ));
    let base = format!("http://{addr}");
    let api = Api::new(base.clone());
    let ready = wait_ready(&api).await;
    let code = if let Err(e) = ready {
        eprintln!("crossdock demo: the hub did not become ready: {e}");
        ExitCode::FAILURE
    } else {
        let index = items
            .iter()
            .enumerate()
            .map(|(i, x)| (x.id.clone(), i))
            .collect();
        let ctx = Arc::new(Ctx {
            api,
            tokens,
            item_locks: (0..items.len())
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            items,
            index,
            tally: Tally::default(),
            progress,
            disorder: AtomicBool::new(false),
            started: std::sync::OnceLock::new(),
            seed: args.seed,
            touched: Mutex::new(BTreeSet::new()),
        });
        let dashboard = format!("{base}/ui");
        banner(&ctx, args, &plan, &base, &dashboard, dir, keep);
        let outcome = drive(
            ctx.clone(),
            args,
            plan,
            &sims,
            shopify_secret.into_bytes(),
            &config,
            dashboard,
            dir,
            keep,
        )
        .await;
        match outcome {
            Ok(s) => {
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&s).expect("the summary serializes")
                    );
                } else {
                    println!("{}", summary::render(&s));
                }
                if args.keep_running {
                    ctx.progress.say(&format!(
                        "the hub keeps running: dashboard {base}/ui (admin token {}); Ctrl-C to stop",
                        ctx.tokens.admin
                    ));
                    let _ = tokio::signal::ctrl_c().await;
                }
                if s.ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("crossdock demo: {e}");
                ExitCode::FAILURE
            }
        }
    };
    let _ = stop_hub.send(());
    if let Ok(Err(e)) = server.await {
        eprintln!("crossdock demo: server error: {e}");
    }
    tokio::task::block_in_place(|| engine.shutdown());
    code
}

async fn wait_ready(api: &Api) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match api.get("", "/readyz").await {
            Ok(a) if a.status == 200 => return Ok(()),
            other if started.elapsed() > Duration::from_secs(30) => {
                return Err(format!("{other:?}"));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn banner(
    ctx: &Ctx,
    args: &DemoArgs,
    plan: &demand::Plan,
    base: &str,
    dashboard: &str,
    dir: &Path,
    keep: bool,
) {
    let p = &ctx.progress;
    p.say("crossdock demo: a distributor with three DCs (DC-CENTRAL run by a 3PL), 120 items,");
    p.say("  an ERP, three WMS, a transport system, Shopify, Amazon, a B2B portal (WooCommerce)");
    p.say("  and a retail chain trading by EDI, simulated on loopback with their real rate limits");
    p.say(&format!(
        "hub        {base}  (embedded SQLite in {}{})",
        dir.join("data").display(),
        if keep {
            ""
        } else {
            ", removed at the end; --data-dir keeps it"
        }
    ));
    p.say(&format!(
        "dashboard  {dashboard}   admin token: {}",
        ctx.tokens.admin
    ));
    p.say(&format!("demand     {}", plan.origin));
    if let Some(promo) = &plan.promotion {
        p.say(&format!(
            "           promotion from {:.0}s to {:.0}s on {} items",
            promo.from.as_secs_f64(),
            promo.to.as_secs_f64(),
            promo.items.len()
        ));
    }
    p.say(&format!(
        "run        {} orders over {} s, then the systems finish their work and the hub is asked what happened",
        plan.orders.len(),
        args.duration
    ));
}

/// Sets the world up, runs the demand and the faults, drains, and asks the hub for the summary.
#[allow(clippy::too_many_arguments)]
async fn drive(
    ctx: Arc<Ctx>,
    args: &DemoArgs,
    plan: demand::Plan,
    sims: &Sims,
    shopify_secret: Vec<u8>,
    config: &crossdock_server::Config,
    dashboard: String,
    dir: &Path,
    keep: bool,
) -> Result<summary::Summary, String> {
    let run = Duration::from_secs(args.duration);
    // The retail chain's item numbers, as its master data.
    let mut xwalk = String::from("partner,kind,external,internal\n");
    for i in &ctx.items {
        xwalk.push_str(&format!(
            "{},item,{},{}\n",
            world::PARTNER,
            i.partner_code,
            i.id
        ));
    }
    let a = ctx
        .api
        .post_raw(
            Some(&ctx.tokens.admin),
            "/v1/master/crosswalks",
            "text/csv",
            &[],
            xwalk.into_bytes(),
        )
        .await?;
    if a.status != 200 {
        return Err(format!("crosswalks refused: HTTP {} {}", a.status, a.body));
    }
    let schedule = faults::Schedule::for_run(run, ctx.items.len());
    faults::at_start(&ctx, &schedule, &sims.woo);

    let warehouses: Arc<Vec<Arc<Warehouse>>> = Arc::new(
        (0..DCS.len())
            .map(|dc| Warehouse::start(&ctx, dc))
            .collect(),
    );
    let tms = Tms::start(&ctx);
    let units = actors::forecast(&plan, ctx.items.len(), run);
    let erp = Erp::start(&ctx, &units, run.as_secs_f64());
    let partner_spec = config
        .partners
        .iter()
        .find(|p| p.id == world::PARTNER)
        .ok_or("the config has no retail partner")?;
    let partner = Arc::new(Partner::new(partner_spec.inbound.clone()));
    let partner_outbound = partner_spec.outbound.clone();

    // Opening stock: each WMS counts its shelves; the channels publish it.
    for (dc, wh) in warehouses.iter().enumerate() {
        wh.open_with(&ctx, &erp.opening(dc)).await;
    }
    wait_until(Duration::from_secs(30), || {
        warehouses.iter().all(|w| w.stream.idle())
    })
    .await;
    let fronts = Arc::new(Storefronts {
        shopify: sims.shopify.clone(),
        amazon: sims.amazon.clone(),
        woo: sims.woo.clone(),
        shopify_secret,
        warehouses: warehouses.clone(),
        partner: partner.clone(),
    });
    let published = Instant::now();
    let sync = converge(&ctx, &fronts, &schedule, Duration::from_secs(20)).await;
    ctx.progress.say(&format!(
        "opening stock counted by the WMS and published in {:.1}s ({sync})",
        published.elapsed().as_secs_f64()
    ));

    // Go.
    ctx.go();
    let stop_demand = Arc::new(AtomicBool::new(false));
    let stop_systems = Arc::new(AtomicBool::new(false));
    let stop_erp = Arc::new(AtomicBool::new(false));
    let stop_partner = Arc::new(AtomicBool::new(false));
    let injected = Arc::new(faults::Injected::default());
    let mut systems = Vec::new();
    for (dc, wh) in warehouses.iter().enumerate() {
        systems.push(tokio::spawn(actors::run_wms(
            ctx.clone(),
            wh.clone(),
            sims.wms[dc].clone(),
            stop_systems.clone(),
        )));
    }
    systems.push(tokio::spawn(actors::run_trucks(
        ctx.clone(),
        tms.clone(),
        warehouses.clone(),
        stop_systems.clone(),
    )));
    let erp_task = tokio::spawn(actors::run_erp(
        ctx.clone(),
        erp.clone(),
        tms.clone(),
        warehouses.clone(),
        stop_erp.clone(),
    ));
    let partner_task = tokio::spawn(channels::run_partner(
        ctx.clone(),
        partner.clone(),
        stop_partner.clone(),
    ));
    let faults_task = tokio::spawn(faults::run(
        ctx.clone(),
        schedule.clone(),
        sims.shopify.clone(),
        sims.amazon.clone(),
        injected.clone(),
    ));
    let planned = plan.orders.len() as u64;
    let origin = plan.origin.clone();
    let demand_task = tokio::spawn(channels::run_demand(
        ctx.clone(),
        fronts.clone(),
        Arc::new(plan),
        stop_demand.clone(),
    ));
    let every = Duration::from_secs((args.duration / 10).clamp(2, 30));
    let progress_task = tokio::spawn(report_progress(ctx.clone(), every));

    tokio::select! {
        () = tokio::time::sleep(run) => {}
        _ = tokio::signal::ctrl_c() => {
            ctx.progress.say(
                "Ctrl-C: the customers stop early; the summary follows (Ctrl-C again to quit now)",
            );
            tokio::spawn(async {
                let _ = tokio::signal::ctrl_c().await;
                std::process::exit(130);
            });
        }
    }
    let ran = ctx.started().elapsed();
    stop_demand.store(true, Ordering::Relaxed);
    let _ = demand_task.await;
    faults_task.abort();
    sims.amazon.faults().outage(false);
    ctx.disorder.store(false, Ordering::Relaxed);
    ctx.progress
        .say("customers stopped; the systems finish their work");
    stop_partner.store(true, Ordering::Relaxed);
    let _ = partner_task.await;
    if let Err(e) = partner.flush(&ctx) {
        ctx.progress
            .say(&format!("retail partner: cannot write its 850s: {e}"));
    }
    let sent = partner.files.lock().map_or(0, |f| f.len());
    if !wait_until(Duration::from_secs(20), || partner.answered() >= sent).await {
        ctx.progress
            .say("the hub did not answer every 850 file within 20 s");
    }
    stop_erp.store(true, Ordering::Relaxed);
    let _ = erp_task.await;
    if !settle(&ctx, &warehouses, &tms, &erp, Duration::from_secs(30)).await {
        ctx.progress
            .say("the systems did not settle within 30 s; the summary shows where they were");
    }
    stop_systems.store(true, Ordering::Relaxed);
    for t in systems {
        let _ = t.await;
    }
    let sync = converge(&ctx, &fronts, &schedule, Duration::from_secs(30)).await;
    progress_task.abort();
    ctx.progress.say(&format!("storefronts {sync}"));
    summary::gather(
        &ctx,
        summary::Inputs {
            fronts: &fronts,
            warehouses: &warehouses,
            erp_postings: &sims.erp,
            schedule: &schedule,
            injected: &injected,
            run: summary::RunInfo {
                duration_s: (ran.as_secs_f64() * 10.0).round() / 10.0,
                demand: origin,
                orders_planned: planned,
                orders_cut_off: get(&ctx.tally.cut_off),
                dashboard,
                data_dir: keep.then(|| dir.display().to_string()),
            },
            partner_outbound,
        },
    )
    .await
}

/// Waits until nothing is left to do: releases picked, docks empty, every shipment confirmed,
/// inbound trucks unloaded, every event answered, nothing waiting in the release lanes.
async fn settle(
    ctx: &Ctx,
    warehouses: &[Arc<Warehouse>],
    tms: &Tms,
    erp: &Erp,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    let mut quiet = 0;
    while Instant::now() < deadline {
        let releases_waiting = match ctx.api.get_text(&ctx.tokens.admin, "/metrics").await {
            Ok(text) => {
                let m = summary::Metrics::parse(&text);
                DCS.iter()
                    .map(|d| {
                        m.with(
                            "crossdock_outbox_depth",
                            &[("endpoint", &format!("{}-releases", d.wms))],
                        )
                    })
                    .sum::<f64>()
                    > 0.0
            }
            Err(_) => true,
        };
        let busy = releases_waiting
            || warehouses
                .iter()
                .any(|w| !w.dock_empty() || w.parcels_open() > 0 || !w.stream.idle())
            || tms.inbound.load(Ordering::SeqCst) > 0
            || !tms.stream.idle()
            || !erp.stream.idle();
        quiet = if busy { 0 } else { quiet + 1 };
        if quiet >= 3 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

/// A line now and then: orders so far, what the hub accepted, how far behind each channel is.
async fn report_progress(ctx: Arc<Ctx>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let t = &ctx.tally;
        let orders: Vec<String> = [Channel::Shopify, Channel::Amazon, Channel::B2b]
            .iter()
            .map(|c| format!("{} {}", c.id(), get(&t.channel(*c).placed)))
            .collect();
        let refused: u64 = Channel::ALL
            .iter()
            .map(|c| get(&t.channel(*c).refused))
            .sum();
        let mut line = format!(
            "orders {} (refused for stock {refused}), retail 850 files {}",
            orders.join(", "),
            get(&t.edi_files)
        );
        if let Ok(text) = ctx.api.get_text(&ctx.tokens.admin, "/metrics").await {
            let m = summary::Metrics::parse(&text);
            line.push_str(&format!(
                " | events {} accepted, {} duplicates, {} held",
                m.sum("crossdock_events_ingested_total"),
                get(&t.events_duplicate),
                get(&t.events_held)
            ));
            let lag: Vec<String> = m
                .by("crossdock_channel_publication_lag_seconds", "channel")
                .iter()
                .map(|(c, s)| format!("{c} {s:.1}s"))
                .collect();
            line.push_str(&format!(" | lag {}", lag.join(" ")));
            for (e, state) in m.by("crossdock_breaker_state", "endpoint") {
                if state >= 2.0 {
                    line.push_str(&format!(" | {e} breaker OPEN"));
                } else if state >= 1.0 {
                    line.push_str(&format!(" | {e} breaker half-open"));
                }
            }
        }
        ctx.progress.say(&line);
    }
}

/// Waits until `done` holds, or `within` passes.
async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Waits until every storefront shows Crossdock's availability (the refused product aside);
/// says how far each got.
async fn converge(
    ctx: &Ctx,
    fronts: &Storefronts,
    schedule: &faults::Schedule,
    within: Duration,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let mut report = Vec::new();
        let mut all = true;
        for channel in [Channel::Shopify, Channel::Amazon, Channel::B2b] {
            let Ok(hub) = summary::hub_ats(ctx, channel).await else {
                all = false;
                continue;
            };
            let mut same = 0;
            let mut counted = 0;
            for (i, item) in ctx.items.iter().enumerate() {
                if channel == Channel::B2b && i == schedule.refused_item {
                    continue;
                }
                counted += 1;
                let shown = match channel {
                    Channel::Shopify => fronts.shopify.quantity(&item.shopify_id.to_string()),
                    Channel::Amazon => fronts.amazon.quantity(&item.id),
                    _ => fronts.woo.quantity(&item.woo_id.to_string()),
                }
                .unwrap_or(0);
                if hub.get(&item.id).copied().unwrap_or(0) == shown {
                    same += 1;
                }
            }
            all &= same == counted;
            report.push(format!("{} {same}/{counted}", channel.id()));
        }
        if all || Instant::now() > deadline {
            return format!("in sync: {}", report.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
