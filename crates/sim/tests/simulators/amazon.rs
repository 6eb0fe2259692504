use std::time::{Duration, Instant};

use crossdock_sim::amazon::AmazonRateLimits;
use crossdock_sim::{AmazonConfig, AmazonSim, RateLimit};
use serde_json::{Value, json};

use crate::client;

const SELLER: &str = "A2SIMSELLER0001";

async fn start(config: AmazonConfig) -> AmazonSim {
    AmazonSim::start(config)
        .await
        .expect("the simulator starts")
}

/// Logs in with Login with Amazon and returns the access token.
async fn login(sim: &AmazonSim) -> String {
    let config = sim.config();
    let response = client()
        .post(sim.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", config.refresh_token.as_str()),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], config.access_token_ttl.as_secs());
    assert_eq!(body["refresh_token"], config.refresh_token);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("Atza|"));
    token
}

fn patch_body(quantity: i64) -> Value {
    json!({
        "productType": "PRODUCT",
        "patches": [{
            "op": "replace",
            "path": "/attributes/fulfillment_availability",
            "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}]
        }]
    })
}

async fn patch(sim: &AmazonSim, token: &str, sku: &str, quantity: i64) -> reqwest::Response {
    client()
        .patch(format!(
            "{}/listings/2021-08-01/items/{SELLER}/{sku}?marketplaceIds=ATVPDKIKX0DER",
            sim.url()
        ))
        .header("x-amz-access-token", token)
        .json(&patch_body(quantity))
        .send()
        .await
        .unwrap()
}

async fn get_listing(sim: &AmazonSim, token: &str, sku: &str) -> reqwest::Response {
    client()
        .get(format!(
            "{}/listings/2021-08-01/items/{SELLER}/{sku}?marketplaceIds=ATVPDKIKX0DER&includedData=fulfillmentAvailability",
            sim.url()
        ))
        .header("x-amz-access-token", token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn login_with_amazon_refuses_wrong_credentials() {
    let sim = start(AmazonConfig::default()).await;
    let config = sim.config();
    let ask = |refresh: &str, secret: &str| {
        client().post(sim.token_url()).form(&[
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh.to_string()),
            ("client_id", config.client_id.clone()),
            ("client_secret", secret.to_string()),
        ])
    };
    let bad_secret = ask(&config.refresh_token, "nope").send().await.unwrap();
    assert_eq!(bad_secret.status().as_u16(), 401);
    let body: Value = bad_secret.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let bad_grant = ask("Atzr|nope", &config.client_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_grant.status().as_u16(), 400);
    let body: Value = bad_grant.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].as_str().is_some());
    assert_eq!(sim.stats().auth_failures, 2);
}

