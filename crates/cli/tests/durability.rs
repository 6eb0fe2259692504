//! Guarantees under failure and contention: SIGKILL at random moments, and 256 clients racing
//! for one item.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;

const ITEMS: usize = 20;

fn qty_of(k: u64) -> i64 {
    1 + (k % 5) as i64
}

fn item_of(k: u64) -> String {
    format!("SKU-{}", 1 + (k as usize % ITEMS))
}

fn received(k: u64) -> serde_json::Value {
    event(
        &format!("crash-{k}"),
        "wms-east",
        "inventory.received.v1",
        json!({"item": item_of(k), "location": "DC-EAST", "qty": qty_of(k)}),
    )
}

#[derive(Default)]
struct Ledgerbook {
    /// Acknowledged as applied (or as a duplicate of an applied event).
    acked: HashSet<u64>,
    /// Sent but not answered before the kill: may or may not have committed.
    in_doubt: HashSet<u64>,
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_nothing_acknowledged_and_applies_once() {
    let cycles: usize = std::env::var("CROSSDOCK_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut hub = Hub::start("crash", "").await;
    let book = Arc::new(Mutex::new(Ledgerbook::default()));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for cycle in 0..cycles {
        if cycle > 0 {
            hub.restart().await;
        }
        // Retry what is in doubt first, as a real client would: each is applied or a duplicate.
        let retry: Vec<u64> = book.lock().unwrap().in_doubt.iter().copied().collect();
        let mut c = hub.client(EAST).await;
        for k in retry {
            let (s, v) = post(&mut c, "/v1/events", &received(k)).await;
            assert_eq!(s, 200, "retry of {k}: {v}");
            assert!(
                matches!(v["status"].as_str(), Some("applied") | Some("duplicate")),
                "{v}"
            );
            let mut b = book.lock().unwrap();
            b.in_doubt.remove(&k);
            b.acked.insert(k);
        }
        let mut tasks = Vec::new();
        for w in 0..6 {
            let (book, next, addr) = (book.clone(), next.clone(), hub.addr.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(mut c) = crossdock_cli::client::Client::connect(&addr, EAST).await else {
                    return;
                };
                loop {
                    // Half the writers send small NDJSON batches, half single events.
                    let n = if w % 2 == 0 { 1 } else { 8 };
                    let ks: Vec<u64> = (0..n)
                        .map(|_| next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                        .collect();
                    book.lock().unwrap().in_doubt.extend(&ks);
                    let body: Vec<u8> = ks
                        .iter()
                        .flat_map(|k| {
                            let mut line = serde_json::to_vec(&received(*k)).unwrap();
                            line.push(b'\n');
                            line
                        })
                        .collect();
                    let ct = if n == 1 {
                        "application/json"
                    } else {
                        "application/x-ndjson"
                    };
                    let Ok(r) = c
                        .send(
                            hyper::Method::POST,
                            "/v1/events",
                            ct,
                            hyper::body::Bytes::from(body),
                        )
                        .await
                    else {
                        return;
                    };
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    let text = String::from_utf8_lossy(&r.body);
                    let applied = text.matches("\"applied\"").count();
                    assert_eq!(applied, n, "every line applied: {text}");
                    let mut b = book.lock().unwrap();
                    for k in ks {
                        b.in_doubt.remove(&k);
                        b.acked.insert(k);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(50..400))).await;
        hub.kill();
        for t in tasks {
            t.await.unwrap();
        }
    }
    hub.restart().await;
    let b = std::mem::take(&mut *book.lock().unwrap());
    assert!(
        b.acked.len() > cycles * 10,
        "the test did real work: {} acked",
        b.acked.len()
    );
    let db = hub.db();
    // Every acknowledged event is in the log exactly once; nothing else is but what was in doubt.
    let logged: HashSet<u64> = {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let mut stmt = conn
            .prepare("SELECT id FROM events WHERE source = 'wms-east' AND status = 'applied'")
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|id| id.unwrap().trim_start_matches("crash-").parse().unwrap())
            .collect()
    };
    for k in &b.acked {
        assert!(
            logged.contains(k),
            "acknowledged event crash-{k} is missing after the crashes"
        );
    }
    for k in &logged {
        assert!(
            b.acked.contains(k) || b.in_doubt.contains(k),
            "crash-{k} is logged but was never sent"
        );
    }
    // State equals the replay of the log: on_hand per item is the sum of its logged receipts.
    let mut expected: HashMap<String, i64> = HashMap::new();
    for k in &logged {
        *expected.entry(item_of(*k)).or_default() += qty_of(*k);
    }
    let mut q = hub.client(QUERY).await;
    for (item, qty) in expected {
        let pos = positions(&mut q, &item).await;
        assert_eq!(
            pos[0].1, qty,
            "{item}: on_hand must equal the replay of its logged events"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_fifty_six_clients_race_for_one_item_without_oversell() {
    const STOCK: i64 = 100;
    let hub = Hub::start("contention", "").await;
    let mut east = hub.client(EAST).await;
    let (s, _) = post(
        &mut east,
        "/v1/events",
        &event(
            "stock",
            "wms-east",
            "inventory.received.v1",
            json!({"item": "SKU-9", "location": "DC-EAST", "qty": STOCK}),
        ),
    )
    .await;
    assert_eq!(s, 200);
    let mut tasks = Vec::new();
    for i in 0..256 {
        let addr = hub.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = crossdock_cli::client::Client::connect(&addr, RESERVE).await.unwrap();
            let body = json!({"id": format!("race-{i}"), "channel": "shopify", "lines": [{"item": "SKU-9", "qty": 1}], "ttl_s": 600});
            post(&mut c, "/v1/reservations", &body).await
        }));
    }
    let mut granted = 0;
    let mut refused = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            201 => {
                granted += v["lines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["qty"].as_i64().unwrap())
                    .sum::<i64>()
            }
            409 => {
                assert!(
                    v["type"].as_str().unwrap().ends_with("insufficient-stock"),
                    "{v}"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(
        granted, STOCK,
        "the sum of granted quantities equals the stock exactly"
    );
    assert_eq!(refused, 256 - STOCK);
    let mut q = hub.client(QUERY).await;
    let p = &positions(&mut q, "SKU-9").await[0];
    assert_eq!((p.2, p.4), (STOCK, 0), "reserved = stock, available = 0");
}
