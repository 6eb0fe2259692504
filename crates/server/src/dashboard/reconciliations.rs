//! Reconciliation runs: the newest runs with their counts, and one run's variances counted by
//! location and class, then row by row.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use crossdock_store::RunRow;
use maud::{Markup, html};
use serde::Deserialize;

use super::session::Signed;
use super::{Nav, badge, clip, enc, error_page, layout, when};
use crate::api::{AppState, engine_problem};
use crate::problem::Problem;
use crate::reconcile_api::{run_page, runs};

/// Runs listed.
const RUNS_MAX: u32 = 50;
/// Variance rows on one page.
const ROWS_PAGE: u32 = 200;

/// A run's counts by class (`match` and anything unreadable left out).
fn counts(r: &RunRow) -> Vec<(String, u64)> {
    serde_json::from_str::<BTreeMap<String, serde_json::Value>>(&r.counts)
        .unwrap_or_default()
        .into_iter()
        .filter(|(class, _)| class != "match")
        .map(|(class, n)| (class, n.as_u64().unwrap_or(0)))
        .collect()
}

/// How many of a run's rows are not a match.
pub fn variance_total(r: &RunRow) -> u64 {
    counts(r).iter().map(|(_, n)| n).sum()
}

#[derive(Debug, Default, Deserialize)]
pub struct RunsQuery {
    source: Option<String>,
}

