//! How the demo's systems talk to the hub: plain HTTP over loopback, each with its own bearer
//! token, exactly as outside systems would; and the tally of what the hub answered them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::world::Channel;

/// The hub's HTTP API, shared by every actor (one connection pool).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// An answer: status and JSON body (`Value::String` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Attempts at a request the hub answers "busy" (503, 429) or that cannot connect.
const ATTEMPTS_MAX: u32 = 20;

impl Api {
    pub fn new(base: String) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .expect("an HTTP client without TLS settings builds");
        Api { http, base }
    }

    pub async fn get(&self, token: &str, path: &str) -> Result<Answer, String> {
        self.send(
            reqwest::Method::GET,
            Some(token),
            path,
            None,
            &[],
            Vec::new(),
        )
        .await
    }

    /// A GET whose body is text (`/metrics`).
    pub async fn get_text(&self, token: &str, path: &str) -> Result<String, String> {
        let answer = self.get(token, path).await?;
        match answer.body {
            Value::String(s) if answer.status == 200 => Ok(s),
            other if answer.status == 200 => Ok(other.to_string()),
            other => Err(format!("GET {path}: HTTP {}: {other}", answer.status)),
        }
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> Result<Answer, String> {
        self.send(
            reqwest::Method::POST,
            Some(token),
            path,
            Some("application/json"),
            &[],
            serde_json::to_vec(body).expect("JSON serializes"),
        )
        .await
    }

    /// A POST with its own headers and raw body (signed webhooks; CSV).
    pub async fn post_raw(
        &self,
        token: Option<&str>,
        path: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        self.send(
            reqwest::Method::POST,
            token,
            path,
            Some(content_type),
            headers,
            body,
        )
        .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), &url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            for (name, value) in headers {
                req = req.header(*name, value);
            }
            let result = req.body(body.clone()).send().await;
            let retry_in = Duration::from_millis(25 * u64::from(attempt.min(20)));
            match result {
                Ok(resp)
                    if matches!(resp.status().as_u16(), 429 | 503) && attempt < ATTEMPTS_MAX =>
                {
                    let wait = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map_or(retry_in, |s| Duration::from_secs(s.min(2)).max(retry_in));
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let bytes = resp.bytes().await.map_err(|e| format!("{path}: {e}"))?;
                    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&bytes).into_owned())
                    });
                    return Ok(Answer { status, body });
                }
                Err(e) if (e.is_connect() || e.is_timeout()) && attempt < 5 => {
                    tokio::time::sleep(retry_in).await;
                }
                Err(e) => return Err(format!("{method} {path}: {e}")),
            }
        }
    }
}

/// Percent-encodes a query or path value.
pub fn encode(raw: &str) -> String {
    let mut out = String::new();
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What one channel's customers got.
#[derive(Debug, Default)]
pub struct ChannelTally {
    /// Orders the hub accepted (allocated, released, or backordered as a partner's order).
    pub placed: AtomicU64,
    /// Refused by the hub for want of stock (409): the channel showed more than it had.
    pub refused: AtomicU64,
    /// Accepted with lines waiting for stock.
    pub backordered: AtomicU64,
    /// The storefront showed none of what the customer wanted: no order.
    pub not_offered: AtomicU64,
    /// The storefront showed more than Crossdock's availability when the customer checked out:
    /// held back until it caught up, then left.
    pub held_back: AtomicU64,
    /// Abandoned at checkout (Amazon: the reservation released).
    pub abandoned: AtomicU64,
    /// Sold beyond stock (a channel order the hub could not cover). Must stay 0.
    pub oversold: AtomicU64,
    /// Answers that were neither (bad input, errors).
    pub failed: AtomicU64,
}

/// The hub's answers to the demo's systems, counted.
#[derive(Debug, Default)]
pub struct Tally {
    pub events_sent: AtomicU64,
    pub events_applied: AtomicU64,
    /// Held by the resequencer for an earlier sequence number (202).
    pub events_held: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub events_rejected: AtomicU64,
    pub events_failed: AtomicU64,
    /// Sent out of order on purpose (the 3PL).
    pub events_swapped: AtomicU64,
    /// Sent twice on purpose (the 3PL).
    pub events_resent: AtomicU64,
    pub channels: [ChannelTally; 4],
    pub purchase_orders: AtomicU64,
    pub units_received: AtomicU64,
    /// Shipments the carrier confirmed and the hub applied.
    pub shipments: AtomicU64,
    pub units_shipped: AtomicU64,
    pub edi_files: AtomicU64,
    /// Orders of the plan not placed because the run ended first.
    pub cut_off: AtomicU64,
}

impl Tally {
    pub fn channel(&self, c: Channel) -> &ChannelTally {
        &self.channels[Channel::ALL
            .iter()
            .position(|x| *x == c)
            .expect("every channel")]
    }
}

/// Adds one.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
