//! Endpoints: each delivery lane's breaker, rate budget, backlog and lag (a live fragment),
//! and the dead-letter queue with retry and discard.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use crossdock_delivery::EndpointStatus;
use crossdock_store::{DeadLetter, DeadLetterAction, DeadLetterFilter, DeadLetterStatus};
use maud::{Markup, html};
use serde::Deserialize;

use super::overview::{breaker_state, lane_state};
use super::plot::compact;
use super::session::{Signed, check_action, csrf_field};
use super::{
    Nav, badge, can_act, clip, done, duration_ms, enc, error_page, fragment, layout, when,
};
use crate::api::AppState;
use crate::auth::Needed;
use crate::delivery_api::{DlqAction, act_on_dead_letters, dead_letters, endpoints};
use crate::problem::Problem;

/// Dead letters listed at most.
const LETTERS_MAX: u32 = 200;

#[derive(Debug, Default, Deserialize)]
pub struct DlqQuery {
    endpoint: Option<String>,
    status: Option<String>,
}

pub async fn page(
    State(st): State<Arc<AppState>>,
    signed: Signed,
    Query(q): Query<DlqQuery>,
) -> Response {
    match render(&st, &signed, q).await {
        Ok(body) => layout(&st, Some(&signed), "Endpoints", Nav::Endpoints, body),
        Err(p) => error_page(&st, &signed, "Endpoints", Nav::Endpoints, p),
    }
}

pub async fn live(State(st): State<Arc<AppState>>, signed: Signed) -> Response {
    match endpoints(&st, &signed.caller).await {
        Ok(lanes) => fragment(lanes_table(&lanes)),
        Err(p) => fragment(super::problem_box(&p)),
    }
}

