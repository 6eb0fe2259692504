use std::sync::Arc;

use crossdock_adapters::Crosswalk;
use crossdock_adapters::woocommerce::{WooConfig, WooPublisher};
use crossdock_delivery::{MsgResult, RetryClass, Target};
use serde_json::json;

use crate::stub::{Reply, Stub, availability};

fn publisher(base: &str) -> WooPublisher {
    let walk = Crosswalk::from_pairs([
        ("SIMPLE-1", "93"),
        ("SIMPLE-2", "94"),
        ("SHIRT-S", "22/23"),
        ("SHIRT-M", "22/24"),
        ("MUG-RED", "40/41"),
    ])
    .unwrap();
    WooPublisher::new(
        WooConfig {
            url: format!("{base}/"),
            timeout_ms: 2_000,
        },
        "ck_test".into(),
        "cs_test".into(),
        walk,
    )
    .unwrap()
}

#[tokio::test]
async fn products_and_each_parents_variations_go_in_their_own_batch_call() {
    let stub = Stub::start(|_| {
        Arc::new(|req, _| {
            let body = req.json();
            let update: Vec<serde_json::Value> = body["update"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| {
                    if u["id"] == 94 {
                        json!({"id": 94, "error": {"code": "woocommerce_rest_product_invalid_id",
                            "message": "Invalid ID.", "data": {"status": 400}}})
                    } else if u["id"] == 41 {
                        json!({"id": 41, "error": {"code": "woocommerce_rest_cannot_edit",
                            "message": "Database is locked.", "data": {"status": 503}}})
                    } else {
                        json!({"id": u["id"], "stock_quantity": u["stock_quantity"], "manage_stock": true})
                    }
                })
                .collect();
            Reply::json(200, json!({"update": update}))
        })
    })
    .await;
    let p = publisher(&stub.base);
    let batch = [
        availability("SIMPLE-1", 5, None, 1),
        availability("SHIRT-S", 1, None, 2),
        availability("SIMPLE-2", 2, None, 3),
        availability("MUG-RED", 9, None, 4),
        availability("SHIRT-M", 0, None, 5),
        availability("NOT-MAPPED", 1, None, 6),
    ];
    assert_eq!(p.estimated_cost(&batch), 3.0);
    let outcome = p.send(&batch).await;
    let r = &outcome.results;
    assert_eq!(r[0], MsgResult::Delivered);
    assert_eq!(r[1], MsgResult::Delivered);
    assert!(
        matches!(&r[2], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.status == Some(400) && f.detail.contains("invalid_id"))
    );
    assert!(
        matches!(&r[3], MsgResult::Failed(f) if f.class == RetryClass::Retryable && f.status == Some(503))
    );
    assert_eq!(r[4], MsgResult::Delivered);
    assert!(
        matches!(&r[5], MsgResult::Failed(f) if f.detail.contains("no crosswalk entry for item NOT-MAPPED"))
    );

    let requests = stub.requests();
    let calls: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("POST", "/wp-json/wc/v3/products/batch"),
            ("POST", "/wp-json/wc/v3/products/22/variations/batch"),
            ("POST", "/wp-json/wc/v3/products/40/variations/batch"),
        ]
    );
    // HTTP Basic with the consumer key and secret: base64("ck_test:cs_test").
    assert_eq!(
        requests[0].header("authorization"),
        Some("Basic Y2tfdGVzdDpjc190ZXN0")
    );
    assert_eq!(
        requests[0].json(),
        json!({"update": [
            {"id": 93, "stock_quantity": 5, "manage_stock": true},
            {"id": 94, "stock_quantity": 2, "manage_stock": true}]})
    );
    assert_eq!(
        requests[1].json(),
        json!({"update": [
            {"id": 23, "stock_quantity": 1, "manage_stock": true},
            {"id": 24, "stock_quantity": 0, "manage_stock": true}]})
    );
    assert_eq!(
        requests[1].header("x-correlation-id"),
        Some("corr-2, corr-5")
    );
}

#[tokio::test]
async fn a_failed_call_fails_only_its_own_messages() {
    let stub = Stub::start(|_| {
        Arc::new(|req, _| {
            if req.path.contains("/variations/") {
                Reply::json(401, json!({"code": "woocommerce_rest_cannot_edit", "message": "Sorry, you are not allowed to edit this resource.", "data": {"status": 401}}))
            } else {
                Reply::json(200, json!({"update": [{"id": 93, "stock_quantity": 5}]}))
            }
        })
    })
    .await;
    let p = publisher(&stub.base);
    let outcome = p
        .send(&[
            availability("SIMPLE-1", 5, None, 1),
            availability("SHIRT-S", 1, None, 2),
        ])
        .await;
    assert_eq!(outcome.results[0], MsgResult::Delivered);
    assert!(
        matches!(&outcome.results[1], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.status == Some(401))
    );
}

#[tokio::test]
async fn reads_stock_of_products_and_variations() {
    let stub = Stub::start(|_| {
        Arc::new(|req, _| match req.path.as_str() {
            "/wp-json/wc/v3/products/93" => Reply::json(200, json!({"id": 93, "manage_stock": true, "stock_quantity": 12})),
            "/wp-json/wc/v3/products/22/variations/23" => Reply::json(200, json!({"id": 23, "manage_stock": true, "stock_quantity": 4})),
            _ => Reply::json(404, json!({"code": "woocommerce_rest_product_invalid_id", "message": "Invalid ID.", "data": {"status": 404}})),
        })
    })
    .await;
    let p = publisher(&stub.base);
    assert_eq!(p.read_current("SIMPLE-1").await, Some(Ok(12)));
    assert_eq!(p.read_current("SHIRT-S").await, Some(Ok(4)));
    let gone = p.read_current("SIMPLE-2").await.unwrap().unwrap_err();
    assert_eq!(
        (gone.class, gone.status),
        (RetryClass::Permanent, Some(404))
    );
    assert!(stub.requests().iter().all(|r| r.method == "GET"));
}