pub async fn page(
    State(st): State<Arc<AppState>>,
    signed: Signed,
    Query(q): Query<RunsQuery>,
) -> Response {
    let source = q.source.filter(|s| !s.is_empty());
    let list = match runs(&st, &signed.caller, source.clone(), RUNS_MAX).await {
        Ok(r) => r,
        Err(p) => return error_page(&st, &signed, "Reconciliations", Nav::Reconciliations, p),
    };
    let sources = &st.reconciler.settings().sources;
    let body = html! {
        h1 { "Reconciliation runs" }
        form.filters method="get" action="/ui/reconciliations" {
            label { "source "
                select name="source" {
                    option value="" { "every source" }
                    @for s in sources {
                        option value=(s.name) selected[source.as_deref() == Some(s.name.as_str())] { (s.name) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        @if list.is_empty() {
            p.quiet { "No runs yet. " code { "crossdock reconcile --source NAME" } " or "
                code { "POST /v1/reconciliations?source=NAME" } " starts one." }
        } @else {
            table #runs {
                tr {
                    th { "finished" } th { "source" } th { "kind" } th { "by" } th { "as of" }
                    th { "status" } th.num { "rows" } th.num { "variances" } th { "by class" }
                }
                @for r in &list {
                    tr data-run=(r.id) {
                        td { a href=(format!("/ui/reconciliations/{}", enc(&r.id))) { (when(r.finished_at_us)) } }
                        td { (r.source) }
                        td { (r.kind) }
                        td { (r.started_by) }
                        td { (when(r.as_of_us)) }
                        td { (badge(&r.status)) @if !r.error.is_empty() { br; span.quiet title=(r.error) { (clip(&r.error, 80)) } } }
                        td.num { (r.rows) }
                        td.num { (variance_total(r)) }
                        td { @for (class, n) in counts(r) { (class) ": " (n) br; } }
                    }
                }
            }
        }
    };
    layout(
        &st,
        Some(&signed),
        "Reconciliations",
        Nav::Reconciliations,
        body,
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct RunQuery {
    after: Option<u32>,
}

pub async fn detail(
    State(st): State<Arc<AppState>>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    match render(&st, &signed, &id, q.after).await {
        Ok(body) => layout(
            &st,
            Some(&signed),
            "Reconciliation",
            Nav::Reconciliations,
            body,
        ),
        Err(p) => error_page(&st, &signed, "Reconciliation", Nav::Reconciliations, p),
    }
}

/// `(location, class, count)` as a table: a row per location, a column per class.
fn pivot(cells: &[(String, String, u64)]) -> Markup {
    let classes: BTreeSet<&str> = cells.iter().map(|(_, c, _)| c.as_str()).collect();
    let mut rows: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for (location, class, n) in cells {
        *rows.entry(location).or_default().entry(class).or_default() += n;
    }
    html! {
        table #variances-by-location {
            tr {
                th { "location" }
                @for c in &classes { th.num { (c.replace('_', " ")) } }
                th.num { "all" }
            }
            @for (location, by_class) in &rows {
                tr data-location=(location) {
                    td { (location) }
                    @for c in &classes {
                        @let n = by_class.get(c).copied().unwrap_or(0);
                        td.num.zero[n == 0] { (n) }
                    }
                    td.num.strong { (by_class.values().sum::<u64>()) }
                }
            }
        }
    }
}

async fn render(
    st: &AppState,
    signed: &Signed,
    id: &str,
    after: Option<u32>,
) -> Result<Markup, Problem> {
    let (run, rows) = run_page(st, &signed.caller, id, after, ROWS_PAGE).await?;
    let key = id.to_string();
    let cells = st
        .engine
        .read(move |s| s.run_variance_counts(&key))
        .await
        .map_err(engine_problem)?;
    Ok(html! {
        h1 { "Reconciliation " code { (run.id) } }
        dl.record {
            dt { "source" } dd { (run.source) " (" (run.kind) ")" }
            dt { "snapshot as of" } dd { (when(run.as_of_us)) }
            dt { "ran" } dd { (when(run.started_at_us)) " – " (when(run.finished_at_us)) " by " (run.started_by) }
            dt { "status" } dd { (badge(&run.status)) @if !run.error.is_empty() { " " (run.error) } }
            dt { "rows compared" } dd { (run.rows) }
            dt { "variances" } dd { (variance_total(&run)) }
        }
        h2 { "Variances by location and class" }
        @if cells.is_empty() { p.quiet { "Every row matched." } } @else { (pivot(&cells)) }
        @if !rows.is_empty() {
            h2 { "Rows" }
            table #variances {
                tr {
                    th.num { "#" } th { "item" } th { "location" } th { "lot" } th { "class" }
                    th.num { "source" } th.num { "ledger" } th.num { "delta" } th { "action" } th { "detail" }
                }
                @for v in &rows {
                    tr {
                        td.num { (v.n) }
                        td { a href=(format!("/ui/items?item={}&at={}", enc(&v.item), enc(&crossdock_model::Timestamp::from_micros(run.as_of_us).to_rfc3339()))) { (v.item) } }
                        td { (v.location) }
                        td { (v.lot) }
                        td { (v.class) }
                        td.num { (v.source_qty.map_or_else(|| "–".into(), |q| q.to_string())) }
                        td.num { (v.ledger_qty.map_or_else(|| "–".into(), |q| q.to_string())) }
                        td.num { (v.delta) }
                        td {
                            (v.action)
                            @if !v.reference.is_empty() {
                                " "
                                @if v.reference.starts_with("ex-") {
                                    a href=(format!("/ui/exceptions/{}", enc(&v.reference))) { (v.reference) }
                                } @else { code { (v.reference) } }
                            }
                        }
                        td title=(v.detail) { (clip(&v.detail, 80)) }
                    }
                }
            }
            @if rows.len() as u32 == ROWS_PAGE {
                @if let Some(last) = rows.last() {
                    p { a.next href=(format!("/ui/reconciliations/{}?after={}", enc(&run.id), last.n)) { "Next rows →" } }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variances_pivot_by_location_and_class() {
        let cells = vec![
            ("DC-EAST".to_string(), "missing_in_crossdock".to_string(), 2),
            ("DC-EAST".to_string(), "quantity_variance".to_string(), 5),
            ("DC-WEST".to_string(), "quantity_variance".to_string(), 1),
        ];
        let html = pivot(&cells).into_string();
        assert!(
            html.contains("<th class=\"num\">missing in crossdock</th>"),
            "{html}"
        );
        // DC-WEST has no missing rows: a zero cell, then its one quantity variance, total 1.
        assert!(
            html.contains(
                "<tr data-location=\"DC-WEST\"><td>DC-WEST</td><td class=\"num zero\">0</td>\
                 <td class=\"num\">1</td><td class=\"num strong\">1</td></tr>"
            ),
            "{html}"
        );
        assert!(html.contains("<td class=\"num strong\">7</td>"), "{html}");
    }

    #[test]
    fn counts_leave_out_matches() {
        let run = RunRow {
            id: "r".into(),
            source: "erp".into(),
            kind: "csv".into(),
            started_by: "api".into(),
            as_of_us: 0,
            started_at_us: 0,
            finished_at_us: 0,
            status: "done".into(),
            rows: 10,
            counts: r#"{"match":7,"quantity_variance":2,"stale":1}"#.into(),
            digest: String::new(),
            error: String::new(),
        };
        assert_eq!(variance_total(&run), 3);
        assert_eq!(counts(&run)[0], ("quantity_variance".to_string(), 2));
    }
}
