use std::time::Duration;

use crossdock_sim::{RateLimit, WooConfig, WooSim};
use serde_json::{Value, json};

use crate::client;

async fn start(config: WooConfig) -> WooSim {
    WooSim::start(config).await.expect("the simulator starts")
}

async fn batch(sim: &WooSim, path: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(format!("{}{path}", sim.api_url()))
        .basic_auth("ck_simulator", Some("cs_simulator"))
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_batch_update_applies_and_answers_product_objects() {
    let sim = start(WooConfig::default()).await;
    sim.insert_product(799, 1);
    let (status, body) = batch(
        &sim,
        "/products/batch",
        &json!({"update": [
            {"id": 799, "stock_quantity": 5, "manage_stock": true},
            {"id": 800, "stock_quantity": 0, "manage_stock": true},
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only the keys asked for: {body}"
    );
    let updated = body["update"].as_array().unwrap();
    assert_eq!(updated[0]["id"], 799);
    assert_eq!(updated[0]["stock_quantity"], 5);
    assert_eq!(updated[0]["manage_stock"], true);
    assert_eq!(updated[0]["stock_status"], "instock");
    assert_eq!(updated[1]["stock_status"], "outofstock");
    assert!(
        updated[0]["_links"]["self"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/wp-json/wc/v3/products/799")
    );
    assert_eq!(sim.quantity("799"), Some(5));
    assert_eq!(sim.quantity("800"), Some(0));
    assert_eq!(sim.stats().items_applied, 2);
    assert_eq!(sim.stats().requests_accepted, 1);
    assert_eq!(sim.requests()[0].items, vec!["799", "800"]);
}

#[tokio::test]
async fn variations_are_updated_through_their_product() {
    let sim = start(WooConfig::default()).await;
    sim.insert_variation(22, 733, 1);
    sim.faults().permanent_items(["22/734"]);
    let (status, body) = batch(
        &sim,
        "/products/22/variations/batch",
        &json!({"update": [{"id": 733, "stock_quantity": 4}, {"id": 734, "stock_quantity": 4}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["update"][0]["stock_quantity"], 4);
    assert_eq!(
        body["update"][1],
        json!({"id": 734, "error": {"code": "woocommerce_rest_product_variation_invalid_id",
               "message": "Invalid ID.", "data": {"status": 400}}})
    );
    assert_eq!(sim.quantity("22/733"), Some(4));
    assert_eq!(sim.quantity("22/734"), None);
}

#[tokio::test]
async fn refused_objects_fail_alone() {
    let sim = start(WooConfig {
        strict_items: true,
        ..WooConfig::default()
    })
    .await;
    sim.insert_product(1, 0);
    sim.insert_product(2, 0);
    sim.faults().permanent_items(["2"]);
    let (status, body) = batch(
        &sim,
        "/products/batch",
        &json!({"update": [
            {"id": 1, "stock_quantity": 3},
            {"id": 2, "stock_quantity": 3},
            {"id": 3, "stock_quantity": 3},
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    let updated = body["update"].as_array().unwrap();
    assert_eq!(updated[0]["stock_quantity"], 3);
    for (i, id) in [(1, 2), (2, 3)] {
        assert_eq!(
            updated[i],
            json!({"id": id, "error": {"code": "woocommerce_rest_product_invalid_id",
                   "message": "Invalid ID.", "data": {"status": 400}}})
        );
    }
    assert_eq!(sim.quantity("1"), Some(3));
    assert_eq!(sim.quantity("2"), Some(0));
    assert_eq!(sim.quantity("3"), None);
    assert_eq!(sim.stats().items_rejected, 2);
    assert_eq!(sim.stats().requests_accepted, 0);
}

#[tokio::test]
async fn more_than_100_objects_is_refused_whole() {
    let sim = start(WooConfig::default()).await;
    let update: Vec<Value> = (1..=101)
        .map(|id| json!({"id": id, "stock_quantity": 1}))
        .collect();
    let (status, body) = batch(&sim, "/products/batch", &json!({"update": update})).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "woocommerce_rest_request_entity_too_large");
    assert_eq!(
        body["message"],
        "Unable to accept more than 100 items for this request."
    );
    assert_eq!(body["data"]["status"], 413);
    assert!(sim.quantities().is_empty());
}

#[tokio::test]
async fn credentials_are_checked() {
    let sim = start(WooConfig::default()).await;
    let url = format!("{}/products/batch", sim.api_url());
    let body = json!({"update": [{"id": 1, "stock_quantity": 1}]});
    let none = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    let answer: Value = none.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources.", "data": {"status": 401}})
    );
    let wrong = client()
        .post(&url)
        .basic_auth("ck_simulator", Some("cs_wrong"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let answer: Value = wrong.json().await.unwrap();
    assert_eq!(answer["code"], "woocommerce_rest_authentication_error");
    assert_eq!(sim.quantity("1"), None);
    // The query-string form of the same credentials works.
    let by_query = client()
        .post(format!(
            "{url}?consumer_key=ck_simulator&consumer_secret=cs_simulator"
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status().as_u16(), 200);
    assert_eq!(sim.quantity("1"), Some(1));
    assert_eq!(sim.stats().auth_failures, 2);
}

#[tokio::test]
async fn reads_a_product() {
    let sim = start(WooConfig::default()).await;
    sim.insert_product(794, 17);
    let get = |id: &str| {
        client()
            .get(format!("{}/products/{id}", sim.api_url()))
            .basic_auth("ck_simulator", Some("cs_simulator"))
            .send()
    };
    let found = get("794").await.unwrap();
    assert_eq!(found.status().as_u16(), 200);
    let body: Value = found.json().await.unwrap();
    assert_eq!(
        (body["id"].clone(), body["stock_quantity"].clone()),
        (json!(794), json!(17))
    );
    let missing = get("795").await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "woocommerce_rest_product_invalid_id");
    assert_eq!(body["data"]["status"], 404);
}

#[tokio::test]
async fn a_host_rate_limit_answers_429_with_retry_after() {
    let sim = start(WooConfig {
        rate_limit: Some(RateLimit::new(0.1, 2.0)),
        ..WooConfig::default()
    })
    .await;
    let body = json!({"update": [{"id": 1, "stock_quantity": 1}]});
    for _ in 0..2 {
        assert_eq!(batch(&sim, "/products/batch", &body).await.0, 200);
    }
    let response = client()
        .post(format!("{}/products/batch", sim.api_url()))
        .basic_auth("ck_simulator", Some("cs_simulator"))
        .json(&json!({"update": [{"id": 1, "stock_quantity": 9}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert_eq!(sim.quantity("1"), Some(1));
    assert_eq!(sim.stats().rate_limit_violations, 1);
}

#[tokio::test]
async fn calls_spaced_within_the_host_limit_pass() {
    let sim = start(WooConfig {
        rate_limit: Some(RateLimit::new(10.0, 1.0)),
        ..WooConfig::default()
    })
    .await;
    for q in 0..5 {
        let (status, _) = batch(
            &sim,
            "/products/batch",
            &json!({"update": [{"id": 1, "stock_quantity": q}]}),
        )
        .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sim.stats().rate_limit_violations, 0);
    assert_eq!(sim.history("1"), vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn an_outage_applies_nothing() {
    let sim = start(WooConfig::default()).await;
    sim.faults().outage(true);
    let (status, body) = batch(
        &sim,
        "/products/batch",
        &json!({"update": [{"id": 1, "stock_quantity": 1}]}),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["data"]["status"], 503);
    assert_eq!(sim.quantity("1"), None);
    assert_eq!(sim.stats().requests_faulted, 1);
}

async fn list(sim: &WooSim, path: &str, query: &str) -> (u16, Option<(String, String)>, Value) {
    let response = client()
        .get(format!("{}{path}?{query}", sim.api_url()))
        .basic_auth("ck_simulator", Some("cs_simulator"))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let totals = header("x-wp-total").zip(header("x-wp-totalpages"));
    (
        response.status().as_u16(),
        totals,
        response.json().await.unwrap(),
    )
}

#[tokio::test]
async fn lists_products_and_variations_in_pages_with_their_totals() {
    let sim = start(WooConfig::default()).await;
    for id in [5, 3, 9] {
        sim.insert_product(id, id as i64);
    }
    sim.insert_variation(7, 71, 2);
    sim.insert_variation(7, 70, 1);
    sim.faults().permanent_items(["9"]);

    let (status, totals, page) = list(&sim, "/products", "per_page=2&page=1").await;
    assert_eq!(status, 200);
    assert_eq!(totals, Some(("3".into(), "2".into())));
    let ids: Vec<&Value> = page.as_array().unwrap().iter().map(|p| &p["id"]).collect();
    assert_eq!(ids, [&json!(3), &json!(5)]);
    let (_, _, page) = list(&sim, "/products", "per_page=2&page=2").await;
    let variable = &page[0];
    assert_eq!(
        (&variable["id"], &variable["type"], &variable["variations"]),
        (&json!(7), &json!("variable"), &json!([70, 71]))
    );
    assert_eq!(
        (&variable["manage_stock"], &variable["stock_quantity"]),
        (&json!(false), &Value::Null)
    );
    let (_, totals, variations) = list(&sim, "/products/7/variations", "per_page=100").await;
    assert_eq!(totals, Some(("2".into(), "1".into())));
    assert_eq!(variations[1]["id"], 71);
    assert_eq!(variations[1]["stock_quantity"], 2);

    let (status, _, body) = list(&sim, "/products", "per_page=101").await;
    assert_eq!((status, &body["code"]), (400, &json!("rest_invalid_param")));
    let (status, _, body) = list(&sim, "/products", "per_page=2&page=3").await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("rest_post_invalid_page_number"))
    );
    let (status, _, _) = list(&sim, "/products/8/variations", "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_small_page_limit_caps_per_page_and_the_page_count_follows() {
    let sim = start(WooConfig {
        per_page_max: 1,
        ..WooConfig::default()
    })
    .await;
    sim.insert_product(1, 1);
    sim.insert_product(2, 2);
    let (_, totals, page) = list(&sim, "/products", "per_page=100").await;
    assert_eq!(totals, Some(("2".into(), "2".into())));
    assert_eq!(page.as_array().unwrap().len(), 1);
}
