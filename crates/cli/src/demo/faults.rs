//! The faults the demo injects, at fixed points of the run, each announced in the progress
//! output when it starts (and ends):
//!
//! - the B2B portal refuses one product for good (its listing was deleted by hand): every value
//!   for it is parked in the dead-letter queue with the portal's reason;
//! - the 3PL running DC-CENTRAL sends some events twice and some ahead of their turn (its feed
//!   is sequenced: the hub answers repeats as duplicates and holds an early event until the one
//!   before it arrives);
//! - Amazon's SP-API is down for a stretch (every call answers 503): the lane's breaker opens,
//!   changes wait and coalesce, and the backlog goes out when it is back;
//! - a merchant edits Shopify levels by hand (two items hidden, one typo); the Shopify
//!   reconciliation, run by the operator a moment later and on its schedule, finds the drift and
//!   rewrites it with compare-and-set (a write in between finds it too: a compare-and-set
//!   mismatch).
//!
//! `summary.rs` reads from the hub what made each one visible.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Ctx;
use crossdock_sim::{AmazonSim, ShopifySim, WooSim};

/// When each fault happens, from the start of the run.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The item the B2B portal refuses (from the start).
    pub refused_item: usize,
    pub disorder: (Duration, Duration),
    pub outage: (Duration, Duration),
    pub hand_edit: Duration,
    pub reconcile: Duration,
}

impl Schedule {
    pub fn for_run(run: Duration, items: usize) -> Schedule {
        let at = |f: f64| run.mul_f64(f);
        let outage_from = at(0.30);
        let hand_edit = at(0.60);
        Schedule {
            refused_item: 9.min(items - 1),
            disorder: (at(0.10), at(0.85)),
            outage: (
                outage_from,
                outage_from + at(0.15).max(Duration::from_millis(2500)),
            ),
            hand_edit,
            reconcile: hand_edit + at(0.05).max(Duration::from_millis(1500)),
        }
    }
}

/// What the faults did, for the summary.
#[derive(Debug, Default)]
pub struct Injected {
    /// (item index, what Shopify showed, what the merchant typed).
    pub hand_edits: std::sync::Mutex<Vec<(usize, i64, i64)>>,
}

/// Sets up the faults that hold from the start.
pub fn at_start(ctx: &Ctx, schedule: &Schedule, woo: &WooSim) {
    let item = &ctx.items[schedule.refused_item];
    woo.faults().permanent_items([item.woo_id.to_string()]);
    ctx.progress.say(&format!(
        "fault: the B2B portal refuses product {} ({}) for good: its listing was deleted by hand",
        item.woo_id, item.id
    ));
}

/// Injects the timed faults; returns when the last one is done.
pub async fn run(
    ctx: Arc<Ctx>,
    schedule: Schedule,
    shopify: Arc<ShopifySim>,
    amazon: Arc<AmazonSim>,
    injected: Arc<Injected>,
) {
    let mut events: Vec<(Duration, Step)> = vec![
        (schedule.disorder.0, Step::DisorderOn),
        (schedule.disorder.1, Step::DisorderOff),
        (schedule.outage.0, Step::OutageOn),
        (schedule.outage.1, Step::OutageOff),
        (schedule.hand_edit, Step::HandEdit),
        (schedule.reconcile, Step::Reconcile),
    ];
    events.sort_by_key(|e| e.0);
    for (at, step) in events {
        tokio::time::sleep_until((ctx.started() + at).into()).await;
        match step {
            Step::DisorderOn => {
                ctx.disorder.store(true, Ordering::Relaxed);
                ctx.progress.say(
                    "fault: the 3PL at DC-CENTRAL starts sending events twice and out of order",
                );
            }
            Step::DisorderOff => {
                ctx.disorder.store(false, Ordering::Relaxed);
                ctx.progress.say(&format!(
                    "fault over: the 3PL's feed is clean again ({} sent twice, {} sent ahead of their turn)",
                    super::api::get(&ctx.tally.events_resent),
                    super::api::get(&ctx.tally.events_swapped)
                ));
            }
            Step::OutageOn => {
                amazon.faults().outage(true);
                ctx.progress
                    .say("fault: Amazon SP-API outage: every call answers 503 Service Unavailable");
            }
            Step::OutageOff => {
                amazon.faults().outage(false);
                ctx.progress
                    .say("fault over: Amazon SP-API is back; the backlog goes out");
            }
            Step::HandEdit => hand_edit(&ctx, &shopify, &injected),
            Step::Reconcile => reconcile(&ctx).await,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    DisorderOn,
    DisorderOff,
    OutageOn,
    OutageOff,
    HandEdit,
    Reconcile,
}

/// A merchant hides two slow sellers in the Shopify admin and mistypes a third.
fn hand_edit(ctx: &Ctx, shopify: &ShopifySim, injected: &Injected) {
    let mut edits = Vec::new();
    for (i, item) in ctx.items.iter().enumerate().rev() {
        let shown = shopify.quantity(&item.shopify_id.to_string()).unwrap_or(0);
        if shown > 0 {
            let typed = if edits.len() < 2 { 0 } else { shown + 250 };
            shopify.edit_by_hand(&item.shopify_id.to_string(), typed);
            edits.push((i, shown, typed));
            if edits.len() == 3 {
                break;
            }
        }
    }
    let described: Vec<String> = edits
        .iter()
        .map(|(i, was, now)| format!("{} {was} -> {now}", ctx.items[*i].id))
        .collect();
    ctx.progress.say(&format!(
        "fault: a merchant edits Shopify levels by hand: {}",
        described.join(", ")
    ));
    *injected
        .hand_edits
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = edits;
}

/// The operator pulls Shopify's levels now rather than waiting for the schedule (a scheduled
/// run in progress is waited for: the hub runs one per source at a time).
async fn reconcile(ctx: &Ctx) {
    let mut attempts = 0;
    let answer = loop {
        attempts += 1;
        let answer = ctx
            .api
            .post_raw(
                Some(&ctx.tokens.admin),
                "/v1/reconciliations?source=shopify-levels",
                "text/plain",
                &[],
                Vec::new(),
            )
            .await;
        match answer {
            Ok(a) if a.status == 409 && attempts < 60 => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => break other,
        }
    };
    match answer {
        Ok(a) if a.status == 201 => {
            let repaired = a.body["variances"].as_array().map_or(0, |v| {
                v.iter().filter(|x| x["action"] == "repaired").count()
            });
            ctx.progress.say(&format!(
                "operator: Shopify reconciliation {}: {} rows compared, {} repaired with compare-and-set",
                a.body["id"].as_str().unwrap_or("?"),
                a.body["rows"],
                repaired
            ));
        }
        Ok(a) => ctx.progress.say(&format!(
            "operator: the Shopify reconciliation was refused: HTTP {} {}",
            a.status, a.body
        )),
        Err(e) => ctx
            .progress
            .say(&format!("operator: the Shopify reconciliation failed: {e}")),
    }
}
