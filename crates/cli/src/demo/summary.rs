//! The end of the run, as the hub tells it: its metrics (`/metrics`), exceptions, dead-letter
//! queue, endpoints, reconciliation runs, orders and positions, next to what the demo's systems
//! were answered and an independent check of stock (the warehouses' shelves against the ledger;
//! every channel's storefront against Crossdock's availability).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use super::Ctx;
use super::actors::Warehouse;
use super::api::get;
use super::channels::Storefronts;
use super::faults::{Injected, Schedule};
use super::world::{Channel, DCS};

/// One series of a metric: its labels and value.
type Sample = (BTreeMap<String, String>, f64);

/// The samples of each metric, by name.
#[derive(Debug, Default)]
pub struct Metrics {
    samples: HashMap<String, Vec<Sample>>,
}

impl Metrics {
    /// Reads the Prometheus / OpenMetrics text exposition.
    pub fn parse(text: &str) -> Metrics {
        let mut samples: HashMap<String, Vec<_>> = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples
                .entry(name.to_string())
                .or_default()
                .push((labels, value));
        }
        Metrics { samples }
    }

    /// The sum over every series of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .get(name)
            .map_or(0.0, |s| s.iter().map(|x| x.1).sum())
    }

    /// The sum over the series of `name` whose labels include all of `labels`.
    pub fn with(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples.get(name).map_or(0.0, |s| {
            s.iter()
                .filter(|(l, _)| {
                    labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|x| x.1)
                .sum()
        })
    }

    /// `name` summed by the value of `label`.
    pub fn by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (l, v) in self.samples.get(name).into_iter().flatten() {
            if let Some(k) = l.get(label) {
                *out.entry(k.clone()).or_insert(0.0) += v;
            }
        }
        out
    }
}

