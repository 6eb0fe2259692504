use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossdock_adapters::webhook::{self, WebhookConfig, WebhookPublisher};
use crossdock_delivery::{Body, Message, MsgResult, RetryClass, Target};
use serde_json::json;

use crate::stub::{Reply, Stub, availability};

const SECRET: &[u8] = b"whsec_test";

fn publisher(base: &str) -> WebhookPublisher {
    WebhookPublisher::new(
        WebhookConfig {
            url: format!("{base}/hooks/crossdock"),
            timeout_ms: 2_000,
        },
        SECRET.to_vec(),
    )
    .unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn posts_signed_messages_one_at_a_time() {
    let stub = Stub::start(|_| {
        Arc::new(|req, _| {
            // The receiver's side: verify before accepting.
            let signature = req.header("x-crossdock-signature").unwrap_or_default();
            if webhook::verify(SECRET, signature, &req.body, now(), 300) {
                Reply::text(204, "")
            } else {
                Reply::text(401, "bad signature")
            }
        })
    })
    .await;
    let p = publisher(&stub.base);
    assert_eq!(p.max_batch(), 1);
    let outcome = p.send(&[availability("SKU-1", 7, Some(3), 42)]).await;
    assert_eq!(outcome.results, vec![MsgResult::Delivered]);

    let document = Message {
        key: "order-9".into(),
        ledger_seq: 43,
        body: Body::Document {
            json: r#"{"event":"order.allocated","lines":[{"item":"SKU-1","qty":2}]}"#.into(),
        },
        idempotency_key: "idem-43".into(),
        correlation_id: None,
    };
    assert_eq!(
        p.send(std::slice::from_ref(&document)).await.results,
        vec![MsgResult::Delivered]
    );

    let requests = stub.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/hooks/crossdock")
    );
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("idempotency-key"), Some("idem-SKU-1-42"));
    assert_eq!(first.header("x-correlation-id"), Some("corr-42"));
    assert_eq!(
        first.json(),
        json!({"type": "availability", "key": "SKU-1", "item": "SKU-1", "available": 7, "ledger_seq": 42})
    );
    let second = &requests[1];
    assert_eq!(second.header("x-correlation-id"), None);
    assert_eq!(
        second.json(),
        json!({"type": "document", "key": "order-9", "ledger_seq": 43,
               "document": {"event": "order.allocated", "lines": [{"item": "SKU-1", "qty": 2}]}})
    );
}

#[tokio::test]
async fn receiver_answers_are_classified() {
    let stub = Stub::start(|_| {
        Arc::new(|_, seen| match seen.len() {
            0 => Reply::text(503, "maintenance").with_header("retry-after", "30"),
            1 => Reply::text(422, "unknown item SKU-1"),
            _ => Reply::text(429, "slow down"),
        })
    })
    .await;
    let p = publisher(&stub.base);
    let m = [availability("SKU-1", 1, None, 1)];
    let down = p.send(&m).await;
    assert!(
        matches!(&down.results[0], MsgResult::Failed(f) if f.class == RetryClass::Retryable && f.status == Some(503) && f.detail == "maintenance")
    );
    assert_eq!(
        down.feedback.retry_after,
        Some(std::time::Duration::from_secs(30))
    );
    let refused = p.send(&m).await;
    assert!(
        matches!(&refused.results[0], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.status == Some(422) && f.detail.contains("unknown item"))
    );
    let limited = p.send(&m).await;
    assert!(
        matches!(&limited.results[0], MsgResult::Failed(f) if f.class == RetryClass::Retryable && f.status == Some(429))
    );
}
