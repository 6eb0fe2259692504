//! The customers, at the storefronts the hub publishes to. Each buys only what its storefront
//! shows (the simulator's quantity, which Crossdock's delivery lanes keep up to date):
//!
//! - Shopify: a signed `orders/create` webhook, as the store sends it once the order is paid.
//! - Amazon: a reservation for the basket, then committed (or released when the buyer leaves);
//!   the DC's WMS picks the allocation.
//! - The B2B portal (a WooCommerce store): `POST /v1/orders`, with the ERP's credit check.
//! - The retail chain: 850s collected and dropped in its partner folder once a second.
//!
//! A storefront that checks out on its own (Shopify) can sell stock it showed a moment ago and
//! Crossdock has since promised elsewhere; real shops cover that window with a channel buffer,
//! which makes oversells rare, not impossible. So that the oversell count measures Crossdock and
//! not that race, the demo places one order per item at a time, and a Shopify checkout first
//! asks the hub whether the storefront's number is current (a storefront with a stock check at
//! checkout), waiting up to a second for the channel to catch up and counting the order as
//! held back if it does not.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use crossdock_sim::{AmazonSim, ShopifySim, WooSim};
use crossdock_x12::sets::{Party, PoLine, ProductId, PurchaseOrder850, TypedSet};
use crossdock_x12::{Date, Decimal, OutboundEnvelope, Time};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Ctx;
use super::actors::Warehouse;
use super::api::{add, bump, encode};
use super::demand::{Order, Plan};
use super::world::{Channel, HUB_ISA, PARTNER_ISA, dc_index};

/// Orders being placed at once.
const IN_FLIGHT_MAX: usize = 48;
/// Orders admitted (waiting for their items, or being placed). An order waits for its items
/// before it takes one of the [`IN_FLIGHT_MAX`] places, so a best seller's queue does not hold up
/// orders for everything else.
const ADMITTED_MAX: usize = 4096;
/// How long a Shopify checkout waits for the storefront to catch up with the hub.
const CHECKOUT_WAIT: Duration = Duration::from_secs(1);

/// The storefronts and what the customers need to reach them.
pub struct Storefronts {
    pub shopify: Arc<ShopifySim>,
    pub amazon: Arc<AmazonSim>,
    pub woo: Arc<WooSim>,
    /// Signs the Shopify store's webhooks.
    pub shopify_secret: Vec<u8>,
    pub warehouses: Arc<Vec<Arc<Warehouse>>>,
    pub partner: Arc<Partner>,
}

