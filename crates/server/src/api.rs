//! The HTTP API (`/v1`). Handlers translate between the wire and the engine; they hold no state.

use std::sync::Arc;

use crate::extract::{Path, Query};
use crate::workflow_api as wf;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossdock_engine::{Engine, EngineError, EventReply, EventStatus, ReservationReply};
use crossdock_ledger::{ChanIdx, Rejection, Reservation};
use crossdock_model::event::ReserveLine;
use crossdock_model::{
    ChannelId, Envelope, Event, EventError, ExceptionKind, ExceptionRecord, ItemId, Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{Caller, Needed, authenticate};
use crate::config::Config;
use crate::delivery_api;
use crate::problem::Problem;

pub struct AppState {
    pub engine: Arc<Engine>,
    pub delivery: Arc<crossdock_delivery::Delivery>,
    pub partners: Arc<crate::edi::Partners>,
    /// The exceptions work queue's store connection.
    pub exceptions: crossdock_store::thread::StoreThread,
    pub reconciler: Arc<crate::reconcile::Reconciler>,
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    pub config: Arc<Config>,
    /// The dashboard's sessions and plot samples.
    pub dashboard: Arc<crate::dashboard::Dashboard>,
    /// The request bodies' budget and limits.
    pub admission: Arc<crate::admission::Admission>,
    /// The connection cap and how many are open.
    pub connections: Arc<crate::http_server::Connections>,
}

type AppResult = Result<Response, Problem>;

pub fn router(state: Arc<AppState>) -> Router {
    let edge = state.clone();
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(get_metrics))
        .route("/v1/schema", get(schema))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/events", post(post_events))
        .route("/v1/availability", get(get_availability))
        .route("/v1/availability/query", post(query_availability))
        .route("/v1/items/{item}/positions", get(get_positions))
        .route(
            "/v1/items/{item}/history",
            get(crate::reconcile_api::get_history),
        )
        .route(
            "/v1/reconciliations",
            post(crate::reconcile_api::post_run).get(crate::reconcile_api::list_runs),
        )
        .route(
            "/v1/reconciliations/{id}",
            get(crate::reconcile_api::get_run),
        )
        .route(
            "/v1/reconciliations/{id}/variances.csv",
            get(crate::reconcile_api::get_variances_csv),
        )
        .route("/v1/reservations", post(post_reservation))
        .route("/v1/reservations/{id}/release", post(release_reservation))
        .route("/v1/reservations/{id}/commit", post(commit_reservation))
        .route("/v1/exceptions", get(crate::exceptions_api::get_exceptions))
        .route(
            "/v1/exceptions/bulk",
            post(crate::exceptions_api::post_bulk),
        )
        .route(
            "/v1/exceptions/{id}/{action}",
            post(crate::exceptions_api::post_action),
        )
        .route("/v1/orders", post(wf::post_order).get(wf::list_orders))
        .route("/v1/orders/{id}", get(wf::get_order))
        .route("/v1/orders/{id}/cancel", post(wf::cancel_order))
        .route("/v1/orders/{id}/approve", post(wf::approve_order))
        .route("/v1/returns", post(wf::post_return).get(wf::list_returns))
        .route("/v1/returns/{id}", get(wf::get_return))
        .route(
            "/v1/transfers",
            post(wf::post_transfer).get(wf::list_transfers),
        )
        .route("/v1/transfers/{id}", get(wf::get_transfer))
        .route(
            "/v1/purchase-orders",
            post(wf::post_purchase_order).get(wf::list_purchase_orders),
        )
        .route("/v1/purchase-orders/{id}", get(wf::get_purchase_order))
        .route(
            "/v1/purchase-orders/{id}/asn-decision",
            post(wf::post_asn_decision),
        )
        .route("/v1/outbox", get(get_outbox))
        .route("/v1/endpoints", get(delivery_api::get_endpoints))
        .route("/v1/dlq", get(delivery_api::get_dlq))
        .route("/v1/dlq/retry", post(delivery_api::post_dlq_retry))
        .route("/v1/dlq/discard", post(delivery_api::post_dlq_discard))
        .route("/v1/audit", get(delivery_api::get_audit))
        .route(
            "/v1/trace/{correlation_id}",
            get(crate::trace_api::get_trace),
        )
        .route("/v1/partners", get(crate::edi_api::get_partners))
        .route(
            "/v1/partners/{id}/send/{set}",
            post(crate::edi_api::post_send),
        )
        .route("/v1/master", get(crate::edi_api::get_master))
        .route("/v1/master/{kind}", post(crate::edi_api::post_master))
        .route(
            "/v1/webhooks/{platform}/{channel}",
            post(crate::webhooks::post_webhook),
        )
        .merge(crate::dashboard::router())
        .route_layer(axum::middleware::from_fn(http_span))
        .fallback(|| async {
            Problem::not_found("no-such-route", "no such route; see GET /v1/openapi.json")
        })
        .with_state(state)
        // Bodies are bounded by the admission below, per request and all together.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            edge,
            crate::admission::admit,
        ))
        .layer(axum::middleware::from_fn(crate::problem::as_problem))
}

