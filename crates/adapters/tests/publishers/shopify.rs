use std::sync::Arc;

use crossdock_adapters::Crosswalk;
use crossdock_adapters::shopify::{ShopifyConfig, ShopifyPublisher};
use crossdock_delivery::{MsgResult, RetryClass, Target};
use serde_json::json;

use crate::stub::{Reply, Stub, availability, dead_base};

fn publisher(base: &str) -> ShopifyPublisher {
    let walk = Crosswalk::from_pairs([
        ("SKU-A", "1001"),
        ("SKU-B", "gid://shopify/InventoryItem/1002"),
        ("SKU-C", "1003"),
    ])
    .unwrap();
    ShopifyPublisher::new(
        ShopifyConfig {
            shop_url: base.into(),
            api_version: "2026-01".into(),
            location_id: "905684977".into(),
            timeout_ms: 2_000,
            mutation_cost: 10.0,
        },
        "shpat_test".into(),
        walk,
    )
    .unwrap()
}

fn cost(available: f64) -> serde_json::Value {
    json!({"cost": {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": available, "restoreRate": 100.0}}})
}

#[tokio::test]
async fn one_mutation_per_batch_with_compare_and_set_and_a_stable_key() {
    let stub = Stub::start(|_| {
        Arc::new(|_, seen| {
            if seen.is_empty() {
                // The first call: quantity 1 (SKU-B) is stale.
                Reply::json(
                    200,
                    json!({"data": {"inventorySetQuantities": {"inventoryAdjustmentGroup": null,
                        "userErrors": [{"field": ["input", "quantities", "1", "changeFromQuantity"],
                            "message": "The quantity has changed.", "code": "CHANGE_FROM_QUANTITY_STALE"}]}},
                        "extensions": cost(1990.0)}),
                )
            } else {
                Reply::json(
                    200,
                    json!({"data": {"inventorySetQuantities": {"inventoryAdjustmentGroup": {"reason": "correction"},
                        "userErrors": []}}, "extensions": cost(1980.0)}),
                )
            }
        })
    })
    .await;
    let p = publisher(&stub.base);
    let batch = [
        availability("SKU-A", 5, None, 10),
        availability("SKU-B", 3, Some(4), 11),
        availability("SKU-UNKNOWN", 1, None, 12),
        availability("SKU-C", 0, Some(2), 13),
    ];
    assert_eq!(p.estimated_cost(&batch), 10.0);
    let outcome = p.send(&batch).await;
    assert_eq!(outcome.results[0], MsgResult::Requeue);
    assert_eq!(outcome.results[1], MsgResult::Mismatch { found: None });
    let MsgResult::Failed(f) = &outcome.results[2] else {
        panic!("expected failure: {:?}", outcome.results[2]);
    };
    assert_eq!(f.class, RetryClass::Permanent);
    assert!(
        f.detail
            .starts_with("no crosswalk entry for item SKU-UNKNOWN on channel shopify:127.0.0.1:"),
        "{}",
        f.detail
    );
    assert_eq!(outcome.results[3], MsgResult::Requeue);
    assert_eq!(outcome.feedback.available, Some(1990.0));
    assert_eq!(outcome.feedback.cost, Some(10.0));

    let requests = stub.requests();
    assert_eq!(requests.len(), 1, "one call for the whole batch");
    let req = &requests[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/admin/api/2026-01/graphql.json")
    );
    assert_eq!(req.header("x-shopify-access-token"), Some("shpat_test"));
    assert_eq!(
        req.header("x-correlation-id"),
        Some("corr-10, corr-11, corr-13"),
        "every document the call carries"
    );
    let body = req.json();
    let query = body["query"].as_str().unwrap();
    assert!(
        query.contains("inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey)")
    );
    let input = &body["variables"]["input"];
    assert_eq!(input["name"], "available");
    assert_eq!(input["reason"], "correction");
    assert_eq!(input["referenceDocumentUri"], "crossdock://ledger/13");
    assert_eq!(
        input["quantities"],
        json!([
            {"inventoryItemId": "gid://shopify/InventoryItem/1001", "locationId": "gid://shopify/Location/905684977",
             "quantity": 5, "changeFromQuantity": null},
            {"inventoryItemId": "gid://shopify/InventoryItem/1002", "locationId": "gid://shopify/Location/905684977",
             "quantity": 3, "changeFromQuantity": 4},
            {"inventoryItemId": "gid://shopify/InventoryItem/1003", "locationId": "gid://shopify/Location/905684977",
             "quantity": 0, "changeFromQuantity": 2},
        ])
    );
    let key = body["variables"]["idempotencyKey"]
        .as_str()
        .unwrap()
        .to_owned();

    // The same batch again carries the same key; the answer now delivers everything mapped.
    let outcome = p.send(&batch).await;
    assert_eq!(outcome.results[0], MsgResult::Delivered);
    assert_eq!(outcome.results[1], MsgResult::Delivered);
    assert!(matches!(outcome.results[2], MsgResult::Failed(_)));
    assert_eq!(outcome.results[3], MsgResult::Delivered);
    let again = stub.requests()[1].json();
    assert_eq!(again["variables"]["idempotencyKey"], key.as_str());
}

#[tokio::test]
async fn throttling_and_statuses_reach_every_message() {
    let stub = Stub::start(|_| {
        Arc::new(|_, seen| match seen.len() {
            0 => Reply::json(
                200,
                json!({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                       "extensions": cost(2.0)}),
            )
            .with_header("retry-after", "2"),
            1 => Reply::text(
                401,
                "[API] Invalid API key or access token (unrecognized login or wrong password)",
            ),
            _ => Reply::text(502, "bad gateway"),
        })
    })
    .await;
    let p = publisher(&stub.base);
    let batch = [
        availability("SKU-A", 1, None, 1),
        availability("SKU-B", 2, None, 2),
    ];

    let throttled = p.send(&batch).await;
    assert!(throttled.results.iter().all(
        |r| matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Retryable && f.status == Some(429))
    ));
    assert_eq!(
        throttled.feedback.retry_after,
        Some(std::time::Duration::from_secs(2))
    );
    assert_eq!(throttled.feedback.available, Some(2.0));

    let unauthorized = p.send(&batch).await;
    assert!(unauthorized.results.iter().all(
        |r| matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.status == Some(401) && f.detail.contains("Invalid API key"))
    ));
    let gateway = p.send(&batch).await;
    assert!(gateway.results.iter().all(
        |r| matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Retryable && f.status == Some(502))
    ));
}

