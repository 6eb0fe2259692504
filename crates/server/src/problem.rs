//! RFC 7807 problem details: every API error has a stable `type`, a `detail` a person can act on
//! and, where one input field is at fault, that `field`.
//!
//! [`as_problem`] makes that hold for every answer of the hub, including the framework's own
//! refusals (an unknown method, an unreadable path or query) and a handler that panicked; only
//! the dashboard's HTML pages for browsers are left as they are.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// Prefix of every problem `type`; the slug after it is stable.
pub const TYPE_PREFIX: &str = "urn:crossdock:problem:";

/// The members RFC 7807 defines (and `field`); an extension never replaces them.
pub const MEMBERS: [&str; 5] = ["type", "title", "status", "detail", "field"];

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub field: Option<String>,
    pub extra: Map<String, Value>,
    pub retry_after_s: Option<u64>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            slug,
            title,
            detail: detail.into(),
            field: None,
            extra: Map::new(),
            retry_after_s: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// An extension member. The standard members (`status` above all, which clients read as a
    /// number) are not extensions: naming one is a bug.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        debug_assert!(!MEMBERS.contains(&key), "{key:?} is a standard member");
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut obj: Map<String, Value> = self
            .extra
            .iter()
            .filter(|(k, _)| !MEMBERS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        obj.insert("type".into(), format!("{TYPE_PREFIX}{}", self.slug).into());
        obj.insert("title".into(), self.title.into());
        obj.insert("status".into(), self.status.as_u16().into());
        obj.insert("detail".into(), self.detail.clone().into());
        if let Some(f) = &self.field {
            obj.insert("field".into(), Value::String(f.clone()));
        }
        Value::Object(obj)
    }

    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, slug, "Bad request", detail)
    }

    pub fn unprocessable(slug: &'static str, detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            slug,
            "Unprocessable input",
            detail,
        )
    }

    pub fn not_found(slug: &'static str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, slug, "Not found", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Try again shortly",
            detail,
        );
        p.retry_after_s = Some(1);
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_json()).expect("problem serializes");
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// The slug and title of an answer a handler did not shape (the framework's refusals).
fn framework_slug(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("bad-request", "Bad request"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "Unauthorized"),
        StatusCode::FORBIDDEN => ("forbidden", "Forbidden"),
        StatusCode::NOT_FOUND => ("no-such-route", "Not found"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
        StatusCode::REQUEST_TIMEOUT => ("body-timeout", "Request timeout"),
        StatusCode::PAYLOAD_TOO_LARGE => ("body-too-large", "Payload too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "Unsupported media type"),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid-input", "Unprocessable input"),
        StatusCode::SERVICE_UNAVAILABLE => ("overloaded", "Try again shortly"),
        s if s.is_server_error() => ("internal-error", "Internal error"),
        _ => ("bad-request", "Bad request"),
    }
}

fn is_problem_or_page(resp: &Response, dashboard: bool) -> bool {
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ct.starts_with("application/problem+json") || (dashboard && ct.starts_with("text/html"))
}

/// Middleware: every 4xx and 5xx leaves as problem+json with a numeric `status` (the
/// framework's text answers are rewritten, keeping their text as `detail` and headers such as
/// `Allow` and `Retry-After`), and a handler that panics answers 500 instead of dropping the
/// connection. The dashboard's HTML pages (`/ui`) stay HTML.
pub async fn as_problem(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let dashboard = req.uri().path().starts_with("/ui");
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match CatchPanic(Box::pin(next.run(req))).await {
        Ok(resp) => resp,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%method, path, panic = what, "a handler panicked");
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "Internal error",
                "the hub failed answering this request; it was logged",
            )
            .into_response();
        }
    };
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_problem_or_page(&resp, dashboard)
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let (slug, title) = framework_slug(status);
    let detail = match (status, text.is_empty()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => format!(
            "{method} is not served at {path}; the Allow header lists what is (see GET /v1/openapi.json)"
        ),
        (_, false) => text,
        (_, true) => status.canonical_reason().unwrap_or("refused").to_string(),
    };
    let problem = Problem::new(status, slug, title, detail);
    let body = serde_json::to_vec(&problem.to_json()).expect("problem serializes");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// A future that turns a panic while polling into an error.
struct CatchPanic<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_never_replace_the_standard_members() {
        let mut p = Problem::unprocessable("quarantined", "held back").field("data.item");
        // Built around `with`, as a careless caller could.
        p.extra.insert("status".into(), "quarantined".into());
        p.extra.insert("type".into(), "other".into());
        p.extra.insert("event_status".into(), "quarantined".into());
        let v = p.to_json();
        assert_eq!(v["status"], 422, "numeric, as RFC 7807 says: {v}");
        assert_eq!(v["type"], "urn:crossdock:problem:quarantined");
        assert_eq!(v["field"], "data.item");
        assert_eq!(v["event_status"], "quarantined", "extensions are kept");
    }

    /// What a route answers through `as_problem`: status, content type, body.
    async fn through_the_layer(path: &str) -> (u16, String, String) {
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/text",
                get(|| async { (StatusCode::BAD_REQUEST, "Failed to parse the thing") }),
            )
            .route(
                "/boom",
                get(|| async {
                    let found: Vec<&str> = Vec::new();
                    found[0]
                }),
            )
            .route(
                "/ui/page",
                get(|| async {
                    (
                        StatusCode::FORBIDDEN,
                        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                        "<p>no</p>",
                    )
                }),
            )
            .route("/post-only", axum::routing::post(|| async { "posted" }))
            .layer(axum::middleware::from_fn(as_problem));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let allow = resp.headers().get(header::ALLOW).is_some();
        let body = resp.text().await.unwrap();
        server.abort();
        if status == 405 {
            assert!(allow, "Allow is kept");
        }
        (status, ct, body)
    }

    #[tokio::test]
    async fn framework_answers_and_panics_become_problems() {
        let (status, ct, body) = through_the_layer("/ok").await;
        assert_eq!(
            (status, ct.as_str(), body.as_str()),
            (200, "text/plain; charset=utf-8", "fine")
        );
        for (path, code, slug, detail) in [
            ("/text", 400, "bad-request", "Failed to parse the thing"),
            (
                "/boom",
                500,
                "internal-error",
                "the hub failed answering this request; it was logged",
            ),
            (
                "/post-only",
                405,
                "method-not-allowed",
                "GET is not served at /post-only; the Allow header lists what is (see GET /v1/openapi.json)",
            ),
            ("/nowhere", 404, "no-such-route", "Not Found"),
        ] {
            let (status, ct, body) = through_the_layer(path).await;
            assert_eq!(
                (status, ct.as_str()),
                (code, "application/problem+json"),
                "{path}: {body}"
            );
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["status"], code, "{path}: {v}");
            assert_eq!(v["type"], format!("{TYPE_PREFIX}{slug}"), "{path}: {v}");
            assert_eq!(v["detail"], detail, "{path}: {v}");
        }
        let (status, ct, body) = through_the_layer("/ui/page").await;
        assert_eq!(
            (status, ct.as_str(), body.as_str()),
            (403, "text/html; charset=utf-8", "<p>no</p>"),
            "the dashboard's pages stay HTML"
        );
    }
}