/// A span per request to a known route, carrying the caller's `X-Correlation-Id` (the id the
/// request's documents get when they name none; handlers that learn a document's id, such as
/// webhooks, record it), so logs and exported spans of the request can be found by it.
async fn http_span(req: Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("", |m| m.as_str())
        .to_string();
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        route = %route,
        correlation_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    if let Some(c) = req
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
    {
        span.record("correlation_id", c);
    }
    let response = next.run(req).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let partitions: Vec<Value> = st
        .engine
        .partition_status()
        .iter()
        .map(|p| json!({"partition": p.partition, "ledger_seq": p.ledger_seq, "items": p.items}))
        .collect();
    Json(json!({
        "status": "ready",
        "ledger_seq": st.engine.ledger_seqs(),
        "partitions": partitions,
    }))
    .into_response()
}

async fn schema() -> Response {
    Json(crate::openapi::event_schemas()).into_response()
}

async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

pub(crate) fn engine_problem(e: EngineError) -> Problem {
    match e {
        EngineError::Overloaded => {
            Problem::unavailable("the engine's queue is full; retry after the Retry-After delay")
        }
        EngineError::Store(detail) => Problem::unavailable(format!(
            "the store did not commit ({detail}); nothing was applied, retry"
        )),
        EngineError::Stopped => Problem::unavailable("the engine is shutting down"),
    }
}

