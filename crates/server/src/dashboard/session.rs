//! Sign-in, sessions and protection against cross-site requests.
//!
//! Signing in exchanges a configured token (one with the `query` or `admin` scope) for a
//! session: a random id in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/ui`, and a row
//! in a bounded server-side map holding the token's name and scopes, a per-session CSRF token
//! and one pending message for the next page. The secret itself is never kept. A session ends
//! after [`IDLE`] without a request, [`LIFETIME`] after sign-in, or at sign-out.
//!
//! Every state-changing request (`POST`) is checked three ways before it acts: an `Origin` (or
//! `Sec-Fetch-Site`) naming another site is refused, the form must carry the session's CSRF
//! token, and the action needs the scope the JSON API would need. The cookie's `SameSite=Strict`
//! already keeps it off cross-site requests; the token and the origin check hold where a
//! browser does not honour that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::api::AppState;
use crate::auth::{Caller, Needed, caller_of_secret, constant_time_eq};

/// The session cookie's name.
pub const COOKIE: &str = "crossdock_session";
/// A session without a request for this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, however active.
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// At most this many sessions are kept; a new one beyond it ends the least recently used.
pub const SESSIONS_MAX: usize = 1024;

/// A message shown once, on the next page the session renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

#[derive(Debug)]
struct Session {
    caller: Caller,
    csrf: String,
    started: Instant,
    seen: Instant,
    flash: Option<Flash>,
}

/// The server-side half of every session.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// Two v4 UUIDs from the operating system's generator (244 random bits), as 64 hex digits.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session for `caller`: `(session id, CSRF token)`.
    pub fn open(&self, caller: Caller, now: Instant) -> (String, String) {
        let mut map = self.lock();
        map.retain(|_, s| live(s, now));
        if map.len() >= SESSIONS_MAX
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(id, _)| id.clone())
        {
            map.remove(&oldest);
        }
        let (id, csrf) = (random_token(), random_token());
        map.insert(
            id.clone(),
            Session {
                caller,
                csrf: csrf.clone(),
                started: now,
                seen: now,
                flash: None,
            },
        );
        (id, csrf)
    }

    /// The session `id` if it is live, marked as seen at `now`; an expired one is dropped.
    pub fn touch(&self, id: &str, now: Instant) -> Option<Signed> {
        let mut map = self.lock();
        let s = map.get_mut(id)?;
        if !live(s, now) {
            map.remove(id);
            return None;
        }
        s.seen = now;
        Some(Signed {
            id: id.to_string(),
            caller: s.caller.clone(),
            csrf: s.csrf.clone(),
        })
    }

    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn set_flash(&self, id: &str, flash: Flash) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(flash);
        }
    }

    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.seen) < IDLE
        && now.saturating_duration_since(s.started) < LIFETIME
}

/// A signed-in request. Extracting it from a request without a live session answers a
/// redirect to the sign-in page (a page) or 401 (a live fragment, which cannot follow one).
#[derive(Debug, Clone)]
pub struct Signed {
    pub id: String,
    pub caller: Caller,
    pub csrf: String,
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Arc<AppState>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(id) = cookie_value(&parts.headers, COOKIE)
            && let Some(signed) = st.dashboard.sessions.touch(id, Instant::now())
        {
            return Ok(signed);
        }
        if parts.uri.path().starts_with("/ui/live/") {
            return Err((
                StatusCode::UNAUTHORIZED,
                "signed out: sign in again at /ui/login",
            )
                .into_response());
        }
        let here = parts
            .uri
            .path_and_query()
            .map_or("/ui", |p| p.as_str())
            .to_string();
        let next = if parts.method == axum::http::Method::GET {
            here
        } else {
            "/ui".to_string()
        };
        Err(Redirect::to(&format!("/ui/login?next={}", super::enc(&next))).into_response())
    }
}

/// Whether a request comes from a page of this server: refused when `Origin` names another
/// origin than the `Host` the request was sent to, or `Sec-Fetch-Site` says another site sent
/// it. (Browsers send at least one of them with every form `POST`.)
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(format!(
            "the request came from another site (Sec-Fetch-Site: {site})"
        ));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
        return Err(format!(
            "the request came from {origin:?}, not from this server ({host})"
        ));
    }
    Ok(())
}

/// The checks before an action: same origin, the session's CSRF token, and the scope the
/// action needs. The refusal is a 403 page saying which check failed.
pub fn check_action(
    st: &AppState,
    headers: &HeaderMap,
    signed: &Signed,
    csrf: Option<&str>,
    needed: Needed,
) -> Result<(), Response> {
    if let Err(why) = same_origin(headers) {
        return Err(refused(
            st,
            signed,
            &format!("Refused: {why}. Actions are taken only from the dashboard's own pages."),
        ));
    }
    let presented = csrf.unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), signed.csrf.as_bytes()) {
        return Err(refused(
            st,
            signed,
            "Refused: the form's CSRF token is missing or does not belong to this session. \
             Reload the page and try again.",
        ));
    }
    if !signed.caller.may(needed) {
        return Err(refused(
            st,
            signed,
            &format!(
                "Refused: you are signed in as {:?}, a token without the {} scope. Sign in with \
                 an admin token to retry, discard, acknowledge, resolve or replay.",
                signed.caller.name,
                needed.name()
            ),
        ));
    }
    Ok(())
}

