//! A business document's journey (`GET /v1/trace/{correlation_id}` rendered): its events, the
//! ledger and availability changes they made, workflow steps, deliveries, dead letters and
//! exceptions, in time order. Exceptions, events and the item explorer link here by correlation
//! id.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::session::Signed;
use super::{Nav, enc, layout, problem_box};
use crate::api::AppState;
use crate::trace_api::{describe, trace};

/// Stops of each kind shown.
const LIMIT: u32 = 500;

#[derive(Debug, Default, Deserialize)]
pub struct TraceQuery {
    id: Option<String>,
}

/// The link to a correlation id's journey.
pub fn href(correlation_id: &str) -> String {
    format!("/ui/trace?id={}", enc(correlation_id))
}

pub async fn page(
    State(st): State<Arc<AppState>>,
    signed: Signed,
    Query(q): Query<TraceQuery>,
) -> Response {
    let id = q.id.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let found = match id {
        None => None,
        Some(id) => Some(trace(&st, id, LIMIT).await),
    };
    let body = html! {
        h1 { "Trace" }
        form.filters #trace-form method="get" action="/ui/trace" {
            label { "correlation id " input type="text" name="id" value=(id.unwrap_or("")) placeholder="PO-4711" required; }
            button type="submit" { "Show" }
        }
        p.hint {
            "An order number, an EDI document key (" code { "x12:SENDER/ISA13/GS06/ST02" } "), a reconciliation run id, the "
            code { "X-Correlation-Id" } " a request carried, or " code { "event:<source>/<id>" } " for an input that named none."
        }
        @match found {
            None => {}
            Some(Ok(None)) => {
                p.quiet #trace-empty { "Nothing in the hub carries " code { (id.unwrap_or("")) } "." }
            }
            Some(Ok(Some(t))) => { (journey(&t)) }
            Some(Err(p)) => { (problem_box(&p)) }
        }
    };
    layout(&st, Some(&signed), "Trace", Nav::Trace, body)
}

fn journey(t: &Value) -> maud::Markup {
    let counts = t["counts"]
        .as_object()
        .map(|c| {
            c.iter()
                .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                .map(|(k, v)| format!("{} {}", v, k.replace('_', " ")))
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .unwrap_or_default();
    html! {
        p #trace-summary { (counts) }
        table #trace {
            tr { th { "when" } th { "stage" } th { "what" } }
            @for stop in t["timeline"].as_array().into_iter().flatten() {
                tr data-stage=(stop["stage"].as_str().unwrap_or("")) {
                    td { code { (stop["at"].as_str().unwrap_or("")) } }
                    td { (stop["stage"].as_str().unwrap_or("")) }
                    td {
                        (describe(stop))
                        @if let Some(item) = stop["item"].as_str() {
                            " " a href=(format!("/ui/items?item={}", enc(item))) { "item" }
                        }
                    }
                }
            }
        }
    }
}