/// Parses one envelope from JSON text. The problem names the field; `true` means the JSON itself
/// was malformed (nothing identifiable to record).
fn parse_event(
    text: &[u8],
    received_at: Timestamp,
    bounds: &crossdock_model::event::TimeBounds,
) -> Result<Event, (Problem, bool)> {
    // One pass from bytes to the envelope; syntax errors and shape errors are told apart.
    let malformed = |e: &serde_json::Error| {
        (
            Problem::bad_request(
                "malformed-json",
                format!(
                    "the body is not valid JSON: {e} (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            ),
            true,
        )
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let env: Envelope = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        if e.inner().classify() != serde_json::error::Category::Data {
            return malformed(e.inner());
        }
        let field = e.path().to_string();
        let field = if field == "." {
            "(envelope)".to_string()
        } else {
            field
        };
        (
            Problem::unprocessable("invalid-envelope", format!("{field}: {}", e.inner()))
                .field(field),
            false,
        )
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Event::from_envelope(&env, received_at, || {
        crossdock_model::event::own_correlation(&env.source, &env.id)
    })
    .map_err(|e| {
        let slug = match &e {
            EventError::UnknownType(_) => "unknown-event-type",
            EventError::Field { .. } => "invalid-event-data",
        };
        let mut p = Problem::unprocessable(slug, e.to_string()).field(e.field());
        if let EventError::UnknownType(_) = e {
            let known: Vec<&str> = crossdock_model::EventData::TYPES
                .iter()
                .filter(|t| t.1)
                .map(|t| t.0)
                .collect();
            p = p.with("known_types", known);
        }
        (p, false)
    })
    .and_then(|ev| {
        // The same check the ledger makes of every input, made here for a specific answer.
        ev.check(bounds).map_err(|e| {
            let slug = if e.field() == "time" {
                TIME_OUT_OF_BOUNDS
            } else {
                "invalid-event-data"
            };
            (
                Problem::unprocessable(slug, e.to_string()).field(e.field()),
                false,
            )
        })?;
        Ok(ev)
    })
}

/// The problem slug of an event whose time lies beyond the hub's bounds.
const TIME_OUT_OF_BOUNDS: &str = "event-time-out-of-bounds";

/// The kind of exception a refused input's problem opens.
fn refused_kind(problem: &Problem) -> ExceptionKind {
    match problem.slug {
        "source-not-allowed" => ExceptionKind::AuthRejected,
        TIME_OUT_OF_BOUNDS => ExceptionKind::OutOfBounds,
        _ => ExceptionKind::SchemaViolation,
    }
}

/// An exception for input that never became an event, keeping the raw input.
pub(crate) fn rejected_input(
    kind: ExceptionKind,
    problem: &Problem,
    raw: &[u8],
    caller: &Caller,
) -> ExceptionRecord {
    let raw_text = String::from_utf8_lossy(&raw[..raw.len().min(64 * 1024)]).into_owned();
    let digest = crossdock_model::event::key_hash(&caller.name, &raw_text);
    let cause = format!("{}:{}:{digest:016x}", caller.name, problem.slug);
    ExceptionRecord::open(
        kind,
        &cause,
        format!("token:{}", caller.name),
        None,
        problem.detail.clone(),
        Some(raw_text),
        Timestamp::now(),
    )
}

async fn post_events(State(st): State<Arc<AppState>>, req: Request) -> AppResult {
    let caller = authenticate(&st.config.tokens, req.headers())?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let charge = req.extensions().get::<crate::admission::Charge>().cloned();
    let body = match read_body(req.into_body(), st.config.body_max_bytes).await {
        Ok(b) => b,
        Err(problem) if problem.status == StatusCode::PAYLOAD_TOO_LARGE => {
            record(
                &st,
                rejected_input(ExceptionKind::SchemaViolation, &problem, b"", &caller),
            )
            .await?;
            return Err(problem);
        }
        Err(problem) => return Err(problem),
    };
    let received_at = Timestamp::now();
    if content_type.starts_with("application/x-ndjson") {
        return post_batch(&st, &caller, body, charge.as_ref(), received_at).await;
    }
    if !(content_type.starts_with("application/json")
        || content_type.starts_with("application/cloudevents+json"))
    {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!(
                "Content-Type {content_type:?} is not accepted; use application/cloudevents+json, application/json \
                 or application/x-ndjson"
            ),
        ));
    }
    st.admission.charge_events(charge.as_ref(), 1)?;
    let event = match parse_event(&body, received_at, &st.engine.policy().time_bounds) {
        Ok(ev) => ev,
        Err((problem, _)) => {
            record(
                &st,
                rejected_input(refused_kind(&problem), &problem, &body, &caller),
            )
            .await?;
            return Err(problem);
        }
    };
    check_source(&st, &caller, &event, &body).await?;
    let reply = st
        .engine
        .submit(event.clone())
        .await
        .map_err(engine_problem)?;
    let (status, outcome) = outcome_json(&Named::of(&event), &reply);
    match outcome {
        Ok(body) => Ok((status, Json(body)).into_response()),
        Err(problem) => Err(problem),
    }
}

pub(crate) async fn record(st: &AppState, record: ExceptionRecord) -> Result<(), Problem> {
    st.engine
        .record_exception(record)
        .await
        .map_err(engine_problem)
}

async fn check_source(
    st: &AppState,
    caller: &Caller,
    event: &Event,
    raw: &[u8],
) -> Result<(), Problem> {
    if !event.data.is_public() {
        let p = Problem::unprocessable(
            "hub-command",
            format!(
                "{} is issued by the hub itself and cannot be submitted",
                event.data.type_name()
            ),
        )
        .field("type");
        record(
            st,
            rejected_input(ExceptionKind::SchemaViolation, &p, raw, caller),
        )
        .await?;
        return Err(p);
    }
    if !caller.may_ingest(event.source.as_str()) {
        let p = Problem::new(
            StatusCode::FORBIDDEN,
            "source-not-allowed",
            "Forbidden",
            format!(
                "token {:?} may not submit events as source {:?}; it needs the ingest:{} scope",
                caller.name,
                event.source.as_str(),
                event.source
            ),
        )
        .field("source");
        record(
            st,
            rejected_input(ExceptionKind::AuthRejected, &p, raw, caller),
        )
        .await?;
        return Err(p);
    }
    Ok(())
}

/// What an answer names of its event (a batch keeps only this while the engine holds the events).
struct Named {
    id: String,
    source: crossdock_model::SourceId,
}

impl Named {
    fn of(event: &Event) -> Named {
        Named {
            id: event.id.clone(),
            source: event.source.clone(),
        }
    }
}

/// The per-event answer: status code and body, or the problem for a single-event request.
fn outcome_json(event: &Named, reply: &EventReply) -> (StatusCode, Result<Value, Problem>) {
    match reply {
        EventReply::Recorded { status: EventStatus::Quarantined, seq, exception } => {
            let (kind, reason) = exception.clone().unwrap_or((ExceptionKind::SchemaViolation, String::new()));
            let slug = match kind {
                ExceptionKind::UnknownItem => "unknown-item",
                ExceptionKind::UnknownLocation => "unknown-location",
                ExceptionKind::OwnershipViolation => "ownership-violation",
                _ => "quarantined",
            };
            let field = match kind {
                ExceptionKind::UnknownItem => Some("data.item"),
                ExceptionKind::UnknownLocation => Some("data.location"),
                ExceptionKind::OwnershipViolation => Some("source"),
                _ => None,
            };
            let mut p = Problem::unprocessable(slug, format!("{reason}; the event was recorded as quarantined and an exception opened"))
                .with("id", event.id.clone())
                .with("event_status", "quarantined")
                .with("ledger_seq", *seq)
                .with("exception_kind", kind.as_str());
            if let Some(f) = field {
                p = p.field(f);
            }
            (StatusCode::UNPROCESSABLE_ENTITY, Err(p))
        }
        EventReply::Recorded { status, seq, .. } => {
            let code = if matches!(status, EventStatus::Held | EventStatus::Forwarding) {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            (code, Ok(json!({"id": event.id, "status": status.as_str(), "ledger_seq": seq})))
        }
        EventReply::Duplicate { status, seq } => (
            StatusCode::OK,
            Ok(json!({"id": event.id, "status": "duplicate", "original_status": status.as_str(), "ledger_seq": seq})),
        ),
        EventReply::Conflict { seq, exception_id } => (
            StatusCode::CONFLICT,
            Err(Problem::new(
                StatusCode::CONFLICT,
                "duplicate-conflict",
                "Conflict",
                format!(
                    "event id {:?} from {} was recorded before with a different payload (ledger_seq {seq}); \
                     send a new id for a new event",
                    event.id, event.source
                ),
            )
            .field("id")
            .with("id", event.id.clone())
            .with("ledger_seq", *seq)
            .with("exception_id", exception_id.clone())),
        ),
        EventReply::Rejected(reason) => {
            (StatusCode::UNPROCESSABLE_ENTITY, Err(Problem::unprocessable("rejected", reason.clone())))
        }
    }
}

async fn post_batch(
    st: &AppState,
    caller: &Caller,
    body: Bytes,
    charge: Option<&crate::admission::Charge>,
    received_at: Timestamp,
) -> AppResult {
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.len() > st.config.batch_lines_max {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-many-lines",
            "Batch too large",
            format!(
                "a batch holds at most {} lines, this one has {}; split it",
                st.config.batch_lines_max,
                lines.len()
            ),
        ));
    }
    if lines.is_empty() {
        return Err(Problem::unprocessable(
            "empty-batch",
            "the batch has no lines",
        ));
    }
    // Before anything is parsed: the events as the hub will hold them must fit the budget too.
    st.admission.charge_events(charge, lines.len())?;
    let line_count = lines.len();
    // Answers of the lines refused here, in line order; the others are answered from the
    // engine's replies and written out one by one, never all held as values at once.
    let mut refused: Vec<(usize, Value)> = Vec::new();
    let bounds = &st.engine.policy().time_bounds;
    let mut events = Vec::with_capacity(lines.len());
    let mut slots = Vec::with_capacity(lines.len());
    let mut named = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let parsed = parse_event(line, received_at, bounds).and_then(|ev| {
            if !ev.data.is_public() {
                Err((
                    Problem::unprocessable("hub-command", "hub commands cannot be submitted")
                        .field("type"),
                    false,
                ))
            } else if !caller.may_ingest(ev.source.as_str()) {
                let p = Problem::new(
                    StatusCode::FORBIDDEN,
                    "source-not-allowed",
                    "Forbidden",
                    format!(
                        "token {:?} may not submit events as source {:?}",
                        caller.name,
                        ev.source.as_str()
                    ),
                )
                .field("source");
                Err((p, false))
            } else {
                Ok(ev)
            }
        });
        match parsed {
            Ok(ev) => {
                named.push(Named::of(&ev));
                events.push(ev);
                slots.push(i);
            }
            Err((problem, _)) => {
                record(
                    st,
                    rejected_input(refused_kind(&problem), &problem, line, caller),
                )
                .await?;
                refused.push((
                    i,
                    json!({"line": i + 1, "status": "rejected", "problem": problem.to_json()}),
                ));
            }
        }
    }
    // The events own what they need: the body is not kept while the engine works.
    drop(lines);
    drop(body);
    let replies = st.engine.submit_many(events).await;
    let mut answered = slots.into_iter().zip(named.iter()).zip(replies);
    let mut refused = refused.into_iter().peekable();
    let mut out = Vec::with_capacity(line_count * 64);
    for i in 0..line_count {
        if let Some((_, value)) = refused.next_if(|(line, _)| *line == i) {
            serde_json::to_writer(&mut out, &value).expect("json");
            out.push(b'\n');
            continue;
        }
        let ((slot, event), reply) = answered.next().expect("every line answered");
        debug_assert_eq!(slot, i);
        let value = match reply {
            Ok(r) => match outcome_json(event, &r) {
                (_, Ok(mut v)) => {
                    v["line"] = json!(slot + 1);
                    v
                }
                (_, Err(p)) => {
                    let status = p
                        .extra
                        .get("event_status")
                        .cloned()
                        .unwrap_or_else(|| json!("rejected"));
                    json!({"line": slot + 1, "id": event.id, "status": status,
                           "ledger_seq": p.extra.get("ledger_seq"), "problem": p.to_json()})
                }
            },
            Err(e) => {
                json!({"line": slot + 1, "id": event.id, "status": "error", "problem": engine_problem(e).to_json()})
            }
        };
        serde_json::to_writer(&mut out, &value).expect("json");
        out.push(b'\n');
    }
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