fn refused(st: &AppState, signed: &Signed, message: &str) -> Response {
    let body = html! {
        p.flash.error role="alert" { (message) }
    };
    let mut resp = super::layout(st, Some(signed), "Refused", super::Nav::None, body);
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Where to go after signing in: a dashboard path only (never another site).
fn next_path(raw: Option<&str>) -> &str {
    match raw {
        Some(p)
            if (p == "/ui" || p.starts_with("/ui/") || p.starts_with("/ui?"))
                && !p.contains('\\')
                && !p.starts_with("/ui/login") =>
        {
            p
        }
        _ => "/ui",
    }
}

fn login_page(st: &AppState, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        section.login {
            h1 { "Sign in to Crossdock" }
            @if let Some(e) = error {
                p.flash.error role="alert" { (e) }
            }
            form method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                p.hint {
                    "A token from the config's " code { "[[tokens]]" }
                    " with the " code { "query" } " scope (to look) or " code { "admin" }
                    " (to act as well)."
                }
                button type="submit" { "Sign in" }
            }
        }
    };
    let mut resp = super::layout(st, None, "Sign in", super::Nav::None, body);
    *resp.status_mut() = status;
    resp
}

/// `GET /ui/login`.
pub async fn get_login(
    State(st): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    login_page(&st, next_path(q.next.as_deref()), None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /ui/login`: the token for a session cookie.
pub async fn post_login(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = next_path(form.next.as_deref()).to_string();
    // A cross-site sign-in would put the victim's browser into the attacker's session.
    if let Err(why) = same_origin(&headers) {
        return login_page(
            &st,
            &next,
            Some(&format!("Refused: {why}.")),
            StatusCode::FORBIDDEN,
        );
    }
    let Some(caller) = caller_of_secret(&st.config.tokens, &form.token) else {
        return login_page(
            &st,
            &next,
            Some("That token is not valid. Use a token from the config's [[tokens]]."),
            StatusCode::UNAUTHORIZED,
        );
    };
    if !caller.may(Needed::Query) {
        return login_page(
            &st,
            &next,
            Some(&format!(
                "Token {:?} cannot sign in: the dashboard needs the query or admin scope.",
                caller.name
            )),
            StatusCode::FORBIDDEN,
        );
    }
    let (id, _) = st.dashboard.sessions.open(caller, Instant::now());
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    );
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a cookie of hex and ASCII"),
    );
    resp
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /ui/logout`.
pub async fn post_logout(
    State(st): State<Arc<AppState>>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(resp) = check_action(&st, &headers, &signed, form.csrf.as_deref(), Needed::Query) {
        return resp;
    }
    st.dashboard.sessions.close(&signed.id);
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "crossdock_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}

/// The hidden field every action form carries.
pub fn csrf_field(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller::of(&crate::config::Token {
            name: "ops".into(),
            secret: "ops-secret-0123456789".into(),
            scopes: vec![crate::config::Scope::Query],
        })
    }

    #[test]
    fn sessions_end_when_idle_or_old_and_stay_bounded() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (id, csrf) = sessions.open(caller(), t0);
        assert_eq!(id.len(), 64);
        assert_ne!(id, csrf);
        let s = sessions.touch(&id, t0 + IDLE / 2).expect("live");
        assert_eq!(
            (s.caller.name.as_str(), s.csrf.as_str()),
            ("ops", csrf.as_str())
        );
        // Seen half-way, so idle counts from there.
        assert!(sessions.touch(&id, t0 + IDLE).is_some());
        assert!(
            sessions
                .touch(&id, t0 + IDLE * 2 + Duration::from_secs(1))
                .is_none()
        );
        assert!(
            sessions.touch(&id, t0).is_none(),
            "an expired session is dropped"
        );

        let (id, _) = sessions.open(caller(), t0);
        let mut t = t0;
        while t < t0 + LIFETIME {
            assert!(sessions.touch(&id, t).is_some());
            t += IDLE / 2;
        }
        assert!(sessions.touch(&id, t).is_none(), "ends after its lifetime");
        assert!(sessions.touch("nope", t0).is_none());

        let sessions = Sessions::default();
        let first = sessions.open(caller(), t0).0;
        for i in 1..=SESSIONS_MAX {
            sessions.open(caller(), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert!(
            sessions
                .touch(&first, t0 + Duration::from_secs(1))
                .is_none(),
            "the least recently used session made room"
        );
    }

    #[test]
    fn a_flash_shows_once() {
        let sessions = Sessions::default();
        let (id, _) = sessions.open(caller(), Instant::now());
        sessions.set_flash(
            &id,
            Flash {
                ok: true,
                text: "done".into(),
            },
        );
        assert_eq!(sessions.take_flash(&id).unwrap().text, "done");
        assert!(sessions.take_flash(&id).is_none());
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_requests_from_this_origin_may_act() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(
            same_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]))
            .is_ok()
        );
        let other = same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]))
        .unwrap_err();
        assert!(other.contains("evil.example"), "{other}");
        assert!(
            same_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:9090")
            ]))
            .is_err(),
            "another port is another origin"
        );
        assert!(same_origin(&headers(&[("host", "h"), ("origin", "null")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
    }

    #[test]
    fn sign_in_goes_on_to_dashboard_pages_only() {
        assert_eq!(
            next_path(Some("/ui/exceptions?status=open")),
            "/ui/exceptions?status=open"
        );
        assert_eq!(next_path(Some("/ui")), "/ui");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/uix",
            "/ui\\..\\x",
            "/ui/login",
            "/v1/dlq",
        ] {
            assert_eq!(next_path(Some(bad)), "/ui", "{bad}");
        }
        assert_eq!(next_path(None), "/ui");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; crossdock_session=abc; b=2")]);
        assert_eq!(cookie_value(&h, COOKIE), Some("abc"));
        assert_eq!(cookie_value(&headers(&[("cookie", "a=1")]), COOKIE), None);
    }
}