fn parse_labels(raw: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = raw;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = after[end..].trim_start_matches(',');
    }
    out
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub run: RunInfo,
    pub events: Events,
    pub orders: BTreeMap<&'static str, ChannelOrders>,
    pub fulfilment: Fulfilment,
    pub supply: Supply,
    pub oversells: Oversells,
    pub drift: Drift,
    pub dlq: Vec<DlqGroup>,
    pub exceptions_open: BTreeMap<String, u64>,
    pub breakers: BTreeMap<String, BreakerInfo>,
    pub channels: BTreeMap<&'static str, ChannelSync>,
    pub edi: Edi,
    pub faults: Vec<FaultReport>,
    /// Zero oversells by every measure, and every injected fault visible.
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct RunInfo {
    pub duration_s: f64,
    pub demand: String,
    pub orders_planned: u64,
    /// Planned orders the run ended before placing.
    pub orders_cut_off: u64,
    pub dashboard: String,
    pub data_dir: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Events {
    /// `crossdock_events_ingested_total`: recorded and applied, or held for a sequence gap.
    pub accepted: u64,
    /// `crossdock_events_rejected_total`: recorded but quarantined.
    pub rejected: u64,
    /// Answered `duplicate`: sent again, recognised by id, applied once.
    pub duplicates: u64,
    /// Answered `held`: ahead of their turn in a sequenced feed, applied once the gap closed.
    pub held_for_sequence: u64,
    /// Accepted by source (`crossdock` is the hub's own commands: orders, reservations).
    pub by_source: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct ChannelOrders {
    pub placed: u64,
    pub refused_for_stock: u64,
    pub backordered: u64,
    /// The storefront showed none of what the customer wanted.
    pub not_offered: u64,
    /// The storefront was ahead of Crossdock at checkout and did not catch up in time.
    pub held_back: u64,
    pub abandoned: u64,
    pub oversold: u64,
    pub failed: u64,
}

#[derive(Debug, Serialize)]
pub struct Fulfilment {
    /// Shipments the carrier confirmed and the hub applied.
    pub shipments: u64,
    pub units_shipped: u64,
    /// Orders in the hub by state, except closed ones (`GET /v1/orders?state=`).
    pub orders_open: BTreeMap<String, u64>,
    /// Postings the ERP received from the hub, by document type.
    pub erp_postings: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct Supply {
    pub purchase_orders: u64,
    pub units_received: u64,
}

#[derive(Debug, Serialize)]
pub struct Oversells {
    /// `crossdock_oversell_total`.
    pub metric: u64,
    /// Positions whose available is below zero now.
    pub positions_below_zero: u64,
    /// Channel orders the hub answered `oversold`.
    pub orders_oversold: u64,
    /// Shipments that took units the warehouse did not have.
    pub warehouse_shortfalls: u64,
    /// Positions where the ledger's on hand differs from the warehouse's shelves.
    pub ledger_differs_from_warehouses: u64,
    /// A few of those, for a person.
    pub differences: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Drift {
    pub reconciliation_runs: u64,
    /// Variances the Shopify reconciliation runs found.
    pub found: u64,
    pub repaired: u64,
    /// Drifted levels the Shopify lane rewrote: the reconciliation's repairs and the
    /// compare-and-set writes the channel refused because its level had been changed
    /// (`crossdock_deliveries_total{endpoint="shopify",result="mismatch"}`).
    pub lane_mismatches: u64,
}

#[derive(Debug, Serialize)]
pub struct DlqGroup {
    pub endpoint: String,
    pub reason: String,
    /// The target's last answer to one of them (shortened).
    pub answer: String,
    pub count: u64,
    pub keys: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct BreakerInfo {
    pub opened: u64,
    pub state: String,
    pub failed_calls: u64,
}

#[derive(Debug, Serialize)]
pub struct ChannelSync {
    pub items: u64,
    /// Items whose storefront shows exactly Crossdock's availability.
    pub in_sync: u64,
    /// Items known to be refused by the channel (parked), left out of the count.
    pub refused: u64,
    pub off: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Edi {
    pub files_sent: u64,
    pub files_processed: u64,
    pub files_rejected: u64,
    /// The partner's orders by the state the hub answered in each file's report.
    pub orders: BTreeMap<String, u64>,
    /// Documents the hub wrote back to the partner (997, 855, 846, 810), by set.
    pub documents_received: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct FaultReport {
    pub fault: &'static str,
    pub target: String,
    pub from_s: f64,
    pub to_s: Option<f64>,
    /// False when the run ended (Ctrl-C) before the fault was due.
    pub injected: bool,
    pub visible: bool,
    pub evidence: String,
}

/// What the summary needs beyond the context.
pub struct Inputs<'a> {
    pub fronts: &'a Storefronts,
    pub warehouses: &'a [std::sync::Arc<Warehouse>],
    pub erp_postings: &'a crossdock_sim::WebhookSim,
    pub schedule: &'a Schedule,
    pub injected: &'a Injected,
    pub run: RunInfo,
    pub partner_outbound: std::path::PathBuf,
}

/// Asks the hub for everything the summary shows.
pub async fn gather(ctx: &Ctx, input: Inputs<'_>) -> Result<Summary, String> {
    let admin = &ctx.tokens.admin;
    let metrics = Metrics::parse(&ctx.api.get_text(admin, "/metrics").await?);
    let tally = &ctx.tally;

    let events = Events {
        accepted: metrics.sum("crossdock_events_ingested_total") as u64,
        rejected: metrics.sum("crossdock_events_rejected_total") as u64,
        duplicates: get(&tally.events_duplicate),
        held_for_sequence: get(&tally.events_held),
        by_source: metrics
            .by("crossdock_events_ingested_total", "source")
            .into_iter()
            .map(|(k, v)| (k, v as u64))
            .collect(),
    };

    let edi = edi_report(&input);
    let mut orders = BTreeMap::new();
    for ch in Channel::ALL {
        let t = tally.channel(ch);
        let mut o = ChannelOrders {
            placed: get(&t.placed),
            refused_for_stock: get(&t.refused),
            backordered: get(&t.backordered),
            not_offered: get(&t.not_offered),
            held_back: get(&t.held_back),
            abandoned: get(&t.abandoned),
            oversold: get(&t.oversold),
            failed: get(&t.failed),
        };
        if ch == Channel::Retail {
            o.placed = edi.orders.values().sum();
            o.backordered = edi.orders.get("backordered").copied().unwrap_or(0);
            o.failed = edi.orders.get("refused").copied().unwrap_or(0)
                + edi.orders.get("failed").copied().unwrap_or(0);
        }
        orders.insert(ch.id(), o);
    }

    let mut orders_open = BTreeMap::new();
    for state in [
        "released",
        "picked",
        "partially_shipped",
        "backordered",
        "held",
    ] {
        let a = ctx
            .api
            .get(admin, &format!("/v1/orders?state={state}&limit=1000"))
            .await?;
        let n = a.body["workflows"].as_array().map_or(0, Vec::len) as u64;
        if n > 0 {
            orders_open.insert(state.to_string(), n);
        }
    }
    let mut erp_postings = BTreeMap::new();
    for d in input.erp_postings.received() {
        let ty = d.body["document"]["type"]
            .as_str()
            .unwrap_or("other")
            .to_string();
        *erp_postings.entry(ty).or_insert(0) += 1;
    }
    let fulfilment = Fulfilment {
        shipments: get(&tally.shipments),
        units_shipped: get(&tally.units_shipped),
        orders_open,
        erp_postings,
    };

    let oversells = oversells(ctx, &input, &metrics).await?;
    let drift = drift(ctx, &metrics).await?;

    let dlq_answer = ctx.api.get(admin, "/v1/dlq?limit=1000").await?;
    // Parked messages by endpoint and reason, with the target's last answer to one of them.
    type Group = (u64, Vec<String>, String);
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for l in dlq_answer.body["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = (
            l["endpoint"].as_str().unwrap_or("?").to_string(),
            l["reason"].as_str().unwrap_or("?").to_string(),
        );
        let g = groups.entry(key).or_default();
        g.0 += 1;
        if g.1.len() < 10 {
            g.1.push(l["key"].as_str().unwrap_or("?").to_string());
        }
        if g.2.is_empty() {
            g.2 = l["last_response"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(160)
                .collect();
        }
    }
    let dlq: Vec<DlqGroup> = groups
        .into_iter()
        .map(|((endpoint, reason), (count, keys, answer))| DlqGroup {
            endpoint,
            reason,
            answer,
            count,
            keys,
        })
        .collect();

    let ex = ctx
        .api
        .get(admin, "/v1/exceptions?status=active&limit=1")
        .await?;
    let exceptions_open: BTreeMap<String, u64> = ex.body["open_by_kind"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
        .filter(|(_, v)| *v > 0)
        .collect();

    let ends = ctx.api.get(admin, "/v1/endpoints").await?;
    let mut breakers = BTreeMap::new();
    for e in ends.body["endpoints"].as_array().into_iter().flatten() {
        let name = e["endpoint"].as_str().unwrap_or("?").to_string();
        breakers.insert(
            name.clone(),
            BreakerInfo {
                opened: e["breaker_opened"].as_u64().unwrap_or(0),
                state: e["breaker"].as_str().unwrap_or("?").to_string(),
                failed_calls: metrics.with(
                    "crossdock_deliveries_total",
                    &[("endpoint", &name), ("result", "failed_call")],
                ) as u64,
            },
        );
    }

    let channels = channel_sync(ctx, input.fronts, input.schedule).await?;
    // Items the hub recorded drift for (a reconciliation repair or a compare-and-set refusal).
    let mut drifted = std::collections::BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let a = ctx
            .api
            .get(
                admin,
                &format!("/v1/exceptions?kind=inventory_mismatch&limit=1000{cursor}"),
            )
            .await?;
        for e in a.body["exceptions"].as_array().into_iter().flatten() {
            if let Some(item) = e["entity"].as_str().and_then(|x| x.strip_prefix("item:")) {
                drifted.insert(item.to_string());
            }
        }
        match a.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={}", super::api::encode(c)),
            None => break,
        }
    }
    let faults = fault_reports(
        ctx,
        &input,
        &events,
        &exceptions_open,
        &breakers,
        &drifted,
        &drift,
        &dlq,
        &channels,
    );
    let ok = oversells.metric == 0
        && oversells.positions_below_zero == 0
        && oversells.orders_oversold == 0
        && oversells.warehouse_shortfalls == 0
        && faults.iter().all(|f| f.visible || !f.injected);
    Ok(Summary {
        run: input.run,
        events,
        orders,
        fulfilment,
        supply: Supply {
            purchase_orders: get(&tally.purchase_orders),
            units_received: get(&tally.units_received),
        },
        oversells,
        drift,
        dlq,
        exceptions_open,
        breakers,
        channels,
        edi,
        faults,
        ok,
    })
}

/// Every position from the hub against the warehouses' shelves.
async fn oversells(ctx: &Ctx, input: &Inputs<'_>, metrics: &Metrics) -> Result<Oversells, String> {
    let shelves: Vec<Vec<i64>> = input
        .warehouses
        .iter()
        .map(|w| w.building.on_hand())
        .collect();
    let mut below_zero = 0;
    let mut differ = 0;
    let mut differences = Vec::new();
    for (i, item) in ctx.items.iter().enumerate() {
        let a = ctx
            .api
            .get(
                &ctx.tokens.admin,
                &format!("/v1/items/{}/positions", item.id),
            )
            .await?;
        let mut ledger = [0i64; 3];
        for p in a.body["positions"].as_array().into_iter().flatten() {
            if p["available"].as_i64().unwrap_or(0) < 0 {
                below_zero += 1;
            }
            if let Some(dc) = p["location"].as_str().and_then(super::world::dc_index) {
                ledger[dc] += p["on_hand"].as_i64().unwrap_or(0);
            }
        }
        for dc in 0..3 {
            if ledger[dc] != shelves[dc][i] {
                differ += 1;
                if differences.len() < 5 {
                    differences.push(format!(
                        "{} at {}: ledger {} on hand, shelves {}",
                        item.id, DCS[dc].id, ledger[dc], shelves[dc][i]
                    ));
                }
            }
        }
    }
    Ok(Oversells {
        metric: metrics.sum("crossdock_oversell_total") as u64,
        positions_below_zero: below_zero,
        orders_oversold: Channel::ALL
            .iter()
            .map(|c| get(&ctx.tally.channel(*c).oversold))
            .sum(),
        warehouse_shortfalls: input
            .warehouses
            .iter()
            .map(|w| w.building.shortfalls())
            .sum(),
        ledger_differs_from_warehouses: differ,
        differences,
    })
}

async fn drift(ctx: &Ctx, metrics: &Metrics) -> Result<Drift, String> {
    let admin = &ctx.tokens.admin;
    let runs = ctx
        .api
        .get(
            admin,
            "/v1/reconciliations?source=shopify-levels&limit=1000",
        )
        .await?;
    let runs = runs.body["runs"].as_array().cloned().unwrap_or_default();
    let mut found = 0;
    let mut repaired = 0;
    for r in &runs {
        let variances: u64 = r["counts"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(class, _)| class.as_str() != "match")
            .filter_map(|(_, n)| n.as_u64())
            .sum();
        found += variances;
        if variances > 0 {
            let id = r["id"].as_str().unwrap_or_default();
            let run = ctx
                .api
                .get(admin, &format!("/v1/reconciliations/{id}?limit=1000"))
                .await?;
            repaired += run.body["variances"].as_array().map_or(0, |v| {
                v.iter().filter(|x| x["action"] == "repaired").count()
            }) as u64;
        }
    }
    Ok(Drift {
        reconciliation_runs: runs.len() as u64,
        found,
        repaired,
        lane_mismatches: metrics.with(
            "crossdock_deliveries_total",
            &[("endpoint", "shopify"), ("result", "mismatch")],
        ) as u64,
    })
}

/// Each storefront against Crossdock's availability for every item.
async fn channel_sync(
    ctx: &Ctx,
    fronts: &Storefronts,
    schedule: &Schedule,
) -> Result<BTreeMap<&'static str, ChannelSync>, String> {
    let mut out = BTreeMap::new();
    for (channel, refused) in [
        (Channel::Shopify, None),
        (Channel::Amazon, None),
        (Channel::B2b, Some(schedule.refused_item)),
    ] {
        let hub = hub_ats(ctx, channel).await?;
        let mut sync = ChannelSync {
            items: ctx.items.len() as u64,
            in_sync: 0,
            refused: 0,
            off: Vec::new(),
        };
        for (i, item) in ctx.items.iter().enumerate() {
            if refused == Some(i) {
                sync.refused += 1;
                continue;
            }
            let shown = match channel {
                Channel::Shopify => fronts.shopify.quantity(&item.shopify_id.to_string()),
                Channel::Amazon => fronts.amazon.quantity(&item.id),
                _ => fronts.woo.quantity(&item.woo_id.to_string()),
            }
            .unwrap_or(0);
            let want = hub.get(&item.id).copied().unwrap_or(0);
            if shown == want {
                sync.in_sync += 1;
            } else if sync.off.len() < 5 {
                sync.off
                    .push(format!("{}: shows {shown}, Crossdock {want}", item.id));
            }
        }
        out.insert(channel.id(), sync);
    }
    Ok(out)
}

/// Crossdock's availability of every item for `channel`.
pub async fn hub_ats(ctx: &Ctx, channel: Channel) -> Result<HashMap<String, i64>, String> {
    let items: Vec<&str> = ctx.items.iter().map(|i| i.id.as_str()).collect();
    let a = ctx
        .api
        .post(
            &ctx.tokens.admin,
            "/v1/availability/query",
            &json!({"channel": channel.id(), "items": items}),
        )
        .await?;
    if a.status != 200 {
        return Err(format!(
            "availability of {}: HTTP {} {}",
            channel.id(),
            a.status,
            a.body
        ));
    }
    Ok(a.body["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r["item"].as_str()?.to_string(), r["available"].as_i64()?)))
        .collect())
}

/// The partner folder: the hub's report for each file, and what it wrote back.
fn edi_report(input: &Inputs<'_>) -> Edi {
    let partner = &input.fronts.partner;
    let reports = |dir: &str| -> Vec<Value> {
        std::fs::read_dir(partner.inbound().join(dir))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".report.json"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|t| serde_json::from_str(&t).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let processed = reports("processed");
    let rejected = reports("rejected");
    let mut orders = BTreeMap::new();
    for r in &processed {
        for o in r["orders"].as_array().into_iter().flatten() {
            let state = o["status"].as_str().unwrap_or("?").to_string();
            *orders.entry(state).or_insert(0) += 1;
        }
    }
    let mut documents_received = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(&input.partner_outbound) {
        for e in dir.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(set) = ["997", "855", "846", "810", "856", "940"]
                .into_iter()
                .find(|s| name.contains(&format!("-{s}-")))
            {
                *documents_received.entry(set.to_string()).or_insert(0) += 1;
            }
        }
    }
    Edi {
        files_sent: partner.files.lock().map_or(0, |f| f.len() as u64),
        files_processed: processed.len() as u64,
        files_rejected: rejected.len() as u64,
        orders,
        documents_received,
    }
}

#[allow(clippy::too_many_arguments)]
fn fault_reports(
    ctx: &Ctx,
    input: &Inputs<'_>,
    events: &Events,
    exceptions_open: &BTreeMap<String, u64>,
    breakers: &BTreeMap<String, BreakerInfo>,
    drifted: &std::collections::BTreeSet<String>,
    drift: &Drift,
    dlq: &[DlqGroup],
    channels: &BTreeMap<&'static str, ChannelSync>,
) -> Vec<FaultReport> {
    let s = input.schedule;
    let secs = |d: std::time::Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
    let in_sync = |c: &str| {
        channels
            .get(c)
            .is_some_and(|x| x.in_sync + x.refused == x.items)
    };
    let mut out = Vec::new();

    let amazon = breakers.get("amazon");
    let opened = amazon.map_or(0, |b| b.opened);
    let failed = amazon.map_or(0, |b| b.failed_calls);
    out.push(FaultReport {
        fault: "channel_outage",
        target: "amazon".into(),
        from_s: secs(s.outage.0),
        to_s: Some(secs(s.outage.1)),
        injected: true,
        visible: opened >= 1 && failed >= 1,
        evidence: format!(
            "breaker opened {opened}x after {failed} failed calls; {} at the end",
            if in_sync("amazon") {
                "every listing shows Crossdock's availability (nothing lost)"
            } else {
                "some listings still differ"
            }
        ),
    });

    let resent = get(&ctx.tally.events_resent);
    out.push(FaultReport {
        fault: "duplicate_events",
        target: "wms-central (3PL)".into(),
        from_s: secs(s.disorder.0),
        to_s: Some(secs(s.disorder.1)),
        injected: true,
        visible: resent > 0 && events.duplicates >= resent,
        evidence: format!(
            "{resent} events sent twice; the hub answered {} as duplicates and applied each once",
            events.duplicates
        ),
    });

    let swapped = get(&ctx.tally.events_swapped);
    let gaps = exceptions_open.get("sequence_gap").copied().unwrap_or(0);
    out.push(FaultReport {
        fault: "out_of_order_events",
        target: "wms-central (3PL)".into(),
        from_s: secs(s.disorder.0),
        to_s: Some(secs(s.disorder.1)),
        injected: true,
        visible: swapped > 0 && events.held_for_sequence > 0 && gaps == 0,
        evidence: format!(
            "{swapped} events sent ahead of their turn; the hub held {} until the one before \
             arrived and applied them in order; {gaps} sequence_gap exceptions",
            events.held_for_sequence
        ),
    });

    let edits = input
        .injected
        .hand_edits
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    let edited: Vec<&str> = edits
        .iter()
        .map(|(i, _, _)| ctx.items[*i].id.as_str())
        .collect();
    let found: Vec<&&str> = edited.iter().filter(|i| drifted.contains(**i)).collect();
    out.push(FaultReport {
        fault: "hand_edit",
        target: "shopify".into(),
        from_s: secs(s.hand_edit),
        to_s: None,
        injected: true,
        visible: !edited.is_empty() && found.len() == edited.len() && in_sync("shopify"),
        evidence: format!(
            "{} levels edited by hand ({}); {} of them recorded as drift (inventory_mismatch) and \
             rewritten; {}; the Shopify reconciliation runs found {} variances in all and repaired {}",
            edited.len(),
            edited.join(", "),
            found.len(),
            if in_sync("shopify") {
                "Shopify shows Crossdock's availability again"
            } else {
                "some Shopify levels still differ"
            },
            drift.found,
            drift.repaired
        ),
    });

    let item = &ctx.items[s.refused_item];
    let parked = dlq
        .iter()
        .find(|g| g.endpoint == "b2b" && g.keys.contains(&item.id));
    out.push(FaultReport {
        fault: "refused_item",
        target: format!("b2b ({})", item.id),
        from_s: 0.0,
        to_s: None,
        injected: true,
        visible: parked.is_some(),
        evidence: match parked {
            Some(g) => format!("parked in the dead-letter queue: {}", g.reason),
            None => "not in the dead-letter queue".into(),
        },
    });
    for f in &mut out {
        if f.from_s >= input.run.duration_s {
            f.injected = false;
            f.evidence = "not injected: the run ended before it was due".into();
        }
    }
    out
}

/// The summary for a person.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "\n=== crossdock demo: summary ===");
    let _ = writeln!(
        w,
        "demand      {} ({} orders planned{})",
        s.run.demand,
        s.run.orders_planned,
        if s.run.orders_cut_off > 0 {
            format!(", {} cut off by the end of the run", s.run.orders_cut_off)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        w,
        "events      {} accepted, {} duplicates recognised, {} held for sequence, {} rejected",
        s.events.accepted, s.events.duplicates, s.events.held_for_sequence, s.events.rejected
    );
    let sources: Vec<String> = s
        .events
        .by_source
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(w, "            by source: {}", sources.join(", "));
    let _ = writeln!(
        w,
        "orders      channel    placed  refused  backord  no-stock  held-back  abandoned"
    );
    for (ch, x) in &s.orders {
        let _ = writeln!(
            w,
            "            {ch:<9} {:>7} {:>8} {:>8} {:>9} {:>10} {:>10}",
            x.placed, x.refused_for_stock, x.backordered, x.not_offered, x.held_back, x.abandoned
        );
    }
    let open: Vec<String> = s
        .fulfilment
        .orders_open
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        w,
        "fulfilment  {} shipments ({} units) confirmed by the carrier; open orders: {}",
        s.fulfilment.shipments,
        s.fulfilment.units_shipped,
        if open.is_empty() {
            "none".to_string()
        } else {
            open.join(", ")
        }
    );
    let _ = writeln!(
        w,
        "supply      {} purchase orders, {} units received",
        s.supply.purchase_orders, s.supply.units_received
    );
    let _ = writeln!(
        w,
        "oversells   {} (metric crossdock_oversell_total); positions below zero {}, orders oversold {}, \
         shipments short {}, ledger vs shelves differences {}",
        s.oversells.metric,
        s.oversells.positions_below_zero,
        s.oversells.orders_oversold,
        s.oversells.warehouse_shortfalls,
        s.oversells.ledger_differs_from_warehouses
    );
    for d in &s.oversells.differences {
        let _ = writeln!(w, "              {d}");
    }
    let _ = writeln!(
        w,
        "drift       {} Shopify reconciliation runs found {} and repaired {}; the Shopify lane rewrote {} drifted levels",
        s.drift.reconciliation_runs, s.drift.found, s.drift.repaired, s.drift.lane_mismatches
    );
    if s.dlq.is_empty() {
        let _ = writeln!(w, "dlq         empty");
    }
    for g in &s.dlq {
        let _ = writeln!(
            w,
            "dlq         {} x{} ({}): {}{}",
            g.endpoint,
            g.count,
            g.keys.join(", "),
            g.reason,
            if g.answer.is_empty() {
                String::new()
            } else {
                format!("; it answered {}", g.answer)
            }
        );
    }
    let ex: Vec<String> = s
        .exceptions_open
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        w,
        "exceptions  open: {}",
        if ex.is_empty() {
            "none".into()
        } else {
            ex.join(", ")
        }
    );
    let br: Vec<String> = s
        .breakers
        .iter()
        .filter(|(_, b)| b.opened > 0 || b.failed_calls > 0)
        .map(|(k, b)| {
            format!(
                "{k} opened {}x ({} failed calls, now {})",
                b.opened, b.failed_calls, b.state
            )
        })
        .collect();
    let _ = writeln!(
        w,
        "breakers    {}",
        if br.is_empty() {
            "never opened".into()
        } else {
            br.join("; ")
        }
    );
    for (ch, c) in &s.channels {
        let _ = writeln!(
            w,
            "in sync     {ch}: {}/{} items{}{}",
            c.in_sync,
            c.items - c.refused,
            if c.refused > 0 {
                format!(" (+{} refused by the channel)", c.refused)
            } else {
                String::new()
            },
            if c.off.is_empty() {
                String::new()
            } else {
                format!("; off: {}", c.off.join("; "))
            }
        );
    }
    let docs: Vec<String> = s
        .edi
        .documents_received
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let _ = writeln!(
        w,
        "edi         {} files of 850s sent, {} processed, {} rejected; back: {}",
        s.edi.files_sent,
        s.edi.files_processed,
        s.edi.files_rejected,
        docs.join(", ")
    );
    let _ = writeln!(w, "faults");
    for f in &s.faults {
        let _ = writeln!(
            w,
            "  [{}] {} on {} at {}s{}: {}",
            if !f.injected {
                "skipped"
            } else if f.visible {
                "seen"
            } else {
                "MISSED"
            },
            f.fault,
            f.target,
            f.from_s,
            f.to_s.map(|t| format!("..{t}s")).unwrap_or_default(),
            f.evidence
        );
    }
    let _ = writeln!(
        w,
        "\n{}",
        if s.ok {
            "ok: no oversell, every injected fault seen"
        } else {
            "NOT OK: see above"
        }
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_with_labels() {
        let text = "# TYPE crossdock_oversell counter\n\
            crossdock_oversell_total 0\n\
            crossdock_deliveries_total{endpoint=\"amazon\",result=\"failed_call\"} 7\n\
            crossdock_deliveries_total{endpoint=\"amazon\",result=\"delivered\"} 30\n\
            crossdock_deliveries_total{endpoint=\"b2b\",result=\"failed_call\"} 1\n\
            crossdock_exceptions_open{kind=\"a \\\"quoted\\\" kind\"} 2\n\
            # EOF\n";
        let m = Metrics::parse(text);
        assert_eq!(m.sum("crossdock_oversell_total"), 0.0);
        assert_eq!(
            m.with(
                "crossdock_deliveries_total",
                &[("endpoint", "amazon"), ("result", "failed_call")]
            ),
            7.0
        );
        assert_eq!(m.sum("crossdock_deliveries_total"), 38.0);
        assert_eq!(
            m.by("crossdock_deliveries_total", "endpoint")["amazon"],
            37.0
        );
        assert_eq!(
            m.by("crossdock_exceptions_open", "kind")["a \"quoted\" kind"],
            2.0
        );
    }
}
