//! The operator dashboard at `/ui`, served by the binary: pages rendered on the server with
//! `maud` (text is escaped by construction), one stylesheet and one small script compiled into
//! the binary, no external assets.
//!
//! Every page reads through the same functions the JSON API's handlers call, with the
//! signed-in token as the caller, so the dashboard sees what the API would answer and an action
//! taken here is checked, applied and audited exactly as the API's (the actor is the token's
//! name). Live regions (`data-live`) are fragments of the same rendering, fetched again every
//! couple of seconds by the script; plots are inline SVG drawn from [`history::History`].
//!
//! One file per page; `session.rs` holds sign-in, sessions and the cross-site checks.

mod audit;
mod endpoints;
mod exceptions;
pub mod history;
mod items;
mod overview;
pub mod plot;
mod reconciliations;
pub mod session;
pub mod trace;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use crossdock_model::Timestamp;
use maud::{DOCTYPE, Markup, html};

use crate::api::AppState;
use crate::problem::Problem;
use session::{Flash, Signed};

/// The dashboard's own state: sessions and the plots' samples.
#[derive(Debug, Default)]
pub struct Dashboard {
    pub sessions: session::Sessions,
    pub history: history::History,
}

/// Starts what the dashboard runs in the background (the plots' sampler) until `stop`.
pub fn start(st: Arc<AppState>, stop: tokio::sync::watch::Receiver<bool>) {
    history::start(st, stop);
}

/// The `/ui` routes, merged into the API's router.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route("/ui/live/overview", get(overview::live))
        .route(
            "/ui/login",
            get(session::get_login).post(session::post_login),
        )
        .route("/ui/logout", post(session::post_logout))
        .route("/ui/endpoints", get(endpoints::page))
        .route("/ui/live/endpoints", get(endpoints::live))
        .route("/ui/dlq/{action}", post(endpoints::post_action))
        .route("/ui/exceptions", get(exceptions::page))
        .route("/ui/exceptions/{id}", get(exceptions::detail))
        .route(
            "/ui/exceptions/{id}/{action}",
            post(exceptions::post_action),
        )
        .route("/ui/items", get(items::page))
        .route("/ui/reconciliations", get(reconciliations::page))
        .route("/ui/reconciliations/{id}", get(reconciliations::detail))
        .route("/ui/audit", get(audit::page))
        .route("/ui/trace", get(trace::page))
        .route("/ui/assets/dashboard.css", get(css))
        .route("/ui/assets/dashboard.js", get(js))
        .route("/ui/{*rest}", get(not_found))
        .layer(middleware::map_response(security_headers))
}

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn not_found(
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
    signed: Signed,
) -> Response {
    error_page(
        &st,
        &signed,
        "Not found",
        Nav::None,
        Problem::not_found("no-such-page", "there is no such dashboard page"),
    )
}

/// Pages may use only what the binary serves: no inline script, no other origin, no framing.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Endpoints,
    Exceptions,
    Items,
    Reconciliations,
    Trace,
    Audit,
    None,
}

const NAV: [(Nav, &str, &str); 7] = [
    (Nav::Overview, "/ui", "Overview"),
    (Nav::Endpoints, "/ui/endpoints", "Endpoints"),
    (Nav::Exceptions, "/ui/exceptions", "Exceptions"),
    (Nav::Items, "/ui/items", "Items"),
    (
        Nav::Reconciliations,
        "/ui/reconciliations",
        "Reconciliations",
    ),
    (Nav::Trace, "/ui/trace", "Trace"),
    (Nav::Audit, "/ui/audit", "Audit"),
];

