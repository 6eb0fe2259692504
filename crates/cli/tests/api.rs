//! The HTTP API end to end: the real binary, real SQLite, loopback HTTP.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn received(id: &str, source: &str, item: &str, location: &str, qty: i64) -> serde_json::Value {
    event(
        id,
        source,
        "inventory.received.v1",
        json!({"item": item, "location": location, "qty": qty}),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn events_move_positions_and_channel_availability() {
    // The shopify channel publishes to a receiver that is not there, so its messages stay in
    // the outbox for this test to read.
    let unreachable = r#"
[[endpoints]]
channel = "shopify"
kind = "webhook"
secrets_env = { signing_secret = "HOOK_SECRET" }
[endpoints.webhook]
url = "http://127.0.0.1:9/nobody-listens"
"#;
    let hub = Hub::start_full(
        "flow",
        &common::config(unreachable),
        &[],
        &[],
        &[("HOOK_SECRET", "whsec-0123456789")],
    )
    .await;
    let mut east = hub.client(EAST).await;
    let (s, v) = post(
        &mut east,
        "/v1/events",
        &received("e1", "wms-east", "SKU-1", "DC-EAST", 100),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("applied")), "{v}");
    let seq = v["ledger_seq"].as_i64().unwrap();

    let mut admin = hub.client(ADMIN).await;
    let (s, v) = post(
        &mut admin,
        "/v1/events",
        &received("w1", "wms-west", "SKU-1", "DC-WEST", 50),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(
        &mut east,
        "/v1/events",
        &event("e2", "wms-east", "inventory.status_changed.v1",
            json!({"item": "SKU-1", "location": "DC-EAST", "qty": 5, "from": "sellable", "to": "damaged"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let mut q = hub.client(QUERY).await;
    let (s, v) = get(&mut q, "/v1/availability?item=SKU-1&channel=shopify").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["available"], 145, "95 sellable east + 50 west: {v}");
    assert!(v["ledger_seq"].as_i64().unwrap() > seq);
    let (_, v) = get(&mut q, "/v1/availability?item=SKU-1&channel=b2b").await;
    assert_eq!(
        v["available"], 85,
        "east only, 10% of 95 kept back (rounded up): {v}"
    );

    let (s, v) = post(
        &mut q,
        "/v1/availability/query",
        &json!({"channel": "shopify", "items": ["SKU-1", "SKU-2", "NOPE"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["available"], 145);
    assert_eq!(v["results"][1]["available"], 0);
    assert!(
        v["results"][2]["problem"]["type"]
            .as_str()
            .unwrap()
            .ends_with("unknown-item")
    );

    let (s, v) = get(&mut q, "/v1/items/SKU-1/positions").await;
    assert_eq!(s, 200);
    let east_pos = &v["positions"][0];
    assert_eq!(
        (
            east_pos["location"].as_str(),
            east_pos["on_hand"].as_i64(),
            east_pos["damaged"].as_i64(),
            east_pos["available"].as_i64()
        ),
        (Some("DC-EAST"), Some(100), Some(5), Some(95)),
        "{v}"
    );

    // Every change left an outbox message for the delivery lanes, newest value last.
    let (_, v) = get(&mut admin, "/v1/outbox?endpoint=shopify").await;
    let last = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["key"] == "SKU-1")
        .unwrap()
        .clone();
    assert_eq!(last["payload"]["available"], 145, "{v}");

    let (s, v) = get(&mut q, "/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert!(v["paths"]["/v1/reservations"]["post"].is_object());
    let (_, v) = get(&mut q, "/v1/schema").await;
    assert!(
        v["types"]["inventory.shipped.v1"]["properties"]["lines"].is_object(),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_answer_the_original_outcome_and_conflicts_are_409() {
    let hub = Hub::start("idem", "").await;
    let mut east = hub.client(EAST).await;
    let ev = received("dup-1", "wms-east", "SKU-2", "DC-EAST", 10);
    let (_, first) = post(&mut east, "/v1/events", &ev).await;
    let (s, again) = post(&mut east, "/v1/events", &ev).await;
    assert_eq!(s, 200);
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["original_status"], "applied");
    assert_eq!(again["ledger_seq"], first["ledger_seq"]);

    let changed = received("dup-1", "wms-east", "SKU-2", "DC-EAST", 11);
    let (s, p) = post(&mut east, "/v1/events", &changed).await;
    assert_eq!(s, 409, "{p}");
    assert!(
        p["type"].as_str().unwrap().ends_with("duplicate-conflict"),
        "{p}"
    );
    assert_eq!(p["field"], "id");

    let mut q = hub.client(QUERY).await;
    assert_eq!(positions(&mut q, "SKU-2").await[0].1, 10, "applied once");
    let (_, v) = get(&mut q, "/v1/exceptions?kind=duplicate_conflict").await;
    let ex = &v["exceptions"][0];
    assert_eq!(ex["entity"], "event:wms-east/dup-1");
    assert!(
        ex["raw"].as_str().unwrap().contains("11"),
        "the rejected payload is kept: {ex}"
    );
    assert_eq!(
        sqlite_count(&hub.db(), "SELECT count(*) FROM events WHERE id = 'dup-1'"),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_specific_problem_and_an_exception() {
    let hub = Hub::start("bad", "").await;
    let mut east = hub.client(EAST).await;
    // (what, body, status, problem slug, offending field)
    type Case = (
        &'static str,
        Vec<u8>,
        u16,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        ("malformed json", b"{\"specversion\": \"1.0\", ".to_vec(), 400, "malformed-json", None),
        (
            "unknown type",
            serde_json::to_vec(&event("b1", "wms-east", "inventory.teleported.v1", json!({}))).unwrap(),
            422,
            "unknown-event-type",
            Some("type"),
        ),
        (
            "negative qty",
            serde_json::to_vec(&received("b2", "wms-east", "SKU-1", "DC-EAST", -4)).unwrap(),
            422,
            "invalid-event-data",
            Some("data.qty"),
        ),
        (
            "fractional qty",
            serde_json::to_vec(&event("b3", "wms-east", "inventory.received.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1.5}))).unwrap(),
            422,
            "invalid-event-data",
            Some("data.qty"),
        ),
        (
            "missing time",
            br#"{"specversion":"1.0","id":"b4","source":"wms-east","type":"inventory.received.v1","data":{}}"#.to_vec(),
            422,
            "invalid-envelope",
            None,
        ),
        (
            "wrong source for the token",
            serde_json::to_vec(&received("b5", "wms-west", "SKU-1", "DC-WEST", 1)).unwrap(),
            403,
            "source-not-allowed",
            Some("source"),
        ),
        (
            "unknown item",
            serde_json::to_vec(&received("b6", "wms-east", "SKU-999999", "DC-EAST", 1)).unwrap(),
            422,
            "unknown-item",
            Some("data.item"),
        ),
        (
            "unknown location",
            serde_json::to_vec(&received("b7", "wms-east", "SKU-1", "DC-NOWHERE", 1)).unwrap(),
            422,
            "unknown-location",
            Some("data.location"),
        ),
        (
            "location owned by another source",
            serde_json::to_vec(&event("b8", "wms-east", "inventory.adjusted.v1",
                json!({"item": "SKU-1", "location": "DC-WEST", "delta": 3, "reason": "found"}))).unwrap(),
            422,
            "ownership-violation",
            Some("source"),
        ),
        ("oversize body", vec![b' '; 2 * 1024 * 1024], 413, "body-too-large", None),
    ];
    for (name, body, status, slug, field) in &cases {
        let (s, p) = post_raw(
            &mut east,
            "/v1/events",
            "application/cloudevents+json",
            body.clone(),
        )
        .await;
        assert_eq!(s, *status, "{name}: {p}");
        let ty = p["type"].as_str().unwrap_or_default();
        assert!(ty.ends_with(slug), "{name}: type {ty}");
        assert!(
            !p["detail"].as_str().unwrap_or_default().is_empty(),
            "{name}: detail"
        );
        if let Some(f) = field {
            assert_eq!(p["field"].as_str(), Some(*f), "{name}: {p}");
        }
    }
    let mut q = hub.client(QUERY).await;
    let (_, v) = get(&mut q, "/v1/exceptions?limit=100").await;
    let counts = &v["open_by_kind"];
    assert_eq!(
        counts["schema_violation"], 6,
        "malformed, unknown type, negative, fractional, missing time, oversize: {v}"
    );
    assert_eq!(counts["auth_rejected"], 1, "{v}");
    assert_eq!(counts["unknown_item"], 1);
    assert_eq!(counts["unknown_location"], 1);
    assert_eq!(counts["ownership_violation"], 1);
    let unknown = v["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "unknown_item")
        .unwrap();
    assert!(
        unknown["raw"].as_str().unwrap().contains("SKU-999999"),
        "raw input kept: {unknown}"
    );
    // Quarantined events are in the log, not applied.
    assert_eq!(
        sqlite_count(
            &hub.db(),
            "SELECT count(*) FROM events WHERE status = 'quarantined'"
        ),
        3
    );
    assert!(
        positions(&mut q, "SKU-1").await.is_empty(),
        "nothing applied"
    );
    // A token without ingest rights and no token at all.
    let (s, _) = post(
        &mut q,
        "/v1/events",
        &received("b9", "wms-east", "SKU-1", "DC-EAST", 1),
    )
    .await;
    assert_eq!(s, 403);
    let mut anon = hub.client("not-a-token").await;
    let (s, p) = get(&mut anon, "/v1/availability?item=SKU-1&channel=shopify").await;
    assert_eq!(s, 401, "{p}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ndjson_batch_answers_each_line_in_order() {
    let hub = Hub::start("batch", "").await;
    let mut east = hub.client(EAST).await;
    let lines = [
        serde_json::to_string(&received("n1", "wms-east", "SKU-3", "DC-EAST", 5)).unwrap(),
        "{not json".to_string(),
        serde_json::to_string(&received("n2", "wms-east", "SKU-3", "DC-EAST", -1)).unwrap(),
        serde_json::to_string(&received("n3", "wms-east", "SKU-404", "DC-EAST", 1)).unwrap(),
        serde_json::to_string(&received("n1", "wms-east", "SKU-3", "DC-EAST", 5)).unwrap(),
        serde_json::to_string(&received("n4", "wms-east", "SKU-3", "DC-EAST", 7)).unwrap(),
    ];
    let body = lines.join("\n").into_bytes();
    let r = east
        .send(
            hyper::Method::POST,
            "/v1/events",
            "application/x-ndjson",
            hyper::body::Bytes::from(body),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let out: Vec<serde_json::Value> = r
        .body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let statuses: Vec<&str> = out.iter().map(|v| v["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        [
            "applied",
            "rejected",
            "rejected",
            "quarantined",
            "duplicate",
            "applied"
        ],
        "{out:#?}"
    );
    for (i, v) in out.iter().enumerate() {
        assert_eq!(v["line"], i + 1);
    }
    assert_eq!(out[2]["problem"]["field"], "data.qty");
    let mut q = hub.client(QUERY).await;
    assert_eq!(positions(&mut q, "SKU-3").await[0].1, 12);

    let too_many: String = (0..10_001).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let r = east
        .send(
            hyper::Method::POST,
            "/v1/events",
            "application/x-ndjson",
            hyper::body::Bytes::from(too_many),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn reservations_hold_release_commit_and_expire() {
    let mut hub = Hub::start("res", "").await;
    let mut east = hub.client(EAST).await;
    post(
        &mut east,
        "/v1/events",
        &received("r-stock-1", "wms-east", "SKU-4", "DC-EAST", 10),
    )
    .await;
    post(
        &mut east,
        "/v1/events",
        &received("r-stock-2", "wms-east", "SKU-5", "DC-EAST", 2),
    )
    .await;
    let mut shop = hub.client(RESERVE).await;
    let req = json!({"id": "cart-1", "channel": "shopify", "lines": [{"item": "SKU-4", "qty": 6}, {"item": "SKU-5", "qty": 2}], "ttl_s": 600});
    let (s, first) = post(&mut shop, "/v1/reservations", &req).await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["status"], "held");
    assert_eq!(
        first["lines"],
        json!([{"item": "SKU-4", "location": "DC-EAST", "qty": 6}, {"item": "SKU-5", "location": "DC-EAST", "qty": 2}])
    );
    let (s, again) = post(&mut shop, "/v1/reservations", &req).await;
    assert_eq!((s, &again), (201, &first), "a repeat gets the same answer");
    let other = json!({"id": "cart-1", "channel": "shopify", "lines": [{"item": "SKU-4", "qty": 1}], "ttl_s": 600});
    let (s, p) = post(&mut shop, "/v1/reservations", &other).await;
    assert_eq!(s, 409);
    assert!(
        p["type"]
            .as_str()
            .unwrap()
            .ends_with("reservation-conflict")
    );

    let short = json!({"id": "cart-2", "channel": "shopify", "lines": [{"item": "SKU-4", "qty": 3}, {"item": "SKU-5", "qty": 1}], "ttl_s": 600});
    let (s, p) = post(&mut shop, "/v1/reservations", &short).await;
    assert_eq!(s, 409, "{p}");
    assert!(p["type"].as_str().unwrap().ends_with("insufficient-stock"));
    assert_eq!(
        p["shortfall"],
        json!([{"item": "SKU-5", "requested": 1, "available": 0, "short": 1}])
    );
    assert_eq!(
        positions(&mut shop, "SKU-4").await[0].2,
        6,
        "all or nothing: SKU-4 not held for cart-2"
    );

    let (s, v) = get(&mut shop, "/v1/availability?item=SKU-4&channel=shopify").await;
    assert_eq!((s, v["available"].as_i64()), (200, Some(4)));

    let (s, v) = post(&mut shop, "/v1/reservations/cart-1/commit", &json!({})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("committed")), "{v}");
    let p = &positions(&mut shop, "SKU-4").await[0];
    assert_eq!((p.2, p.3, p.4), (0, 6, 4), "reserved → allocated");
    let (s, _) = post(&mut shop, "/v1/reservations/nope/release", &json!({})).await;
    assert_eq!(s, 404);

    // Expiry: a durable timer that survives a kill and fires once after restart.
    let req = json!({"id": "cart-3", "channel": "shopify", "lines": [{"item": "SKU-4", "qty": 3}], "ttl_s": 2});
    let (s, v) = post(&mut shop, "/v1/reservations", &req).await;
    assert_eq!(s, 201, "{v}");
    let req = json!({"id": "cart-4", "channel": "b2b", "lines": [{"item": "SKU-4", "qty": 1}], "ttl_s": 600});
    let (s, v) = post(&mut shop, "/v1/reservations", &req).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(&mut shop, "/v1/reservations/cart-4/release", &json!({})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("released")));
    let (s, v) = post(&mut shop, "/v1/reservations/cart-4/release", &json!({})).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("released")),
        "releasing twice is a repeat"
    );
    hub.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    hub.restart().await;
    let mut q = hub.client(QUERY).await;
    let mut reserved = -1;
    for _ in 0..100 {
        reserved = positions(&mut q, "SKU-4").await[0].2;
        if reserved == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reserved, 0, "cart-3 expired after the restart");
    assert_eq!(
        sqlite_count(
            &hub.db(),
            "SELECT count(*) FROM events WHERE type = 'reservation.expired.v1'"
        ),
        1
    );
    assert_eq!(sqlite_count(&hub.db(), "SELECT count(*) FROM timers"), 0);
    assert_eq!(
        sqlite_count(
            &hub.db(),
            "SELECT count(*) FROM reservations WHERE id = 'cart-3' AND status = 'expired'"
        ),
        1
    );
    let (_, v) = get(&mut q, "/v1/availability?item=SKU-4&channel=shopify").await;
    assert_eq!(v["available"], 4, "10 on hand - 6 allocated");

    // Releasing a committed reservation (an order cancelled after allocation) gives it back.
    let mut shop = hub.client(RESERVE).await;
    let (s, v) = post(&mut shop, "/v1/reservations/cart-1/release", &json!({})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("released")), "{v}");
    let p = &positions(&mut shop, "SKU-4").await[0];
    assert_eq!((p.2, p.3, p.4), (0, 0, 10), "allocated → available");
    let (s, v) = post(&mut shop, "/v1/reservations/cart-1/commit", &json!({})).await;
    assert_eq!(s, 409, "a released reservation cannot be committed: {v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversell_risk_is_raised_and_withholds_availability() {
    let hub = Hub::start("oversell", "").await;
    let mut east = hub.client(EAST).await;
    post(
        &mut east,
        "/v1/events",
        &received("o1", "wms-east", "SKU-6", "DC-EAST", 5),
    )
    .await;
    let mut shop = hub.client(RESERVE).await;
    let (s, _) = post(&mut shop, "/v1/reservations",
        &json!({"id": "o-cart", "channel": "shopify", "lines": [{"item": "SKU-6", "qty": 4}], "ttl_s": 600})).await;
    assert_eq!(s, 201);
    // The warehouse finds two damaged: available = 5 - 2 - 4 = -1.
    let (s, v) = post(&mut east, "/v1/events", &event("o2", "wms-east", "inventory.adjusted.v1",
        json!({"item": "SKU-6", "location": "DC-EAST", "delta": -2, "reason": "damaged in handling"}))).await;
    assert_eq!(s, 200, "physical events always apply: {v}");
    let (_, v) = get(&mut shop, "/v1/exceptions?kind=oversell_risk&status=open").await;
    assert_eq!(v["exceptions"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = get(&mut shop, "/v1/availability?item=SKU-6&channel=shopify").await;
    assert_eq!(v["available"], 0);
    post(
        &mut east,
        "/v1/events",
        &received("o3", "wms-east", "SKU-6", "DC-EAST", 3),
    )
    .await;
    let (_, v) = get(
        &mut shop,
        "/v1/exceptions?kind=oversell_risk&status=resolved",
    )
    .await;
    assert_eq!(
        v["exceptions"].as_array().unwrap().len(),
        1,
        "cleared once stock is back: {v}"
    );
    let (_, v) = get(&mut shop, "/v1/availability?item=SKU-6&channel=shopify").await;
    assert_eq!(v["available"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_and_late_deltas_converge_over_http() {
    let hub = Hub::start("counts", "").await;
    let mut east = hub.client(EAST).await;
    let at = |id: &str, ty: &str, time: &str, data: serde_json::Value| {
        let mut e = event(id, "wms-east", ty, data);
        e["time"] = json!(time);
        e
    };
    post(
        &mut east,
        "/v1/events",
        &at(
            "c1",
            "inventory.counted.v1",
            "2026-11-23T10:00:00Z",
            json!({"item": "SKU-7", "location": "DC-EAST", "qty": 40}),
        ),
    )
    .await;
    // Late: happened before the count, already in it.
    let (s, v) = post(
        &mut east,
        "/v1/events",
        &at(
            "c2",
            "inventory.received.v1",
            "2026-11-23T09:00:00Z",
            json!({"item": "SKU-7", "location": "DC-EAST", "qty": 10}),
        ),
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("applied")),
        "recorded: {v}"
    );
    post(
        &mut east,
        "/v1/events",
        &at(
            "c3",
            "inventory.received.v1",
            "2026-11-23T11:00:00Z",
            json!({"item": "SKU-7", "location": "DC-EAST", "qty": 5}),
        ),
    )
    .await;
    let mut q = hub.client(QUERY).await;
    assert_eq!(positions(&mut q, "SKU-7").await[0].1, 45);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sequence_gap_holds_then_releases_with_an_exception() {
    let text = config("[resequencer]\ngap_wait_s = 1\n").replacen(
        "id = \"wms-east\"\n",
        "id = \"wms-east\"\nsequenced = true\n",
        1,
    );
    let hub = Hub::start_with("gap", &text).await;
    let mut east = hub.client(EAST).await;
    let seq = |id: &str, n: u64, qty: i64| {
        let mut e = received(id, "wms-east", "SKU-8", "DC-EAST", qty);
        e["sequence"] = json!(n.to_string());
        e
    };
    let (s, v) = post(&mut east, "/v1/events", &seq("s1", 1, 1)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("applied")), "{v}");
    let (s, v) = post(&mut east, "/v1/events", &seq("s3", 3, 100)).await;
    assert_eq!((s, v["status"].as_str()), (202, Some("held")), "{v}");
    let mut q = hub.client(QUERY).await;
    assert_eq!(
        positions(&mut q, "SKU-8").await[0].1,
        1,
        "held, not applied"
    );
    let mut on_hand = 0;
    for _ in 0..60 {
        on_hand = positions(&mut q, "SKU-8").await[0].1;
        if on_hand == 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(on_hand, 101, "released after the wait");
    let (_, v) = get(&mut q, "/v1/exceptions?kind=sequence_gap").await;
    let reason = v["exceptions"][0]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("skipped sequence 2..=2"), "{reason}");
    // The late event still applies (it is a different id), and in-order from now on.
    let (s, v) = post(&mut east, "/v1/events", &seq("s2", 2, 10)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("applied")), "{v}");
    let (s, v) = post(&mut east, "/v1/events", &seq("s4", 4, 1000)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("applied")), "{v}");
    assert_eq!(positions(&mut q, "SKU-8").await[0].1, 1111);
}