/// The whole body, at most `limit` bytes; the admission's refusal (budget, deadline) when it
/// stopped the body.
///
/// The bytes go straight into one buffer of the declared size, so a large batch is held once
/// (collecting the frames and then joining them would hold it twice for a while).
pub(crate) async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, Problem> {
    use http_body_util::BodyExt;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Payload too large",
            format!("the body exceeds {limit} bytes; send a smaller batch"),
        )
    };
    let hint = usize::try_from(axum::body::HttpBody::size_hint(&body).lower()).unwrap_or(limit);
    let mut buf = Vec::with_capacity(hint.min(limit));
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| crate::admission::refusal_of(&e).unwrap_or_else(too_large))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(Bytes::from(buf))
}

fn channel(st: &AppState, raw: Option<&str>) -> Result<(ChannelId, ChanIdx), Problem> {
    let raw = raw.ok_or_else(|| {
        Problem::bad_request("missing-parameter", "the channel parameter is required")
            .field("channel")
    })?;
    let id = ChannelId::new(raw).map_err(|e| {
        Problem::bad_request("invalid-parameter", format!("channel {e}")).field("channel")
    })?;
    let idx = st.engine.policy().channel(&id).ok_or_else(|| {
        Problem::not_found(
            "unknown-channel",
            format!("no channel {raw:?} is configured"),
        )
        .field("channel")
    })?;
    Ok((id, idx))
}

