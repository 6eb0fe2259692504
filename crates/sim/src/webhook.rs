//! A receiver of Crossdock's signed generic webhooks, as a loopback server.
//!
//! Faithful to the wire format Crossdock defines (`crossdock-adapters`' `webhook` module):
//!
//! ```text
//! POST <any path>
//! Idempotency-Key: <key>
//! X-Correlation-Id: <id>                  (optional)
//! X-Crossdock-Signature: t=<unix seconds>,v1=<base64 HMAC-SHA256(secret, "<t>.<raw body>")>
//!
//! {"type":"availability","key":"SKU-1","item":"SKU-1","available":7,"ledger_seq":42}
//! ```
//!
//! - A missing or wrong signature, or one made more than [`WebhookConfig::tolerance_s`] away
//!   from now, is a 401 (counted in [`crate::StatsSnapshot::auth_failures`], read as
//!   [`WebhookSim::bad_signatures`]). Several `v1=` values are allowed (secret rotation).
//! - An accepted delivery is recorded with its path, headers and JSON body
//!   ([`WebhookSim::received`]) and answered 200. An `availability` body sets the quantity of
//!   its `key`.
//! - A repeated `Idempotency-Key` is acknowledged 200, counted as a duplicate and not recorded
//!   again.
//! - A body whose `key` is in [`crate::Faults::permanent_items`] is refused 422.
//! - An optional rate limit ([`WebhookConfig::rate_limit`]) answers 429 with `Retry-After`.
//!
//! Left out: methods other than POST (405); bodies that are not JSON (400).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use crate::bucket::{RateLimit, Take, TokenBucket, retry_after_s};
use crate::endpoint::{Arrival, Endpoint, gate, json};
use crate::server::{Bound, Server};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Crossdock-Signature";

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The shared signing secret. Default `whsec_simulator`.
    pub secret: Vec<u8>,
    /// Largest distance between the signature's `t` and now, in seconds. Default 300.
    pub tolerance_s: i64,
    /// A request limit; `None` (the default) for none.
    pub rate_limit: Option<RateLimit>,
    /// Most deliveries kept by [`WebhookSim::received`] and most idempotency keys remembered;
    /// past it the oldest are forgotten. Default 1,048,576.
    pub deliveries_max: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            secret: b"whsec_simulator".to_vec(),
            tolerance_s: 300,
            rate_limit: None,
            deliveries_max: 1 << 20,
        }
    }
}

/// One accepted delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub received_at: Instant,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub correlation_id: Option<String>,
    pub body: Value,
}

/// A running webhook receiver. Dereferences to its [`Endpoint`].
#[derive(Debug)]
pub struct WebhookSim {
    server: Server,
    receiver: Arc<Receiver>,
}

impl Deref for WebhookSim {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.receiver.endpoint
    }
}

impl WebhookSim {
    /// Binds `127.0.0.1:0` and serves until dropped or stopped.
    pub async fn start(config: WebhookConfig) -> io::Result<WebhookSim> {
        let invalid =
            |e: String| io::Error::new(io::ErrorKind::InvalidInput, format!("webhook sim: {e}"));
        if let Some(problem) = config.rate_limit.as_ref().and_then(RateLimit::problem) {
            return Err(invalid(format!("rate_limit: {problem}")));
        }
        if config.secret.is_empty() || config.tolerance_s < 0 || config.deliveries_max == 0 {
            return Err(invalid(
                "secret must not be empty, tolerance_s not negative, deliveries_max at least 1"
                    .into(),
            ));
        }
        let bound = Bound::loopback().await?;
        let endpoint = Arc::new(Endpoint::new(
            |id| id.to_owned(),
            fault_answer,
            bound.shutdown_signal(),
        ));
        let receiver = Arc::new(Receiver {
            endpoint: endpoint.clone(),
            bucket: config
                .rate_limit
                .map(|limit| Mutex::new(TokenBucket::full(limit, Instant::now()))),
            log: Mutex::new(Log::default()),
            config,
        });
        let router = Router::new()
            .fallback(receive)
            .with_state(receiver.clone())
            .layer(axum::middleware::from_fn_with_state(endpoint, gate));
        Ok(WebhookSim {
            server: bound.serve(router, "webhook"),
            receiver,
        })
    }

    /// The receiver's base URL, `http://127.0.0.1:<port>`; any path under it accepts POSTs.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.receiver.config
    }

    /// Accepted deliveries in arrival order (repeats of an idempotency key are not in it).
    pub fn received(&self) -> Vec<Delivery> {
        self.receiver.log().deliveries.iter().cloned().collect()
    }

    /// Requests refused for a missing or wrong signature.
    pub fn bad_signatures(&self) -> u64 {
        self.stats().auth_failures
    }

    /// Stops the server and waits for it to end.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// The `X-Crossdock-Signature` value for `body` signed at `t` (unix seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Whether `header` signs `body` with `secret` at a time within `tolerance_s` of `now`.
fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_s: i64) -> bool {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.trim().parse::<i64>().ok(),
            Some(("v1", value)) => candidates.push(value.trim()),
            _ => {}
        }
    }
    let Some(t) = t else {
        return false;
    };
    if now.abs_diff(t) > tolerance_s.unsigned_abs() {
        return false;
    }
    candidates.iter().any(|candidate| {
        let Ok(signature) = BASE64.decode(candidate) else {
            return false;
        };
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // Constant-time comparison.
        mac.verify_slice(&signature).is_ok()
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn fault_answer(status: StatusCode) -> Response {
    json(
        status,
        json!({"error": status.canonical_reason().unwrap_or("error")}),
    )
}

#[derive(Debug)]
struct Receiver {
    endpoint: Arc<Endpoint>,
    config: WebhookConfig,
    bucket: Option<Mutex<TokenBucket>>,
    /// Lock order: after the endpoint's item book.
    log: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    deliveries: VecDeque<Delivery>,
    keys: HashSet<String>,
    key_order: VecDeque<String>,
}

impl Receiver {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    Extension(arrival): Extension<Arrival>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let endpoint = &receiver.endpoint;
    if method != Method::POST {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "only POST is accepted"}),
        );
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let key = parsed
        .as_ref()
        .and_then(|b| b.get("key"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(key) = &key {
        endpoint.touch(&arrival, vec![key.clone()]);
    }

    let signed = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|header| {
            verify(
                &receiver.config.secret,
                header,
                &body,
                unix_now(),
                receiver.config.tolerance_s,
            )
        });
    if !signed {
        endpoint.stats.auth_failed();
        return json(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or invalid X-Crossdock-Signature"}),
        );
    }
    if let Some(bucket) = &receiver.bucket {
        let take = bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(arrival.at, 1.0);
        if let Take::Refused { wait, .. } = take {
            endpoint.stats.violation();
            let seconds = retry_after_s(wait);
            let mut response = json(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "too many requests"}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
    }
    let Some(body) = parsed else {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"error": "the body is not JSON"}),
        );
    };
    let idempotency_key = header_text(&headers, "idempotency-key");

    let mut items = endpoint.items();
    let mut log = receiver.log();
    if let Some(k) = &idempotency_key
        && log.keys.contains(k)
    {
        endpoint.stats.duplicate();
        endpoint.stats.accepted();
        return json(StatusCode::OK, json!({"status": "duplicate"}));
    }
    if let Some(key) = &key
        && endpoint.faults().is_permanent(key)
    {
        endpoint.stats.rejected(1);
        return json(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": format!("the receiver refuses key {key:?}")}),
        );
    }
    let max = receiver.config.deliveries_max;
    if let Some(k) = &idempotency_key {
        if log.key_order.len() >= max
            && let Some(old) = log.key_order.pop_front()
        {
            log.keys.remove(&old);
        }
        log.keys.insert(k.clone());
        log.key_order.push_back(k.clone());
    }
    if body.get("type").and_then(Value::as_str) == Some("availability")
        && let (Some(key), Some(available)) = (&key, body.get("available").and_then(Value::as_i64))
    {
        let write = items.apply(key, available);
        endpoint.stats.wrote(write);
    }
    if log.deliveries.len() >= max {
        log.deliveries.pop_front();
    }
    log.deliveries.push_back(Delivery {
        received_at: arrival.at,
        path: uri.path().to_owned(),
        idempotency_key,
        correlation_id: header_text(&headers, "x-correlation-id"),
        body,
    });
    endpoint.stats.accepted();
    json(StatusCode::OK, json!({"status": "received"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_within_the_tolerance_only() {
        let header = signature(b"s3cret", 1_700_000_000, b"{}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify(b"s3cret", &header, b"{}", 1_700_000_100, 300));
        assert!(!verify(b"s3cret", &header, b"{}", 1_700_000_400, 300));
        assert!(!verify(b"other", &header, b"{}", 1_700_000_000, 300));
        assert!(!verify(b"s3cret", &header, b"{ }", 1_700_000_000, 300));
        assert!(!verify(b"s3cret", "v1=abc", b"{}", 1_700_000_000, 300));
        // A rotated secret: any matching v1 will do.
        let v1 = header.split_once("v1=").unwrap().1;
        let two = format!("t=1700000000,v1=bm9wZQ==,v1={v1}");
        assert!(verify(b"s3cret", &two, b"{}", 1_700_000_000, 300));
    }

    #[test]
    fn signature_is_a_known_answer() {
        // Computed independently (Python's hmac module) over "1700000000.{}".
        assert_eq!(
            signature(b"s3cret", 1_700_000_000, b"{}"),
            "t=1700000000,v1=l5JoFumPu0HMsWcyJf8povNTaQmZkOGxVhZR570Jfr8="
        );
    }
}