#[tokio::test]
async fn a_patch_applies_and_answers_like_sp_api() {
    let sim = start(AmazonConfig::default()).await;
    let token = login(&sim).await;
    let response = patch(&sim, &token, "SKU-1", 5).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-amzn-RateLimit-Limit"], "5.0");
    assert!(response.headers().contains_key("x-amzn-RequestId"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sku"], "SKU-1");
    assert_eq!(body["status"], "ACCEPTED");
    assert_eq!(body["issues"], json!([]));
    assert!(body["submissionId"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(sim.quantity("SKU-1"), Some(5));

    let read = get_listing(&sim, &token, "SKU-1").await;
    assert_eq!(read.status().as_u16(), 200);
    assert_eq!(read.headers()["x-amzn-RateLimit-Limit"], "5.0");
    let body: Value = read.json().await.unwrap();
    assert_eq!(
        body,
        json!({"sku": "SKU-1", "fulfillmentAvailability": [{"fulfillmentChannelCode": "DEFAULT", "quantity": 5}]})
    );
    let missing = get_listing(&sim, &token, "SKU-404").await;
    assert_eq!(missing.status().as_u16(), 404);
    let log = sim.requests();
    assert_eq!(log.last().unwrap().items, vec!["SKU-404".to_string()]);
}

#[tokio::test]
async fn calls_without_a_valid_token_are_denied() {
    let sim = start(AmazonConfig::default()).await;
    for token in ["", "Atza|forged"] {
        let response = patch(&sim, token, "SKU-1", 5).await;
        assert_eq!(response.status().as_u16(), 403);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.", "details": ""}]})
        );
    }
    assert_eq!(sim.quantity("SKU-1"), None);
    assert_eq!(sim.stats().auth_failures, 2);
}

#[tokio::test]
async fn an_expired_token_is_denied() {
    let sim = start(AmazonConfig {
        access_token_ttl: Duration::from_millis(200),
        ..AmazonConfig::default()
    })
    .await;
    let token = login(&sim).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = patch(&sim, &token, "SKU-1", 5).await;
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(sim.quantity("SKU-1"), None);
}

#[tokio::test]
async fn a_permanent_sku_is_a_bad_request() {
    let sim = start(AmazonConfig::default()).await;
    let token = login(&sim).await;
    sim.insert_item("SKU-BAD", 1);
    sim.faults().permanent_items(["SKU-BAD"]);
    let response = patch(&sim, &token, "SKU-BAD", 5).await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "BAD_REQUEST");
    assert_eq!(body["errors"][0]["message"], "Invalid input");
    assert_eq!(sim.quantity("SKU-BAD"), Some(1));
    assert_eq!(
        get_listing(&sim, &token, "SKU-BAD").await.status().as_u16(),
        404
    );
    assert_eq!(sim.stats().items_rejected, 1);
}

#[tokio::test]
async fn an_unknown_sku_is_not_found_when_strict() {
    let sim = start(AmazonConfig {
        strict_items: true,
        ..AmazonConfig::default()
    })
    .await;
    let token = login(&sim).await;
    assert_eq!(
        patch(&sim, &token, "SKU-NEW", 5).await.status().as_u16(),
        404
    );
    sim.insert_item("SKU-NEW", 0);
    assert_eq!(
        patch(&sim, &token, "SKU-NEW", 5).await.status().as_u16(),
        200
    );
    assert_eq!(sim.quantity("SKU-NEW"), Some(5));
}

#[tokio::test]
async fn a_repeated_body_applies_again_and_counts_as_a_duplicate() {
    let sim = start(AmazonConfig::default()).await;
    let token = login(&sim).await;
    for _ in 0..2 {
        assert_eq!(patch(&sim, &token, "SKU-1", 5).await.status().as_u16(), 200);
    }
    assert_eq!(sim.history("SKU-1"), vec![5, 5]);
    assert_eq!(sim.stats().duplicates, 1);
}

#[tokio::test]
async fn calls_beyond_the_burst_get_quota_exceeded() {
    // Burst 3, refilled once every 10 s: six quick calls are three too many.
    let sim = start(AmazonConfig {
        rate_limits: AmazonRateLimits {
            patch_listings_item: RateLimit::new(0.1, 3.0),
            ..AmazonRateLimits::default()
        },
        ..AmazonConfig::default()
    })
    .await;
    let token = login(&sim).await;
    let mut statuses = Vec::new();
    for q in 0..6 {
        let response = patch(&sim, &token, "SKU-1", q).await;
        assert_eq!(response.headers()["x-amzn-RateLimit-Limit"], "0.1");
        let status = response.status().as_u16();
        if status == 429 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                body,
                json!({"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource.", "details": ""}]})
            );
        }
        statuses.push(status);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429, 429]);
    assert_eq!(sim.stats().rate_limit_violations, 3);
    assert_eq!(sim.history("SKU-1"), vec![0, 1, 2]);
}