pub(crate) fn item(st: &AppState, raw: Option<&str>, field: &str) -> Result<ItemId, Problem> {
    let raw = raw.ok_or_else(|| {
        Problem::bad_request("missing-parameter", format!("{field} is required")).field(field)
    })?;
    let id = ItemId::new(raw).map_err(|e| {
        Problem::bad_request("invalid-parameter", format!("{field} {e}")).field(field)
    })?;
    if !st.engine.policy().knows_item(&id) {
        return Err(Problem::not_found(
            "unknown-item",
            format!("no item {raw:?} in the item master"),
        )
        .field(field));
    }
    Ok(id)
}

#[derive(Deserialize)]
struct AvailabilityParams {
    item: Option<String>,
    channel: Option<String>,
}

async fn get_availability(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AvailabilityParams>,
) -> AppResult {
    authenticate(&st.config.tokens, &headers)?.require(Needed::Query)?;
    let (chan_id, chan) = channel(&st, q.channel.as_deref())?;
    let item = item(&st, q.item.as_deref(), "item")?;
    let (available, seq) = st.engine.availability(&item, chan);
    Ok(
        Json(json!({"item": item, "channel": chan_id, "available": available, "ledger_seq": seq}))
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AvailabilityQuery {
    channel: String,
    items: Vec<String>,
}

pub const QUERY_ITEMS_MAX: usize = 10_000;

async fn query_availability(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult {
    authenticate(&st.config.tokens, &headers)?.require(Needed::Query)?;
    let q: AvailabilityQuery = json_body(&body)?;
    let (chan_id, chan) = channel(&st, Some(&q.channel))?;
    if q.items.len() > QUERY_ITEMS_MAX {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-many-items",
            "Query too large",
            format!(
                "at most {QUERY_ITEMS_MAX} items per query, got {}",
                q.items.len()
            ),
        )
        .field("items"));
    }
    let mut results = Vec::with_capacity(q.items.len());
    for (i, raw) in q.items.iter().enumerate() {
        match item(&st, Some(raw), &format!("items[{i}]")) {
            Ok(id) => {
                let (available, seq) = st.engine.availability(&id, chan);
                results.push(json!({"item": id, "available": available, "ledger_seq": seq}));
            }
            Err(p) => results.push(json!({"item": raw, "problem": p.to_json()})),
        }
    }
    Ok(Json(json!({"channel": chan_id, "results": results})).into_response())
}

pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request("malformed-json", format!("the body is not valid JSON: {e}"))
    })?;
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let field = e.path().to_string();
        Problem::unprocessable("invalid-body", format!("{field}: {}", e.inner())).field(field)
    })
}

