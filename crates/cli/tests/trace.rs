//! Traces: one business document's journey through the hub (`GET /v1/trace/{id}` and
//! `crossdock trace ID`): its events, the ledger and availability changes they made, the value
//! delivered to the channel (which saw the correlation id as a header), the message parked in the
//! DLQ and the exceptions raised, in time order.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::shop::{shopify_sim, start_hub};
use common::{ADMIN, EAST, QUERY, get, post};
use serde_json::{Value, json};

const DOC: &str = "PO-4711";

fn traced(id: &str, item: &str, location: &str, qty: i64) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "wms-east", "type": "inventory.received.v1",
        "time": "2026-11-23T10:00:00Z", "correlationid": DOC,
        "data": {"item": item, "location": location, "qty": qty},
    })
}

fn stages(trace: &Value, stage: &str) -> Vec<Value> {
    trace["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"] == stage)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_documents_journey_is_traced_from_input_to_channel() {
    let sim = shopify_sim(1).await;
    sim.faults().permanent_items(["7"]);
    let hub = start_hub("trace", &sim, 1, &[], &[]).await;
    let mut east = hub.client(EAST).await;
    for (id, item, qty) in [("rcv-1", "SKU-1", 10), ("rcv-7", "SKU-7", 5)] {
        let (status, v) = post(&mut east, "/v1/events", &traced(id, item, "DC-EAST", qty)).await;
        assert_eq!(status, 200, "{v}");
    }
    // The same document's line for a location this source does not own: an exception.
    let (status, v) = post(
        &mut east,
        "/v1/events",
        &traced("rcv-w", "SKU-2", "DC-WEST", 3),
    )
    .await;
    assert!(status < 500, "{status} {v}");
    // Unrelated traffic stays out of the trace.
    let (status, _) = post(
        &mut east,
        "/v1/events",
        &common::event(
            "other",
            "wms-east",
            "inventory.received.v1",
            json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1}),
        ),
    )
    .await;
    assert_eq!(status, 200);

    let mut query = hub.client(QUERY).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let trace = loop {
        let (status, t) = get(&mut query, &format!("/v1/trace/{DOC}")).await;
        assert_eq!(status, 200, "{t}");
        if !stages(&t, "delivery").is_empty() && !stages(&t, "dead_letter").is_empty() {
            break t;
        }
        assert!(Instant::now() < deadline, "{t:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let events: Vec<&str> = trace["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"] == "event")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"rcv-1") && events.contains(&"rcv-7"),
        "{events:?}"
    );
    assert!(!events.contains(&"other"), "{events:?}");
    let ledger = stages(&trace, "ledger");
    let sku1 = ledger
        .iter()
        .find(|c| c["item"] == "SKU-1")
        .expect("SKU-1 changed");
    assert_eq!(sku1["location"], "DC-EAST");
    assert_eq!(sku1["delta"]["on_hand"], 10, "{sku1}");
    assert!(
        ledger.iter().all(|c| c["delta"]["on_hand"] != 1),
        "the unrelated receipt is not in it: {ledger:?}"
    );
    let ats = stages(&trace, "availability");
    assert!(
        ats.iter()
            .any(|a| a["item"] == "SKU-1" && a["channel"] == "shopify" && a["to"] == 10),
        "{ats:?}"
    );
    let delivered = stages(&trace, "delivery");
    assert!(
        delivered.iter().any(|d| d["endpoint"] == "shopify"
            && d["key"] == "SKU-1"
            && (d["outcome"] == "delivered" && d["value"] == 10
                || d["outcome"] == "delivered_later" && d["value"] == 11)),
        "{delivered:?}"
    );
    let parked = stages(&trace, "dead_letter");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["key"], "SKU-7");
    let exceptions = stages(&trace, "exception");
    let kinds: Vec<&str> = exceptions
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"delivery_failed"), "{kinds:?}");
    assert!(kinds.contains(&"ownership_violation"), "{kinds:?}");
    assert!(
        exceptions.iter().all(|x| x.get("raw").is_none()),
        "raw inputs stay in the exceptions API"
    );
    // Causes come before effects.
    let times: Vec<&str> = trace["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["at"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "in time order");
    let first_event = trace["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["stage"] == "event")
        .unwrap();
    let first_delivery = trace["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["stage"] == "delivery")
        .unwrap();
    assert!(first_event < first_delivery);
    assert!(
        sim.correlation_ids().iter().any(|c| c == DOC),
        "the channel saw the correlation id: {:?}",
        sim.correlation_ids()
    );

    // Unknown ids, bad limits and tokens without the query scope are refused clearly.
    let (status, p) = get(&mut query, "/v1/trace/no-such-document").await;
    assert_eq!(
        (status, p["type"].as_str().unwrap()),
        (404, "urn:crossdock:problem:no-such-trace")
    );
    let (status, p) = get(&mut query, &format!("/v1/trace/{DOC}?limit=0")).await;
    assert_eq!((status, p["field"].as_str().unwrap()), (400, "limit"));
    let (status, _) = get(&mut east, &format!("/v1/trace/{DOC}")).await;
    assert_eq!(status, 403);
    let (status, limited) = get(&mut query, &format!("/v1/trace/{DOC}?limit=1")).await;
    assert_eq!(status, 200);
    assert_eq!(limited["counts"]["events"], 1, "{limited}");

    // The CLI prints the same journey.
    let cli = |args: &[&str], token: &str| {
        Command::new(env!("CARGO_BIN_EXE_crossdock"))
            .arg("trace")
            .args(args)
            .args(["--url", &format!("http://{}", hub.addr)])
            .env("CROSSDOCK_ADMIN_TOKEN", token)
            .output()
            .expect("run crossdock trace")
    };
    let out = cli(&[DOC], ADMIN);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("inventory.received.v1 rcv-1 from wms-east"),
        "{text}"
    );
    assert!(text.contains("SKU-1 @ DC-EAST: on_hand +10"), "{text}");
    assert!(
        text.contains("shopify SKU-1 delivered value 10")
            || text.contains("shopify SKU-1 delivered_later value 11"),
        "{text}"
    );
    assert!(text.contains("delivery_failed"), "{text}");
    let out = cli(&[DOC, "--json"], QUERY);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["correlation_id"], DOC);
    let out = cli(&["no-such-document"], ADMIN);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = cli(&[DOC], EAST);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
