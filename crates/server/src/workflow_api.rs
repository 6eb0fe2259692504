//! `/v1/orders`, `/v1/returns`, `/v1/transfers`, `/v1/purchase-orders`: start workflows, act on
//! them, and show each one's state with its full history.
//!
//! Order capture is synchronous: validate, ask the ERP for credit (with a timeout and the
//! configured fallback), then one engine command sources, allocates, accepts and releases the
//! order and answers with the promised lines.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::extract::{Path, Query};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use crossdock_engine::WorkflowReply;
use crossdock_ledger::state::hub_command;
use crossdock_ledger::{Rejection, WorkflowKind};
use crossdock_model::event::{
    AsnDecided, Credit, CreditDecision, OrderApproved, OrderCancelled, OrderCaptured, OrderLine,
    PurchaseOrderCreated, ReturnAuthorized, ShipTo, TransferRequested,
};
use crossdock_model::{ChannelId, EventData, ExceptionKind, Timestamp};
use crossdock_store::WorkflowFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{
    AppState, correlation_from, engine_problem, json_body, record, rejected_input, unknown_name,
};
use crate::auth::{Caller, Needed, authenticate};
use crate::config::workflows::{CreditFallback, CreditSettings};
use crate::problem::Problem;

type AppResult = Result<Response, Problem>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    id: String,
    channel: ChannelId,
    lines: Vec<OrderLine>,
    ship_to: ShipTo,
    #[serde(default)]
    amount_minor: i64,
}

/// Parses and checks a body; a bad one is refused with the field named and recorded as an
/// exception with the raw input.
async fn checked<T: serde::de::DeserializeOwned>(
    st: &AppState,
    caller: &Caller,
    body: &[u8],
    check: impl FnOnce(&T) -> Result<(), Problem>,
) -> Result<T, Problem> {
    let parsed = json_body::<T>(body).and_then(|b| check(&b).map(|()| b));
    match parsed {
        Ok(b) => Ok(b),
        Err(p) => {
            record(
                st,
                rejected_input(ExceptionKind::SchemaViolation, &p, body, caller),
            )
            .await?;
            Err(p)
        }
    }
}

fn validate(data: EventData) -> Result<(), Problem> {
    data.validate().map_err(|e| {
        let field = e.field().trim_start_matches("data.").to_string();
        Problem::unprocessable("invalid-workflow", e.to_string()).field(field)
    })
}

pub async fn post_order(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    caller.require(Needed::Reserve)?;
    let b: OrderBody = checked(&st, &caller, &body, |b: &OrderBody| {
        validate(EventData::OrderCaptured(capture(
            b,
            credit_not_required(),
            "api",
        )))
    })
    .await?;
    if let Some((kind, p)) = unknown_name(&st, &b.channel, b.lines.iter().map(|l| &l.item)) {
        record(&st, rejected_input(kind, &p, &body, &caller)).await?;
        return Err(p);
    }
    let corr = correlation_from(&headers, &format!("order:{}:capture", b.id));
    // A repeated order asks the ERP again (a read on its side), but the ledger answers it with
    // the stored order: the first credit answer stands.
    let credit = match &st.config.workflows.credit {
        Some(settings) => credit_check(settings, &b).await,
        None => credit_not_required(),
    };
    let data = capture(&b, credit, "api");
    let event = hub_command(
        format!("order:{}:capture", b.id),
        Timestamp::now(),
        corr,
        EventData::OrderCaptured(data),
    );
    let reply = st
        .engine
        .workflow_command(event)
        .await
        .map_err(engine_problem)?;
    workflow_reply(reply, StatusCode::CREATED)
}

fn capture(b: &OrderBody, credit: Credit, origin: &str) -> OrderCaptured {
    OrderCaptured {
        order: b.id.clone(),
        channel: b.channel.clone(),
        lines: b.lines.clone(),
        ship_to: b.ship_to.clone(),
        amount_minor: b.amount_minor,
        credit,
        sold: false,
        backorder: false,
        origin: origin.to_string(),
    }
}