async fn get_positions(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    Ok(Json(item_positions(&st, &caller, &raw)?).into_response())
}

/// An item as the ledger holds it now: `GET /v1/items/{item}/positions`.
#[derive(Debug, Serialize)]
pub struct ItemPositions {
    pub item: ItemId,
    /// The partition's sequence when the item was read (the highest of every partition for
    /// an item without state).
    pub ledger_seq: Option<u64>,
    /// The sequence of the item's last change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_seq: Option<u64>,
    /// What holds the item's channel ATS at 0 after an oversell (`Some(None)`: nothing; absent
    /// for an item without state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oversell_hold: Option<Option<String>>,
    pub positions: Vec<PositionView>,
    pub channels: Vec<ChannelAts>,
}

/// One (location, lot) with every bucket and what they make.
#[derive(Debug, Serialize)]
pub struct PositionView {
    pub location: String,
    pub lot: Option<String>,
    pub on_hand: i64,
    pub quarantined: i64,
    pub damaged: i64,
    pub returns_pending: i64,
    pub picked: i64,
    pub allocated: i64,
    pub reserved: i64,
    pub in_transit: i64,
    pub incoming: i64,
    pub safety_stock: i64,
    pub committed: i64,
    pub unsellable: i64,
    pub available: i64,
}

/// A channel's availability of the item as last published, and the sequence it was computed at.
#[derive(Debug, Serialize)]
pub struct ChannelAts {
    pub channel: ChannelId,
    pub available: i64,
    pub ledger_seq: Option<u64>,
}

