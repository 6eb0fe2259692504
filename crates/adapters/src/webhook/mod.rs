//! Generic signed webhook: one canonical message per POST to a URL the customer runs.
//!
//! Crossdock defines this wire format (it is faithful to no outside system), shaped after the
//! common practice of Stripe-style signatures:
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! Idempotency-Key: <the message's idempotency key>
//! X-Correlation-Id: <correlation id, when known>
//! X-Crossdock-Signature: t=<unix seconds>,v1=<base64 HMAC-SHA256(secret, "<t>.<body>")>
//!
//! {"type":"availability","key":"SKU-1","item":"SKU-1","available":7,"ledger_seq":42}
//! {"type":"document","key":"order-9","ledger_seq":43,"document":{...the document as stored...}}
//! ```
//!
//! A receiver checks the signature with [`verify`] (and a timestamp tolerance against replay)
//! and deduplicates on `Idempotency-Key`. Any 2xx is delivered; anything else goes through
//! [`Failure::from_status`] with the receiver's text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossdock_delivery::{Body, BoxFuture, Failure, Message, MsgResult, Outcome, Target, http};
use serde::Deserialize;

use crate::util::{self, ConfigError};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Crossdock-Signature";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default = "util::default_timeout_ms")]
    pub timeout_ms: u64,
}

pub struct WebhookPublisher {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPublisher")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WebhookPublisher {
    pub fn new(config: WebhookConfig, secret: Vec<u8>) -> Result<Self, ConfigError> {
        let parsed = reqwest::Url::parse(config.url.trim())
            .map_err(|e| ConfigError::new("url", format!("not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ConfigError::new(
                "url",
                "must be an http:// or https:// URL",
            ));
        }
        if secret.is_empty() {
            return Err(ConfigError::new("secret", "is empty"));
        }
        let timeout = util::timeout("timeout_ms", config.timeout_ms)?;
        Ok(WebhookPublisher {
            client: http::client(timeout),
            url: parsed.to_string(),
            secret,
            timeout,
        })
    }

    /// Sends one message; the result and the receiver's `Retry-After`, if any.
    async fn deliver(&self, message: &Message) -> (MsgResult, Option<Duration>) {
        let body = match encode(message) {
            Ok(body) => body,
            Err(failure) => return (MsgResult::Failed(failure), None),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &message.idempotency_key)
            .header(SIGNATURE_HEADER, sign(&self.secret, now, body.as_bytes()));
        if let Some(id) = &message.correlation_id {
            request = request.header("X-Correlation-Id", id);
        }
        match request.body(body).send().await {
            Err(e) => (MsgResult::Failed(http::transport_failure(&e)), None),
            Ok(response) if response.status().is_success() => (MsgResult::Delivered, None),
            Ok(response) => {
                let retry_after = http::retry_after(response.headers());
                (
                    MsgResult::Failed(util::status_failure(response).await),
                    retry_after,
                )
            }
        }
    }
}

impl Target for WebhookPublisher {
    /// The longest one `send` of `batch` can take: one POST per message.
    fn call_budget(&self, batch: &[Message]) -> Duration {
        self.timeout.saturating_mul(batch.len().max(1) as u32)
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn send<'a>(&'a self, batch: &'a [Message]) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            // The lane sends one at a time (max_batch 1); a longer batch would still get one
            // result per message, and the longest Retry-After any receiver asked for.
            let mut outcome = Outcome::default();
            for message in batch {
                let (result, retry_after) = self.deliver(message).await;
                outcome.results.push(result);
                outcome.feedback.retry_after = outcome.feedback.retry_after.max(retry_after);
            }
            outcome
        })
    }
}

/// The JSON body for `message`.
pub fn encode(message: &Message) -> Result<String, Failure> {
    match &message.body {
        Body::Availability {
            item, available, ..
        } => Ok(serde_json::json!({
            "type": "availability",
            "key": message.key,
            "item": item,
            "available": available,
            "ledger_seq": message.ledger_seq,
        })
        .to_string()),
        Body::Document { json } => {
            // The document goes out byte for byte as stored (no re-serialisation), so it must
            // be one JSON value on its own.
            if serde_json::from_str::<serde::de::IgnoredAny>(json).is_err() {
                return Err(Failure::permanent(
                    None,
                    format!(
                        "document for key {} (ledger seq {}) is not valid JSON",
                        message.key, message.ledger_seq
                    ),
                ));
            }
            let key = serde_json::to_string(&message.key).expect("a string serialises");
            Ok(format!(
                r#"{{"type":"document","key":{key},"ledger_seq":{},"document":{}}}"#,
                message.ledger_seq,
                json.trim()
            ))
        }
    }
}

/// The `X-Crossdock-Signature` value: `t=<t>,v1=<base64 HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let t_text = t.to_string();
    let mac = util::hmac_sha256(secret, &[t_text.as_bytes(), b".", body]);
    format!("t={t},v1={}", util::base64_encode(&mac))
}

/// Checks an `X-Crossdock-Signature` header: a `v1` that matches (constant time), made at most
/// `tolerance_s` seconds away from `now` (unix seconds).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_s: i64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.push(value),
            _ => {}
        }
    }
    let Some(t) = t else {
        return false;
    };
    if (now - t).abs() > tolerance_s {
        return false;
    }
    let t_text = t.to_string();
    let signed = [t_text.as_bytes(), b".", body].concat();
    v1.iter()
        .any(|sig| util::verify_base64_hmac(secret, &signed, sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn availability() -> Message {
        Message {
            key: "SKU-1".into(),
            ledger_seq: 42,
            body: Body::Availability {
                item: "SKU-1".into(),
                available: 7,
                last_sent: Some(3),
            },
            idempotency_key: "k".into(),
            correlation_id: None,
        }
    }

    #[test]
    fn encodes_availability_and_documents() {
        let body: serde_json::Value =
            serde_json::from_str(&encode(&availability()).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"type": "availability", "key": "SKU-1", "item": "SKU-1",
                "available": 7, "ledger_seq": 42})
        );
        let doc = Message {
            key: "order-\"9\"".into(),
            body: Body::Document {
                json: r#" {"z": 1, "a": [true]} "#.into(),
            },
            ..availability()
        };
        let text = encode(&doc).unwrap();
        // The document keeps its own key order.
        assert_eq!(
            text,
            r#"{"type":"document","key":"order-\"9\"","ledger_seq":42,"document":{"z": 1, "a": [true]}}"#
        );
        let bad = Message {
            body: Body::Document {
                json: "{} trailing".into(),
            },
            ..availability()
        };
        assert!(
            matches!(encode(&bad), Err(f) if f.class == crossdock_delivery::RetryClass::Permanent)
        );
    }

    #[test]
    fn signatures_verify_and_expire() {
        let header = sign(b"s3cret", 1_700_000_000, b"{}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify(b"s3cret", &header, b"{}", 1_700_000_100, 300));
        assert!(!verify(b"s3cret", &header, b"{}", 1_700_000_400, 300));
        assert!(!verify(b"other", &header, b"{}", 1_700_000_000, 300));
        assert!(!verify(b"s3cret", &header, b"{ }", 1_700_000_000, 300));
        assert!(!verify(b"s3cret", "v1=abc", b"{}", 1_700_000_000, 300));
        // Known answer, so a change to the signed string is caught.
        let mac = util::hmac_sha256(b"s3cret", &[b"1700000000.{}"]);
        assert_eq!(
            header,
            format!("t=1700000000,v1={}", util::base64_encode(&mac))
        );
    }
}
