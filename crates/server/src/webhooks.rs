//! Inbound channel webhooks: `POST /v1/webhooks/shopify/{channel}` and
//! `POST /v1/webhooks/woocommerce/{channel}`.
//!
//! The signature is checked against the raw body first (`X-Shopify-Hmac-Sha256`,
//! `X-WC-Webhook-Signature`); a bad one is answered 401 and nothing is stored. A delivery id
//! already handled (`X-Shopify-Webhook-Id`, `X-WC-Webhook-Delivery-ID`) gets its first answer
//! again. Then the webhook becomes canonical commands:
//!
//! * an order placed: a reservation for the channel, committed at once (the channel has sold
//!   it: an allocation). If Crossdock cannot cover it, the channel oversold: `oversell_risk`.
//! * an order cancelled (or refunded in full before shipping): the allocation is released.
//! * a return restock: nothing yet; the warehouse's `return.received` brings the units back.
//! * an inventory level Crossdock did not send: drift. `inventory_mismatch`, and the lane
//!   writes Crossdock's value again with compare-and-set against what the channel shows.
//!
//! An unknown item or a malformed body is answered 422 and kept as an exception with the raw
//! webhook.

use std::sync::Arc;

use crate::extract::Path;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use crossdock_adapters::inbound::{ChannelOrder, ChannelRefund, Restock};
use crossdock_adapters::{ChannelInput, InboundError, shopify, woocommerce};
use crossdock_engine::WorkflowReply;
use crossdock_ledger::state::hub_command;
use crossdock_ledger::{Doc, Rejection};
use crossdock_model::event::{
    Credit, CreditDecision, OrderCancelled, OrderCaptured, OrderLine, ReserveLine, ShipTo,
};
use crossdock_model::{ChannelId, EventData, ExceptionKind, ExceptionRecord, ItemId, Timestamp};
use serde_json::{Value, json};
use tracing::warn;

use crate::api::{AppState, engine_problem, record};
use crate::endpoints::EndpointSpec;
use crate::problem::Problem;

type AppResult = Result<Response, Problem>;

struct Platform {
    name: &'static str,
    signature: &'static str,
    topic: &'static str,
    delivery_id: &'static [&'static str],
    verify: fn(&[u8], &[u8], &str) -> bool,
    parse: fn(&str, &[u8]) -> Result<ChannelInput, InboundError>,
    topics: &'static [&'static str],
}

const SHOPIFY: Platform = Platform {
    name: "shopify",
    signature: "x-shopify-hmac-sha256",
    topic: "x-shopify-topic",
    delivery_id: &["x-shopify-webhook-id", "x-shopify-event-id"],
    verify: shopify::inbound::verify_hmac,
    parse: shopify::inbound::parse,
    topics: &shopify::inbound::TOPICS,
};

