use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossdock_adapters::Crosswalk;
use crossdock_adapters::amazon::{AmazonConfig, AmazonPublisher};
use crossdock_delivery::{Body, Message, MsgResult, RetryClass, Target};
use serde_json::json;

use crate::stub::{Recorded, Reply, Stub, availability};

fn publisher(base: &str, extra: serde_json::Value) -> AmazonPublisher {
    let mut config = json!({
        "endpoint": base,
        "lwa_url": format!("{base}/auth/o2/token"),
        "seller_id": "A1SELLER",
        "marketplace_id": "ATVPDKIKX0DER",
        "timeout_ms": 2000,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let config: AmazonConfig = serde_json::from_value(config).unwrap();
    let walk = Crosswalk::from_pairs([("ITEM-1", "SKU/1 X")]).unwrap();
    AmazonPublisher::new(
        config,
        "Atzr|refresh".into(),
        "amzn1.client".into(),
        "secret".into(),
        walk,
    )
    .unwrap()
}

/// LWA answers with a new token each time (`tok-1`, `tok-2`, ...).
fn lwa(seen: &[Recorded]) -> Reply {
    let n = seen.iter().filter(|r| r.path == "/auth/o2/token").count() + 1;
    Reply::json(
        200,
        json!({"access_token": format!("tok-{n}"), "token_type": "bearer", "expires_in": 3600}),
    )
}

fn accepted(sku: &str) -> Reply {
    Reply::json(
        200,
        json!({"sku": sku, "status": "ACCEPTED", "submissionId": "s-1", "issues": []}),
    )
    .with_header("x-amzn-RateLimit-Limit", "5.0")
}

#[tokio::test]
async fn patches_one_sku_with_a_cached_token() {
    let stub = Stub::start(|_| {
        Arc::new(|req, seen| match req.path.as_str() {
            "/auth/o2/token" => lwa(seen),
            _ => accepted("x"),
        })
    })
    .await;
    let p = publisher(&stub.base, json!({}));
    assert_eq!(p.batch_size(1), 1);
    let first = p.send(&[availability("ITEM-1", 12, None, 1)]).await;
    assert_eq!(first.results, vec![MsgResult::Delivered]);
    assert_eq!(first.feedback.rate, Some(5.0));
    let second = p.send(&[availability("ITEM-2", -3, None, 2)]).await;
    assert_eq!(second.results, vec![MsgResult::Delivered]);

    let requests = stub.requests();
    let calls: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("POST", "/auth/o2/token"),
            ("PATCH", "/listings/2021-08-01/items/A1SELLER/SKU%2F1%20X"),
            // No crosswalk entry: the item id is the SKU (sku_is_item).
            ("PATCH", "/listings/2021-08-01/items/A1SELLER/ITEM-2"),
        ]
    );
    let form = String::from_utf8(requests[0].body.clone()).unwrap();
    let mut fields: Vec<&str> = form.split('&').collect();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "client_id=amzn1.client",
            "client_secret=secret",
            "grant_type=refresh_token",
            "refresh_token=Atzr%7Crefresh"
        ]
    );
    let patch = &requests[1];
    assert_eq!(patch.query.as_deref(), Some("marketplaceIds=ATVPDKIKX0DER"));
    assert_eq!(patch.header("x-amz-access-token"), Some("tok-1"));
    assert_eq!(requests[2].header("x-amz-access-token"), Some("tok-1"));
    assert_eq!(
        patch.json(),
        json!({"productType": "PRODUCT", "patches": [{"op": "replace",
            "path": "/attributes/fulfillment_availability",
            "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 12}]}]})
    );
    // Amazon takes no negative quantity.
    assert_eq!(requests[2].json()["patches"][0]["value"][0]["quantity"], 0);
}

#[tokio::test]
async fn a_403_fetches_a_new_token_once() {
    let patches = Arc::new(AtomicUsize::new(0));
    let stub = Stub::start({
        let patches = patches.clone();
        move |_| {
            Arc::new(move |req, seen| match req.path.as_str() {
                "/auth/o2/token" => lwa(seen),
                _ => {
                    patches.fetch_add(1, Ordering::SeqCst);
                    // The first token is "expired"; a SKU called DENIED is always refused.
                    if req.header("x-amz-access-token") == Some("tok-1") || req.path.ends_with("DENIED") {
                        Reply::json(403, json!({"errors": [{"code": "Unauthorized",
                            "message": "The access token you provided has expired.", "details": ""}]}))
                    } else {
                        accepted("x")
                    }
                }
            })
        }
    })
    .await;
    let p = publisher(&stub.base, json!({}));
    assert_eq!(
        p.send(&[availability("A", 1, None, 1)]).await.results,
        vec![MsgResult::Delivered]
    );
    assert_eq!(patches.load(Ordering::SeqCst), 2);
    let denied = p.send(&[availability("DENIED", 1, None, 2)]).await;
    assert!(
        matches!(&denied.results[0], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.status == Some(403))
    );
    assert_eq!(
        patches.load(Ordering::SeqCst),
        4,
        "one retry with a fresh token, no more"
    );
    let tokens = stub
        .requests()
        .iter()
        .filter(|r| r.path == "/auth/o2/token")
        .count();
    assert_eq!(tokens, 3);
}

#[tokio::test]
async fn lwa_refusal_is_permanent_and_throttling_is_retryable() {
    let stub = Stub::start(|_| {
        Arc::new(|req, _| match req.path.as_str() {
            "/auth/o2/token" => Reply::json(
                400,
                json!({"error": "invalid_grant",
                "error_description": "The request has an invalid grant parameter : refresh_token"}),
            ),
            _ => accepted("x"),
        })
    })
    .await;
    let p = publisher(&stub.base, json!({}));
    let outcome = p.send(&[availability("A", 1, None, 1)]).await;
    assert!(
        matches!(&outcome.results[0], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.detail.contains("invalid_grant"))
    );
    assert!(stub.requests().iter().all(|r| r.path == "/auth/o2/token"));

    let stub = Stub::start(|_| {
        Arc::new(|req, seen| match req.path.as_str() {
            "/auth/o2/token" => lwa(seen),
            _ => Reply::json(429, json!({"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource."}]}))
                .with_header("x-amzn-RateLimit-Limit", "0.5")
                .with_header("retry-after", "2"),
        })
    })
    .await;
    let p = publisher(&stub.base, json!({}));
    let outcome = p.send(&[availability("A", 1, None, 1)]).await;
    assert!(
        matches!(&outcome.results[0], MsgResult::Failed(f) if f.class == RetryClass::Retryable && f.status == Some(429))
    );
    assert_eq!(outcome.feedback.rate, Some(0.5));
    assert_eq!(
        outcome.feedback.retry_after,
        Some(std::time::Duration::from_secs(2))
    );
}

#[tokio::test]
async fn reads_the_listing_quantity() {
    let stub = Stub::start(|_| {
        Arc::new(|req, seen| match req.path.as_str() {
            "/auth/o2/token" => lwa(seen),
            _ => Reply::json(200, json!({"sku": "SKU/1 X", "fulfillmentAvailability": [
                {"fulfillmentChannelCode": "AMAZON_NA"}, {"fulfillmentChannelCode": "DEFAULT", "quantity": 31}]})),
        })
    })
    .await;
    let p = publisher(&stub.base, json!({}));
    assert_eq!(p.read_current("ITEM-1").await, Some(Ok(31)));
    let get = stub
        .requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .unwrap();
    assert_eq!(get.path, "/listings/2021-08-01/items/A1SELLER/SKU%2F1%20X");
    assert_eq!(
        get.query.as_deref(),
        Some("marketplaceIds=ATVPDKIKX0DER&includedData=fulfillmentAvailability")
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn a_large_backlog_goes_as_one_listings_feed() {
    let stub = Stub::start(|base| {
        Arc::new(move |req, seen| match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/auth/o2/token") => lwa(seen),
            ("POST", "/feeds/2021-06-30/documents") => Reply::json(201, json!({
                "feedDocumentId": "doc-1", "url": format!("{base}/upload/doc-1")})),
            ("PUT", "/upload/doc-1") => Reply::text(200, ""),
            ("POST", "/feeds/2021-06-30/feeds") => Reply::json(202, json!({"feedId": "F1"})),
            ("GET", "/feeds/2021-06-30/feeds/F1") => {
                let polls = seen.iter().filter(|r| r.path == "/feeds/2021-06-30/feeds/F1").count();
                if polls < 2 {
                    Reply::json(200, json!({"feedId": "F1", "feedType": "JSON_LISTINGS_FEED",
                        "createdTime": "2025-01-01T00:00:00Z", "processingStatus": "IN_PROGRESS"}))
                } else {
                    Reply::json(200, json!({"feedId": "F1", "feedType": "JSON_LISTINGS_FEED",
                        "createdTime": "2025-01-01T00:00:00Z", "processingStatus": "DONE",
                        "resultFeedDocumentId": "res-1"}))
                }
            }
            ("GET", "/feeds/2021-06-30/documents/res-1") => Reply::json(200, json!({
                "feedDocumentId": "res-1", "url": format!("{base}/download/res-1"), "compressionAlgorithm": "GZIP"})),
            ("GET", "/download/res-1") => {
                // Refuse the message whose SKU is BAD, as Amazon's report would.
                let upload = seen.iter().find(|r| r.path == "/upload/doc-1").unwrap().json();
                let bad = upload["messages"].as_array().unwrap().iter()
                    .find(|m| m["sku"] == "BAD").unwrap()["messageId"].clone();
                let report = json!({
                    "header": {"sellerId": "A1SELLER", "version": "2.0", "feedId": "F1"},
                    "issues": [
                        {"messageId": bad, "sku": "BAD", "code": "8541", "severity": "ERROR", "message": "SKU mismatch"},
                        {"messageId": 1, "sku": "SKU/1 X", "code": "18448", "severity": "WARNING", "message": "incomplete"}
                    ],
                    "summary": {"errors": 1, "warnings": 1, "messagesProcessed": 4, "messagesAccepted": 3, "messagesInvalid": 1}
                });
                Reply { status: 200, headers: vec![], body: gzip(report.to_string().as_bytes()) }
            }
            _ => Reply::text(404, "not found"),
        })
    })
    .await;
    let p = publisher(
        &stub.base,
        json!({"feed_threshold": 3, "feed_poll_ms": 10, "feed_timeout_s": 10}),
    );
    assert_eq!(p.batch_size(2), 1);
    assert_eq!(p.batch_size(5), 5);
    let document = Message {
        key: "doc".into(),
        ledger_seq: 9,
        body: Body::Document { json: "{}".into() },
        idempotency_key: "d".into(),
        correlation_id: None,
    };
    let batch = [
        availability("ITEM-1", 4, None, 1),
        availability("ITEM-2", 0, Some(3), 2),
        document,
        availability("BAD", 1, None, 4),
        availability("ITEM-5", 8, None, 5),
    ];
    assert_eq!(p.estimated_cost(&batch), 0.0);
    let outcome = p.send(&batch).await;
    let r = &outcome.results;
    assert_eq!(r[0], MsgResult::Delivered, "a warning is not a failure");
    assert_eq!(r[1], MsgResult::Delivered);
    assert!(
        matches!(&r[2], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.detail.contains("document"))
    );
    assert!(
        matches!(&r[3], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.detail.contains("8541"))
    );
    assert_eq!(r[4], MsgResult::Delivered);
    assert_eq!(
        outcome.feedback,
        Default::default(),
        "feed limits are not the lane's"
    );

    let requests = stub.requests();
    let upload = requests.iter().find(|r| r.path == "/upload/doc-1").unwrap();
    assert_eq!(
        upload.header("x-amz-access-token"),
        None,
        "the presigned URL needs no token"
    );
    assert_eq!(
        upload.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    let feed = upload.json();
    assert_eq!(
        feed["header"],
        json!({"sellerId": "A1SELLER", "version": "2.0", "issueLocale": "en_US"})
    );
    let ids: Vec<(u64, &str, i64)> = feed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["messageId"].as_u64().unwrap(),
                m["sku"].as_str().unwrap(),
                m["patches"][0]["value"][0]["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            (1, "SKU/1 X", 4),
            (2, "ITEM-2", 0),
            (4, "BAD", 1),
            (5, "ITEM-5", 8)
        ]
    );
    let create = requests
        .iter()
        .find(|r| r.path == "/feeds/2021-06-30/feeds")
        .unwrap();
    assert_eq!(
        create.json(),
        json!({"feedType": "JSON_LISTINGS_FEED", "marketplaceIds": ["ATVPDKIKX0DER"], "inputFeedDocumentId": "doc-1"})
    );
    let polls = requests
        .iter()
        .filter(|r| r.path == "/feeds/2021-06-30/feeds/F1")
        .count();
    assert_eq!(polls, 3);
}

#[tokio::test]
async fn a_feed_that_never_finishes_is_retryable() {
    let stub = Stub::start(|base| {
        Arc::new(
            move |req, seen| match (req.method.as_str(), req.path.as_str()) {
                ("POST", "/auth/o2/token") => lwa(seen),
                ("POST", "/feeds/2021-06-30/documents") => Reply::json(
                    201,
                    json!({
                "feedDocumentId": "doc-1", "url": format!("{base}/upload/doc-1")}),
                ),
                ("PUT", _) => Reply::text(200, ""),
                ("POST", "/feeds/2021-06-30/feeds") => Reply::json(202, json!({"feedId": "F2"})),
                _ => Reply::json(200, json!({"feedId": "F2", "processingStatus": "IN_QUEUE"})),
            },
        )
    })
    .await;
    let p = publisher(
        &stub.base,
        json!({"feed_threshold": 2, "feed_poll_ms": 200, "feed_timeout_s": 1}),
    );
    let started = std::time::Instant::now();
    let outcome = p
        .send(&[availability("A", 1, None, 1), availability("B", 2, None, 2)])
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(outcome.results.iter().all(
        |r| matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Retryable && f.detail.contains("did not finish"))
    ));
}
