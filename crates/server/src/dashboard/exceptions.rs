//! The exceptions work queue: filters, counts, one record with its raw input, and the
//! lifecycle moves (acknowledge, resolve, replay, discard), each with a note.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use crossdock_model::{ExceptionKind, ExceptionStatus};
use crossdock_store::QueueRecord;
use maud::{Markup, html};
use serde::Deserialize;

use super::session::{Signed, check_action, csrf_field};
use super::{Nav, badge, can_act, clip, done, enc, error_page, layout, when};
use crate::api::AppState;
use crate::auth::Needed;
use crate::exceptions_api::{Acted, Action, ListParams, page as list_page, record};
use crate::problem::Problem;

/// Records on one page.
const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    kind: Option<String>,
    status: Option<String>,
    entity_prefix: Option<String>,
    correlation_id: Option<String>,
    cursor: Option<String>,
}

fn some(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.trim().is_empty())
}

pub async fn page(
    State(st): State<Arc<AppState>>,
    signed: Signed,
    Query(f): Query<Filters>,
) -> Response {
    match render(&st, &signed, f).await {
        Ok(body) => layout(&st, Some(&signed), "Exceptions", Nav::Exceptions, body),
        Err(p) => error_page(&st, &signed, "Exceptions", Nav::Exceptions, p),
    }
}

async fn render(st: &AppState, signed: &Signed, f: Filters) -> Result<Markup, Problem> {
    // Without a status the queue shows what needs a person: open and acknowledged.
    let status = some(&f.status).unwrap_or_else(|| "active".to_string());
    let params = ListParams {
        kind: some(&f.kind),
        status: (status != "all").then(|| status.clone()),
        entity_prefix: some(&f.entity_prefix),
        correlation_id: some(&f.correlation_id),
        since: None,
        until: None,
        limit: Some(PAGE),
        cursor: some(&f.cursor),
    };
    let query = format!(
        "kind={}&status={}&entity_prefix={}&correlation_id={}",
        enc(params.kind.as_deref().unwrap_or("")),
        enc(&status),
        enc(params.entity_prefix.as_deref().unwrap_or("")),
        enc(params.correlation_id.as_deref().unwrap_or("")),
    );
    let here = match &params.cursor {
        Some(c) => format!("/ui/exceptions?{query}&cursor={}", enc(c)),
        None => format!("/ui/exceptions?{query}"),
    };
    let kind = params.kind.clone();
    let (entity_prefix, correlation_id) =
        (params.entity_prefix.clone(), params.correlation_id.clone());
    let page = list_page(st, &signed.caller, params).await?;
    let total: u64 = page.matching.iter().map(|(_, _, n)| n).sum();
    let statuses = [
        "active",
        "open",
        "acknowledged",
        "resolved",
        "replayed",
        "discarded",
        "closed",
        "all",
    ];
    Ok(html! {
        h1 { "Exceptions" }
        form.filters method="get" action="/ui/exceptions" {
            label { "kind "
                select name="kind" {
                    option value="" { "every kind" }
                    @for k in ExceptionKind::ALL {
                        option value=(k.as_str()) selected[kind.as_deref() == Some(k.as_str())] { (k.as_str()) }
                    }
                }
            }
            label { "status "
                select name="status" {
                    @for s in statuses {
                        option value=(s) selected[status == s] { (s) }
                    }
                }
            }
            label { "entity starts with "
                input type="text" name="entity_prefix" value=(entity_prefix.as_deref().unwrap_or("")) placeholder="item:SKU-1";
            }
            label { "correlation id "
                input type="text" name="correlation_id" value=(correlation_id.as_deref().unwrap_or(""));
            }
            button type="submit" { "Filter" }
        }
        p.counts {
            span #matching { (total) } " matching"
            @for (k, s, n) in &page.matching {
                " · " (k.as_str()) " " (s.as_str()) ": " (n)
            }
        }
        @if page.records.is_empty() {
            p.quiet #exceptions-empty { "Nothing matches." }
        } @else {
            table #exceptions {
                tr {
                    th { "raised" } th { "kind" } th { "status" } th { "about" } th { "reason" }
                    th { "policy" } th { "last move" } th { "" }
                }
                @for r in &page.records {
                    tr data-exception=(r.record.id) data-status=(r.record.status.as_str()) {
                        td { a href=(format!("/ui/exceptions/{}", enc(&r.record.id))) { (when(r.record.created_at.as_micros())) } }
                        td { (r.record.kind.as_str()) }
                        td { (badge(r.record.status.as_str())) }
                        td { code { (r.record.entity) } }
                        td title=(r.record.reason) { (clip(&r.record.reason, 140)) }
                        td {
                            (st.config.exceptions.policy(r.record.kind).as_str())
                            @if let Some(label) = replayable(r) { br; span.quiet { "replays its " (label) } }
                            @if r.attempts > 0 { br; span.quiet { (r.attempts) " automatic replays" } }
                        }
                        td { @if !r.actor.is_empty() { (r.actor) ": " (clip(&r.note, 60)) } }
                        td { (actions(signed, r, &here)) }
                    }
                }
            }
            @if let Some(c) = &page.next_cursor {
                p { a.next href=(format!("/ui/exceptions?{query}&cursor={}", enc(c))) { "Next page →" } }
            }
        }
    })
}

