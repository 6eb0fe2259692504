//! The distributor's own systems, each driving the hub over HTTP as the real one would: three
//! WMS (picks of what the hub releases to them, receipts, cycle counts), the transport system
//! (the carrier confirms what left each dock; inbound trucks announce supplier shipments), and
//! the ERP (purchase orders when stock runs low, the suppliers' acknowledgments).
//!
//! Each source's events go out through one [`Stream`], in order, batched as NDJSON when several
//! are waiting. The 3PL's stream is sequenced and, while the fault is on, sends some events out
//! of order and some twice.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossdock_model::Timestamp;
use crossdock_sim::WebhookSim;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Ctx;
use super::api::{add, bump};
use super::world::DCS;

/// Called with the hub's status for the event once it answered (`applied`, `held`, ...).
type AfterAnswer = Box<dyn FnOnce(&str) + Send>;

struct Outgoing {
    ty: &'static str,
    time: Timestamp,
    data: Value,
    after: Option<AfterAnswer>,
}

/// Most events sent in one request.
const BATCH_MAX: usize = 200;
/// Events waiting for a stream before senders wait.
const QUEUE_MAX: usize = 4096;

/// One source's event feed to the hub.
pub struct Stream {
    tx: mpsc::Sender<Outgoing>,
    pending: Arc<AtomicU64>,
}

impl Stream {
    /// Starts the feed of `source`. `sequenced` numbers its events (CloudEvents `sequence`);
    /// `unruly` makes it send some out of order and some twice while `ctx.disorder` is on.
    pub fn start(
        ctx: Arc<Ctx>,
        source: &'static str,
        token: String,
        sequenced: bool,
        unruly: bool,
    ) -> Stream {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let pending = Arc::new(AtomicU64::new(0));
        tokio::spawn(feed(
            ctx,
            source,
            token,
            sequenced,
            unruly,
            rx,
            pending.clone(),
        ));
        Stream { tx, pending }
    }

    pub async fn send(&self, ty: &'static str, time: Timestamp, data: Value) {
        self.send_then(ty, time, data, None).await;
    }

    async fn send_then(
        &self,
        ty: &'static str,
        time: Timestamp,
        data: Value,
        after: Option<AfterAnswer>,
    ) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let out = Outgoing {
            ty,
            time,
            data,
            after,
        };
        if self.tx.send(out).await.is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Nothing queued or waiting for an answer.
    pub fn idle(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0
    }
}

async fn feed(
    ctx: Arc<Ctx>,
    source: &'static str,
    token: String,
    sequenced: bool,
    unruly: bool,
    mut rx: mpsc::Receiver<Outgoing>,
    pending: Arc<AtomicU64>,
) {
    let mut n: u64 = 0;
    // Sent before; the 3PL sends some again in a later request.
    let mut again: Vec<String> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        let disorder = unruly && ctx.disorder.load(Ordering::Relaxed);
        // Events are numbered n + 1, n + 2, ... in this request.
        let first_n = n + 1;
        if disorder && batch.len() == 1 && goes_ahead(first_n + 1) {
            // The next event is due to go ahead of this one: wait a little for it.
            if let Ok(Some(x)) = tokio::time::timeout(Duration::from_millis(150), rx.recv()).await {
                batch.push(x);
            }
        }
        let mut lines: Vec<String> = Vec::with_capacity(batch.len() + again.len());
        let mut afters: Vec<Option<AfterAnswer>> = Vec::with_capacity(batch.len());
        let resent = again.len();
        lines.append(&mut again);
        let fresh_from = lines.len();
        for out in batch {
            n += 1;
            let mut env = json!({
                "specversion": "1.0",
                "id": format!("{source}-{n:07}"),
                "source": source,
                "type": out.ty,
                "time": out.time.to_rfc3339(),
                "data": out.data,
            });
            if sequenced {
                env["sequence"] = json!(n.to_string());
            }
            lines.push(env.to_string());
            afters.push(out.after);
        }
        if disorder {
            for j in 1..lines.len() - fresh_from {
                if goes_ahead(first_n + j as u64) {
                    let i = fresh_from + j;
                    lines.swap(i - 1, i);
                    afters.swap(j - 1, j);
                    bump(&ctx.tally.events_swapped);
                }
            }
            for j in 0..lines.len() - fresh_from {
                if sent_twice(first_n + j as u64) {
                    again.push(lines[fresh_from + j].clone());
                    bump(&ctx.tally.events_resent);
                }
            }
        }
        let fresh = (lines.len() - fresh_from) as u64;
        add(&ctx.tally.events_sent, fresh);
        let statuses = post_lines(&ctx, &token, &lines).await;
        for (k, status) in statuses.iter().enumerate() {
            match status.as_str() {
                "applied" => bump(&ctx.tally.events_applied),
                "held" => bump(&ctx.tally.events_held),
                "duplicate" => bump(&ctx.tally.events_duplicate),
                "quarantined" | "rejected" => {
                    bump(&ctx.tally.events_rejected);
                    ctx.progress
                        .say(&format!("{source}: the hub refused an event: {}", lines[k]));
                }
                _ => bump(&ctx.tally.events_failed),
            }
        }
        let answers = statuses.iter().skip(resent).map(String::as_str);
        for (after, status) in afters
            .into_iter()
            .zip(answers.chain(std::iter::repeat("failed")))
        {
            if let Some(f) = after {
                f(status);
            }
        }
        pending.fetch_sub(fresh, Ordering::SeqCst);
    }
}

