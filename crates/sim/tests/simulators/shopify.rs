use std::time::{Duration, Instant};

use crossdock_sim::{ShopifyConfig, ShopifySim, ShopifyThrottle};
use serde_json::{Value, json};

use crate::client;

const TOKEN: &str = "shpat_simulator";
const SET: &str = "mutation Set($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { reason referenceDocumentUri }
    userErrors { field message code }
  }
}";
const READ: &str = "query Read($inventoryItemId: ID!, $locationId: ID!) {
  inventoryItem(id: $inventoryItemId) {
    inventoryLevel(locationId: $locationId) { quantities(names: [\"available\"]) { name quantity } }
  }
}";

fn quantity(item: u64, quantity: i64, change_from: Option<i64>) -> Value {
    json!({
        "inventoryItemId": format!("gid://shopify/InventoryItem/{item}"),
        "locationId": "gid://shopify/Location/1",
        "quantity": quantity,
        "changeFromQuantity": change_from,
    })
}

fn set_body(key: &str, quantities: Vec<Value>) -> Value {
    json!({
        "query": SET,
        "variables": {
            "input": {"name": "available", "reason": "correction", "quantities": quantities},
            "idempotencyKey": key,
        }
    })
}

async fn post(sim: &ShopifySim, body: &Value) -> (u16, Value) {
    post_with(&client(), sim, TOKEN, body)
        .await
        .expect("the call is answered")
}

async fn post_with(
    client: &reqwest::Client,
    sim: &ShopifySim,
    token: &str,
    body: &Value,
) -> reqwest::Result<(u16, Value)> {
    let response = client
        .post(sim.graphql_url("2026-01"))
        .header("X-Shopify-Access-Token", token)
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

async fn start(config: ShopifyConfig) -> ShopifySim {
    ShopifySim::start(config)
        .await
        .expect("the simulator starts")
}

#[tokio::test]
async fn a_set_applies_and_answers_like_shopify() {
    let sim = start(ShopifyConfig::default()).await;
    sim.insert_item(1, 4);
    let before = Instant::now();
    let (status, answer) = post(
        &sim,
        &set_body("k1", vec![quantity(1, 5, Some(4)), quantity(2, 3, None)]),
    )
    .await;
    assert_eq!(status, 200);
    let payload = &answer["data"]["inventorySetQuantities"];
    assert_eq!(payload["userErrors"], json!([]));
    let group = &payload["inventoryAdjustmentGroup"];
    assert_eq!(group["reason"], "correction");
    assert!(
        group["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let changes = group["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["name"], "available");
    assert_eq!(changes[0]["delta"], 1);
    assert_eq!(changes[0]["quantityAfterChange"], 5);
    assert_eq!(changes[0]["item"]["id"], "gid://shopify/InventoryItem/1");
    assert_eq!(changes[0]["location"]["id"], "gid://shopify/Location/1");
    // A new item starts at 0.
    assert_eq!(changes[1]["delta"], 3);

    let cost = &answer["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], 10.0);
    assert_eq!(cost["actualQueryCost"], 10.0);
    assert_eq!(cost["throttleStatus"]["maximumAvailable"], 1000.0);
    assert_eq!(cost["throttleStatus"]["restoreRate"], 100.0);
    assert_eq!(cost["throttleStatus"]["currentlyAvailable"], 990.0);

    assert_eq!(sim.quantity("1"), Some(5));
    assert_eq!(sim.quantity("gid://shopify/InventoryItem/2"), Some(3));
    assert_eq!(sim.history("1"), vec![5]);
    let stats = sim.stats();
    assert_eq!(stats.requests_received, 1);
    assert_eq!(stats.requests_accepted, 1);
    assert_eq!(stats.items_applied, 2);
    let log = sim.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].items,
        vec![
            "gid://shopify/InventoryItem/1".to_string(),
            "gid://shopify/InventoryItem/2".to_string()
        ]
    );
    assert!(log[0].received_at >= before);
    assert_eq!(log[0].status, Some(200));
}

#[tokio::test]
async fn reads_the_available_quantity() {
    let sim = start(ShopifyConfig::default()).await;
    sim.insert_item(7, 12);
    let read = |item: &str, location: &str| json!({"query": READ, "variables": {"inventoryItemId": item, "locationId": location}});
    let (status, answer) = post(
        &sim,
        &read("gid://shopify/InventoryItem/7", "gid://shopify/Location/1"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["data"]["inventoryItem"]["inventoryLevel"]["quantities"],
        json!([{"name": "available", "quantity": 12}])
    );
    assert_eq!(answer["extensions"]["cost"]["requestedQueryCost"], 2.0);
    let (_, unknown) = post(
        &sim,
        &read("gid://shopify/InventoryItem/8", "gid://shopify/Location/1"),
    )
    .await;
    assert_eq!(
        unknown["data"]["inventoryItem"]["inventoryLevel"],
        Value::Null
    );
    let (_, elsewhere) = post(
        &sim,
        &read("gid://shopify/InventoryItem/7", "gid://shopify/Location/9"),
    )
    .await;
    assert_eq!(
        elsewhere["data"]["inventoryItem"]["inventoryLevel"],
        Value::Null
    );
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_applies_nothing() {
    let sim = start(ShopifyConfig::default()).await;
    let (status, answer) = post_with(
        &client(),
        &sim,
        "shpat_wrong",
        &set_body("k", vec![quantity(1, 5, None)]),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    assert_eq!(
        answer,
        json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})
    );
    assert_eq!(sim.quantity("1"), None);
    assert_eq!(sim.stats().auth_failures, 1);
    assert_eq!(sim.stats().requests_accepted, 0);
}

#[tokio::test]
async fn a_stale_compare_quantity_applies_nothing() {
    let sim = start(ShopifyConfig::default()).await;
    sim.insert_item(1, 4);
    sim.insert_item(2, 10);
    // Someone edits item 2 by hand: Crossdock's compare value is now stale.
    sim.set_quantity("2", 8);
    let (status, answer) = post(
        &sim,
        &set_body("k", vec![quantity(1, 5, Some(4)), quantity(2, 9, Some(10))]),
    )
    .await;
    assert_eq!(status, 200);
    let payload = &answer["data"]["inventorySetQuantities"];
    assert_eq!(payload["inventoryAdjustmentGroup"], Value::Null);
    assert_eq!(
        payload["userErrors"],
        json!([{
            "field": ["input", "quantities", "1", "changeFromQuantity"],
            "message": "The specified compare quantity does not match the current quantity.",
            "code": "CHANGE_FROM_QUANTITY_STALE",
        }])
    );
    // All or nothing: item 1 was fine and is not applied either.
    assert_eq!(sim.quantity("1"), Some(4));
    assert_eq!(sim.quantity("2"), Some(8));
    assert!(sim.history("1").is_empty() && sim.history("2").is_empty());
    assert_eq!(sim.stats().items_applied, 0);
    assert_eq!(sim.stats().requests_accepted, 0);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_applies_once() {
    let sim = start(ShopifyConfig::default()).await;
    sim.insert_item(1, 4);
    let body = set_body("same-key", vec![quantity(1, 5, Some(4))]);
    let (_, first) = post(&sim, &body).await;
    // A hand edit between the two calls: a second application would show.
    sim.set_quantity("1", 6);
    let (_, second) = post(&sim, &body).await;
    assert_eq!(
        first["data"], second["data"],
        "the replay is the first answer"
    );
    assert_eq!(sim.quantity("1"), Some(6));
    assert_eq!(sim.history("1"), vec![5]);
    assert_eq!(sim.stats().duplicates, 1);
    assert_eq!(sim.stats().items_applied, 1);

    // The same key with another input is refused.
    let (_, other) = post(&sim, &set_body("same-key", vec![quantity(1, 9, None)])).await;
    assert_eq!(
        other["errors"][0]["extensions"]["code"],
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    );
    assert_eq!(sim.quantity("1"), Some(6));
}

#[tokio::test]
async fn permanent_and_unknown_items_are_refused_for_the_whole_call() {
    let sim = start(ShopifyConfig {
        strict_items: true,
        ..ShopifyConfig::default()
    })
    .await;
    sim.insert_item(1, 1);
    sim.insert_item(2, 2);
    sim.faults().permanent_items(["2"]);
    let (_, answer) = post(
        &sim,
        &set_body(
            "k",
            vec![
                quantity(1, 5, None),
                quantity(2, 5, None),
                quantity(3, 5, None),
            ],
        ),
    )
    .await;
    let errors = answer["data"]["inventorySetQuantities"]["userErrors"]
        .as_array()
        .unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors[0]["field"],
        json!(["input", "quantities", "1", "inventoryItemId"])
    );
    assert_eq!(errors[0]["code"], "ITEM_NOT_STOCKED_AT_LOCATION");
    assert_eq!(
        errors[1]["field"],
        json!(["input", "quantities", "2", "inventoryItemId"])
    );
    assert_eq!(errors[1]["code"], "INVALID_INVENTORY_ITEM");
    assert_eq!(sim.quantity("1"), Some(1));
    assert_eq!(sim.quantity("3"), None);
    assert_eq!(sim.stats().items_rejected, 2);
}

#[tokio::test]
async fn more_than_250_quantities_is_a_top_level_error() {
    let sim = start(ShopifyConfig::default()).await;
    let quantities = (1..=251).map(|i| quantity(i, 1, None)).collect();
    let (status, answer) = post(&sim, &set_body("k", quantities)).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["errors"][0]["extensions"]["code"],
        "MAX_INPUT_SIZE_EXCEEDED"
    );
    assert!(answer.get("data").is_none());
    assert!(sim.quantities().is_empty());
}

#[tokio::test]
async fn an_unsupported_query_says_so() {
    let sim = start(ShopifyConfig::default()).await;
    let (status, answer) = post(&sim, &json!({"query": "{ shop { name } }"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["errors"],
        json!([{"message": "unsupported by the simulator"}])
    );
    let (status, _) = post(&sim, &json!({"not": "graphql"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn calls_beyond_the_bucket_are_throttled_and_apply_nothing() {
    // 30 points, restored at 1 per second: three 10-point mutations, then nothing for ~10 s.
    let sim = start(ShopifyConfig {
        throttle: ShopifyThrottle {
            maximum_available: 30.0,
            restore_rate: 1.0,
        },
        ..ShopifyConfig::default()
    })
    .await;
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        let (_, answer) = post(&sim, &set_body(key, vec![quantity(1, i as i64, None)])).await;
        assert_eq!(
            answer["data"]["inventorySetQuantities"]["userErrors"],
            json!([])
        );
    }
    let (status, throttled) = post(&sim, &set_body("d", vec![quantity(1, 99, None)])).await;
    assert_eq!(status, 200);
    assert_eq!(throttled["errors"][0]["message"], "Throttled");
    assert_eq!(throttled["errors"][0]["extensions"]["code"], "THROTTLED");
    let cost = &throttled["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], 10.0);
    assert_eq!(cost["actualQueryCost"], Value::Null);
    assert!(
        cost["throttleStatus"]["currentlyAvailable"]
            .as_f64()
            .unwrap()
            < 10.0
    );
    assert_eq!(sim.quantity("1"), Some(2));
    assert_eq!(sim.stats().rate_limit_violations, 1);
}

#[tokio::test]
async fn calls_spaced_within_the_restore_rate_are_never_throttled() {
    // A bucket of one mutation, refilled in 0.1 s; calls every 0.2 s.
    let sim = start(ShopifyConfig {
        throttle: ShopifyThrottle {
            maximum_available: 10.0,
            restore_rate: 100.0,
        },
        ..ShopifyConfig::default()
    })
    .await;
    for i in 0..5 {
        let (_, answer) = post(
            &sim,
            &set_body(&format!("k{i}"), vec![quantity(1, i, None)]),
        )
        .await;
        assert!(
            answer.get("errors").is_none(),
            "call {i} was refused: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sim.stats().rate_limit_violations, 0);
    assert_eq!(sim.history("1"), vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn latency_delays_but_serves() {
    let sim = start(ShopifyConfig::default()).await;
    sim.faults().latency(Duration::from_millis(150));
    let started = Instant::now();
    let (status, _) = post(&sim, &set_body("k", vec![quantity(1, 5, None)])).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(sim.quantity("1"), Some(5));
}

#[tokio::test]
async fn fail_next_answers_the_status_and_applies_nothing() {
    let sim = start(ShopifyConfig::default()).await;
    sim.faults().fail_next(2, 502);
    for _ in 0..2 {
        let response = client()
            .post(sim.graphql_url("2026-01"))
            .header("X-Shopify-Access-Token", TOKEN)
            .json(&set_body("k", vec![quantity(1, 5, None)]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 502);
    }
    assert_eq!(sim.quantity("1"), None);
    let (status, _) = post(&sim, &set_body("k", vec![quantity(1, 5, None)])).await;
    assert_eq!(status, 200);
    assert_eq!(sim.quantity("1"), Some(5));
    assert_eq!(sim.stats().requests_faulted, 2);
}

#[tokio::test]
async fn a_timeout_fault_outlasts_the_client_and_applies_nothing() {
    let sim = start(ShopifyConfig::default()).await;
    sim.faults().timeout(Some(Duration::from_millis(600)));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let error = post_with(
        &impatient,
        &sim,
        TOKEN,
        &set_body("k", vec![quantity(1, 5, None)]),
    )
    .await
    .expect_err("the client gives up first");
    assert!(error.is_timeout(), "{error}");
    // Let the hung request finish on the server: it answers 504 and applies nothing.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(sim.quantity("1"), None);
    assert_eq!(sim.stats().requests_faulted, 1);
    sim.faults().timeout(None);
    let (status, _) = post(&sim, &set_body("k", vec![quantity(1, 5, None)])).await;
    assert_eq!(status, 200);
    assert_eq!(sim.quantity("1"), Some(5));
}

#[tokio::test]
async fn an_outage_answers_503_until_it_ends() {
    let sim = start(ShopifyConfig::default()).await;
    sim.faults().outage(true);
    let response = client()
        .post(sim.graphql_url("2026-01"))
        .header("X-Shopify-Access-Token", TOKEN)
        .json(&set_body("k", vec![quantity(1, 5, None)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(sim.quantity("1"), None);
    sim.faults().outage(false);
    let (status, _) = post(&sim, &set_body("k", vec![quantity(1, 5, None)])).await;
    assert_eq!(status, 200);
    assert_eq!(sim.quantity("1"), Some(5));
}

#[tokio::test]
async fn a_stopped_simulator_refuses_connections() {
    let sim = start(ShopifyConfig::default()).await;
    let url = sim.graphql_url("2026-01");
    sim.stop().await;
    let result = reqwest::Client::new().post(url).body("{}").send().await;
    assert!(result.is_err_and(|e| e.is_connect()));
}

#[tokio::test]
async fn requests_to_unknown_paths_are_counted_and_faulted_too() {
    let sim = start(ShopifyConfig::default()).await;
    let response = client()
        .get(format!("{}/nope", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    sim.faults().outage(true);
    let response = client()
        .get(format!("{}/nope", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let stats = sim.stats();
    assert_eq!(stats.requests_received, 2);
    assert_eq!(stats.requests_faulted, 1);
    let log = sim.requests();
    assert_eq!((log[0].path.as_str(), log[0].status), ("/nope", Some(404)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_lose_and_double_nothing() {
    let sim = std::sync::Arc::new(
        start(ShopifyConfig {
            throttle: ShopifyThrottle::PLUS,
            ..ShopifyConfig::default()
        })
        .await,
    );
    const TASKS: i64 = 8;
    const CALLS: i64 = 20;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let sim = sim.clone();
        tasks.push(tokio::spawn(async move {
            let http = client();
            for call in 0..CALLS {
                // Each task raises its own item; every call also names a shared item, and
                // every call is sent twice with the same idempotency key.
                let own = 100 + task as u64;
                let body = set_body(
                    &format!("t{task}-c{call}"),
                    vec![
                        quantity(own, call, None),
                        quantity(1, task * CALLS + call, None),
                    ],
                );
                for _ in 0..2 {
                    let (status, answer) = post_with(&http, &sim, TOKEN, &body).await.unwrap();
                    assert_eq!(status, 200);
                    assert_eq!(
                        answer["data"]["inventorySetQuantities"]["userErrors"],
                        json!([])
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = sim.stats();
    assert_eq!(stats.requests_received as i64, TASKS * CALLS * 2);
    assert_eq!(stats.duplicates as i64, TASKS * CALLS);
    assert_eq!(stats.items_applied as i64, TASKS * CALLS * 2);
    assert_eq!(stats.rate_limit_violations, 0);
    for task in 0..TASKS {
        let own = (100 + task).to_string();
        assert_eq!(
            sim.history(&own),
            (0..CALLS).collect::<Vec<_>>(),
            "item {own}"
        );
    }
    assert_eq!(sim.history("1").len() as i64, TASKS * CALLS);
    assert_eq!(sim.requests().len() as i64, TASKS * CALLS * 2);
}

const LEVELS: &str = "query Levels($locationId: ID!, $cursor: String) {
  location(id: $locationId) {
    inventoryLevels(first: 250, after: $cursor) {
      nodes { item { id } quantities(names: [\"available\"]) { name quantity } }
      pageInfo { hasNextPage endCursor }
    }
  }
}";

fn levels_body(location: &str, cursor: Option<&str>) -> Value {
    json!({"query": LEVELS, "variables": {"locationId": location, "cursor": cursor}})
}

#[tokio::test]
async fn lists_a_locations_levels_in_pages_and_refunds_the_unused_cost() {
    let sim = ShopifySim::start(ShopifyConfig {
        levels_page_max: 2,
        ..ShopifyConfig::default()
    })
    .await
    .unwrap();
    sim.insert_item(3, 30);
    sim.insert_item(1, 10);
    sim.insert_item(2, 20);
    sim.faults().permanent_items(["2"]);

    let (status, first) = post(&sim, &levels_body("gid://shopify/Location/1", None)).await;
    assert_eq!(status, 200);
    let connection = &first["data"]["location"]["inventoryLevels"];
    let items: Vec<&Value> = connection["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["item"]["id"])
        .collect();
    assert_eq!(
        items,
        [
            &json!("gid://shopify/InventoryItem/1"),
            &json!("gid://shopify/InventoryItem/3")
        ]
    );
    assert_eq!(
        connection["nodes"][1]["quantities"],
        json!([{"name": "available", "quantity": 30}])
    );
    // Asked 3 + 3 × 250, spent 3 + 3 × 2: the rest is refunded.
    let cost = &first["extensions"]["cost"];
    assert_eq!(
        (&cost["requestedQueryCost"], &cost["actualQueryCost"]),
        (&json!(753), &json!(9))
    );
    assert!(
        cost["throttleStatus"]["currentlyAvailable"]
            .as_i64()
            .unwrap()
            >= 990
    );
    assert_eq!(connection["pageInfo"]["hasNextPage"], false);

    sim.faults().clear();
    let (_, first) = post(&sim, &levels_body("gid://shopify/Location/1", None)).await;
    let page_info = &first["data"]["location"]["inventoryLevels"]["pageInfo"];
    assert_eq!(page_info["hasNextPage"], true);
    let cursor = page_info["endCursor"].as_str().unwrap();
    let (_, second) = post(&sim, &levels_body("gid://shopify/Location/1", Some(cursor))).await;
    let connection = &second["data"]["location"]["inventoryLevels"];
    assert_eq!(
        connection["nodes"][0]["item"]["id"],
        "gid://shopify/InventoryItem/3"
    );
    assert_eq!(connection["pageInfo"]["hasNextPage"], false);

    let (_, elsewhere) = post(&sim, &levels_body("gid://shopify/Location/9", None)).await;
    assert_eq!(elsewhere["data"]["location"], Value::Null);
    let (_, bad) = post(&sim, &levels_body("gid://shopify/Location/1", Some("nope"))).await;
    assert!(
        bad["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cursor")
    );
    let too_many = json!({"query": LEVELS.replace("first: 250", "first: 251"),
        "variables": {"locationId": "gid://shopify/Location/1"}});
    let (_, refused) = post(&sim, &too_many).await;
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("first")
    );
}

#[tokio::test]
async fn a_levels_page_costing_more_than_the_bucket_is_refused_outright() {
    let sim = ShopifySim::start(ShopifyConfig {
        throttle: ShopifyThrottle {
            maximum_available: 100.0,
            restore_rate: 10.0,
        },
        ..ShopifyConfig::default()
    })
    .await
    .unwrap();
    let (_, answer) = post(&sim, &levels_body("gid://shopify/Location/1", None)).await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"],
        "MAX_COST_EXCEEDED"
    );
    assert_eq!(sim.currently_available().round(), 100.0);
}
