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
    // An input that names no correlation id has its own key as one.
    let out = cli(&["event:wms-east/other", "--json"], QUERY);
    assert!(out.status.success(), "{out:?}");
    let own: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = own["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"] == "event")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["other"], "{own:#}");
    assert!(
        stages(&own, "ledger")
            .iter()
            .any(|c| c["item"] == "SKU-1" && c["delta"]["on_hand"] == 1),
        "{own:#}"
    );
    let out = cli(&["no-such-document"], ADMIN);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = cli(&[DOC], EAST);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A collector on loopback that keeps every OTLP/HTTP request: `(path, content type, body)`.
async fn collector() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // Headers, then Content-Length bytes of body; answer 200 and keep going.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 8192];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                            })
                            .unwrap_or_default()
                    };
                    let length: usize = header("content-length").parse().unwrap_or(0);
                    while buf.len() < head_end + length {
                        let mut chunk = [0u8; 8192];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    let body = buf[head_end..head_end + length].to_vec();
                    keep.lock()
                        .unwrap()
                        .push((path, header("content-type"), body));
                    buf.drain(..head_end + length);
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spans_carrying_the_correlation_id_are_exported_over_otlp() {
    let (url, seen) = collector().await;
    let sim = shopify_sim(1).await;
    let hub = common::shop::start_hub_with(
        "otlp",
        &sim,
        1,
        &[],
        &[],
        &format!(
            "[telemetry]\notlp_endpoint = \"{url}\"\nservice_name = \"crossdock-test\"\nspan_level = \"debug\"\n"
        ),
    )
    .await;
    let mut east = hub.client(EAST).await;
    let (status, v) = post(
        &mut east,
        "/v1/events",
        &traced("rcv-1", "SKU-1", "DC-EAST", 4),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let has =
        |bytes: &[u8], needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let requests = seen.lock().unwrap().clone();
        let bodies: Vec<&Vec<u8>> = requests.iter().map(|(_, _, b)| b).collect();
        let found = |name: &str| bodies.iter().any(|b| has(b, name));
        // The engine's apply span and the delivery span both name the document.
        let apply = bodies.iter().any(|b| has(b, "apply") && has(b, DOC));
        let deliver = bodies.iter().any(|b| has(b, "deliver") && has(b, DOC));
        if apply && deliver && found("crossdock-test") && found("commit") {
            for (path, content_type, _) in &requests {
                assert_eq!(path, "/v1/traces");
                assert_eq!(content_type, "application/x-protobuf");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} export requests; apply {apply}, deliver {deliver}",
            requests.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn telemetry_config_problems_are_named() {
    let dir = common::temp_dir("telemetry-config");
    let text = common::config(
        "[telemetry]\notlp_endpoint = \"collector:4318\"\nspan_level = \"loud\"\n\
         [[telemetry.canaries]]\nchannel = \"nowhere\"\nitem = \"SKU-1\"\nlocation = \"DC-NORTH\"\n\
         interval_s = 10\ntimeout_s = 20\n",
    );
    std::fs::write(dir.join("crossdock.toml"), text).unwrap();
    std::fs::write(dir.join("items.csv"), "item\nSKU-1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .arg("check-config")
        .arg(dir.join("crossdock.toml"))
        .envs([
            ("T_ADMIN", ADMIN),
            ("T_EAST", EAST),
            ("T_QUERY", QUERY),
            ("T_RESERVE", common::RESERVE),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    for key in [
        "telemetry.otlp_endpoint",
        "telemetry.span_level",
        "telemetry.canaries.0.channel",
        "telemetry.canaries.0.location",
        "telemetry.canaries.0.timeout_s",
    ] {
        assert!(text.contains(key), "{key} not named in:\n{text}");
    }
}