#[tokio::test]
async fn calls_spaced_within_the_rate_are_never_throttled() {
    // Burst 1 at 10 per second; a call every 0.2 s.
    let sim = start(AmazonConfig {
        rate_limits: AmazonRateLimits {
            patch_listings_item: RateLimit::new(10.0, 1.0),
            ..AmazonRateLimits::default()
        },
        ..AmazonConfig::default()
    })
    .await;
    let token = login(&sim).await;
    for q in 0..5 {
        assert_eq!(patch(&sim, &token, "SKU-1", q).await.status().as_u16(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sim.stats().rate_limit_violations, 0);
}

#[tokio::test]
async fn faults_answer_sp_api_errors_with_the_usual_headers() {
    let sim = start(AmazonConfig::default()).await;
    let token = login(&sim).await;
    sim.faults().outage(true);
    let response = patch(&sim, &token, "SKU-1", 5).await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("x-amzn-RequestId"));
    assert_eq!(response.headers()["x-amzn-RateLimit-Limit"], "5.0");
    sim.faults().outage(false);
    sim.faults().fail_next(1, 500);
    assert_eq!(patch(&sim, &token, "SKU-1", 5).await.status().as_u16(), 500);
    assert_eq!(sim.quantity("SKU-1"), None);
    assert_eq!(patch(&sim, &token, "SKU-1", 5).await.status().as_u16(), 200);
    assert_eq!(sim.quantity("SKU-1"), Some(5));
}

/// Runs the whole JSON_LISTINGS_FEED flow and returns the feed id.
async fn submit_feed(sim: &AmazonSim, token: &str, feed: &Value) -> String {
    let http = client();
    let created = http
        .post(format!("{}/feeds/2021-06-30/documents", sim.url()))
        .header("x-amz-access-token", token)
        .json(&json!({"contentType": "application/json; charset=UTF-8"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let document: Value = created.json().await.unwrap();
    let url = document["url"].as_str().unwrap();
    assert!(url.starts_with(sim.url()));
    let uploaded = http
        .put(url)
        .header("content-type", "application/json; charset=UTF-8")
        .body(feed.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 200);
    let submitted = http
        .post(format!("{}/feeds/2021-06-30/feeds", sim.url()))
        .header("x-amz-access-token", token)
        .json(&json!({
            "feedType": "JSON_LISTINGS_FEED",
            "marketplaceIds": ["ATVPDKIKX0DER"],
            "inputFeedDocumentId": document["feedDocumentId"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status().as_u16(), 202);
    let body: Value = submitted.json().await.unwrap();
    body["feedId"].as_str().unwrap().to_owned()
}

async fn get_feed(sim: &AmazonSim, token: &str, feed_id: &str) -> Value {
    let response = client()
        .get(format!("{}/feeds/2021-06-30/feeds/{feed_id}", sim.url()))
        .header("x-amz-access-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

async fn download_report(sim: &AmazonSim, token: &str, document_id: &str) -> Value {
    let http = client();
    let document: Value = http
        .get(format!(
            "{}/feeds/2021-06-30/documents/{document_id}",
            sim.url()
        ))
        .header("x-amz-access-token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["feedDocumentId"], document_id);
    let url = document["url"].as_str().unwrap();
    http.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_listings_feed_applies_its_messages_and_reports_per_message() {
    let sim = start(AmazonConfig::default()).await;
    let token = login(&sim).await;
    sim.faults().permanent_items(["SKU-BAD"]);
    let message = |id: u64, sku: &str, quantity: i64| {
        json!({
            "messageId": id, "sku": sku, "operationType": "PATCH", "productType": "PRODUCT",
            "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                         "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}]}]
        })
    };
    let feed = json!({
        "header": {"sellerId": SELLER, "version": "2.0", "issueLocale": "en_US"},
        "messages": [
            message(1, "SKU-A", 3),
            message(2, "SKU-BAD", 4),
            {"messageId": 3, "sku": "SKU-C", "operationType": "PARTIAL_UPDATE", "productType": "PRODUCT",
             "attributes": {"fulfillment_availability": [{"fulfillment_channel_code": "DEFAULT", "quantity": 7}]}},
            {"messageId": 4, "sku": "SKU-D", "operationType": "DELETE"},
        ]
    });
    let feed_id = submit_feed(&sim, &token, &feed).await;
    assert_eq!(sim.quantity("SKU-A"), Some(3));
    assert_eq!(sim.quantity("SKU-C"), Some(7));
    assert_eq!(sim.quantity("SKU-BAD"), None);
    assert_eq!(sim.quantity("SKU-D"), None);

    let status = get_feed(&sim, &token, &feed_id).await;
    assert_eq!(status["feedId"], feed_id);
    assert_eq!(status["feedType"], "JSON_LISTINGS_FEED");
    assert_eq!(status["processingStatus"], "DONE");
    assert!(status["createdTime"].is_string() && status["processingEndTime"].is_string());
    let report = download_report(
        &sim,
        &token,
        status["resultFeedDocumentId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(report["header"]["feedId"], feed_id);
    assert_eq!(report["header"]["version"], "2.0");
    let issues = report["issues"].as_array().unwrap();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["messageId"], 2);
    assert_eq!(issues[0]["sku"], "SKU-BAD");
    assert_eq!(issues[0]["severity"], "ERROR");
    assert_eq!(
        report["summary"],
        json!({"errors": 1, "warnings": 0, "messagesProcessed": 4, "messagesAccepted": 3, "messagesInvalid": 1})
    );
    // The createFeed request is logged with the SKUs its feed names.
    let create_feed = sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/feeds/2021-06-30/feeds" && r.method == "POST")
        .unwrap();
    assert_eq!(
        create_feed.items,
        vec!["SKU-A", "SKU-BAD", "SKU-C", "SKU-D"]
    );
}

#[tokio::test]
async fn a_feed_waits_in_queue_for_the_processing_delay() {
    let sim = start(AmazonConfig {
        feed_processing_delay: Duration::from_millis(300),
        ..AmazonConfig::default()
    })
    .await;
    let token = login(&sim).await;
    let feed = json!({"header": {"sellerId": SELLER, "version": "2.0"}, "messages": [
        {"messageId": 1, "sku": "SKU-A", "operationType": "PATCH", "productType": "PRODUCT",
         "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                      "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 9}]}]}
    ]});
    let feed_id = submit_feed(&sim, &token, &feed).await;
    assert_eq!(
        get_feed(&sim, &token, &feed_id).await["processingStatus"],
        "IN_QUEUE"
    );
    assert_eq!(sim.quantity("SKU-A"), None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.feed_status(&feed_id) != Some("DONE") {
        assert!(Instant::now() < deadline, "the feed was never processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.quantity("SKU-A"), Some(9));
}

#[tokio::test]
async fn a_document_that_is_not_a_listings_feed_is_fatal() {
    let sim = start(AmazonConfig::default()).await;
    let token = login(&sim).await;
    let feed_id = submit_feed(
        &sim,
        &token,
        &json!({"header": {"version": "1.0"}, "messages": []}),
    )
    .await;
    let status = get_feed(&sim, &token, &feed_id).await;
    assert_eq!(status["processingStatus"], "FATAL");
    let report = download_report(
        &sim,
        &token,
        status["resultFeedDocumentId"].as_str().unwrap(),
    )
    .await;
    assert!(
        report["issues"][0]["message"]
            .as_str()
            .unwrap()
            .contains("version")
    );
}

async fn search(sim: &AmazonSim, token: &str, query: &str) -> (u16, Value) {
    let response = client()
        .get(format!(
            "{}/listings/2021-08-01/items/{SELLER}?marketplaceIds=ATVPDKIKX0DER&{query}",
            sim.url()
        ))
        .header("x-amz-access-token", token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn search_pages_through_listings_by_next_token() {
    let sim = start(AmazonConfig {
        search_results_max: 3,
        ..AmazonConfig::default()
    })
    .await;
    for (sku, q) in [("B", 2), ("A", 1), ("D", 4), ("C", 3), ("GONE", 9)] {
        sim.insert_item(sku, q);
    }
    sim.faults().permanent_items(["GONE"]);
    let token = login(&sim).await;

    let (status, first) = search(
        &sim,
        &token,
        "includedData=fulfillmentAvailability&pageSize=2",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(first["numberOfResults"], 4);
    let skus: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["sku"])
        .collect();
    assert_eq!(skus, [&json!("A"), &json!("B")]);
    assert_eq!(
        first["items"][1]["fulfillmentAvailability"],
        json!([{"fulfillmentChannelCode": "DEFAULT", "quantity": 2}])
    );
    let next = first["pagination"]["nextToken"].as_str().unwrap();
    let (_, second) = search(&sim, &token, &format!("pageSize=2&pageToken={next}")).await;
    // Three listings at most are paged through; C is the last.
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["sku"], "C");
    assert!(second["items"][0]["summaries"].is_array());
    assert!(second.get("pagination").is_none());

    let (status, body) = search(&sim, &token, "pageSize=21").await;
    assert_eq!(
        (status, &body["errors"][0]["code"]),
        (400, &json!("InvalidInput"))
    );
    let (status, _) = search(&sim, &token, "pageToken=bogus").await;
    assert_eq!(status, 400);
    let (status, _) = search(&sim, "Atza|unknown", "").await;
    assert_eq!(status, 403);
}