#[tokio::test]
async fn reads_the_current_level() {
    let stub = Stub::start(|_| {
        Arc::new(|_, _| {
            Reply::json(
                200,
                json!({"data": {"inventoryItem": {"inventoryLevel": {"quantities": [{"name": "available", "quantity": 7}]}}},
                       "extensions": cost(1999.0)}),
            )
        })
    })
    .await;
    let p = publisher(&stub.base);
    assert_eq!(p.read_current("SKU-B").await, Some(Ok(7)));
    let req = &stub.requests()[0];
    let body = req.json();
    assert!(
        body["query"]
            .as_str()
            .unwrap()
            .contains("inventoryLevel(locationId: $locationId)")
    );
    assert_eq!(
        body["variables"],
        json!({"inventoryItemId": "gid://shopify/InventoryItem/1002", "locationId": "gid://shopify/Location/905684977"})
    );
    let missing = p.read_current("SKU-NONE").await.unwrap().unwrap_err();
    assert_eq!(missing.class, RetryClass::Permanent);
    assert_eq!(
        stub.requests().len(),
        1,
        "an unmapped item is not asked for"
    );
}

#[tokio::test]
async fn an_unreachable_shop_is_retryable() {
    let p = publisher(&dead_base().await);
    let outcome = p.send(&[availability("SKU-A", 1, None, 1)]).await;
    assert!(
        matches!(&outcome.results[0], MsgResult::Failed(f) if f.class == RetryClass::Retryable && f.status.is_none())
    );
}

#[tokio::test]
async fn items_sharing_a_shopify_id_send_only_the_last_value() {
    let stub = Stub::start(|_| {
        Arc::new(|_, _| {
            Reply::json(
                200,
                json!({"data": {"inventorySetQuantities": {"userErrors": []}}, "extensions": cost(1000.0)}),
            )
        })
    })
    .await;
    // Three items mapped (by mistake) onto one inventory item, in both id forms.
    let walk = Crosswalk::from_pairs([
        ("X1", "77"),
        ("X2", "gid://shopify/InventoryItem/77"),
        ("X3", " 77"),
    ])
    .unwrap();
    let p = ShopifyPublisher::new(
        ShopifyConfig {
            shop_url: stub.base.clone(),
            api_version: "2026-01".into(),
            location_id: "gid://shopify/Location/1".into(),
            timeout_ms: 2_000,
            mutation_cost: 10.0,
        },
        "tok".into(),
        walk,
    )
    .unwrap();
    let outcome = p
        .send(&[
            availability("X1", 1, None, 1),
            availability("X2", 2, None, 2),
            availability("X3", 3, None, 3),
        ])
        .await;
    assert_eq!(
        outcome.results,
        vec![MsgResult::Requeue, MsgResult::Requeue, MsgResult::Delivered]
    );
    let body = stub.requests()[0].json();
    let quantities = body["variables"]["input"]["quantities"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(quantities.len(), 1);
    assert_eq!(quantities[0]["quantity"], 3);
}
