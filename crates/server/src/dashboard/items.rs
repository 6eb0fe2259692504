//! The item explorer: an item's positions and channel ATS now, the events that name it (newest
//! first), and what the hub knew of it at a chosen time.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use crossdock_model::{ItemId, Timestamp};
use crossdock_store::{BUCKETS, EventRow};
use maud::{Markup, html};
use serde::Deserialize;

use super::session::Signed;
use super::{Nav, clip, enc, layout, problem_box, when};
use crate::api::{AppState, ItemPositions, engine_problem, item_positions};
use crate::problem::Problem;
use crate::reconcile::History;
use crate::reconcile_api::item_history;

/// Events shown in a timeline.
pub const TIMELINE_MAX: u32 = 50;
/// A timeline searches this many of the newest events of the item's partition, so a page costs
/// the same however long the log is (an item quiet for longer shows fewer events).
pub const TIMELINE_SCAN: u64 = 20_000;

#[derive(Debug, Default, Deserialize)]
pub struct ItemQuery {
    item: Option<String>,
    at: Option<String>,
}

pub async fn page(
    State(st): State<Arc<AppState>>,
    signed: Signed,
    Query(q): Query<ItemQuery>,
) -> Response {
    let item = q.item.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let at = q.at.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let found = match item {
        None => None,
        Some(raw) => Some(explore(&st, &signed, raw, at).await),
    };
    let now = Timestamp::now();
    let body = html! {
        h1 { "Items" }
        form.filters #item-form method="get" action="/ui/items" {
            label { "item " input type="text" name="item" value=(item.unwrap_or("")) placeholder="SKU-1" required; }
            label { "as of " input type="text" name="at" value=(at.unwrap_or("")) placeholder=(now.to_rfc3339()); }
            button type="submit" { "Show" }
        }
        p.hint {
            "Leave " em { "as of" } " empty for now; give an RFC 3339 time (" code { "2026-11-23T10:00:00Z" } ") to see what the hub knew then."
            @if let Some(raw) = item {
                " As of "
                @for (i, (label, ago)) in [("1 min", 60), ("10 min", 600), ("1 h", 3600)].into_iter().enumerate() {
                    @if i > 0 { " · " }
                    a href=(format!("/ui/items?item={}&at={}", enc(raw), enc(&Timestamp::from_micros(now.as_micros() - ago * 1_000_000).to_rfc3339()))) { (label) " ago" }
                }
                "."
            }
        }
        @match found {
            None => {}
            Some(Ok(markup)) => { (markup) }
            Some(Err(p)) => { (problem_box(&p)) }
        }
    };
    layout(&st, Some(&signed), "Items", Nav::Items, body)
}

async fn explore(
    st: &AppState,
    signed: &Signed,
    raw: &str,
    at: Option<&str>,
) -> Result<Markup, Problem> {
    let now = item_positions(st, &signed.caller, raw)?;
    let history = match at {
        Some(t) => Some(item_history(st, &signed.caller, raw, Some(t)).await?),
        None => None,
    };
    let events = timeline(st, &now.item).await?;
    Ok(html! {
        @if let Some(h) = &history { (past(h)) }
        (present(&now))
        h2 { "Events naming " code { (now.item) } }
        p.hint { "Newest first, at most " (TIMELINE_MAX) ", among the newest " (TIMELINE_SCAN) " events of its partition." }
        (events_table(&events))
    })
}

/// The newest events naming `item`.
async fn timeline(st: &AppState, item: &ItemId) -> Result<Vec<EventRow>, Problem> {
    let partition = crossdock_engine::partition_of(item, st.engine.partitions());
    let last = st.engine.ledger_seqs()[partition as usize];
    let from = last.saturating_sub(TIMELINE_SCAN - 1);
    let key = item.to_string();
    st.engine
        .read(move |s| s.events_naming(partition, &key, from, TIMELINE_MAX))
        .await
        .map_err(engine_problem)
}