/// Every position of item `raw` and each channel's ATS (`query`).
pub fn item_positions(st: &AppState, caller: &Caller, raw: &str) -> Result<ItemPositions, Problem> {
    caller.require(Needed::Query)?;
    let id = item(st, Some(raw), "item")?;
    let policy = st.engine.policy();
    let seqs = st.engine.ledger_seqs();
    let Some((state, seq)) = st.engine.item(&id) else {
        return Ok(ItemPositions {
            item: id,
            ledger_seq: seqs.iter().max().copied(),
            item_seq: None,
            oversell_hold: None,
            positions: Vec::new(),
            channels: Vec::new(),
        });
    };
    let positions = state
        .positions
        .iter()
        .map(|p| {
            let b = p.b();
            PositionView {
                location: policy.location_name(p.location).to_string(),
                lot: p.lot.as_ref().map(|l| l.to_string()),
                on_hand: b.on_hand,
                quarantined: b.quarantined,
                damaged: b.damaged,
                returns_pending: b.returns_pending,
                picked: b.picked,
                allocated: b.allocated,
                reserved: b.reserved,
                in_transit: b.in_transit,
                incoming: b.incoming,
                safety_stock: b.safety_stock,
                committed: b.committed(),
                unsellable: b.unsellable(),
                available: b.available(),
            }
        })
        .collect();
    let channels = policy
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let published = state.published.get(i).copied().flatten();
            ChannelAts {
                channel: c.id.clone(),
                available: published.map_or(0, |p| p.ats),
                ledger_seq: published.map(|p| p.seq),
            }
        })
        .collect();
    Ok(ItemPositions {
        item: id,
        ledger_seq: Some(seq),
        item_seq: Some(state.last_seq),
        oversell_hold: Some(state.oversell_hold().map(str::to_string)),
        positions,
        channels,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReservationBody {
    id: String,
    channel: String,
    lines: Vec<ReserveLine>,
    ttl_s: u64,
}

fn reservation_json(r: &Reservation) -> Value {
    json!({
        "id": r.id,
        "status": r.status.as_str(),
        "channel": r.channel,
        "lines": r.lines,
        "expires_at": r.expires_at,
    })
}

fn reservation_reply(reply: ReservationReply, created: bool) -> AppResult {
    match reply {
        ReservationReply::Done {
            reservation,
            repeat,
        } => {
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut resp = (code, Json(reservation_json(&reservation))).into_response();
            if repeat {
                resp.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            Ok(resp)
        }
        ReservationReply::Insufficient(short) => {
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
                format!("not enough stock for every line, nothing was held ({detail})"),
            )
            .field("lines")
            .with("shortfall", serde_json::to_value(&short).expect("json")))
        }
        ReservationReply::Rejected(r) => Err(match r {
            Rejection::NotFound(d) => Problem::not_found("unknown-reservation", d),
            Rejection::Conflict(d) => {
                Problem::new(StatusCode::CONFLICT, "reservation-conflict", "Conflict", d)
                    .field("id")
            }
            Rejection::InvalidState(d) => {
                Problem::new(StatusCode::CONFLICT, "invalid-state", "Conflict", d)
            }
            Rejection::Invalid { field, reason } => {
                Problem::unprocessable("invalid-reservation", reason).field(field)
            }
        }),
    }
}

/// The first name in a reservation or an order that the hub does not know (its channel, then
/// each line's item): the problem to answer and the kind of exception that keeps the input.
pub(crate) fn unknown_name<'a>(
    st: &AppState,
    channel: &ChannelId,
    items: impl IntoIterator<Item = &'a ItemId>,
) -> Option<(ExceptionKind, Problem)> {
    let policy = st.engine.policy();
    if policy.channel(channel).is_none() {
        let p = Problem::unprocessable(
            "unknown-channel",
            format!("no channel {:?} is configured", channel.as_str()),
        )
        .field("channel");
        return Some((ExceptionKind::UnknownChannel, p));
    }
    items
        .into_iter()
        .enumerate()
        .find(|(_, item)| !policy.knows_item(item))
        .map(|(i, item)| {
            let p = Problem::unprocessable(
                "unknown-item",
                format!("no item {:?} in the item master", item.as_str()),
            )
            .field(format!("lines[{i}].item"));
            (ExceptionKind::UnknownItem, p)
        })
}

/// The caller's `X-Correlation-Id`, else the hub command's own (`event:crossdock/<command>`).
pub(crate) fn correlation_from(headers: &HeaderMap, command: &str) -> String {
    headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| crossdock_model::ids::validate_id(v).is_ok())
        .map(str::to_string)
        .unwrap_or_else(|| {
            crossdock_model::event::own_correlation(crossdock_model::event::HUB_SOURCE, command)
        })
}

async fn post_reservation(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    caller.require(Needed::Reserve)?;
    let b: ReservationBody = match json_body(&body) {
        Ok(b) => b,
        Err(p) => {
            record(
                &st,
                rejected_input(ExceptionKind::SchemaViolation, &p, &body, &caller),
            )
            .await?;
            return Err(p);
        }
    };
    let channel = match ChannelId::new(&b.channel) {
        Ok(c) => c,
        Err(e) => {
            let p = Problem::unprocessable("invalid-reservation", format!("channel {e}"))
                .field("channel");
            record(
                &st,
                rejected_input(ExceptionKind::SchemaViolation, &p, &body, &caller),
            )
            .await?;
            return Err(p);
        }
    };
    let data = crossdock_model::event::ReservationRequested {
        reservation: b.id.clone(),
        channel: channel.clone(),
        lines: b.lines.clone(),
        ttl_s: b.ttl_s,
    };
    if let Err(e) = crossdock_model::EventData::ReservationRequested(data).validate() {
        let p = Problem::unprocessable("invalid-reservation", e.to_string()).field(e.field());
        record(
            &st,
            rejected_input(ExceptionKind::SchemaViolation, &p, &body, &caller),
        )
        .await?;
        return Err(p);
    }
    if let Some((kind, p)) = unknown_name(&st, &channel, b.lines.iter().map(|l| &l.item)) {
        record(&st, rejected_input(kind, &p, &body, &caller)).await?;
        return Err(p);
    }
    let corr = correlation_from(&headers, &format!("reserve:{}", b.id));
    let reply = st
        .engine
        .reserve(b.id, channel, b.lines, b.ttl_s, corr)
        .await
        .map_err(engine_problem)?;
    reservation_reply(reply, true)
}