/// The unruly feed's event `n` goes ahead of event `n - 1` (every fifth).
fn goes_ahead(n: u64) -> bool {
    n.is_multiple_of(5)
}

/// The unruly feed sends event `n` again with its next request (every seventh).
fn sent_twice(n: u64) -> bool {
    n % 7 == 3
}

/// Posts NDJSON lines; the hub's status per line (`failed` for lines it did not answer).
async fn post_lines(ctx: &Ctx, token: &str, lines: &[String]) -> Vec<String> {
    let body = lines.join("\n").into_bytes();
    let answer = ctx
        .api
        .post_raw(Some(token), "/v1/events", "application/x-ndjson", &[], body)
        .await;
    let mut out = vec!["failed".to_string(); lines.len()];
    match answer {
        Ok(a) if a.status == 200 => {
            let text = match &a.body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            for l in text.lines().filter(|l| !l.trim().is_empty()) {
                if let Ok(v) = serde_json::from_str::<Value>(l)
                    && let Some(line) = v["line"].as_u64()
                    && let Some(slot) = out.get_mut(line as usize - 1)
                {
                    *slot = v["status"].as_str().unwrap_or("failed").to_string();
                }
            }
        }
        Ok(a) => ctx.progress.say(&format!(
            "the hub refused a batch of {} events: HTTP {} {}",
            lines.len(),
            a.status,
            a.body
        )),
        Err(e) => ctx.progress.say(&format!("events not delivered: {e}")),
    }
    out
}

/// The physical stock in one DC as its WMS knows it: what is on the shelves (received and not yet
/// loaded on a truck). Every move is stamped under the same lock as it is made, each stamp later
/// than the one before, so a count is exactly the building as of its time.
pub struct Building {
    inner: Mutex<BuildingState>,
}

struct BuildingState {
    on_hand: Vec<i64>,
    /// Per item, parcels picked whose shipment the hub has not confirmed yet.
    open_parcels: Vec<u32>,
    /// Moves that took an item below zero: units shipped that were not there.
    shortfalls: u64,
    last_us: i64,
}

impl BuildingState {
    fn stamp(&mut self) -> Timestamp {
        let now = Timestamp::now().as_micros().max(self.last_us + 1);
        self.last_us = now;
        Timestamp::from_micros(now)
    }
}