fn present(p: &ItemPositions) -> Markup {
    html! {
        section #now {
            h2 { "Now" span.quiet { " · ledger sequence " (p.ledger_seq.unwrap_or(0)) } }
            @if let Some(Some(hold)) = &p.oversell_hold {
                p.flash.error { "Channel ATS held at 0 after an oversell: " (hold) }
            }
            @if p.positions.is_empty() {
                p.quiet { "No stock recorded for this item." }
            } @else {
                table #positions {
                    tr {
                        th { "location" } th { "lot" }
                        @for b in BUCKETS { th.num { (b.replace('_', " ")) } }
                        th.num { "available" }
                    }
                    @for pos in &p.positions {
                        tr data-location=(pos.location) {
                            td { (pos.location) }
                            td { (pos.lot.as_deref().unwrap_or("")) }
                            @for v in [pos.on_hand, pos.quarantined, pos.damaged, pos.returns_pending, pos.picked,
                                       pos.allocated, pos.reserved, pos.in_transit, pos.incoming, pos.safety_stock] {
                                td.num.zero[v == 0] { (v) }
                            }
                            td.num.strong { (pos.available) }
                        }
                    }
                }
            }
            h3 { "Channel availability (ATS)" }
            @if p.channels.is_empty() {
                p.quiet { "none published yet" }
            } @else {
                table #channels {
                    tr { th { "channel" } th.num { "ATS" } th.num { "computed at" } }
                    @for c in &p.channels {
                        tr data-channel=(c.channel) {
                            td { (c.channel) }
                            td.num { (c.available) }
                            td.num { (c.ledger_seq.map_or_else(|| "–".to_string(), |s| s.to_string())) }
                        }
                    }
                }
            }
        }
    }
}

fn past(h: &History) -> Markup {
    html! {
        section #history {
            h2 { "As of " (when(h.at.as_micros())) }
            @if h.positions.is_empty() {
                p.quiet { "No stock at that time." }
            } @else {
                table #history-positions {
                    tr {
                        th { "location" } th { "lot" }
                        @for b in BUCKETS { th.num { (b.replace('_', " ")) } }
                        th.num { "available" }
                    }
                    @for pos in &h.positions {
                        tr data-location=(pos.location) {
                            td { (pos.location) }
                            td { (pos.lot.as_deref().unwrap_or("")) }
                            @for (i, v) in pos.buckets.iter().enumerate() {
                                td.num.zero[*v == 0] data-bucket=(BUCKETS[i]) { (v) }
                            }
                            td.num.strong { (pos.available) }
                        }
                    }
                }
            }
            table #history-channels {
                tr { th { "channel" } th.num { "ATS then" } th { "last delivered by then" } }
                @for c in &h.channels {
                    tr data-channel=(c.channel) {
                        td { (c.channel) }
                        td.num { (c.ats.map_or_else(|| "–".to_string(), |v| v.to_string())) }
                        td {
                            @match &c.sent {
                                Some(s) => {
                                    (s.value.map_or_else(|| "–".to_string(), |v| v.to_string()))
                                    " at " (when(s.sent_at.as_micros())) " (seq " (s.ledger_seq) ")"
                                }
                                None => { span.quiet { "nothing yet" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The `data` member of an envelope, compact, for a table cell.
fn data_of(envelope: &str) -> String {
    serde_json::from_str::<serde_json::Value>(envelope)
        .ok()
        .and_then(|v| v.get("data").map(|d| d.to_string()))
        .unwrap_or_default()
}

fn events_table(events: &[EventRow]) -> Markup {
    html! {
        @if events.is_empty() {
            p.quiet #timeline-empty { "No events name this item." }
        } @else {
            table #timeline {
                tr {
                    th.num { "seq" } th { "happened" } th { "received" } th { "source" }
                    th { "type" } th { "status" } th { "id" } th { "data" }
                }
                @for e in events {
                    @let data = data_of(&e.envelope);
                    tr data-seq=(e.seq) {
                        td.num { (e.seq) }
                        td { (when(e.time_us)) }
                        td { (when(e.received_at_us)) }
                        td { (e.source) }
                        td { (e.ty) }
                        td { (super::badge(e.status.as_str())) }
                        td { a href=(super::trace::href(&e.correlation_id)) title="its journey" { code { (e.id) } } }
                        td title=(data) { code { (clip(&data, 120)) } }
                    }
                }
            }
        }
    }
}
