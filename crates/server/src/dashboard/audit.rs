//! The audit log: every operator move (dead-letter retries and discards, exception moves),
//! newest first, with who made it and why. Like `GET /v1/audit`, it needs the admin scope.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::session::Signed;
use super::{Nav, clip, error_page, layout, when};
use crate::api::AppState;
use crate::delivery_api::audit_log;

/// Rows shown.
const ROWS_MAX: u32 = 200;

pub async fn page(State(st): State<Arc<AppState>>, signed: Signed) -> Response {
    let rows = match audit_log(&st, &signed.caller, ROWS_MAX).await {
        Ok(rows) => rows,
        Err(p) => return error_page(&st, &signed, "Audit log", Nav::Audit, p),
    };
    let body = html! {
        h1 { "Audit log" }
        p.hint { "The newest " (ROWS_MAX) " moves, newest first." }
        @if rows.is_empty() {
            p.quiet #audit-empty { "Nobody has acted yet." }
        } @else {
            table #audit {
                tr { th { "when" } th { "who" } th { "action" } th { "subject" } th { "note" } th { "detail" } }
                @for r in &rows {
                    tr data-action=(r.action) {
                        td { (when(r.at_us)) }
                        td.actor { (r.actor) }
                        td { code { (r.action) } }
                        td { code { (r.subject) } }
                        td { (r.note) }
                        td title=(r.detail) { code { (clip(&r.detail, 100)) } }
                    }
                }
            }
        }
    };
    layout(&st, Some(&signed), "Audit log", Nav::Audit, body)
}
