//! Delivery end to end: the real binary publishing channel availability to the simulators over
//! loopback HTTP, through outages, refusals and restarts, and taking the channels' webhooks.

mod common;

use std::time::{Duration, Instant};

use common::shop::*;
use common::{ADMIN, EAST, Hub, QUERY, get, post};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minute_long_outage_loses_nothing_and_parks_nothing() {
    let sim = shopify_sim(1).await;
    let hub = start_hub("outage", &sim, 1, &[], &[]).await;
    let mut c = hub.client(EAST).await;
    let started = Instant::now();
    let mut n = 0u64;
    let mut outage_seen = false;
    // Steady traffic for 80 s; the channel is down from 10 s to 70 s.
    while started.elapsed() < Duration::from_secs(80) {
        let t = started.elapsed();
        sim.faults()
            .outage(t >= Duration::from_secs(10) && t < Duration::from_secs(70));
        if t > Duration::from_secs(40) && !outage_seen {
            let s = endpoint_status(&hub).await;
            assert_eq!(s["breaker"], "open", "mid-outage the breaker is open: {s}");
            assert!(
                s["depth"]["by_priority"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .sum::<u64>()
                    > 0
            );
            outage_seen = true;
        }
        n += 1;
        let item = format!("SKU-{}", n % ITEMS + 1);
        assert_eq!(receive(&mut c, &format!("o-{n}"), &item, 1).await, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.faults().outage(false);
    converged(&hub, &sim, Duration::from_secs(30)).await;
    let s = endpoint_status(&hub).await;
    assert!(s["breaker_opened"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["breaker"], "closed", "{s}");
    assert_eq!(s["dead_letters"], 0, "{s}");
    let stats = sim.stats();
    assert!(stats.requests_faulted > 0, "the outage was seen: {stats:?}");
    assert_eq!(stats.rate_limit_violations, 0, "{stats:?}");
    assert_histories_rise(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_item_is_parked_alone_and_retried_by_an_operator() {
    let sim = shopify_sim(1).await;
    sim.faults().permanent_items(["7"]);
    let hub = start_hub("refused", &sim, 1, &[], &[]).await;
    let mut c = hub.client(EAST).await;
    for i in 1..=ITEMS {
        assert_eq!(
            receive(&mut c, &format!("r-{i}"), &format!("SKU-{i}"), i as i64).await,
            200
        );
    }
    let mut admin = hub.client(ADMIN).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let letters = loop {
        let (_, v) = get(&mut admin, "/v1/dlq").await;
        let letters = v["dead_letters"].as_array().unwrap().clone();
        let others_done = (1..=ITEMS)
            .filter(|i| *i != 7)
            .all(|i| sim.quantity(&i.to_string()) == Some(i as i64));
        if !letters.is_empty() && others_done {
            break letters;
        }
        assert!(Instant::now() < deadline, "dlq {letters:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["key"], "SKU-7");
    assert_eq!(
        letters[0]["attempts"], 1,
        "a permanent refusal is not retried"
    );
    assert!(
        letters[0]["last_response"]
            .as_str()
            .unwrap()
            .contains("ITEM_NOT_STOCKED_AT_LOCATION")
            || letters[0]["last_response"]
                .as_str()
                .unwrap()
                .contains("INVALID_INVENTORY_ITEM"),
        "{}",
        letters[0]
    );
    assert_ne!(sim.quantity("7"), Some(7));
    let (_, x) = get(&mut admin, "/v1/exceptions?kind=delivery_failed").await;
    assert_eq!(x["exceptions"].as_array().unwrap().len(), 1, "{x}");
    assert_eq!(x["exceptions"][0]["entity"], "item:SKU-7");

    // Bad requests are refused with a clear problem and change nothing.
    let (status, p) = post(&mut admin, "/v1/dlq/retry", &json!({"note": "all of it"})).await;
    assert_eq!(
        (status, p["type"].as_str().unwrap()),
        (400, "urn:crossdock:problem:empty-selection")
    );
    let (status, p) = post(
        &mut admin,
        "/v1/dlq/retry",
        &json!({"endpoint": "shopify", "note": " "}),
    )
    .await;
    assert_eq!((status, p["field"].as_str().unwrap()), (400, "note"));
    let mut query = hub.client(QUERY).await;
    let (status, _) = post(
        &mut query,
        "/v1/dlq/retry",
        &json!({"endpoint": "shopify", "note": "x"}),
    )
    .await;
    assert_eq!(status, 403);

    // The listing is fixed on the channel; an operator retries the parked message.
    sim.faults().clear();
    let id = letters[0]["id"].as_i64().unwrap();
    let (status, v) = post(
        &mut admin,
        "/v1/dlq/retry",
        &json!({"ids": [id], "note": "listing created"}),
    )
    .await;
    assert_eq!((status, v["retried"].as_u64()), (200, Some(1)), "{v}");
    converged(&hub, &sim, Duration::from_secs(20)).await;
    let (_, audit) = get(&mut admin, "/v1/audit").await;
    assert_eq!(audit["audit"][0]["action"], "dlq.retry", "{audit}");
    assert_eq!(audit["audit"][0]["actor"], "admin");
    assert_eq!(audit["audit"][0]["note"], "listing created");
    let (_, x) = get(&mut admin, "/v1/exceptions?kind=delivery_failed").await;
    assert_eq!(x["exceptions"][0]["status"], "replayed", "{x}");
    assert_eq!(sim.stats().rate_limit_violations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_hub_resumes_delivery_without_loss_or_double_application() {
    let sim = shopify_sim(1).await;
    sim.faults().latency(Duration::from_millis(150));
    let mut hub = start_hub("restart", &sim, 1, &[], &[]).await;
    let mut c = hub.client(EAST).await;
    for round in 0..3 {
        for i in 1..=ITEMS {
            let id = format!("k-{round}-{i}");
            assert_eq!(receive(&mut c, &id, &format!("SKU-{i}"), 1).await, 200);
        }
        // Kill mid-delivery: calls are in flight, the backlog is pending.
        tokio::time::sleep(Duration::from_millis(400)).await;
        hub.kill();
        hub.restart().await;
        c = hub.client(EAST).await;
    }
    sim.faults().latency(Duration::ZERO);
    converged(&hub, &sim, Duration::from_secs(30)).await;
    assert_histories_rise(&sim);
    assert_eq!(sim.stats().rate_limit_violations, 0);
}

/// A real payload from `testdata/channels/<platform>/` (see its MANIFEST.tsv).
fn fixture(platform: &str, name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../testdata/channels/{platform}/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("{platform}/{name}: {e}"))
}

fn shopify_fixture(name: &str) -> Vec<u8> {
    fixture("shopify", name)
}

/// The bare resource a webhook carries (the fixtures wrap it as the REST API does).
fn unwrap(raw: &[u8], key: &str) -> Vec<u8> {
    let v: Value = serde_json::from_slice(raw).unwrap();
    serde_json::to_vec(&v[key]).unwrap()
}

fn sign(secret: &str, body: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn shopify_hook(
    hub: &Hub,
    topic: &str,
    id: &str,
    body: &[u8],
    signature: &str,
) -> (u16, Value) {
    let headers = [
        ("X-Shopify-Topic", topic),
        ("X-Shopify-Webhook-Id", id),
        ("X-Shopify-Hmac-Sha256", signature),
    ];
    webhook(hub, "shopify/shopify", &headers, body).await
}

/// A Shopify webhook signed with the endpoint's secret.
async fn shopify_signed(hub: &Hub, topic: &str, id: &str, body: &[u8]) -> (u16, Value) {
    shopify_hook(hub, topic, id, body, &sign("hook-secret", body)).await
}

/// Posts a channel webhook to `/v1/webhooks/{path}` with the platform's headers.
async fn webhook(hub: &Hub, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/v1/webhooks/{path}", hub.addr))
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().await.expect("webhook request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shopify_webhooks_become_allocations_releases_and_drift_repairs() {
    // The fixtures' shop: location 905684977, inventory item 808950810.
    let sim = shopify_sim(905684977).await;
    sim.insert_item(808950810, 0);
    let skus = ["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"];
    let hub = start_hub(
        "hooks",
        &sim,
        905684977,
        &skus,
        &[("IPOD2008GREEN", 808950810)],
    )
    .await;
    let mut c = hub.client(EAST).await;
    for (i, sku) in skus.iter().enumerate() {
        assert_eq!(receive(&mut c, &format!("h-{i}"), sku, 5).await, 200);
    }
    let order = unwrap(&shopify_fixture("pyapi_order.json"), "order");
    let mut admin = hub.client(ADMIN).await;
    let (_, before) = get(&mut admin, "/v1/exceptions").await;

    // A forged signature: 401 and nothing stored.
    let (status, p) = shopify_hook(
        &hub,
        "orders/create",
        "wh-1",
        &order,
        &sign("wrong", &order),
    )
    .await;
    assert_eq!(
        (status, p["type"].as_str()),
        (401, Some("urn:crossdock:problem:bad-signature"))
    );
    assert_eq!(
        common::positions(&mut admin, "IPOD2008GREEN").await[0].3,
        0,
        "nothing allocated"
    );
    let (_, after) = get(&mut admin, "/v1/exceptions").await;
    assert_eq!(
        before["exceptions"], after["exceptions"],
        "nothing recorded"
    );

    // The real order: each line allocated on the channel.
    let (status, v) = shopify_signed(&hub, "orders/create", "wh-1", &order).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("allocated")),
        "{v}"
    );
    for sku in skus {
        let p = common::positions(&mut admin, sku).await;
        assert_eq!(
            (p[0].1, p[0].3, p[0].4),
            (5, 1, 4),
            "{sku}: on hand, allocated, available"
        );
    }
    // Redelivered: the first answer again, applied once.
    let (status, v) = shopify_signed(&hub, "orders/create", "wh-1", &order).await;
    assert_eq!((status, v["duplicate"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(common::positions(&mut admin, "IPOD2008RED").await[0].3, 1);

    // A refund with the old `restock` flag: the goods come back through the warehouse's
    // return receipt, so nothing changes now.
    let refund = unwrap(&shopify_fixture("pyapi_refund.json"), "refund");
    let (status, v) = shopify_signed(&hub, "refunds/create", "wh-r1", &refund).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("ignored")),
        "{v}"
    );
    assert_eq!(common::positions(&mut admin, "IPOD2008BLACK").await[0].3, 1);
    // Two of the three units cancelled before shipping: a person releases them.
    let mut partial: Value = serde_json::from_slice(&refund).unwrap();
    for line in partial["refund_line_items"].as_array_mut().unwrap() {
        line["restock_type"] = json!("cancel");
    }
    partial["id"] = json!(1);
    let partial = serde_json::to_vec(&partial).unwrap();
    let (status, v) = shopify_signed(&hub, "refunds/create", "wh-r2", &partial).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("held_for_review")),
        "{v}"
    );
    assert!(v["exception_id"].is_string(), "{v}");

    // Cancelled: the allocation goes back.
    let (status, v) = shopify_signed(&hub, "orders/cancelled", "wh-2", &order).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("released")),
        "{v}"
    );
    assert_eq!(common::positions(&mut admin, "IPOD2008BLACK").await[0].3, 0);

    // Somebody sets the level by hand in Shopify: drift, raised and repaired.
    let level = unwrap(
        &shopify_fixture("pyapi_inventory_level.json"),
        "inventory_level",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.quantity("808950810") != Some(5) {
        assert!(
            Instant::now() < deadline,
            "initial publication of IPOD2008GREEN"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.set_quantity("808950810", 6);
    let (status, v) = shopify_signed(&hub, "inventory_levels/update", "wh-3", &level).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("drift")), "{v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.quantity("808950810") != Some(5) {
        assert!(
            Instant::now() < deadline,
            "resync of IPOD2008GREEN: {:?}",
            sim.quantity("808950810")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, x) = get(&mut admin, "/v1/exceptions?kind=inventory_mismatch").await;
    let drift: Vec<&Value> = x["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entity"] == "item:IPOD2008GREEN")
        .collect();
    assert_eq!(drift.len(), 1, "{x}");

    // An unknown SKU: 422 and an exception keeping the raw webhook.
    let mut odd: Value = serde_json::from_slice(&order).unwrap();
    odd["id"] = json!(1);
    odd["line_items"][0]["sku"] = json!("NOT-AN-ITEM");
    odd["line_items"][0]["variant_id"] = json!(999_999);
    let odd = serde_json::to_vec(&odd).unwrap();
    let (status, p) = shopify_signed(&hub, "orders/create", "wh-4", &odd).await;
    assert_eq!(
        (status, p["type"].as_str()),
        (422, Some("urn:crossdock:problem:unknown-item")),
        "{p}"
    );
    let (_, x) = get(&mut admin, "/v1/exceptions?kind=unknown_item").await;
    assert!(
        x["exceptions"][0]["raw"]
            .as_str()
            .unwrap()
            .contains("NOT-AN-ITEM"),
        "{x}"
    );
    assert_eq!(sim.stats().rate_limit_violations, 0);
}

/// The ledger sequences of the feed documents received for `key`, in arrival order.
fn feed_seqs(sim: &crossdock_sim::WebhookSim, key: &str) -> Vec<u64> {
    sim.received()
        .iter()
        .filter(|d| d.body["key"] == key)
        .map(|d| d.body["ledger_seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_feed_keeps_order_per_item_and_a_parked_item_holds_only_itself() {
    let sim = crossdock_sim::WebhookSim::start(crossdock_sim::WebhookConfig::default())
        .await
        .expect("start the webhook receiver");
    sim.faults().permanent_items(["SKU-2"]);
    let feed = format!(
        r#"
[[endpoints]]
name = "erp-feed"
kind = "webhook"
events = ["inventory.*"]
secrets_env = {{ signing_secret = "FEED_SECRET" }}
[endpoints.webhook]
url = "{}/crossdock/events"
"#,
        sim.url()
    );
    let mut hub = Hub::start_full(
        "feed",
        &common::config(&feed),
        &[],
        &[],
        &[("FEED_SECRET", "whsec_simulator")],
    )
    .await;
    let mut c = hub.client(EAST).await;
    for round in 0..5 {
        for item in ["SKU-1", "SKU-2", "SKU-3"] {
            assert_eq!(
                receive(&mut c, &format!("f-{round}-{item}"), item, 1).await,
                200
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while feed_seqs(&sim, "SKU-1").len() < 5 || feed_seqs(&sim, "SKU-3").len() < 5 {
        assert!(
            Instant::now() < deadline,
            "feed for SKU-1 and SKU-3: {:?}",
            sim.received().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for key in ["SKU-1", "SKU-3"] {
        let seqs = feed_seqs(&sim, key);
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{key} out of order: {seqs:?}"
        );
    }
    assert!(
        feed_seqs(&sim, "SKU-2").is_empty(),
        "the refused item's documents are not delivered"
    );
    let received = sim.received();
    assert_eq!(
        received[0].body["document"]["type"], "inventory.received.v1",
        "{}",
        received[0].body
    );
    assert!(
        received
            .iter()
            .all(|d| d.idempotency_key.is_some() && d.correlation_id.is_some())
    );
    assert_eq!(sim.stats().auth_failures, 0, "every delivery was signed");

    // One SKU-2 document is parked; the four after it wait behind it, also across a restart.
    let mut admin = hub.client(ADMIN).await;
    let (_, v) = get(&mut admin, "/v1/dlq?endpoint=erp-feed").await;
    let letters = v["dead_letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1, "{v}");
    assert_eq!(
        (letters[0]["key"].as_str(), letters[0]["kind"].as_str()),
        (Some("SKU-2"), Some("ordered"))
    );
    hub.kill();
    hub.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        feed_seqs(&sim, "SKU-2").is_empty(),
        "still held after a restart"
    );

    // The receiver is fixed; the operator retries the parked document: all five arrive in order.
    sim.faults().clear();
    let mut admin = hub.client(ADMIN).await;
    let (status, v) = post(
        &mut admin,
        "/v1/dlq/retry",
        &json!({"endpoint": "erp-feed", "note": "receiver fixed"}),
    )
    .await;
    assert_eq!((status, v["retried"].as_u64()), (200, Some(1)), "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while feed_seqs(&sim, "SKU-2").len() < 5 {
        assert!(
            Instant::now() < deadline,
            "SKU-2 feed: {:?}",
            feed_seqs(&sim, "SKU-2")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seqs = feed_seqs(&sim, "SKU-2");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "SKU-2 out of order: {seqs:?}"
    );
    assert_eq!(sim.stats().duplicates, 0, "{:?}", sim.stats());
    assert_eq!(sim.stats().rate_limit_violations, 0);
}

async fn woo_hook(hub: &Hub, topic: &str, id: &str, body: &[u8], signature: &str) -> (u16, Value) {
    let headers = [
        ("X-WC-Webhook-Topic", topic),
        ("X-WC-Webhook-Delivery-ID", id),
        ("X-WC-Webhook-Signature", signature),
    ];
    webhook(hub, "woocommerce/b2b", &headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn woocommerce_order_webhooks_allocate_and_cancel() {
    let sim = crossdock_sim::WooSim::start(crossdock_sim::WooConfig::default())
        .await
        .expect("start the WooCommerce simulator");
    sim.insert_product(93, 0);
    sim.insert_variation(22, 23, 0);
    let endpoint = format!(
        r#"
[[endpoints]]
channel = "b2b"
kind = "woocommerce"
crosswalk = "woo-items.csv"
secrets_env = {{ consumer_key = "WOO_KEY", consumer_secret = "WOO_SECRET", webhook_secret = "WOO_HOOK" }}
[endpoints.woocommerce]
url = "{}"
"#,
        sim.url()
    );
    // The fixture's lines: product 93 with no SKU (found by the crosswalk), and SKU "Bar3"
    // (variation 22/23).
    let hub = Hub::start_full(
        "woo-hooks",
        &common::config(&endpoint),
        &["WOO-93", "Bar3"],
        &[(
            "woo-items.csv",
            "item,external_id\nWOO-93,93\nBar3,22/23\n".into(),
        )],
        &[
            ("WOO_KEY", "ck_simulator"),
            ("WOO_SECRET", "cs_simulator"),
            ("WOO_HOOK", "woo-secret"),
        ],
    )
    .await;
    let mut c = hub.client(EAST).await;
    assert_eq!(receive(&mut c, "w-1", "WOO-93", 10).await, 200);
    assert_eq!(receive(&mut c, "w-2", "Bar3", 10).await, 200);
    let order = fixture("woocommerce", "orders__create_an_order__response.json");

    let (status, _) = woo_hook(
        &hub,
        "order.created",
        "d-1",
        &order,
        &sign("not-it", &order),
    )
    .await;
    assert_eq!(status, 401);
    let (status, v) = woo_hook(
        &hub,
        "order.created",
        "d-1",
        &order,
        &sign("woo-secret", &order),
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("allocated")),
        "{v}"
    );
    let mut admin = hub.client(ADMIN).await;
    assert_eq!(
        common::positions(&mut admin, "WOO-93").await[0].3,
        2,
        "two of product 93"
    );
    assert_eq!(common::positions(&mut admin, "Bar3").await[0].3, 1);

    // The shop publishes what is left: b2b shows 90% of DC-EAST's available, rounded down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.quantity("93") != Some(7) || sim.quantity("22/23") != Some(8) {
        assert!(
            Instant::now() < deadline,
            "woo shows 93={:?} 22/23={:?}",
            sim.quantity("93"),
            sim.quantity("22/23")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The same order updated to cancelled: the allocation goes back.
    let mut cancelled: Value = serde_json::from_slice(&order).unwrap();
    cancelled["status"] = json!("cancelled");
    let cancelled = serde_json::to_vec(&cancelled).unwrap();
    let (status, v) = woo_hook(
        &hub,
        "order.updated",
        "d-2",
        &cancelled,
        &sign("woo-secret", &cancelled),
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("released")),
        "{v}"
    );
    assert_eq!(common::positions(&mut admin, "WOO-93").await[0].3, 0);
    assert_eq!(sim.stats().rate_limit_violations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hand_edit_in_the_shop_is_caught_by_compare_and_set_and_repaired() {
    let sim = shopify_sim(1).await;
    let hub = start_hub("cas", &sim, 1, &[], &[]).await;
    let mut c = hub.client(EAST).await;
    assert_eq!(receive(&mut c, "cas-1", "SKU-5", 4).await, 200);
    converged(&hub, &sim, Duration::from_secs(10)).await;
    // Someone sets SKU-5 to 40 in the Shopify admin; Crossdock does not know.
    sim.set_quantity("5", 40);
    assert_eq!(receive(&mut c, "cas-2", "SKU-5", 1).await, 200);
    converged(&hub, &sim, Duration::from_secs(10)).await;
    assert_eq!(
        sim.quantity("5"),
        Some(5),
        "Crossdock's value, not the hand edit"
    );
    let mut admin = hub.client(ADMIN).await;
    // The lane's recorder writes the record after the repair went out: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let x = loop {
        let (_, x) = get(&mut admin, "/v1/exceptions?kind=inventory_mismatch").await;
        if !x["exceptions"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break x;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let list = x["exceptions"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{x}");
    assert_eq!(list[0]["entity"], "item:SKU-5");
    let reason = list[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("showed 40") && reason.contains("last sent 4"),
        "{reason}"
    );
    let s = endpoint_status(&hub).await;
    assert_eq!(s["stats"]["mismatches"], 1, "{s}");
    assert_eq!(s["dead_letters"], 0, "{s}");
    assert_eq!(sim.stats().rate_limit_violations, 0);
}
