//! `GET /v1/trace/{correlation_id}`: the journey of one business document through the hub, in
//! time order: the inputs received under its correlation id (as events), what each changed in
//! the ledger and in channel availability, the workflow steps it caused, every outbox message it
//! produced (waiting, delivered with the value sent, superseded by a newer value, parked in the
//! DLQ) and every exception raised about it.

use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use crossdock_model::Timestamp;
use crossdock_store::{BUCKETS, ExceptionQuery, QueueRecord, TraceRows};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::AppState;
use crate::auth::{Needed, authenticate};
use crate::problem::Problem;

pub const LIMIT_DEFAULT: u32 = 1000;
pub const LIMIT_MAX: u32 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// At most this many rows of each kind (events, steps, messages, exceptions).
    limit: Option<u32>,
}

/// `GET /v1/trace/{correlation_id}?limit=N`.
pub async fn get_trace(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(correlation_id): Path<String>,
    Query(p): Query<Params>,
) -> Result<Response, Problem> {
    authenticate(&st.config.tokens, &headers)?.require(Needed::Query)?;
    let limit = p.limit.unwrap_or(LIMIT_DEFAULT);
    if limit == 0 || limit > LIMIT_MAX {
        return Err(Problem::bad_request(
            "invalid-parameter",
            format!("limit must be between 1 and {LIMIT_MAX}"),
        )
        .field("limit"));
    }
    match trace(&st, &correlation_id, limit).await? {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-trace",
            "Not Found",
            format!("nothing in the hub carries the correlation id {correlation_id:?}"),
        )),
    }
}

/// The trace of `correlation_id`, or `None` when nothing carries it.
pub async fn trace(
    st: &AppState,
    correlation_id: &str,
    limit: u32,
) -> Result<Option<Value>, Problem> {
    let id = correlation_id.to_string();
    let (rows, exceptions) = st
        .exceptions
        .call(move |s| {
            let rows = s.trace(&id, limit)?;
            let exceptions = s.query_exceptions(&ExceptionQuery {
                correlation_id: Some(id),
                oldest_first: true,
                limit,
                ..ExceptionQuery::default()
            })?;
            Ok::<_, crossdock_store::StoreError>((rows, exceptions))
        })
        .await
        .map_err(|e| Problem::unavailable(format!("the store could not answer ({e}); retry")))?
        .map_err(|e| Problem::unavailable(format!("the store could not answer ({e}); retry")))?;
    if rows == TraceRows::default() && exceptions.is_empty() {
        return Ok(None);
    }
    Ok(Some(render(st, correlation_id, &rows, &exceptions)))
}

fn at(us: i64) -> Value {
    json!(Timestamp::from_micros(us))
}

/// One stop of the journey; `order` keeps causes before effects at equal times.
struct Stop {
    at_us: i64,
    order: u8,
    doc: Value,
}