fn credit_not_required() -> Credit {
    Credit {
        decision: CreditDecision::NotRequired,
        note: "no credit check configured".into(),
    }
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| crossdock_delivery::http::client(Duration::from_secs(60)))
}

#[derive(Deserialize)]
struct CreditAnswer {
    approved: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// Asks the ERP; on a timeout or an error applies the configured fallback.
async fn credit_check(settings: &CreditSettings, b: &OrderBody) -> Credit {
    let request = http()
        .post(&settings.url)
        .timeout(settings.timeout)
        .json(&json!({
            "order": b.id, "channel": b.channel, "amount_minor": b.amount_minor,
            "ship_to": b.ship_to,
        }))
        .send();
    let answer = match request.await {
        Ok(resp) if resp.status().is_success() => resp
            .json::<CreditAnswer>()
            .await
            .map_err(|e| format!("the ERP's credit answer is unreadable: {e}")),
        Ok(resp) => Err(format!("the ERP answered {}", resp.status())),
        Err(e) if e.is_timeout() => Err(format!(
            "the ERP did not answer within {} ms",
            settings.timeout.as_millis()
        )),
        Err(e) => Err(format!("the ERP could not be reached: {e}")),
    };
    match answer {
        Ok(a) if a.approved => Credit {
            decision: CreditDecision::Approved,
            note: a.reason.unwrap_or_else(|| "approved by the ERP".into()),
        },
        Ok(a) => Credit {
            decision: CreditDecision::Held,
            note: format!(
                "declined by the ERP: {}",
                a.reason.unwrap_or_else(|| "no reason given".into())
            ),
        },
        Err(why) => match settings.fallback {
            CreditFallback::ApproveUpTo(limit) if b.amount_minor <= limit => Credit {
                decision: CreditDecision::ApprovedByFallback,
                note: format!(
                    "{why}; approved by fallback (amount {} <= {limit})",
                    b.amount_minor
                ),
            },
            CreditFallback::ApproveUpTo(limit) => Credit {
                decision: CreditDecision::Held,
                note: format!(
                    "{why}; amount {} is above the fallback limit {limit}",
                    b.amount_minor
                ),
            },
            CreditFallback::Hold => Credit {
                decision: CreditDecision::Held,
                note: format!("{why}; the fallback holds the order"),
            },
        },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default, alias = "note")]
    reason: String,
}

pub async fn cancel_order(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    caller.require(Needed::Reserve)?;
    let b: ReasonBody = if body.is_empty() {
        ReasonBody {
            reason: String::new(),
        }
    } else {
        checked(&st, &caller, &body, |_| Ok(())).await?
    };
    let data = EventData::OrderCancelled(OrderCancelled {
        order: id.clone(),
        reason: if b.reason.is_empty() {
            format!("cancelled by {}", caller.name)
        } else {
            b.reason
        },
    });
    validate(data.clone())?;
    command(
        &st,
        &headers,
        format!("order:{id}:cancel"),
        data,
        StatusCode::OK,
    )
    .await
}

pub async fn approve_order(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    caller.require(Needed::Admin)?;
    let b: ReasonBody = checked(&st, &caller, &body, |b: &ReasonBody| {
        if b.reason.trim().is_empty() {
            return Err(Problem::bad_request(
                "missing-note",
                "say why in \"note\"; it is recorded",
            )
            .field("note"));
        }
        Ok(())
    })
    .await?;
    let data = EventData::OrderApproved(OrderApproved {
        order: id.clone(),
        note: format!("{} ({})", b.reason, caller.name),
    });
    validate(data.clone())?;
    command(
        &st,
        &headers,
        format!("order:{id}:approve"),
        data,
        StatusCode::OK,
    )
    .await
}