async fn release_reservation(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult {
    settle_reservation(&st, &headers, id, false).await
}

async fn commit_reservation(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult {
    settle_reservation(&st, &headers, id, true).await
}

async fn settle_reservation(
    st: &AppState,
    headers: &HeaderMap,
    id: String,
    commit: bool,
) -> AppResult {
    authenticate(&st.config.tokens, headers)?.require(Needed::Reserve)?;
    crate::extract::path_id(&id, "id")?;
    let command = format!("{}:{id}", if commit { "commit" } else { "release" });
    let reply = st
        .engine
        .settle(id, commit, correlation_from(headers, &command))
        .await
        .map_err(engine_problem)?;
    reservation_reply(reply, false)
}

#[derive(Deserialize)]
struct OutboxParams {
    endpoint: Option<String>,
    limit: Option<u32>,
}

/// `GET /metrics`: the telemetry contract (`docs/telemetry.md`) in OpenMetrics, or in the
/// Prometheus text format 0.0.4 when `Accept` prefers `text/plain`.
async fn get_metrics(State(st): State<Arc<AppState>>, headers: HeaderMap) -> AppResult {
    authenticate(&st.config.tokens, &headers)?.require(Needed::Query)?;
    let _one_at_a_time = st.telemetry.scraping.lock().await;
    let lanes = st
        .delivery
        .status()
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    let (_, open_exceptions) = st
        .engine
        .exceptions(crossdock_store::ExceptionFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(engine_problem)?;
    let mut variances = Vec::new();
    for source in st
        .reconciler
        .settings()
        .sources
        .iter()
        .map(|s| s.name.clone())
    {
        let name = source.clone();
        let latest = st
            .engine
            .read(move |s| s.list_runs(Some(&name), 1))
            .await
            .map_err(engine_problem)?;
        let counts = latest
            .first()
            .and_then(|r| serde_json::from_str::<serde_json::Map<String, Value>>(&r.counts).ok())
            .unwrap_or_default();
        for (class, n) in counts {
            if class != "match" {
                variances.push((source.clone(), class, n.as_u64().unwrap_or(0)));
            }
        }
    }
    let channels = st
        .engine
        .policy()
        .channels
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    let http = crate::telemetry::HttpEdge {
        connections: st.connections.open(),
        connections_max: st.connections.max(),
        body_bytes: st.admission.in_flight_bytes(),
        body_budget_bytes: st.admission.budget_bytes(),
        refused: st
            .admission
            .refused()
            .iter()
            .map(|(r, n)| (r.as_str(), *n))
            .collect(),
    };
    let text = st
        .telemetry
        .encode(crate::telemetry::Scrape {
            lanes,
            channels,
            open_exceptions,
            variances,
            http,
            partitions: st.engine.partition_status(),
        })
        .map_err(|e| Problem::unavailable(format!("cannot encode the metrics: {e}")))?;
    let format = crate::telemetry::Format::negotiate(
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
    let text = match format {
        crate::telemetry::Format::OpenMetrics => text,
        crate::telemetry::Format::Prometheus => crate::telemetry::to_prometheus_text(&text),
    };
    Ok(([(header::CONTENT_TYPE, format.content_type())], text).into_response())
}

async fn get_outbox(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<OutboxParams>,
) -> AppResult {
    authenticate(&st.config.tokens, &headers)?.require(Needed::Admin)?;
    let rows = st
        .engine
        .outbox(q.endpoint, q.limit.unwrap_or(100).min(10_000))
        .await
        .map_err(engine_problem)?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "endpoint": r.row.endpoint,
                "key": r.row.key,
                "ledger_seq": r.row.ledger_seq,
                "priority": r.row.priority,
                "payload": serde_json::from_str::<Value>(&r.row.payload).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({"messages": rows})).into_response())
}