fn replayable(r: &QueueRecord) -> Option<&'static str> {
    crate::replay::Input::of(&r.record).ok().map(|i| i.label())
}

fn active(r: &QueueRecord) -> bool {
    matches!(
        r.record.status,
        ExceptionStatus::Open | ExceptionStatus::Acknowledged
    )
}

/// The moves a record can make now, each a button of one form with the note.
fn actions(signed: &Signed, r: &QueueRecord, back: &str) -> Markup {
    let base = format!("/ui/exceptions/{}", enc(&r.record.id));
    html! {
        @if active(r) && can_act(signed) {
            form.act method="post" action=(format!("{base}/resolve")) {
                (csrf_field(signed))
                input type="hidden" name="back" value=(back);
                input type="text" name="note" placeholder="why (audited)" required;
                @if r.record.status == ExceptionStatus::Open {
                    button type="submit" formaction=(format!("{base}/acknowledge")) { "Acknowledge" }
                }
                button type="submit" { "Resolve" }
                @if replayable(r).is_some() {
                    button type="submit" formaction=(format!("{base}/replay")) { "Replay" }
                }
                button.danger type="submit" formaction=(format!("{base}/discard")) { "Discard" }
            }
        }
    }
}

/// `GET /ui/exceptions/{id}`: one record, its raw input and its moves.
pub async fn detail(
    State(st): State<Arc<AppState>>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let r = match record(&st, &signed.caller, &id).await {
        Ok(r) => r,
        Err(p) => return error_page(&st, &signed, "Exception", Nav::Exceptions, p),
    };
    let back = format!("/ui/exceptions/{}", enc(&id));
    let opt = |us: Option<i64>| html! { @if let Some(us) = us { (when(us)) } @else { span.quiet { "–" } } };
    let body = html! {
        h1 { "Exception " code { (r.record.id) } }
        dl.record data-exception=(r.record.id) data-status=(r.record.status.as_str()) {
            dt { "kind" } dd { (r.record.kind.as_str()) }
            dt { "status" } dd #status { (badge(r.record.status.as_str())) }
            dt { "about" } dd { code { (r.record.entity) } }
            dt { "reason" } dd { (r.record.reason) }
            dt { "correlation id" } dd {
                @match r.record.correlation_id.as_deref() {
                    Some(c) => { a href=(super::trace::href(c)) { (c) } }
                    None => { "–" }
                }
            }
            dt { "raised" } dd { (when(r.record.created_at.as_micros())) }
            dt { "changed" } dd { (when(r.record.updated_at.as_micros())) }
            dt { "last move" } dd { @if r.actor.is_empty() { span.quiet { "none yet" } } @else { (r.actor) ": " (r.note) } }
            dt { "policy" } dd { (st.config.exceptions.policy(r.record.kind).as_str()) }
            dt { "replays" } dd { (replayable(&r).unwrap_or("nothing kept to replay")) }
            dt { "automatic replays" } dd { (r.attempts) " (last " (opt(r.attempted_at_us)) ")" }
            dt { "handed to a person" } dd { (opt(r.held_at_us)) }
            dt { "notified" } dd { (opt(r.notified_at_us)) }
            dt { "corrected by the hub" } dd { (opt(r.corrected_at_us)) }
        }
        (actions(&signed, &r, &back))
        @if let Some(raw) = &r.record.raw {
            h2 { "Raw input" }
            pre.raw { (raw) }
        }
        p { a href="/ui/exceptions" { "← the work queue" } }
    };
    layout(&st, Some(&signed), "Exception", Nav::Exceptions, body)
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    note: String,
    #[serde(default)]
    back: Option<String>,
}

/// `POST /ui/exceptions/{id}/{action}`: the move `POST /v1/exceptions/{id}/{action}` makes.
pub async fn post_action(
    State(st): State<Arc<AppState>>,
    signed: Signed,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(refused) = check_action(&st, &headers, &signed, form.csrf.as_deref(), Needed::Admin)
    {
        return refused;
    }
    let back = form.back.as_deref().unwrap_or("/ui/exceptions").to_string();
    let outcome = match Action::parse(&action) {
        None => Err(Problem::not_found(
            "no-such-action",
            format!("{action:?}: use acknowledge, resolve, discard or replay"),
        )),
        Some(action) => crate::exceptions_api::act(&st, &signed.caller, &id, action, form.note)
            .await
            .map(|acted| match acted {
                Acted::Moved(r) => format!(
                    "Exception {} is {} now.",
                    r.record.id,
                    r.record.status.as_str()
                ),
                Acted::Replayed { record, input, .. } => format!(
                    "Exception {}: its {input} ran again and it is {} now.",
                    record.record.id,
                    record.record.status.as_str()
                ),
            }),
    };
    done(&st, &signed, outcome, &back)
}