async fn render(st: &AppState, signed: &Signed, q: DlqQuery) -> Result<Markup, Problem> {
    let lanes = endpoints(st, &signed.caller).await?;
    let endpoint = q.endpoint.filter(|e| !e.is_empty());
    let status_raw = q.status.filter(|s| !s.is_empty());
    let status = match status_raw.as_deref() {
        None | Some("parked") => Some(DeadLetterStatus::Parked),
        Some("all") => None,
        Some(s) => Some(DeadLetterStatus::parse(s).ok_or_else(|| {
            Problem::bad_request(
                "invalid-parameter",
                format!("unknown status {s:?}; use parked, retried, discarded, superseded or all"),
            )
            .field("status")
        })?),
    };
    let letters = dead_letters(
        st,
        &signed.caller,
        DeadLetterFilter {
            ids: None,
            endpoint: endpoint.clone(),
            key: None,
            status,
            limit: LETTERS_MAX,
        },
    )
    .await?;
    let here = format!(
        "/ui/endpoints?endpoint={}&status={}",
        enc(endpoint.as_deref().unwrap_or("")),
        enc(status_raw.as_deref().unwrap_or("parked"))
    );
    let shown_status = status_raw.as_deref().unwrap_or("parked");
    Ok(html! {
        h1 { "Endpoints" }
        div data-live="/ui/live/endpoints" data-every-ms="2000" { (lanes_table(&lanes)) }
        h2 #dlq { "Dead-letter queue" }
        form.filters method="get" action="/ui/endpoints" {
            label { "endpoint "
                select name="endpoint" {
                    option value="" { "every endpoint" }
                    @for l in &lanes {
                        option value=(l.lane.endpoint) selected[endpoint.as_deref() == Some(l.lane.endpoint.as_str())] {
                            (l.lane.endpoint)
                        }
                    }
                }
            }
            label { "status "
                select name="status" {
                    @for s in ["parked", "retried", "discarded", "superseded", "all"] {
                        option value=(s) selected[shown_status == s] { (s) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        @if let (Some(e), true) = (&endpoint, can_act(signed)) {
            form.bulk method="post" action="/ui/dlq/retry" {
                (csrf_field(signed))
                input type="hidden" name="endpoint" value=(e);
                input type="hidden" name="back" value=(here);
                input type="text" name="note" placeholder="why (audited)" required;
                button type="submit" { "Retry every parked message of " (e) }
            }
        }
        (letters_table(signed, &letters, &here))
    })
}

fn lanes_table(lanes: &[EndpointStatus]) -> Markup {
    html! {
        @if lanes.is_empty() {
            p.quiet { "No endpoints are configured." }
        } @else {
            table #endpoints {
                tr {
                    th { "endpoint" } th { "state" } th { "breaker" } th { "rate budget" }
                    th.num title="waiting by priority: crosses zero, low stock, other" { "waiting p0 / p1 / p2" }
                    th.num { "in flight" } th.num { "backing off" } th.num { "held keys" }
                    th.num { "lag (oldest)" } th.num { "delivered" } th.num { "failed calls" }
                    th.num { "mismatches" } th.num { "parked" } th { "last error" }
                }
                @for l in lanes {
                    @let s = &l.lane;
                    tr data-endpoint=(s.endpoint) {
                        td { strong { (s.endpoint) } br; span.quiet { (s.target) } }
                        td { (badge(lane_state(l))) }
                        td {
                            (badge(breaker_state(l)))
                            @if s.breaker_opened > 0 { br; span.quiet { "opened " (s.breaker_opened) "×" } }
                        }
                        td {
                            (compact(s.rate.available)) " / " (compact(s.rate.capacity))
                            " " span.quiet { "(" (s.rate.kind.as_str()) ", " (compact(s.rate.rate)) "/s)" }
                            @if let Some(ms) = s.rate.paused_ms { br; (badge("paused")) " " (duration_ms(ms as f64)) }
                        }
                        td.num {
                            (s.depth.by_priority[0]) " / " (s.depth.by_priority[1]) " / " (s.depth.by_priority[2])
                        }
                        td.num { (s.depth.in_flight) }
                        td.num { (s.depth.backing_off) }
                        td.num { (s.depth.parked_keys) }
                        td.num { (s.oldest_age_ms.map_or_else(|| "–".into(), |ms| duration_ms(ms as f64))) }
                        td.num { (s.stats.delivered) }
                        td.num { (s.stats.failed_calls) }
                        td.num { (s.stats.mismatches) }
                        td.num {
                            a href=(format!("/ui/endpoints?endpoint={}#dlq", enc(&s.endpoint))) { (l.dead_letters) }
                        }
                        td {
                            @if let Some(e) = &s.last_error {
                                (when(e.at.as_micros())) " "
                                @if let Some(code) = e.status { code { (code) } " " }
                                span title=(e.detail) { (clip(&e.detail, 80)) }
                            } @else { span.quiet { "none" } }
                        }
                    }
                }
            }
        }
    }
}

fn letters_table(signed: &Signed, letters: &[DeadLetter], here: &str) -> Markup {
    html! {
        @if letters.is_empty() {
            p.quiet #dlq-empty { "No messages here." }
        } @else {
            table #dead-letters {
                tr {
                    th.num { "#" } th { "endpoint" } th { "key" } th { "status" } th { "reason" }
                    th.num { "attempts" } th { "target's answer" } th { "parked" } th { "exception" }
                    th { "" }
                }
                @for l in letters {
                    tr data-dead-letter=(l.id) {
                        td.num { (l.id) }
                        td { (l.row.endpoint) }
                        td { code { (l.row.key) } br; span.quiet { (l.row.kind.as_str()) " · seq " (l.row.ledger_seq) } }
                        td {
                            (badge(l.status.as_str()))
                            @if !l.actor.is_empty() { br; span.quiet { (l.actor) ": " (l.note) } }
                        }
                        td { (l.reason) }
                        td.num { (l.attempts) }
                        td {
                            @if let Some(code) = l.last_status { code { (code) } " " }
                            span title=(l.last_response) { (clip(&l.last_response, 120)) }
                        }
                        td { (when(l.parked_at_us)) }
                        td {
                            @if !l.exception_id.is_empty() {
                                a href=(format!("/ui/exceptions/{}", enc(&l.exception_id))) { (l.exception_id) }
                            }
                        }
                        td {
                            @if l.status == DeadLetterStatus::Parked && can_act(signed) {
                                form.act method="post" action="/ui/dlq/retry" {
                                    (csrf_field(signed))
                                    input type="hidden" name="id" value=(l.id);
                                    input type="hidden" name="back" value=(here);
                                    input type="text" name="note" placeholder="why (audited)" required;
                                    button type="submit" name="do" value="retry" { "Retry" }
                                    button.danger type="submit" formaction="/ui/dlq/discard" { "Discard" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DlqForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    note: String,
    #[serde(default)]
    back: Option<String>,
    /// Which button was pressed (only for the record; the form's action decides).
    #[serde(default, rename = "do")]
    _pressed: Option<String>,
}

/// `POST /ui/dlq/{retry|discard}`: the same retry or discard as `POST /v1/dlq/...`, by one id or
/// every parked message of an endpoint.
pub async fn post_action(
    State(st): State<Arc<AppState>>,
    signed: Signed,
    headers: HeaderMap,
    Path(action): Path<String>,
    Form(form): Form<DlqForm>,
) -> Response {
    if let Err(refused) = check_action(&st, &headers, &signed, form.csrf.as_deref(), Needed::Admin)
    {
        return refused;
    }
    let back = form.back.as_deref().unwrap_or("/ui/endpoints").to_string();
    let outcome = act(&st, &signed, &action, form).await;
    done(&st, &signed, outcome, &back)
}

async fn act(
    st: &AppState,
    signed: &Signed,
    action: &str,
    form: DlqForm,
) -> Result<String, Problem> {
    let (action, verb) = match action {
        "retry" => (DeadLetterAction::Retry, "Retried"),
        "discard" => (DeadLetterAction::Discard, "Discarded"),
        other => {
            return Err(Problem::not_found(
                "no-such-action",
                format!("{other:?}: use retry or discard"),
            ));
        }
    };
    let ids = match form.id.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(vec![raw.parse::<i64>().map_err(|_| {
            Problem::bad_request("invalid-parameter", format!("id {raw:?} is not a number"))
                .field("id")
        })?]),
    };
    let req = DlqAction {
        ids,
        endpoint: form.endpoint.filter(|e| !e.is_empty()),
        key: None,
        note: form.note,
        limit: None,
    };
    let letters = act_on_dead_letters(st, &signed.caller, req, action).await?;
    if letters.is_empty() {
        return Err(Problem::not_found(
            "nothing-parked",
            "no parked message matched: it was retried or discarded already",
        ));
    }
    let ids: Vec<String> = letters.iter().map(|l| format!("#{}", l.id)).collect();
    let what = if letters.len() == 1 {
        format!("1 parked message ({} for {})", ids[0], letters[0].row.key)
    } else {
        format!(
            "{} parked messages ({})",
            letters.len(),
            clip(&ids.join(", "), 80)
        )
    };
    Ok(match action {
        DeadLetterAction::Retry => {
            format!("{verb} {what}: back in its lane; the audit log has it.")
        }
        DeadLetterAction::Discard => format!("{verb} {what}; the audit log has it."),
    })
}
