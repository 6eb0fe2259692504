use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossdock_sim::webhook::signature;
use crossdock_sim::{RateLimit, WebhookConfig, WebhookSim};
use serde_json::{Value, json};

use crate::client;

const SECRET: &[u8] = b"whsec_simulator";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn availability(key: &str, available: i64) -> String {
    json!({"type": "availability", "key": key, "item": key, "available": available, "ledger_seq": 1})
        .to_string()
}

async fn deliver(
    sim: &WebhookSim,
    path: &str,
    idempotency_key: &str,
    body: &str,
    signed: Option<String>,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("{}{path}", sim.url()))
        .header("content-type", "application/json")
        .header("Idempotency-Key", idempotency_key)
        .header("X-Correlation-Id", "corr-1");
    if let Some(signature) = signed {
        request = request.header("X-Crossdock-Signature", signature);
    }
    request.body(body.to_owned()).send().await.unwrap()
}

async fn deliver_signed(sim: &WebhookSim, idempotency_key: &str, body: &str) -> u16 {
    let signed = signature(SECRET, now(), body.as_bytes());
    deliver(sim, "/hooks/stock", idempotency_key, body, Some(signed))
        .await
        .status()
        .as_u16()
}

async fn start(config: WebhookConfig) -> WebhookSim {
    WebhookSim::start(config)
        .await
        .expect("the simulator starts")
}

#[tokio::test]
async fn a_signed_delivery_is_recorded_and_applied() {
    let sim = start(WebhookConfig::default()).await;
    let body = availability("SKU-1", 7);
    assert_eq!(deliver_signed(&sim, "idem-1", &body).await, 200);
    let received = sim.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/hooks/stock");
    assert_eq!(received[0].idempotency_key.as_deref(), Some("idem-1"));
    assert_eq!(received[0].correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(
        received[0].body,
        serde_json::from_str::<Value>(&body).unwrap()
    );
    assert_eq!(sim.quantity("SKU-1"), Some(7));
    assert_eq!(sim.requests()[0].items, vec!["SKU-1"]);
}

#[tokio::test]
async fn bad_missing_or_stale_signatures_are_refused() {
    let sim = start(WebhookConfig::default()).await;
    let body = availability("SKU-1", 7);
    let wrong = signature(b"another secret", now(), body.as_bytes());
    let stale = signature(SECRET, now() - 3600, body.as_bytes());
    let other_body = signature(SECRET, now(), b"{}");
    for signed in [None, Some(wrong), Some(stale), Some(other_body)] {
        let response = deliver(&sim, "/x", "idem", &body, signed).await;
        assert_eq!(response.status().as_u16(), 401);
    }
    assert_eq!(sim.bad_signatures(), 4);
    assert!(sim.received().is_empty());
    assert_eq!(sim.quantity("SKU-1"), None);
}

#[tokio::test]
async fn a_repeated_idempotency_key_is_acknowledged_once() {
    let sim = start(WebhookConfig::default()).await;
    assert_eq!(
        deliver_signed(&sim, "idem-1", &availability("SKU-1", 7)).await,
        200
    );
    assert_eq!(
        deliver_signed(&sim, "idem-1", &availability("SKU-1", 7)).await,
        200
    );
    assert_eq!(sim.received().len(), 1);
    assert_eq!(sim.history("SKU-1"), vec![7]);
    assert_eq!(sim.stats().duplicates, 1);
}

#[tokio::test]
async fn a_permanent_key_is_unprocessable() {
    let sim = start(WebhookConfig::default()).await;
    sim.faults().permanent_items(["SKU-BAD"]);
    assert_eq!(
        deliver_signed(&sim, "idem-1", &availability("SKU-BAD", 1)).await,
        422
    );
    assert!(sim.received().is_empty());
    assert_eq!(sim.quantity("SKU-BAD"), None);
    // Refused, not seen: the same key may come again once the receiver accepts it.
    sim.faults().permanent_items(Vec::<String>::new());
    assert_eq!(
        deliver_signed(&sim, "idem-1", &availability("SKU-BAD", 1)).await,
        200
    );
    assert_eq!(sim.stats().duplicates, 0);
}

#[tokio::test]
async fn a_rate_limit_answers_429_with_retry_after() {
    let sim = start(WebhookConfig {
        rate_limit: Some(RateLimit::new(0.1, 1.0)),
        ..WebhookConfig::default()
    })
    .await;
    assert_eq!(
        deliver_signed(&sim, "a", &availability("SKU-1", 1)).await,
        200
    );
    let body = availability("SKU-1", 2);
    let signed = signature(SECRET, now(), body.as_bytes());
    let response = deliver(&sim, "/x", "b", &body, Some(signed)).await;
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(sim.quantity("SKU-1"), Some(1));
    assert_eq!(sim.stats().rate_limit_violations, 1);
}

#[tokio::test]
async fn calls_spaced_within_the_rate_limit_pass() {
    let sim = start(WebhookConfig {
        rate_limit: Some(RateLimit::new(10.0, 1.0)),
        ..WebhookConfig::default()
    })
    .await;
    for q in 0..5 {
        assert_eq!(
            deliver_signed(&sim, &format!("k{q}"), &availability("SKU-1", q)).await,
            200
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sim.stats().rate_limit_violations, 0);
}

#[tokio::test]
async fn fail_next_and_outage_apply_nothing() {
    let sim = start(WebhookConfig::default()).await;
    sim.faults().fail_next(1, 500);
    assert_eq!(
        deliver_signed(&sim, "a", &availability("SKU-1", 1)).await,
        500
    );
    sim.faults().outage(true);
    assert_eq!(
        deliver_signed(&sim, "a", &availability("SKU-1", 1)).await,
        503
    );
    assert!(sim.received().is_empty());
    sim.faults().outage(false);
    assert_eq!(
        deliver_signed(&sim, "a", &availability("SKU-1", 1)).await,
        200
    );
    assert_eq!(sim.received().len(), 1);
    assert_eq!(sim.stats().requests_faulted, 2);
}
