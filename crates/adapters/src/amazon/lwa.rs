//! Login with Amazon: the access token every SP-API call carries as `x-amz-access-token`.
//!
//! Faithful to LWA's refresh-token grant: `POST` the form `grant_type=refresh_token`,
//! `refresh_token`, `client_id`, `client_secret`; the answer is
//! `{"access_token", "token_type": "bearer", "expires_in": 3600}`, or a 400/401 with
//! `{"error": "invalid_grant" | "invalid_client" | ..., "error_description"}`, which no retry
//! will fix (a revoked or mistyped credential), so it is permanent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossdock_delivery::{Failure, http};
use serde::Deserialize;

use crate::util;

/// A token is used until this long before it expires.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

pub(crate) struct Lwa {
    url: String,
    refresh_token: String,
    client_id: String,
    client_secret: String,
    cached: Mutex<Option<Cached>>,
}

#[derive(Clone)]
struct Cached {
    token: String,
    until: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Lwa {
    pub(crate) fn new(
        url: String,
        refresh_token: String,
        client_id: String,
        client_secret: String,
    ) -> Self {
        Lwa {
            url,
            refresh_token,
            client_id,
            client_secret,
            cached: Mutex::new(None),
        }
    }

    /// A valid access token, fetched when the cached one is missing or about to expire.
    pub(crate) async fn token(&self, client: &reqwest::Client) -> Result<String, Failure> {
        let now = Instant::now();
        if let Some(cached) = self.lock().clone()
            && cached.until > now
        {
            return Ok(cached.token);
        }
        let (token, expires_in) = self.fetch(client).await?;
        let lifetime = Duration::from_secs(expires_in).saturating_sub(EXPIRY_MARGIN);
        *self.lock() = Some(Cached {
            token: token.clone(),
            until: now + lifetime,
        });
        Ok(token)
    }

    /// Forgets the cached token (SP-API said it is expired or invalid).
    pub(crate) fn invalidate(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        // A poisoned cache only means a panic elsewhere mid-write of an Option: still usable.
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<(String, u64), Failure> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", self.refresh_token.as_str()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
        ];
        let response = client
            .post(&self.url)
            .form(&form)
            .send()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        read_token_answer(status, &text)
    }
}

/// Reads an LWA answer: the token and its lifetime in seconds.
fn read_token_answer(status: u16, text: &str) -> Result<(String, u64), Failure> {
    if (200..300).contains(&status) {
        let answer: TokenAnswer = serde_json::from_str(text).map_err(|e| {
            Failure::retryable(
                Some(status),
                util::detail(format!("LWA answer is not a token ({e}): {text}")),
            )
        })?;
        if answer.access_token.is_empty() {
            return Err(Failure::retryable(
                Some(status),
                "LWA answered an empty token",
            ));
        }
        return Ok((answer.access_token, answer.expires_in.unwrap_or(3600)));
    }
    let detail = util::detail(format!("LWA token request refused: {text}"));
    Err(match status {
        // invalid_grant, invalid_client, unauthorized_client, invalid_request: credentials.
        400 | 401 | 403 => Failure::permanent(Some(status), detail),
        _ => Failure::from_status(status, detail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_delivery::RetryClass;

    #[test]
    fn reads_tokens_and_refusals() {
        assert_eq!(
            read_token_answer(
                200,
                r#"{"access_token": "Atza|abc", "token_type": "bearer", "expires_in": 3600}"#
            ),
            Ok(("Atza|abc".into(), 3600))
        );
        let grant = read_token_answer(
            400,
            r#"{"error_description": "The request has an invalid grant parameter : refresh_token", "error": "invalid_grant"}"#,
        )
        .unwrap_err();
        assert_eq!(grant.class, RetryClass::Permanent);
        assert!(grant.detail.contains("invalid_grant"));
        assert_eq!(
            read_token_answer(401, r#"{"error": "invalid_client"}"#)
                .unwrap_err()
                .class,
            RetryClass::Permanent
        );
        assert_eq!(
            read_token_answer(503, "busy").unwrap_err().class,
            RetryClass::Retryable
        );
        assert_eq!(
            read_token_answer(200, "<html>").unwrap_err().class,
            RetryClass::Retryable
        );
    }
}
