//! `/v1/endpoints`, `/v1/dlq` and `/v1/audit`: what each delivery lane is doing, the dead-letter
//! queue with retry and discard (by ids or by filter, audited with the caller and a note), and
//! the audit log.

use std::sync::Arc;

use crate::extract::Query;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use crossdock_delivery::{DeliveryError, EndpointStatus};
use crossdock_model::Timestamp;
use crossdock_store::{AuditRow, DeadLetter, DeadLetterAction, DeadLetterFilter, DeadLetterStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::auth::{Caller, Needed, authenticate};
use crate::problem::Problem;

type AppResult = Result<Response, Problem>;

fn delivery_problem(e: DeliveryError) -> Problem {
    Problem::unavailable(format!("delivery could not answer ({e}); retry"))
}

pub async fn get_endpoints(State(st): State<Arc<AppState>>, headers: HeaderMap) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    let status = endpoints(&st, &caller).await?;
    Ok(Json(json!({ "endpoints": status })).into_response())
}

/// Every delivery lane's status with its dead-letter count (`query`).
pub async fn endpoints(st: &AppState, caller: &Caller) -> Result<Vec<EndpointStatus>, Problem> {
    caller.require(Needed::Query)?;
    st.delivery.status().await.map_err(delivery_problem)
}

#[derive(Deserialize)]
pub struct DlqParams {
    endpoint: Option<String>,
    key: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

pub async fn get_dlq(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<DlqParams>,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    caller.require(Needed::Query)?;
    let status = match q.status.as_deref() {
        None => Some(DeadLetterStatus::Parked),
        Some("all") => None,
        Some(s) => Some(DeadLetterStatus::parse(s).ok_or_else(|| {
            Problem::bad_request(
                "invalid-parameter",
                format!("unknown status {s:?}; use parked, retried, discarded, superseded or all"),
            )
            .field("status")
        })?),
    };
    let filter = DeadLetterFilter {
        ids: None,
        endpoint: q.endpoint,
        key: q.key,
        status,
        limit: q.limit.unwrap_or(100).min(10_000),
    };
    let letters = dead_letters(&st, &caller, filter).await?;
    let letters: Vec<Value> = letters.iter().map(letter_json).collect();
    Ok(Json(json!({ "dead_letters": letters })).into_response())
}

/// Dead letters matching `filter`, oldest first (`query`).
pub async fn dead_letters(
    st: &AppState,
    caller: &Caller,
    filter: DeadLetterFilter,
) -> Result<Vec<DeadLetter>, Problem> {
    caller.require(Needed::Query)?;
    st.delivery
        .dead_letters(filter)
        .await
        .map_err(delivery_problem)
}

/// Selects parked messages by `ids`, or by `endpoint` and/or `key`; at least one is required so
/// that an empty body never acts on the whole queue.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqAction {
    #[serde(default)]
    pub ids: Option<Vec<i64>>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    /// Why; kept in the audit log.
    pub note: String,
    #[serde(default)]
    pub limit: Option<u32>,
}

pub async fn post_dlq_retry(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AppResult {
    act(&st, &headers, &body, DeadLetterAction::Retry).await
}

pub async fn post_dlq_discard(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AppResult {
    act(&st, &headers, &body, DeadLetterAction::Discard).await
}

async fn act(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    action: DeadLetterAction,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, headers)?;
    caller.require(Needed::Admin)?;
    let req: DlqAction = serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request(
            "invalid-body",
            format!("expected {{\"ids\": [..]}} or {{\"endpoint\": .., \"key\": ..}} with a \"note\": {e}"),
        )
    })?;
    let letters = act_on_dead_letters(st, &caller, req, action).await?;
    let verb = match action {
        DeadLetterAction::Retry => "retried",
        DeadLetterAction::Discard => "discarded",
    };
    let letters: Vec<Value> = letters.iter().map(letter_json).collect();
    Ok(Json(json!({ verb: letters.len(), "dead_letters": letters })).into_response())
}

/// Retries or discards the parked messages `req` names, audited with the caller's token name
/// and the note (`admin`). Answers the letters acted on.
pub async fn act_on_dead_letters(
    st: &AppState,
    caller: &Caller,
    req: DlqAction,
    action: DeadLetterAction,
) -> Result<Vec<DeadLetter>, Problem> {
    caller.require(Needed::Admin)?;
    if req.ids.is_none() && req.endpoint.is_none() && req.key.is_none() {
        return Err(Problem::bad_request(
            "empty-selection",
            "name the messages: ids, or a filter (endpoint and/or key)",
        )
        .field("ids"));
    }
    if req.note.trim().is_empty() {
        return Err(
            Problem::bad_request("missing-note", "say why in \"note\"; it is audited")
                .field("note"),
        );
    }
    if let Some(e) = &req.endpoint
        && st.delivery.lane(e).is_none()
    {
        return Err(
            Problem::not_found("no-such-endpoint", format!("no endpoint {e:?}")).field("endpoint"),
        );
    }
    let filter = DeadLetterFilter {
        ids: req.ids,
        endpoint: req.endpoint,
        key: req.key,
        status: None,
        limit: req.limit.unwrap_or(10_000).min(100_000),
    };
    st.delivery
        .act(filter, action, caller.name.clone(), req.note)
        .await
        .map_err(delivery_problem)
}

#[derive(Deserialize)]
pub struct AuditParams {
    limit: Option<u32>,
}

pub async fn get_audit(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AuditParams>,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    let rows = audit_log(&st, &caller, q.limit.unwrap_or(100).min(10_000)).await?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "at": Timestamp::from_micros(r.at_us),
                "actor": r.actor,
                "action": r.action,
                "subject": r.subject,
                "note": r.note,
                "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::String(r.detail)),
            })
        })
        .collect();
    Ok(Json(json!({ "audit": rows })).into_response())
}

/// The newest `limit` audit rows, newest first (`admin`).
pub async fn audit_log(
    st: &AppState,
    caller: &Caller,
    limit: u32,
) -> Result<Vec<AuditRow>, Problem> {
    caller.require(Needed::Admin)?;
    st.delivery.audit_log(limit).await.map_err(delivery_problem)
}

pub(crate) fn letter_json(l: &DeadLetter) -> Value {
    json!({
        "id": l.id,
        "endpoint": l.row.endpoint,
        "key": l.row.key,
        "kind": l.row.kind.as_str(),
        "ledger_seq": l.row.ledger_seq,
        "priority": l.row.priority,
        "payload": serde_json::from_str::<Value>(&l.row.payload).unwrap_or(Value::String(l.row.payload.clone())),
        "correlation_id": l.row.correlation_id,
        "status": l.status.as_str(),
        "reason": l.reason,
        "attempts": l.attempts,
        "last_status": l.last_status,
        "last_response": l.last_response,
        "exception_id": l.exception_id,
        "parked_at": Timestamp::from_micros(l.parked_at_us),
        "updated_at": Timestamp::from_micros(l.updated_at_us),
        "actor": l.actor,
        "note": l.note,
    })
}