/// Places the plan's orders at their times until `stop`; what is left then is cut off.
pub async fn run_demand(
    ctx: Arc<Ctx>,
    fronts: Arc<Storefronts>,
    plan: Arc<Plan>,
    stop: Arc<AtomicBool>,
) {
    let admitted = Arc::new(Semaphore::new(ADMITTED_MAX));
    let working = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut tasks = JoinSet::new();
    for (n, order) in plan.orders.iter().enumerate() {
        let due = ctx.started() + order.at;
        if Instant::now() < due {
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = wait_for(&stop) => {}
            }
        }
        if stop.load(Ordering::Relaxed) {
            add(&ctx.tally.cut_off, (plan.orders.len() - n) as u64);
            break;
        }
        if order.channel == Channel::Retail {
            fronts.partner.take(n as u64, order.clone());
            continue;
        }
        let admission = tokio::select! {
            permit = admitted.clone().acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
            () = wait_for(&stop) => {
                add(&ctx.tally.cut_off, (plan.orders.len() - n) as u64);
                break;
            }
        };
        let (ctx, fronts, order) = (ctx.clone(), fronts.clone(), order.clone());
        let (working, stop) = (working.clone(), stop.clone());
        tasks.spawn(async move {
            place(&ctx, &fronts, n as u64, &order, &working, &stop).await;
            drop(admission);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn wait_for(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One order, with its items locked (in index order, so two orders never wait on each other);
/// an order still waiting for its items when the run ends is cut off.
async fn place(
    ctx: &Arc<Ctx>,
    fronts: &Storefronts,
    n: u64,
    order: &Order,
    working: &Semaphore,
    stop: &AtomicBool,
) {
    let mut items: Vec<usize> = order.lines.iter().map(|l| l.0).collect();
    items.sort_unstable();
    items.dedup();
    let mut guards = Vec::with_capacity(items.len());
    for i in &items {
        guards.push(ctx.item_locks[*i].lock().await);
    }
    if stop.load(Ordering::Relaxed) {
        bump(&ctx.tally.cut_off);
        return;
    }
    let _working = working
        .acquire()
        .await
        .expect("the semaphore is never closed");
    ctx.touch(&items);
    match order.channel {
        Channel::Shopify => shopify(ctx, fronts, n, order).await,
        Channel::Amazon => amazon(ctx, fronts, n, order).await,
        Channel::B2b => b2b(ctx, fronts, n, order).await,
        Channel::Retail => unreachable!("retail orders go through the partner's files"),
    }
    drop(guards);
}

/// The storefront's number for `item` once it is not above the hub's availability for the
/// channel; `None` when the storefront stays ahead of the hub for [`CHECKOUT_WAIT`].
async fn checkout_check(
    ctx: &Ctx,
    channel: Channel,
    item: &str,
    shown: impl Fn() -> i64,
) -> Option<i64> {
    let deadline = Instant::now() + CHECKOUT_WAIT;
    loop {
        let s = shown();
        if s <= 0 {
            return Some(0);
        }
        let path = format!(
            "/v1/availability?item={}&channel={}",
            encode(item),
            channel.id()
        );
        if let Ok(a) = ctx.api.get(&ctx.tokens.storefront, &path).await
            && a.body["available"].as_i64().is_some_and(|ats| s <= ats)
        {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shopify(ctx: &Ctx, f: &Storefronts, n: u64, order: &Order) {
    let tally = ctx.tally.channel(Channel::Shopify);
    let mut lines = Vec::new();
    let mut behind = false;
    for (i, want) in &order.lines {
        let item = &ctx.items[*i];
        let id = item.shopify_id.to_string();
        let shown = || f.shopify.quantity(&id).unwrap_or(0);
        if shown() <= 0 {
            continue;
        }
        match checkout_check(ctx, Channel::Shopify, &item.id, shown).await {
            Some(s) if s > 0 => lines.push((*i, (*want).min(s))),
            Some(_) => {}
            None => behind = true,
        }
    }
    if lines.is_empty() {
        bump(if behind {
            &tally.held_back
        } else {
            &tally.not_offered
        });
        return;
    }
    let total: i64 = lines
        .iter()
        .map(|(i, q)| ctx.items[*i].price_cents * q)
        .sum();
    let body = json!({
        "id": 5_100_000_000u64 + n,
        "name": format!("#{}", 1001 + n),
        "created_at": crossdock_model::Timestamp::now().to_rfc3339(),
        "currency": "USD",
        "total_price": format!("{}.{:02}", total / 100, total % 100),
        "line_items": lines.iter().enumerate().map(|(k, (i, q))| json!({
            "id": 13_000_000_000u64 + n * 10 + k as u64,
            "sku": ctx.items[*i].id,
            "quantity": q,
        })).collect::<Vec<_>>(),
        "shipping_address": {"country_code": "US", "province_code": order.region},
    })
    .to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&f.shopify_secret)
        .expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let headers = [
        ("x-shopify-topic", "orders/create".to_string()),
        ("x-shopify-hmac-sha256", signature),
        (
            "x-shopify-webhook-id",
            format!("{}", uuid::Uuid::new_v4().hyphenated()),
        ),
        ("x-shopify-shop-domain", "demo-store.myshopify.com".into()),
    ];
    let answer = ctx
        .api
        .post_raw(
            None,
            "/v1/webhooks/shopify/shopify",
            "application/json",
            &headers,
            body.into_bytes(),
        )
        .await;
    match answer {
        Ok(a) if a.status == 200 && a.body["status"] == "allocated" => bump(&tally.placed),
        Ok(a) if a.status == 200 && a.body["status"] == "oversold" => {
            bump(&tally.oversold);
            ctx.progress.say(&format!(
                "shopify: order #{} was oversold: {}",
                1001 + n,
                a.body
            ));
        }
        Ok(a) => {
            bump(&tally.failed);
            ctx.progress.say(&format!(
                "shopify: order webhook answered HTTP {}: {}",
                a.status, a.body
            ));
        }
        Err(e) => {
            bump(&tally.failed);
            ctx.progress.say(&format!("shopify: {e}"));
        }
    }
}

async fn amazon(ctx: &Ctx, f: &Storefronts, n: u64, order: &Order) {
    let tally = ctx.tally.channel(Channel::Amazon);
    let lines: Vec<Value> = order
        .lines
        .iter()
        .filter_map(|(i, want)| {
            let shown = f.amazon.quantity(&ctx.items[*i].id).unwrap_or(0);
            (shown > 0).then(|| json!({"item": ctx.items[*i].id, "qty": (*want).min(shown)}))
        })
        .collect();
    if lines.is_empty() {
        bump(&tally.not_offered);
        return;
    }
    let id = format!("amz-{:03}-{n:07}", n % 1000);
    let body = json!({"id": id, "channel": "amazon", "lines": lines, "ttl_s": 900});
    let answer = match ctx
        .api
        .post(&ctx.tokens.storefront, "/v1/reservations", &body)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            bump(&tally.failed);
            ctx.progress.say(&format!("amazon: {e}"));
            return;
        }
    };
    match answer.status {
        201 | 200 => {}
        409 => {
            bump(&tally.refused);
            return;
        }
        s => {
            bump(&tally.failed);
            ctx.progress.say(&format!(
                "amazon: reservation answered HTTP {s}: {}",
                answer.body
            ));
            return;
        }
    }
    // One buyer in twelve leaves at checkout: the hold goes back.
    let abandon = n % 12 == 5;
    let verb = if abandon { "release" } else { "commit" };
    let settled = ctx
        .api
        .post(
            &ctx.tokens.storefront,
            &format!("/v1/reservations/{id}/{verb}"),
            &json!({}),
        )
        .await;
    match settled {
        Ok(a) if a.status == 200 && abandon => bump(&tally.abandoned),
        Ok(a) if a.status == 200 => {
            bump(&tally.placed);
            // Amazon's order report reaches each DC's WMS, which picks its part.
            let mut by_dc: [Vec<(usize, i64)>; 3] = Default::default();
            for l in a.body["lines"].as_array().into_iter().flatten() {
                if let (Some(dc), Some(item), Some(q)) = (
                    l["location"].as_str().and_then(dc_index),
                    l["item"].as_str().and_then(|x| ctx.index.get(x)),
                    l["qty"].as_i64(),
                ) {
                    by_dc[dc].push((*item, q));
                }
            }
            for (dc, lines) in by_dc.into_iter().enumerate() {
                if !lines.is_empty() {
                    f.warehouses[dc].pick(ctx, &id, lines).await;
                }
            }
        }
        Ok(a) => {
            bump(&tally.failed);
            ctx.progress.say(&format!(
                "amazon: {verb} of {id} answered HTTP {}: {}",
                a.status, a.body
            ));
        }
        Err(e) => {
            bump(&tally.failed);
            ctx.progress.say(&format!("amazon: {e}"));
        }
    }
}

async fn b2b(ctx: &Ctx, f: &Storefronts, n: u64, order: &Order) {
    let tally = ctx.tally.channel(Channel::B2b);
    let lines: Vec<(usize, i64)> = order
        .lines
        .iter()
        .filter_map(|(i, want)| {
            let shown = f
                .woo
                .quantity(&ctx.items[*i].woo_id.to_string())
                .unwrap_or(0);
            (shown > 0).then(|| (*i, (*want).min(shown)))
        })
        .collect();
    if lines.is_empty() {
        bump(&tally.not_offered);
        return;
    }
    let amount: i64 = lines
        .iter()
        .map(|(i, q)| ctx.items[*i].price_cents * q)
        .sum();
    let body = json!({
        "id": format!("B2B-{n:07}"),
        "channel": "b2b",
        "lines": lines.iter().map(|(i, q)| json!({"item": ctx.items[*i].id, "qty": q})).collect::<Vec<_>>(),
        "ship_to": {"name": format!("Contractor account {}", 100 + n % 37), "region": order.region},
        "amount_minor": amount,
    });
    match ctx
        .api
        .post(&ctx.tokens.storefront, "/v1/orders", &body)
        .await
    {
        Ok(a) if a.status == 201 || a.status == 200 => bump(&tally.placed),
        Ok(a)
            if a.status == 409 && a.body["type"] == "urn:crossdock:problem:insufficient-stock" =>
        {
            bump(&tally.refused)
        }
        Ok(a) => {
            bump(&tally.failed);
            ctx.progress.say(&format!(
                "b2b: order answered HTTP {}: {}",
                a.status, a.body
            ));
        }
        Err(e) => {
            bump(&tally.failed);
            ctx.progress.say(&format!("b2b: {e}"));
        }
    }
}

/// The retail chain's EDI: orders collect and go out once a second as one interchange of 850s,
/// rendered by the X12 library (which refuses anything it cannot write correctly), dropped in
/// the partner's inbound folder as its client would (written beside, then renamed in).
pub struct Partner {
    inbound: PathBuf,
    waiting: std::sync::Mutex<Vec<(u64, Order)>>,
    control: AtomicU32,
    /// Files dropped so far.
    pub files: std::sync::Mutex<Vec<String>>,
}

impl Partner {
    pub fn new(inbound: PathBuf) -> Partner {
        Partner {
            inbound,
            waiting: std::sync::Mutex::new(Vec::new()),
            control: AtomicU32::new(1000),
            files: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn take(&self, n: u64, order: Order) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((n, order));
    }

    /// Drops what is waiting as one file; the file's name, if one was written.
    pub fn flush(&self, ctx: &Ctx) -> Result<Option<String>, String> {
        let orders = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        if orders.is_empty() {
            return Ok(None);
        }
        let control = self.control.fetch_add(1, Ordering::Relaxed) + 1;
        let now = time::OffsetDateTime::now_utc();
        let date = Date::new(now.year() as u16, u8::from(now.month()), now.day())
            .ok_or("today is not a date")?;
        let hm = Time::hm(now.hour(), now.minute()).ok_or("now is not a time")?;
        let sets: Vec<TypedSet> = orders
            .iter()
            .map(|(n, o)| {
                let store = 100 + (n * 7) % 60;
                TypedSet::from(PurchaseOrder850 {
                    purpose: "00".into(),
                    order_type: "SA".into(),
                    po_number: format!("MRT{n:07}"),
                    date: Some(date),
                    parties: vec![Party {
                        entity: "ST".into(),
                        name: Some(format!("Mart store {store}")),
                        id_qualifier: Some("92".into()),
                        id: Some(format!("{store:04}")),
                        state: Some(o.region.to_string()),
                        ..Party::default()
                    }],
                    lines: o
                        .lines
                        .iter()
                        .enumerate()
                        .map(|(k, (i, q))| {
                            let item = &ctx.items[*i];
                            PoLine {
                                line_number: Some((k + 1).to_string()),
                                quantity: Some(Decimal::from_i64(*q)),
                                unit: Some("EA".into()),
                                unit_price: Decimal::from_x12(&format!(
                                    "{}.{:02}",
                                    item.price_cents / 100,
                                    item.price_cents % 100
                                )),
                                price_basis: Some("PE".into()),
                                product_ids: vec![
                                    ProductId {
                                        qualifier: "BP".into(),
                                        id: item.partner_code.clone(),
                                    },
                                    ProductId {
                                        qualifier: "UP".into(),
                                        id: item.upc.clone(),
                                    },
                                ],
                                ..PoLine::default()
                            }
                        })
                        .collect(),
                    ..PurchaseOrder850::default()
                })
            })
            .collect();
        let envelope = OutboundEnvelope::new(
            ("ZZ", PARTNER_ISA),
            ("ZZ", HUB_ISA),
            control,
            control,
            date,
            hm,
        );
        let text = crossdock_x12::render(&envelope, &sets).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.inbound).map_err(|e| e.to_string())?;
        let name = format!("MRT850-{control}.x12");
        let part = self.inbound.join(format!(".{name}.part"));
        std::fs::write(&part, text).map_err(|e| e.to_string())?;
        std::fs::rename(&part, self.inbound.join(&name)).map_err(|e| e.to_string())?;
        bump(&ctx.tally.edi_files);
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        Ok(Some(name))
    }

    /// Files the hub has answered (a report under `processed/` or `rejected/`).
    pub fn answered(&self) -> usize {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner()).clone();
        files
            .iter()
            .filter(|f| {
                ["processed", "rejected"].iter().any(|d| {
                    self.inbound
                        .join(d)
                        .join(format!("{f}.report.json"))
                        .is_file()
                })
            })
            .count()
    }

    pub fn inbound(&self) -> &std::path::Path {
        &self.inbound
    }
}

pub async fn run_partner(ctx: Arc<Ctx>, partner: Arc<Partner>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = partner.flush(&ctx) {
            ctx.progress
                .say(&format!("retail partner: cannot write its 850s: {e}"));
        }
    }
}
