//! Small pieces every adapter shares: HMAC-SHA256, base URLs, config errors, reading a
//! response body into a failure detail.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crossdock_delivery::http;
use crossdock_delivery::{Failure, Message, MsgResult};
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Default bound on one HTTP call when a config does not say.
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 10_000;

pub(crate) fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// The `X-Correlation-Id` of one request carrying `messages` (see
/// [`crossdock_delivery::correlation_list`]).
pub(crate) fn correlation_header<'a>(
    messages: impl IntoIterator<Item = &'a Message>,
) -> Option<String> {
    crossdock_delivery::correlation_list(messages)
}

/// A config value the publisher cannot work with, named by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Parses a base URL (`http` or `https`, with a host) and drops a trailing slash so paths can
/// be appended with `format!("{base}/path")`.
pub(crate) fn base_url(key: &str, raw: &str) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(raw.trim())
        .map_err(|e| ConfigError::new(key, format!("not a URL ({e}): {raw:?}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::new(key, "must be an http:// or https:// URL"));
    }
    if parsed.host_str().is_none() {
        return Err(ConfigError::new(key, "has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ConfigError::new(key, "must not carry a query or fragment"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// `timeout_ms` as a duration, refusing zero (a call that may never start is a config slip).
pub(crate) fn timeout(key: &str, timeout_ms: u64) -> Result<std::time::Duration, ConfigError> {
    if timeout_ms == 0 {
        return Err(ConfigError::new(key, "must be more than 0"));
    }
    Ok(std::time::Duration::from_millis(timeout_ms))
}

/// The raw 32-byte HMAC-SHA256 of the concatenation of `parts`.
pub(crate) fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Checks a base64 HMAC-SHA256 of `body` in constant time (the comparison is `hmac`'s own).
/// A header that is not base64 or not 32 bytes long is simply not a match.
pub(crate) fn verify_base64_hmac(secret: &[u8], body: &[u8], header_value: &str) -> bool {
    let Ok(tag) = BASE64.decode(header_value.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// Lowercase hex of SHA-256, used to derive stable keys from message content.
pub(crate) fn sha256_hex(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The failure for a message whose item the channel's crosswalk does not know.
pub(crate) fn no_crosswalk_entry(item: &str, channel: &str) -> Failure {
    Failure::permanent(
        None,
        format!("no crosswalk entry for item {item} on channel {channel}"),
    )
}

/// The failure for a message body the target cannot carry (a document sent to a stock API).
pub(crate) fn unsupported_body(message: &Message, channel: &str) -> MsgResult {
    MsgResult::Failed(Failure::permanent(
        None,
        format!(
            "channel {channel} takes availability messages only; message {} for key {} is a document",
            message.ledger_seq, message.key
        ),
    ))
}

/// Reads a non-success response into a failure (`from_status` with the truncated text).
pub(crate) async fn status_failure(response: reqwest::Response) -> Failure {
    let status = response.status().as_u16();
    let text = match response.text().await {
        Ok(text) => text,
        Err(e) => format!("(body unreadable: {e})"),
    };
    Failure::from_status(status, http::truncate(text))
}

/// Cuts a detail string to the delivery limit.
pub(crate) fn detail(text: impl Into<String>) -> String {
    http::truncate(text.into())
}

/// The host of a base URL, to name a channel in messages (`shopify:shop.myshopify.com`).
pub(crate) fn host_of(base: &str) -> String {
    reqwest::Url::parse(base)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_else(|| base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requests_correlation_header_lists_each_id_once_and_is_bounded() {
        let message = |id: Option<&str>| Message {
            key: "k".into(),
            ledger_seq: 1,
            body: crossdock_delivery::Body::Document {
                json: String::new(),
            },
            idempotency_key: "i".into(),
            correlation_id: id.map(String::from),
        };
        let batch = [
            message(Some("PO-1")),
            message(None),
            message(Some("PO-2")),
            message(Some("PO-1")),
        ];
        assert_eq!(correlation_header(&batch).as_deref(), Some("PO-1, PO-2"));
        assert_eq!(correlation_header(&[message(None)]), None);
        let many: Vec<Message> = (0..100).map(|i| message(Some(&format!("c-{i}")))).collect();
        let header = correlation_header(&many).unwrap();
        assert_eq!(
            header.split(", ").count(),
            crossdock_delivery::CORRELATIONS_MAX
        );
        assert!(header.starts_with("c-0, c-1, "));
    }

    #[test]
    fn base_url_drops_the_trailing_slash_and_refuses_non_http() {
        assert_eq!(
            base_url("k", "https://x.myshopify.com/").unwrap(),
            "https://x.myshopify.com"
        );
        assert_eq!(
            base_url("k", "http://127.0.0.1:8080/wp").unwrap(),
            "http://127.0.0.1:8080/wp"
        );
        let err = base_url("shop_url", "ftp://x").unwrap_err();
        assert_eq!(err.key, "shop_url");
        assert!(base_url("k", "not a url").is_err());
        assert!(base_url("k", "https://x.com/?a=1").is_err());
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let header = base64_encode(&mac);
        assert!(verify_base64_hmac(
            b"Jefe",
            b"what do ya want for nothing?",
            &header
        ));
        assert!(!verify_base64_hmac(
            b"Jefe",
            b"what do ya want for nothing!",
            &header
        ));
        assert!(!verify_base64_hmac(b"Jefe", b"x", "not base64 !!"));
    }

    #[test]
    fn sha256_hex_separates_parts() {
        assert_ne!(sha256_hex(&[b"ab", b"c"]), sha256_hex(&[b"a", b"bc"]));
        assert_eq!(sha256_hex(&[b"a"]).len(), 64);
    }
}