const WOOCOMMERCE: Platform = Platform {
    name: "woocommerce",
    signature: "x-wc-webhook-signature",
    topic: "x-wc-webhook-topic",
    delivery_id: &["x-wc-webhook-delivery-id"],
    verify: woocommerce::inbound::verify_signature,
    parse: woocommerce::inbound::parse,
    topics: &woocommerce::inbound::TOPICS,
};

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub async fn post_webhook(
    State(st): State<Arc<AppState>>,
    Path((platform, channel)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult {
    let platform = match platform.as_str() {
        "shopify" => &SHOPIFY,
        "woocommerce" => &WOOCOMMERCE,
        other => {
            return Err(Problem::not_found(
                "no-such-platform",
                format!("no webhooks for {other:?}; use shopify or woocommerce"),
            ));
        }
    };
    let spec = st
        .config
        .endpoints
        .iter()
        .find(|e| e.lane.endpoint == channel && e.lane.target == platform.name)
        .filter(|e| e.webhook_secret.is_some())
        .ok_or_else(|| {
            Problem::not_found(
                "no-webhook-endpoint",
                format!(
                    "channel {channel:?} has no {} endpoint with a webhook_secret",
                    platform.name
                ),
            )
        })?;
    let secret = spec.webhook_secret.as_deref().expect("filtered above");
    let signed = header(&headers, platform.signature)
        .is_some_and(|sig| (platform.verify)(secret, &body, sig));
    if !signed {
        warn!(
            channel,
            platform = platform.name,
            "webhook with a bad or missing signature refused"
        );
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "bad-signature",
            "Bad signature",
            format!("the {} header does not match the body", platform.signature),
        ));
    }
    let Some(topic) = header(&headers, platform.topic).map(str::to_string) else {
        // WooCommerce pings a new webhook with a form body and no topic.
        return Ok(
            Json(json!({"status": "ignored", "reason": "no topic (a ping)"})).into_response(),
        );
    };
    let delivery_id = platform
        .delivery_id
        .iter()
        .find_map(|h| header(&headers, h))
        .map(str::to_string)
        .unwrap_or_else(|| format!("body-{:016x}", xxhash_rust::xxh3::xxh3_64(&body)));
    if let Some(first) = st
        .delivery
        .webhook_receipt(channel.clone(), delivery_id.clone())
        .await
        .map_err(|e| Problem::unavailable(format!("cannot check the delivery id ({e}); retry")))?
    {
        let mut answer: Value = serde_json::from_str(&first).unwrap_or(Value::Null);
        answer["duplicate"] = json!(true);
        return Ok(Json(answer).into_response());
    }
    if !platform.topics.contains(&topic.as_str()) {
        return Ok(Json(
            json!({"status": "ignored", "reason": format!("topic {topic:?} is not used")}),
        )
        .into_response());
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let corr_base = format!("{channel}-webhook-{delivery_id}");
    tracing::Span::current().record("correlation_id", corr_base.as_str());
    let input = match (platform.parse)(&topic, &body) {
        Ok(input) => input,
        Err(e) => {
            let field = match &e {
                InboundError::Malformed { field, .. } => Some(field.clone()),
                InboundError::UnsupportedTopic(_) => None,
            };
            let record_id = reject(
                &st,
                ExceptionKind::SchemaViolation,
                &channel,
                &delivery_id,
                &corr_base,
                e.to_string(),
                &raw,
            )
            .await?;
            let mut p = Problem::unprocessable("invalid-webhook", format!("{topic}: {e}"))
                .with("exception_id", record_id);
            if let Some(f) = field {
                p = p.field(f);
            }
            return Err(p);
        }
    };
    let answer = apply(&st, spec, &channel, &delivery_id, input, &raw).await?;
    st.delivery
        .record_webhook(channel, delivery_id, topic, answer.to_string())
        .await
        .map_err(|e| {
            Problem::unavailable(format!("applied, but the receipt was not recorded ({e})"))
        })?;
    Ok(Json(answer).into_response())
}

/// Records a rejected webhook as an exception with its raw body; returns the record id.
async fn reject(
    st: &AppState,
    kind: ExceptionKind,
    channel: &str,
    delivery_id: &str,
    correlation: &str,
    reason: String,
    raw: &str,
) -> Result<String, Problem> {
    let rec = ExceptionRecord::open(
        kind,
        &format!("webhook\0{channel}\0{delivery_id}"),
        format!("webhook:{channel}/{delivery_id}"),
        Some(correlation.to_string()),
        reason,
        Some(raw.to_string()),
        Timestamp::now(),
    );
    let id = rec.id.clone();
    record(st, rec).await?;
    Ok(id)
}

async fn apply(
    st: &AppState,
    spec: &EndpointSpec,
    channel: &str,
    delivery_id: &str,
    input: ChannelInput,
    raw: &str,
) -> Result<Value, Problem> {
    let channel_id = ChannelId::new(channel)
        .map_err(|e| Problem::bad_request("invalid-parameter", format!("channel {e}")))?;
    match input {
        ChannelInput::OrderPlaced(order) => {
            order_placed(st, spec, &channel_id, delivery_id, &order, raw).await
        }
        ChannelInput::OrderUpdated { order, status } => Ok(json!({
            "status": "ignored",
            "order": order.order_id,
            "reason": format!("order status {status:?} changes no stock"),
        })),
        ChannelInput::OrderCancelled { order_id, .. } => release(st, channel, &order_id).await,
        ChannelInput::Refund(refund) => refunded(st, channel, delivery_id, &refund, raw).await,
        ChannelInput::InventoryLevel {
            inventory_item_id,
            location_id,
            available,
            updated_at,
        } => {
            inventory_level(
                st,
                spec,
                channel,
                delivery_id,
                &inventory_item_id,
                &location_id,
                available,
                updated_at,
                raw,
            )
            .await
        }
    }
}

/// The order workflow of a channel's order: `<channel>:<order id>`.
fn order_key(channel: &str, order_id: &str) -> String {
    format!("{channel}:{order_id}")
}

/// The item a line names: its SKU when that is an item id, else the crosswalk of its channel id.
fn line_item(
    st: &AppState,
    spec: &EndpointSpec,
    sku: Option<&str>,
    external: Option<&str>,
) -> Option<ItemId> {
    let policy = st.engine.policy();
    sku.and_then(|s| ItemId::new(s).ok())
        .filter(|i| policy.knows_item(i))
        .or_else(|| {
            external
                .and_then(|x| spec.crosswalk.item(x))
                .and_then(|i| ItemId::new(i).ok())
                .filter(|i| policy.knows_item(i))
        })
}

async fn order_placed(
    st: &AppState,
    spec: &EndpointSpec,
    channel: &ChannelId,
    delivery_id: &str,
    order: &ChannelOrder,
    raw: &str,
) -> Result<Value, Problem> {
    let corr = format!("{channel}-order-{}", order.order_id);
    let mut lines: Vec<ReserveLine> = Vec::new();
    for (i, l) in order.lines.iter().enumerate() {
        let Some(item) = line_item(st, spec, l.sku.as_deref(), l.external_item.as_deref()) else {
            let reason = format!(
                "order {} line {} names no known item (sku {:?}, channel item {:?})",
                order.order_id, l.line_id, l.sku, l.external_item
            );
            let id = reject(
                st,
                ExceptionKind::UnknownItem,
                channel.as_str(),
                delivery_id,
                &corr,
                reason.clone(),
                raw,
            )
            .await?;
            return Err(Problem::unprocessable("unknown-item", reason)
                .field(format!("line_items[{i}]"))
                .with("exception_id", id));
        };
        match lines.iter_mut().find(|x| x.item == item) {
            Some(x) => x.qty += l.quantity,
            None => lines.push(ReserveLine {
                item,
                qty: l.quantity,
            }),
        }
    }
    // The order goes through the order workflow like any other; it is already sold, so what
    // cannot be allocated is backordered and the oversell is an exception.
    let id = order_key(channel.as_str(), &order.order_id);
    let data = EventData::OrderCaptured(OrderCaptured {
        order: id.clone(),
        channel: channel.clone(),
        lines: lines
            .into_iter()
            .map(|l| OrderLine {
                item: l.item,
                qty: l.qty,
            })
            .collect(),
        ship_to: ShipTo {
            name: None,
            region: channel.to_string(),
            country: None,
            postal_code: None,
        },
        amount_minor: 0,
        credit: Credit {
            decision: CreditDecision::NotRequired,
            note: format!("paid on {channel}"),
        },
        sold: true,
        backorder: true,
        origin: channel.to_string(),
    });
    let reply = st
        .engine
        .workflow_command(hub_command(
            format!("order:{id}:capture"),
            Timestamp::now(),
            corr.clone(),
            data,
        ))
        .await
        .map_err(engine_problem)?;
    match reply {
        WorkflowReply::Done { workflow, .. } => {
            let Doc::Order(d) = &workflow.doc else {
                return Err(Problem::unavailable("order workflow without an order"));
            };
            let lines: Vec<Value> = d
                .lines
                .iter()
                .flat_map(|l| l.allocations.iter())
                .map(|a| json!({"item": a.item, "location": a.location, "qty": a.qty}))
                .collect();
            let backordered: i64 = d.lines.iter().map(|l| l.backordered).sum();
            if backordered > 0 {
                let exception_id = ExceptionRecord::open(
                    ExceptionKind::OversellRisk,
                    &format!("order:{id}:oversold"),
                    String::new(),
                    None,
                    String::new(),
                    None,
                    Timestamp::now(),
                )
                .id;
                return Ok(json!({
                    "status": "oversold", "order": id, "lines": lines,
                    "backordered": backordered, "exception_id": exception_id,
                    "reason": format!("{channel} sold order {} with {backordered} units Crossdock cannot cover yet; backordered", order.order_id),
                }));
            }
            Ok(json!({"status": "allocated", "order": id, "lines": lines}))
        }
        WorkflowReply::Insufficient(_) => Err(Problem::unavailable(
            "a sold order was refused for want of stock; retry",
        )),
        WorkflowReply::Rejected(r) => {
            let reason = format!(
                "{channel} order {} was refused: {}",
                order.order_id,
                rejection_text(&r)
            );
            let exception_id = reject(
                st,
                ExceptionKind::SchemaViolation,
                channel.as_str(),
                delivery_id,
                &corr,
                reason,
                raw,
            )
            .await?;
            Err(rejection(r).with("exception_id", exception_id))
        }
    }
}

async fn release(st: &AppState, channel: &str, order_id: &str) -> Result<Value, Problem> {
    let id = order_key(channel, order_id);
    let corr = format!("{channel}-order-{order_id}");
    let data = EventData::OrderCancelled(OrderCancelled {
        order: id.clone(),
        reason: format!("cancelled on {channel}"),
    });
    match st
        .engine
        .workflow_command(hub_command(
            format!("order:{id}:cancel"),
            Timestamp::now(),
            corr,
            data,
        ))
        .await
        .map_err(engine_problem)?
    {
        WorkflowReply::Done { repeat, workflow } => Ok(
            json!({"status": "released", "order": id, "state": workflow.state, "repeat": repeat}),
        ),
        WorkflowReply::Rejected(Rejection::NotFound(_)) => Ok(json!({
            "status": "ignored", "order": id,
            "reason": "Crossdock holds nothing for this order",
        })),
        WorkflowReply::Rejected(r) => Err(rejection(r)),
        WorkflowReply::Insufficient(_) => Err(Problem::unavailable(
            "unexpected shortfall on cancel; retry",
        )),
    }
}

async fn refunded(
    st: &AppState,
    channel: &str,
    delivery_id: &str,
    refund: &ChannelRefund,
    raw: &str,
) -> Result<Value, Problem> {
    let cancelled: i64 = refund
        .lines
        .iter()
        .filter(|l| l.restock == Restock::Cancel)
        .map(|l| l.quantity)
        .sum();
    if cancelled == 0 {
        return Ok(json!({
            "status": "ignored",
            "order": refund.order_id,
            "reason": "nothing refunded before shipping; returned goods come back with the warehouse's return receipt",
        }));
    }
    let id = order_key(channel, &refund.order_id);
    let key = crossdock_ledger::WorkflowKind::Order.key(&id);
    let Some((row, _)) = st.engine.workflow(&key).await.map_err(engine_problem)? else {
        return Ok(
            json!({"status": "ignored", "order": id, "reason": "Crossdock holds nothing for this order"}),
        );
    };
    if row.is_final {
        return Ok(json!({
            "status": "ignored", "order": id,
            "reason": format!("the order is already {}", row.state),
        }));
    }
    let workflow = crossdock_engine::workflow_from_row(&row)
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    let allocated: i64 = match &workflow.doc {
        Doc::Order(d) => d
            .lines
            .iter()
            .map(|l| l.allocated() + l.picked() + l.backordered)
            .sum(),
        _ => 0,
    };
    if cancelled >= allocated {
        return release(st, channel, &refund.order_id).await;
    }
    let reason = format!(
        "order {} was partly cancelled on {channel} ({cancelled} of {allocated} units) before shipping; \
         release those units by hand",
        refund.order_id
    );
    let corr = format!("{channel}-order-{}", refund.order_id);
    let exception_id = reject(
        st,
        ExceptionKind::InventoryMismatch,
        channel,
        delivery_id,
        &corr,
        reason.clone(),
        raw,
    )
    .await?;
    Ok(
        json!({"status": "held_for_review", "order": id, "reason": reason, "exception_id": exception_id}),
    )
}

#[allow(clippy::too_many_arguments)]
async fn inventory_level(
    st: &AppState,
    spec: &EndpointSpec,
    channel: &str,
    delivery_id: &str,
    inventory_item_id: &str,
    location_id: &str,
    shown: i64,
    updated_at: Option<String>,
    raw: &str,
) -> Result<Value, Problem> {
    if spec
        .channel_location
        .as_deref()
        .is_some_and(|l| l != location_id)
    {
        return Ok(
            json!({"status": "ignored", "reason": format!("location {location_id} is not the one Crossdock publishes to")}),
        );
    }
    let corr = format!("{channel}-inventory-{inventory_item_id}");
    let Some(item) = spec
        .crosswalk
        .item(inventory_item_id)
        .and_then(|i| ItemId::new(i).ok())
    else {
        let reason = format!("no crosswalk entry for {channel} inventory item {inventory_item_id}");
        let id = reject(
            st,
            ExceptionKind::UnknownItem,
            channel,
            delivery_id,
            &corr,
            reason.clone(),
            raw,
        )
        .await?;
        return Err(Problem::unprocessable("unknown-item", reason)
            .field("inventory_item_id")
            .with("exception_id", id));
    };
    let lane = st
        .delivery
        .lane(channel)
        .expect("every endpoint has a lane");
    let chan = st
        .engine
        .policy()
        .channel(&ChannelId::new(channel).expect("configured channel ids are valid"))
        .expect("endpoints name configured channels");
    let (ats, seq) = st.engine.availability(&item, chan);
    let sent = lane.last_sent(item.as_str());
    let expected = sent.and_then(|(_, v)| v).unwrap_or(ats);
    if shown == expected || shown == ats {
        return Ok(json!({"status": "in_sync", "item": item, "shown": shown}));
    }
    let reason = format!(
        "{channel} reports {shown} available for {item}{} where Crossdock last sent {} (ATS now {ats}); \
         changed outside Crossdock, resyncing",
        updated_at.map(|t| format!(" at {t}")).unwrap_or_default(),
        sent.and_then(|(_, v)| v)
            .map_or("nothing".to_string(), |v| v.to_string()),
    );
    let row = crate::reconcile::availability_row(channel, item.as_str(), ats, seq, &corr);
    lane.resync(row, shown, reason.clone(), Some(raw.to_string()));
    Ok(json!({"status": "drift", "item": item, "shown": shown, "resync_to": ats, "reason": reason}))
}

fn rejection_text(r: &Rejection) -> String {
    match r {
        Rejection::NotFound(d) | Rejection::Conflict(d) | Rejection::InvalidState(d) => d.clone(),
        Rejection::Invalid { field, reason } => format!("{field}: {reason}"),
    }
}

fn rejection(r: Rejection) -> Problem {
    match r {
        Rejection::NotFound(d) => Problem::not_found("not-found", d),
        Rejection::Conflict(d) => Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", d),
        Rejection::InvalidState(d) => {
            Problem::new(StatusCode::CONFLICT, "invalid-state", "Invalid state", d)
        }
        Rejection::Invalid { field, reason } => {
            Problem::unprocessable("invalid", reason).field(field)
        }
    }
}
