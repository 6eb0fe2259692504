//! The HTTP client every adapter uses: one connection pool, rustls with the `ring` backend,
//! timeouts on every call, and the usual reading of failures.

use std::time::Duration;

use crate::target::Failure;

/// Longest response text kept on a failure (it ends up in the DLQ and exception records).
pub const DETAIL_MAX: usize = 2_000;

/// Builds the shared client. `timeout` bounds each whole call.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("crossdock/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds with static settings")
}

/// A transport error (no response) as a failure: always worth retrying.
pub fn transport_failure(e: &reqwest::Error) -> Failure {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    Failure::retryable(None, format!("{what}: {e}"))
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the targets Crossdock knows).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let raw = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = raw.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// Shopify's REST bucket, `X-Shopify-Shop-Api-Call-Limit: 32/40` (calls used / bucket size), as
/// feedback in requests: what is left and the bucket size.
pub fn shopify_call_limit(headers: &reqwest::header::HeaderMap) -> Option<(f64, f64)> {
    let raw = headers
        .get("x-shopify-shop-api-call-limit")?
        .to_str()
        .ok()?;
    let (used, size) = raw.trim().split_once('/')?;
    let used: f64 = used.trim().parse().ok()?;
    let size: f64 = size.trim().parse().ok()?;
    (used.is_finite() && size.is_finite() && size > 0.0 && used >= 0.0)
        .then(|| ((size - used).max(0.0), size))
}

/// Cuts `text` to at most [`DETAIL_MAX`] bytes on a character boundary.
pub fn truncate(mut text: String) -> String {
    if text.len() > DETAIL_MAX {
        let mut end = DETAIL_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_a_char_boundary() {
        let long = "é".repeat(DETAIL_MAX);
        let cut = truncate(long);
        assert!(cut.len() <= DETAIL_MAX + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short".into()), "short");
    }

    #[test]
    fn reads_shopifys_rest_call_limit() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(shopify_call_limit(&h), None);
        h.insert("X-Shopify-Shop-Api-Call-Limit", "32/40".parse().unwrap());
        assert_eq!(shopify_call_limit(&h), Some((8.0, 40.0)));
        h.insert("X-Shopify-Shop-Api-Call-Limit", "41/40".parse().unwrap());
        assert_eq!(shopify_call_limit(&h), Some((0.0, 40.0)));
        h.insert("X-Shopify-Shop-Api-Call-Limit", "lots".parse().unwrap());
        assert_eq!(shopify_call_limit(&h), None);
    }

    #[test]
    fn reads_retry_after_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(2500)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