/// A whole page: navigation, who is signed in, the one-time message, then `body`.
pub fn layout(
    st: &AppState,
    signed: Option<&Signed>,
    title: &str,
    nav: Nav,
    body: Markup,
) -> Response {
    let flash = signed.and_then(|s| st.dashboard.sessions.take_flash(&s.id));
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Crossdock" }
                link rel="stylesheet" href="/ui/assets/dashboard.css";
                script src="/ui/assets/dashboard.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui" { "Crossdock" }
                    @if let Some(s) = signed {
                        nav {
                            @for (n, href, label) in NAV {
                                a.active[n == nav] href=(href) { (label) }
                            }
                        }
                        form.who method="post" action="/ui/logout" {
                            span #signed-in-as {
                                "signed in as " strong { (s.caller.name) }
                                @if !s.caller.may(crate::auth::Needed::Admin) { " (read only)" }
                            }
                            (session::csrf_field(s))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                p #live-status.flash.error role="alert" hidden {}
                main {
                    @if let Some(f) = flash {
                        p #flash.flash.ok[f.ok].error[!f.ok] role="status" { (f.text) }
                    }
                    (body)
                }
            }
        }
    };
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A live fragment: the markup alone.
pub fn fragment(markup: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// What a core function refused, as a page with the problem's status.
pub fn error_page(st: &AppState, signed: &Signed, title: &str, nav: Nav, p: Problem) -> Response {
    let status = p.status;
    let mut resp = layout(
        st,
        Some(signed),
        title,
        nav,
        html! {
            h1 { (title) }
            (problem_box(&p))
        },
    );
    *resp.status_mut() = status;
    resp
}

pub fn problem_box(p: &Problem) -> Markup {
    html! {
        div.flash.error role="alert" {
            strong { (p.title) } ": " (p.detail)
            @if let Some(f) = &p.field { " (" code { (f) } ")" }
        }
    }
}

/// After an action: the outcome as the next page's message, and back to the page it came from.
pub fn done(
    st: &AppState,
    signed: &Signed,
    outcome: Result<String, Problem>,
    back: &str,
) -> Response {
    let flash = match outcome {
        Ok(text) => Flash { ok: true, text },
        Err(p) => Flash {
            ok: false,
            text: format!("{}: {}", p.title, p.detail),
        },
    };
    st.dashboard.sessions.set_flash(&signed.id, flash);
    Redirect::to(back_path(back)).into_response()
}

/// A dashboard path to return to; anything else is the overview.
pub fn back_path(raw: &str) -> &str {
    let ok = (raw == "/ui" || raw.starts_with("/ui/") || raw.starts_with("/ui?"))
        && !raw.contains('\\')
        && !raw.contains("//");
    if ok { raw } else { "/ui" }
}

/// Percent-encodes `s` for a URL query value or path segment (unreserved characters stay).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An instant, to the second, in UTC.
pub fn when(us: i64) -> Markup {
    let t = Timestamp::from_micros(us).to_rfc3339();
    let short = match (t.find('.'), t.ends_with('Z')) {
        (Some(dot), true) => format!("{}Z", &t[..dot]),
        _ => t.clone(),
    };
    html! { time datetime=(t) { (short.replacen('T', " ", 1)) } }
}

/// A duration for a person: ms below a second, then s, min, h.
pub fn duration_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{} ms", plot::compact(ms))
    } else if ms < 60_000.0 {
        format!("{} s", plot::compact(ms / 1000.0))
    } else if ms < 3_600_000.0 {
        format!("{} min", plot::compact(ms / 60_000.0))
    } else {
        format!("{} h", plot::compact(ms / 3_600_000.0))
    }
}

/// `text` cut to `max` characters with an ellipsis.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Whether the signed-in token may act; pages show action forms only then.
pub fn can_act(signed: &Signed) -> bool {
    signed.caller.may(crate::auth::Needed::Admin)
}

/// A status in a small coloured label.
pub fn badge(text: &str) -> Markup {
    html! { span class=(format!("badge b-{}", text.replace(['_', ' '], "-"))) { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_made_safe() {
        assert_eq!(enc("SKU-1"), "SKU-1");
        assert_eq!(enc("a b/c?d&e=f#g"), "a%20b%2Fc%3Fd%26e%3Df%23g");
        assert_eq!(enc("é"), "%C3%A9");
        assert_eq!(back_path("/ui/endpoints"), "/ui/endpoints");
        assert_eq!(
            back_path("/ui/exceptions?status=active"),
            "/ui/exceptions?status=active"
        );
        for bad in ["//evil", "https://evil", "/v1/dlq", "/ui//evil", "/uiz"] {
            assert_eq!(back_path(bad), "/ui", "{bad}");
        }
    }

    #[test]
    fn times_and_durations_read_easily() {
        assert_eq!(
            when(1_795_000_000_123_456).into_string(),
            "<time datetime=\"2026-11-18T11:06:40.123456Z\">2026-11-18 11:06:40Z</time>"
        );
        assert_eq!(duration_ms(12.0), "12 ms");
        assert_eq!(duration_ms(2500.0), "2.5 s");
        assert_eq!(duration_ms(90_000.0), "1.5 min");
        assert_eq!(duration_ms(7_200_000.0), "2 h");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