impl Building {
    fn new(items: usize) -> Building {
        Building {
            inner: Mutex::new(BuildingState {
                on_hand: vec![0; items],
                open_parcels: vec![0; items],
                shortfalls: 0,
                last_us: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BuildingState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies on-hand moves and returns their time.
    fn moved(&self, moves: &[(usize, i64)]) -> Timestamp {
        let mut s = self.state();
        for (i, d) in moves {
            s.on_hand[*i] += d;
            if s.on_hand[*i] < 0 {
                s.shortfalls += 1;
            }
        }
        s.stamp()
    }

    /// Moves that shipped units the building did not have; 0 unless a channel sold more than
    /// the stock.
    pub fn shortfalls(&self) -> u64 {
        self.state().shortfalls
    }

    /// What is on the shelves now, per item.
    pub fn on_hand(&self) -> Vec<i64> {
        self.state().on_hand.clone()
    }
}

/// An order (or a channel's allocation) picked and waiting at the dock for the carrier.
struct Parcel {
    order: String,
    lines: Vec<(usize, i64)>,
}

/// One DC: its building, its WMS's event feed and its dock.
pub struct Warehouse {
    pub dc: usize,
    pub building: Building,
    pub stream: Stream,
    dock: Mutex<Vec<Parcel>>,
    /// Release documents read from the hub's webhooks so far.
    releases_seen: AtomicU64,
}

impl Warehouse {
    pub fn start(ctx: &Arc<Ctx>, dc: usize) -> Arc<Warehouse> {
        let d = &DCS[dc];
        Arc::new(Warehouse {
            dc,
            building: Building::new(ctx.items.len()),
            stream: Stream::start(
                ctx.clone(),
                d.wms,
                ctx.tokens.wms[dc].clone(),
                d.third_party,
                d.third_party,
            ),
            dock: Mutex::new(Vec::new()),
            releases_seen: AtomicU64::new(0),
        })
    }

    fn location(&self) -> &'static str {
        DCS[self.dc].id
    }

    /// The opening stock, counted.
    pub async fn open_with(&self, ctx: &Ctx, stock: &[i64]) {
        let (time, counted) = {
            let mut s = self.building.state();
            s.on_hand.copy_from_slice(stock);
            (s.stamp(), s.on_hand.clone())
        };
        for (i, qty) in counted.iter().enumerate() {
            self.count_event(ctx, i, *qty, time).await;
        }
    }

    async fn count_event(&self, ctx: &Ctx, item: usize, qty: i64, time: Timestamp) {
        self.stream
            .send(
                "inventory.counted.v1",
                time,
                json!({"item": ctx.items[item].id, "location": self.location(), "qty": qty}),
            )
            .await;
    }

    /// Counts up to `items` of the given items: only those with no parcel on its way out (a
    /// count while the carrier's confirmation is in flight would count the units as gone
    /// before the hub knows they shipped).
    pub async fn cycle_count(&self, ctx: &Ctx, items: &[usize]) {
        let counted: Vec<(usize, i64, Timestamp)> = {
            let mut s = self.building.state();
            let free: Vec<usize> = items
                .iter()
                .copied()
                .filter(|i| s.open_parcels[*i] == 0)
                .collect();
            let time = s.stamp();
            free.into_iter().map(|i| (i, s.on_hand[i], time)).collect()
        };
        for (i, qty, time) in counted {
            self.count_event(ctx, i, qty, time).await;
        }
    }

    /// Picks an order's lines (released by the hub, or a channel's allocation) and puts the
    /// parcel on the dock for the carrier.
    pub async fn pick(&self, ctx: &Ctx, order: &str, lines: Vec<(usize, i64)>) {
        {
            let mut s = self.building.state();
            for (i, _) in &lines {
                s.open_parcels[*i] += 1;
            }
        }
        for (i, qty) in &lines {
            self.stream
                .send(
                    "inventory.picked.v1",
                    Timestamp::now(),
                    json!({"order": order, "item": ctx.items[*i].id, "location": self.location(), "qty": qty}),
                )
                .await;
        }
        self.dock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Parcel {
                order: order.to_string(),
                lines,
            });
    }

    /// A supplier's truck unloaded: the goods are on the shelves, received against the PO.
    pub async fn receive(&self, ctx: &Ctx, po: &str, lines: &[(usize, i64)]) {
        let time = self.building.moved(lines);
        for (i, qty) in lines {
            self.stream
                .send(
                    "inventory.received.v1",
                    time,
                    json!({"item": ctx.items[*i].id, "location": self.location(), "qty": qty, "reference": po}),
                )
                .await;
            add(&ctx.tally.units_received, *qty as u64);
        }
    }

    /// Reads the release documents the hub delivered to this WMS since the last look and picks
    /// them.
    pub async fn take_releases(&self, ctx: &Ctx, receiver: &WebhookSim) -> usize {
        let all = receiver.received();
        let seen = self.releases_seen.load(Ordering::SeqCst) as usize;
        let new = all.get(seen..).unwrap_or_default();
        self.releases_seen
            .store(all.len().max(seen) as u64, Ordering::SeqCst);
        let mut picked = 0;
        for d in new {
            let doc = &d.body["document"];
            if doc["type"] != "order.release" {
                continue;
            }
            let order = doc["order"].as_str().unwrap_or_default().to_string();
            let lines: Vec<(usize, i64)> = doc["lines"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| {
                    let item = ctx.index.get(l["item"].as_str()?)?;
                    Some((*item, l["qty"].as_i64()?))
                })
                .filter(|(_, q)| *q > 0)
                .collect();
            if !lines.is_empty() {
                self.pick(ctx, &order, lines).await;
                picked += 1;
            }
        }
        picked
    }

    fn take_dock(&self) -> Vec<Parcel> {
        std::mem::take(&mut *self.dock.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn dock_empty(&self) -> bool {
        self.dock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Parcels picked whose shipment the hub has not confirmed.
    pub fn parcels_open(&self) -> u32 {
        self.building.state().open_parcels.iter().sum()
    }
}

/// The WMS's own work: picking releases as they arrive, cycle counting a few items now and then.
pub async fn run_wms(
    ctx: Arc<Ctx>,
    wh: Arc<Warehouse>,
    releases: Arc<WebhookSim>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = fastrand::Rng::with_seed(ctx.seed ^ ((wh.dc as u64 + 1) * 0x5151));
    let mut tick: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        wh.take_releases(&ctx, &releases).await;
        tick += 1;
        if tick.is_multiple_of(15) {
            let items: Vec<usize> = (0..4).map(|_| rng.usize(..ctx.items.len())).collect();
            wh.cycle_count(&ctx, &items).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The transport system: a truck leaves each dock every `TRUCK_EVERY` with what is there and
/// the carrier's confirmation goes to the hub; inbound, a supplier's truck is announced (ASN) and
/// unloads at the DC a little later.
pub struct Tms {
    pub stream: Stream,
    trucks: AtomicU64,
    /// Supplier deliveries on their way.
    pub inbound: AtomicU64,
}

const TRUCK_EVERY: Duration = Duration::from_millis(700);
/// From a PO's acknowledgment to the supplier's ASN, and from the ASN to the truck at the DC.
const TO_ASN: Duration = Duration::from_millis(600);
const TO_DOCK: Duration = Duration::from_millis(900);

impl Tms {
    pub fn start(ctx: &Arc<Ctx>) -> Arc<Tms> {
        Arc::new(Tms {
            stream: Stream::start(ctx.clone(), "tms", ctx.tokens.tms.clone(), false, false),
            trucks: AtomicU64::new(0),
            inbound: AtomicU64::new(0),
        })
    }

    /// Sends every parcel on every dock now.
    pub async fn dispatch(&self, ctx: &Arc<Ctx>, warehouses: &[Arc<Warehouse>]) {
        for wh in warehouses {
            let parcels = wh.take_dock();
            if parcels.is_empty() {
                continue;
            }
            let truck = self.trucks.fetch_add(1, Ordering::Relaxed) + 1;
            for (k, p) in parcels.into_iter().enumerate() {
                let time = wh
                    .building
                    .moved(&p.lines.iter().map(|(i, q)| (*i, -q)).collect::<Vec<_>>());
                let lines: Vec<Value> = p
                    .lines
                    .iter()
                    .map(|(i, q)| json!({"item": ctx.items[*i].id, "location": DCS[wh.dc].id, "qty": q}))
                    .collect();
                let units: i64 = p.lines.iter().map(|l| l.1).sum();
                let shipment = format!("TRK{truck:05}-{k:03}");
                let wh2 = wh.clone();
                let items: Vec<usize> = p.lines.iter().map(|l| l.0).collect();
                let ctx2 = ctx.clone();
                let after: AfterAnswer = Box::new(move |status: &str| {
                    let mut s = wh2.building.state();
                    for i in items {
                        s.open_parcels[i] -= 1;
                    }
                    if status == "applied" {
                        bump(&ctx2.tally.shipments);
                        add(&ctx2.tally.units_shipped, units as u64);
                    }
                });
                self.stream
                    .send_then(
                        "inventory.shipped.v1",
                        time,
                        json!({"order": p.order, "shipment": shipment, "lines": lines}),
                        Some(after),
                    )
                    .await;
            }
        }
    }

    /// A supplier ships a PO to a DC: ASN now-ish, goods at the dock later.
    pub fn bring(
        self: &Arc<Self>,
        ctx: Arc<Ctx>,
        wh: Arc<Warehouse>,
        po: String,
        lines: Vec<(usize, i64)>,
    ) {
        self.inbound.fetch_add(1, Ordering::SeqCst);
        let tms = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(TO_ASN).await;
            let asn_lines: Vec<Value> = lines
                .iter()
                .map(|(i, q)| json!({"item": ctx.items[*i].id, "qty": q}))
                .collect();
            tms.stream
                .send(
                    "asn.received.v1",
                    Timestamp::now(),
                    json!({"asn": format!("ASN-{po}"), "po": po, "lines": asn_lines}),
                )
                .await;
            tokio::time::sleep(TO_DOCK).await;
            wh.receive(&ctx, &po, &lines).await;
            tms.inbound.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

pub async fn run_trucks(
    ctx: Arc<Ctx>,
    tms: Arc<Tms>,
    warehouses: Arc<Vec<Arc<Warehouse>>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(TRUCK_EVERY).await;
        tms.dispatch(&ctx, &warehouses).await;
    }
}

/// The ERP's replenishment: reorder points per item and DC from the planned demand (the ERP's
/// forecast), checked against the hub's positions for the items that moved.
pub struct Erp {
    pub stream: Stream,
    /// Per item, per DC: (reorder point, order up to).
    levels: Vec<[(i64, i64); 3]>,
    next_po: AtomicU64,
}

/// Seconds of planned demand the reorder point and the order cover.
const COVER_REORDER_S: f64 = 4.0;
const COVER_ORDER_S: f64 = 6.0;

impl Erp {
    /// `units[item][dc]`: planned units over `run_s` seconds.
    pub fn start(ctx: &Arc<Ctx>, units: &[[f64; 3]], run_s: f64) -> Arc<Erp> {
        let levels = units
            .iter()
            .map(|per_dc| {
                let mut l = [(0, 0); 3];
                for (dc, u) in per_dc.iter().enumerate() {
                    let rate = u / run_s;
                    let reorder = (rate * COVER_REORDER_S).ceil() as i64 + 2;
                    l[dc] = (reorder, reorder + (rate * COVER_ORDER_S).ceil() as i64 + 2);
                }
                l
            })
            .collect();
        Arc::new(Erp {
            stream: Stream::start(ctx.clone(), "erp", ctx.tokens.erp.clone(), false, false),
            levels,
            next_po: AtomicU64::new(0),
        })
    }

    /// Opening stock per item and DC: up to the order-up-to level.
    pub fn opening(&self, dc: usize) -> Vec<i64> {
        self.levels.iter().map(|l| l[dc].1).collect()
    }

    /// Looks at `items` in the hub and orders what runs low, one PO per DC.
    async fn replenish(
        &self,
        ctx: &Arc<Ctx>,
        tms: &Arc<Tms>,
        warehouses: &[Arc<Warehouse>],
        items: BTreeSet<usize>,
    ) {
        let mut lines: [Vec<(usize, i64)>; 3] = Default::default();
        for i in items {
            let path = format!("/v1/items/{}/positions", ctx.items[i].id);
            let Ok(a) = ctx.api.get(&ctx.tokens.erp, &path).await else {
                continue;
            };
            let mut have = [0i64; 3];
            for p in a.body["positions"].as_array().into_iter().flatten() {
                if let Some(dc) = p["location"].as_str().and_then(super::world::dc_index) {
                    have[dc] += p["available"].as_i64().unwrap_or(0).max(0)
                        + p["incoming"].as_i64().unwrap_or(0);
                }
            }
            for dc in 0..3 {
                let (reorder, up_to) = self.levels[i][dc];
                if reorder > 2 && have[dc] < reorder {
                    lines[dc].push((i, up_to - have[dc]));
                }
            }
        }
        for (dc, lines) in lines.into_iter().enumerate() {
            if lines.is_empty() {
                continue;
            }
            let n = self.next_po.fetch_add(1, Ordering::Relaxed) + 1;
            let po = format!("PO-{}-{n:05}", &DCS[dc].id[3..]);
            let body = json!({
                "po": po, "location": DCS[dc].id,
                "lines": lines.iter().map(|(i, q)| json!({"item": ctx.items[*i].id, "qty": q})).collect::<Vec<_>>(),
                "expected_at": Timestamp::now().plus_secs(10).to_rfc3339(),
            });
            match ctx
                .api
                .post(&ctx.tokens.erp, "/v1/purchase-orders", &body)
                .await
            {
                Ok(a) if a.status == 201 || a.status == 200 => {
                    bump(&ctx.tally.purchase_orders);
                    // The supplier confirms, then ships.
                    self.stream
                        .send(
                            "purchase_order.acknowledged.v1",
                            Timestamp::now(),
                            json!({"po": po, "status": "accepted"}),
                        )
                        .await;
                    tms.bring(ctx.clone(), warehouses[dc].clone(), po, lines);
                }
                Ok(a) => ctx.progress.say(&format!(
                    "erp: purchase order {po} refused: HTTP {} {}",
                    a.status, a.body
                )),
                Err(e) => ctx.progress.say(&format!("erp: {e}")),
            }
        }
    }
}

pub async fn run_erp(
    ctx: Arc<Ctx>,
    erp: Arc<Erp>,
    tms: Arc<Tms>,
    warehouses: Arc<Vec<Arc<Warehouse>>>,
    stop: Arc<AtomicBool>,
) {
    let mut cycle: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        cycle += 1;
        let items = if cycle.is_multiple_of(5) {
            ctx.touched_take();
            (0..ctx.items.len()).collect()
        } else {
            ctx.touched_take()
        };
        erp.replenish(&ctx, &tms, &warehouses, items).await;
    }
}

/// The ERP's forecast: planned units per item and DC, each order's units spread over the DCs its
/// channel sells from. Marketing did not tell the ERP about the promotion: its orders are left
/// out and the rest scaled up to the whole run, so the promoted items run short.
pub fn forecast(plan: &super::demand::Plan, items: usize, run: Duration) -> Vec<[f64; 3]> {
    let mut units = vec![[0.0; 3]; items];
    let promo = plan.promotion.as_ref().map(|p| (p.from, p.to));
    let outside = promo.map_or(run, |(from, to)| run.saturating_sub(to - from));
    let scale = run.as_secs_f64() / outside.as_secs_f64().max(1.0);
    for o in &plan.orders {
        if promo.is_some_and(|(from, to)| o.at >= from && o.at < to) {
            continue;
        }
        let locs = o.channel.locations();
        for (i, q) in &o.lines {
            for l in locs {
                let dc = super::world::dc_index(l).expect("channel locations are DCs");
                units[*i][dc] += *q as f64 * scale / locs.len() as f64;
            }
        }
    }
    units
}