/// Starts a workflow from an admin's JSON body: parsed, checked, recorded as an exception when
/// refused, then run as the hub command `command_id(&body)`.
async fn start<T: serde::de::DeserializeOwned + Clone>(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    wrap: fn(T) -> EventData,
    command_id: fn(&T) -> String,
    check: impl FnOnce(&T) -> Result<(), Problem>,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, headers)?;
    caller.require(Needed::Admin)?;
    let b: T = checked(st, &caller, body, |b: &T| {
        check(b)?;
        validate(wrap(b.clone()))
    })
    .await?;
    let id = command_id(&b);
    command(st, headers, id, wrap(b), StatusCode::CREATED).await
}

pub async fn post_return(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult {
    start(
        &st,
        &headers,
        &body,
        EventData::ReturnAuthorized,
        |r: &ReturnAuthorized| format!("return:{}:authorize", r.rma),
        |_| Ok(()),
    )
    .await
}

pub async fn post_transfer(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult {
    start(
        &st,
        &headers,
        &body,
        EventData::TransferRequested,
        |t: &TransferRequested| format!("transfer:{}:request", t.transfer),
        |_| Ok(()),
    )
    .await
}

pub async fn post_purchase_order(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult {
    start(
        &st,
        &headers,
        &body,
        EventData::PurchaseOrderCreated,
        |p: &PurchaseOrderCreated| format!("po:{}:create", p.po),
        |b: &PurchaseOrderCreated| match &b.partner {
            Some(p) if st.config.partners.iter().all(|x| &x.id != p) => {
                Err(Problem::unprocessable(
                    "invalid-workflow",
                    format!("no partner {p:?} is configured"),
                )
                .field("partner"))
            }
            _ => Ok(()),
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    asn: String,
    accept: bool,
    note: String,
}

pub async fn post_asn_decision(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(po): Path<String>,
    body: Bytes,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    caller.require(Needed::Admin)?;
    let b: DecisionBody = checked(&st, &caller, &body, |b: &DecisionBody| {
        if b.note.trim().is_empty() {
            return Err(Problem::bad_request(
                "missing-note",
                "say why in \"note\"; it is recorded",
            )
            .field("note"));
        }
        Ok(())
    })
    .await?;
    let data = EventData::AsnDecided(AsnDecided {
        po: po.clone(),
        asn: b.asn.clone(),
        accept: b.accept,
        note: format!("{} ({})", b.note, caller.name),
    });
    validate(data.clone())?;
    command(
        &st,
        &headers,
        format!("po:{po}:asn:{}:decide", b.asn),
        data,
        StatusCode::OK,
    )
    .await
}

async fn command(
    st: &AppState,
    headers: &HeaderMap,
    id: String,
    data: EventData,
    created: StatusCode,
) -> AppResult {
    let corr = correlation_from(headers, &id);
    let event = hub_command(id, Timestamp::now(), corr, data);
    let reply = st
        .engine
        .workflow_command(event)
        .await
        .map_err(engine_problem)?;
    workflow_reply(reply, created)
}

fn workflow_reply(reply: WorkflowReply, created: StatusCode) -> AppResult {
    match reply {
        WorkflowReply::Done { workflow, repeat } => {
            let code = if repeat { StatusCode::OK } else { created };
            let mut resp = (code, Json(view(&workflow))).into_response();
            if repeat {
                resp.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            Ok(resp)
        }
        WorkflowReply::Insufficient(short) => {
            let detail = short
                .iter()
                .map(|s| {
                    format!(
                        "{}: asked {}, {} available",
                        s.item, s.requested, s.available
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            Err(Problem::new(
                StatusCode::CONFLICT,
                "insufficient-stock",
                "Insufficient stock",
                format!("not enough stock and the channel does not backorder; nothing was recorded ({detail})"),
            )
            .field("lines")
            .with("shortfall", serde_json::to_value(&short).expect("json")))
        }
        WorkflowReply::Rejected(r) => Err(match r {
            Rejection::NotFound(d) => Problem::not_found("unknown-workflow", d),
            Rejection::Conflict(d) => {
                Problem::new(StatusCode::CONFLICT, "workflow-conflict", "Conflict", d).field("id")
            }
            Rejection::InvalidState(d) => {
                Problem::new(StatusCode::CONFLICT, "invalid-state", "Conflict", d)
            }
            Rejection::Invalid { field, reason } => {
                Problem::unprocessable("invalid-workflow", reason).field(field)
            }
        }),
    }
}

/// A workflow as the API shows it: kind, id, state and its document's fields.
fn view(wf: &crossdock_ledger::Workflow) -> Value {
    let doc = match serde_json::to_value(&wf.doc).expect("json") {
        Value::Object(mut m) => m.remove(wf.kind.as_str()).unwrap_or(Value::Null),
        other => other,
    };
    let mut out = json!({
        "kind": wf.kind.as_str(), "id": wf.id, "state": wf.state,
        "correlation_id": wf.correlation_id,
        "created_at": wf.created_at, "updated_at": wf.updated_at,
    });
    if let (Value::Object(o), Value::Object(d)) = (&mut out, doc) {
        for (k, v) in d {
            o.insert(k, v);
        }
    }
    out
}

async fn show(st: &AppState, headers: &HeaderMap, kind: WorkflowKind, id: &str) -> AppResult {
    authenticate(&st.config.tokens, headers)?.require(Needed::Query)?;
    crate::extract::path_id(id, "id")?;
    let found = st
        .engine
        .workflow(&kind.key(id))
        .await
        .map_err(engine_problem)?
        .ok_or_else(|| {
            Problem::not_found(
                "unknown-workflow",
                format!("no {} {id:?}", kind.as_str().replace('_', " ")),
            )
        })?;
    let (row, steps) = found;
    let wf = crossdock_engine::workflow_from_row(&row)
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    let mut out = view(&wf);
    let history: Vec<Value> = steps
        .iter()
        .map(|s| {
            json!({
                "n": s.n, "from": s.from, "to": s.to, "at": Timestamp::from_micros(s.at_us),
                "ledger_seq": s.seq, "cause": s.cause, "correlation_id": s.correlation_id,
                "note": s.note,
            })
        })
        .collect();
    out["history"] = Value::Array(history);
    Ok(Json(out).into_response())
}

macro_rules! getter {
    ($name:ident, $kind:expr) => {
        pub async fn $name(
            State(st): State<Arc<AppState>>,
            headers: HeaderMap,
            Path(id): Path<String>,
        ) -> AppResult {
            show(&st, &headers, $kind, &id).await
        }
    };
}

getter!(get_order, WorkflowKind::Order);
getter!(get_return, WorkflowKind::Return);
getter!(get_transfer, WorkflowKind::Transfer);
getter!(get_purchase_order, WorkflowKind::PurchaseOrder);

#[derive(Deserialize)]
pub struct ListParams {
    state: Option<String>,
    limit: Option<u32>,
}

async fn list(st: &AppState, headers: &HeaderMap, kind: WorkflowKind, q: ListParams) -> AppResult {
    authenticate(&st.config.tokens, headers)?.require(Needed::Query)?;
    let rows = st
        .engine
        .workflows(WorkflowFilter {
            kind: kind.as_str().to_string(),
            state: q.state,
            limit: q.limit.unwrap_or(100).min(1000),
        })
        .await
        .map_err(engine_problem)?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| json!({"id": r.id, "state": r.state, "updated_at": Timestamp::from_micros(r.updated_at_us)}))
        .collect();
    Ok(Json(json!({ "kind": kind.as_str(), "workflows": list })).into_response())
}

macro_rules! lister {
    ($name:ident, $kind:expr) => {
        pub async fn $name(
            State(st): State<Arc<AppState>>,
            headers: HeaderMap,
            Query(q): Query<ListParams>,
        ) -> AppResult {
            list(&st, &headers, $kind, q).await
        }
    };
}

lister!(list_orders, WorkflowKind::Order);
lister!(list_returns, WorkflowKind::Return);
lister!(list_transfers, WorkflowKind::Transfer);
lister!(list_purchase_orders, WorkflowKind::PurchaseOrder);