fn stop(at_us: i64, order: u8, stage: &str, mut fields: Map<String, Value>) -> Stop {
    fields.insert("stage".into(), json!(stage));
    fields.insert("at".into(), at(at_us));
    Stop {
        at_us,
        order,
        doc: Value::Object(fields),
    }
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn render(st: &AppState, id: &str, t: &TraceRows, exceptions: &[QueueRecord]) -> Value {
    let mut stops = Vec::new();
    for e in &t.events {
        let envelope: Value = serde_json::from_str(&e.envelope).unwrap_or(Value::Null);
        stops.push(stop(
            e.received_at_us,
            0,
            "event",
            fields(json!({
                "source": e.source, "id": e.id, "type": e.ty, "time": at(e.time_us),
                "status": e.status.as_str(), "partition": e.partition, "seq": e.seq,
                "data": envelope.get("data").cloned().unwrap_or(Value::Null),
            })),
        ));
    }
    for c in &t.changes {
        let delta: Map<String, Value> = BUCKETS
            .iter()
            .zip(c.delta)
            .filter(|(_, d)| *d != 0)
            .map(|(b, d)| (b.to_string(), json!(d)))
            .collect();
        stops.push(stop(
            c.at_us,
            1,
            "ledger",
            fields(json!({
                "item": c.item, "location": c.location, "lot": c.lot, "partition": c.partition,
                "seq": c.seq, "delta": delta,
            })),
        ));
    }
    for a in &t.ats {
        stops.push(stop(
            a.at_us,
            2,
            "availability",
            fields(json!({
                "item": a.item, "channel": a.channel, "seq": a.seq, "from": a.previous,
                "to": a.ats,
            })),
        ));
    }
    for s in &t.steps {
        stops.push(stop(
            s.at_us,
            3,
            "workflow",
            fields(json!({
                "workflow": s.key, "step": s.n, "from": s.from, "to": s.to, "seq": s.seq,
                "cause": s.cause, "note": s.note,
            })),
        ));
    }
    for o in &t.outbox {
        stops.push(stop(
            o.created_at_us,
            4,
            "outbox",
            fields(json!({
                "endpoint": o.endpoint, "key": o.key, "kind": o.kind.as_str(),
                "ledger_seq": o.ledger_seq, "priority": o.priority, "status": "waiting",
            })),
        ));
    }
    for d in &t.deliveries {
        stops.push(stop(
            d.at_us,
            5,
            "delivery",
            fields(json!({
                "endpoint": d.endpoint, "key": d.key, "ledger_seq": d.ledger_seq,
                "outcome": d.outcome, "value": d.value,
            })),
        ));
    }
    // Availability changes that went out: in a value of their own (already in the delivery
    // log) or coalesced into a later one.
    for (a, sent) in t.ats.iter().zip(&t.carried) {
        let Some(sent) = sent else { continue };
        let logged = t.deliveries.iter().any(|d| {
            d.endpoint == sent.endpoint && d.key == sent.key && d.ledger_seq == sent.ledger_seq
        });
        if logged {
            continue;
        }
        let outcome = if sent.ledger_seq == a.seq {
            "delivered"
        } else {
            "delivered_later"
        };
        stops.push(stop(
            sent.sent_at_us,
            5,
            "delivery",
            fields(json!({
                "endpoint": sent.endpoint, "key": sent.key, "ledger_seq": sent.ledger_seq,
                "outcome": outcome, "value": sent.value, "change_seq": a.seq,
            })),
        ));
    }
    for l in &t.dead_letters {
        stops.push(stop(
            l.parked_at_us,
            6,
            "dead_letter",
            fields(crate::delivery_api::letter_json(l)),
        ));
    }
    for r in exceptions {
        let mut f = fields(crate::exceptions_api::record_json(st, r));
        f.remove("raw");
        stops.push(stop(r.record.created_at.as_micros(), 7, "exception", f));
    }
    stops.sort_by_key(|s| (s.at_us, s.order));
    let first = stops.first().map(|s| s.at_us);
    let last = stops.last().map(|s| s.at_us);
    json!({
        "correlation_id": id,
        "started": first.map(at),
        "last": last.map(at),
        "counts": {
            "events": t.events.len(),
            "ledger_changes": t.changes.len(),
            "availability_changes": t.ats.len(),
            "workflow_steps": t.steps.len(),
            "waiting": t.outbox.len(),
            "delivery_log": t.deliveries.len(),
            "availability_delivered": t.carried.iter().flatten().count(),
            "dead_letters": t.dead_letters.len(),
            "exceptions": exceptions.len(),
        },
        "timeline": stops.into_iter().map(|s| s.doc).collect::<Vec<_>>(),
    })
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// One line of text per stop of the journey (the CLI and the dashboard show these).
pub fn describe(stop: &Value) -> String {
    match s(stop, "stage") {
        "event" => format!(
            "{} {} from {} ({}, partition {} seq {})",
            s(stop, "type"),
            s(stop, "id"),
            s(stop, "source"),
            s(stop, "status"),
            stop["partition"],
            stop["seq"]
        ),
        "ledger" => {
            let delta = stop["delta"]
                .as_object()
                .map(|d| {
                    d.iter()
                        .map(|(b, n)| format!("{b} {n:+}", n = n.as_i64().unwrap_or(0)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let lot = s(stop, "lot");
            let lot = if lot.is_empty() {
                String::new()
            } else {
                format!(" lot {lot}")
            };
            format!(
                "{} @ {}{lot}: {delta}",
                s(stop, "item"),
                s(stop, "location")
            )
        }
        "availability" => format!(
            "{} on {}: {} -> {}",
            s(stop, "item"),
            s(stop, "channel"),
            stop["from"],
            stop["to"]
        ),
        "workflow" => format!(
            "{}: {} -> {}{}",
            s(stop, "workflow"),
            s(stop, "from"),
            s(stop, "to"),
            match s(stop, "note") {
                "" => String::new(),
                n => format!(" ({n})"),
            }
        ),
        "outbox" => format!(
            "{} {} waiting (seq {})",
            s(stop, "endpoint"),
            s(stop, "key"),
            stop["ledger_seq"]
        ),
        "delivery" => format!(
            "{} {} {}{}",
            s(stop, "endpoint"),
            s(stop, "key"),
            s(stop, "outcome"),
            stop["value"]
                .as_i64()
                .map(|v| format!(" value {v}"))
                .unwrap_or_default()
        ),
        "dead_letter" => format!(
            "{} {} {}: {}",
            s(stop, "endpoint"),
            s(stop, "key"),
            s(stop, "status"),
            s(stop, "reason")
        ),
        "exception" => format!(
            "{} {} [{}]: {}",
            s(stop, "kind"),
            s(stop, "id"),
            s(stop, "status"),
            s(stop, "reason")
        ),
        other => other.to_string(),
    }
}
