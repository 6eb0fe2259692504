//! The real binary with `engine.partitions = 4`: reservations and orders whose lines hash to
//! different partitions, from many clients at once, with a SIGKILL in the middle; after a
//! restart every request is sent again, and each item's `reserved` (or `allocated`) is exactly
//! the lines granted. And a sequenced 3PL feed across the partitions, with a kill.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{ADMIN, EAST, Hub, RESERVE, event, get, post};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const CLIENTS: usize = 32;
const PER_CLIENT: usize = 12;
/// Items 1..=3 are scarce; the others plentiful.
const ITEMS: usize = 12;

fn request(client: usize, k: usize) -> (String, Value) {
    let id = format!("cart-{client}-{k}");
    let mut rng = fastrand::Rng::with_seed((client * 1000 + k) as u64);
    let mut items: Vec<usize> = Vec::new();
    while items.len() < 3 {
        let i = rng.usize(1..=ITEMS);
        if !items.contains(&i) {
            items.push(i);
        }
    }
    let lines: Vec<Value> = items
        .iter()
        .map(|i| json!({"item": format!("SKU-{i}"), "qty": rng.i64(1..=3)}))
        .collect();
    let body = json!({"id": id, "channel": "shopify", "lines": lines, "ttl_s": 900});
    (id, body)
}

/// Sends one reservation until the hub gives an answer (it may be down for a moment):
/// `Some(lines)` when held, `None` when refused for stock.
async fn reserve_until_answered(hub_addr: &Arc<Mutex<String>>, body: &Value) -> Option<Vec<Value>> {
    for _ in 0..600 {
        let addr = hub_addr.lock().await.clone();
        let Ok(mut c) = crossdock_cli::client::Client::connect(&addr, RESERVE).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(r) = c
            .post_json("/v1/reservations", serde_json::to_vec(body).unwrap())
            .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        match r.status {
            201 => {
                assert_eq!(v["status"], "held", "{v}");
                return Some(v["lines"].as_array().unwrap().clone());
            }
            409 if v["type"] == "urn:crossdock:problem:insufficient-stock" => return None,
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("unexpected answer {other}: {v}"),
        }
    }
    panic!("no answer for {body}");
}

/// Opening stock: `scarce` units of SKU-1..=3, plenty of the others, all at DC-EAST.
async fn seed(hub: &Hub, scarce: i64) {
    let mut east = hub.client(EAST).await;
    for i in 1..=ITEMS {
        let qty = if i <= 3 { scarce } else { 1000 };
        let (s, v) = post(
            &mut east,
            "/v1/events",
            &event(
                &format!("open-{i}"),
                "wms-east",
                "inventory.received.v1",
                json!({"item": format!("SKU-{i}"), "location": "DC-EAST", "qty": qty}),
            ),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
}

/// `clients` clients each sending `per_client` requests (`send(addr, client, k)` until
/// answered) at once; the hub is killed once `kill_after` are answered and restarted, and the
/// clients go on against it. Returns once every request was answered.
async fn clients_through_a_kill<F, Fut>(
    hub: &mut Hub,
    clients: usize,
    per_client: usize,
    kill_after: usize,
    send: F,
) -> Arc<Mutex<String>>
where
    F: Fn(Arc<Mutex<String>>, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let addr = Arc::new(Mutex::new(hub.addr.clone()));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (addr, answered, send) = (addr.clone(), answered.clone(), send.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..per_client {
                send(addr.clone(), client, k).await;
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while answered.load(Ordering::Relaxed) < kill_after {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    hub.kill();
    assert!(
        answered.load(Ordering::Relaxed) < clients * per_client,
        "killed while requests were in flight"
    );
    hub.restart().await;
    *addr.lock().await = hub.addr.clone();
    for t in tasks {
        t.await.unwrap();
    }
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_across_partitions_survive_a_kill_and_never_oversell() {
    let mut hub = Hub::start("partitions", "[engine]\npartitions = 4\n").await;
    seed(&hub, 6).await;
    // 32 clients at once; the hub is killed while they are at it, a fifth of the requests in.
    let addr = clients_through_a_kill(
        &mut hub,
        CLIENTS,
        PER_CLIENT,
        CLIENTS * PER_CLIENT / 5,
        |addr, client, k| async move {
            let (_, body) = request(client, k);
            reserve_until_answered(&addr, &body).await;
        },
    )
    .await;

    // Every request again: a held one is answered as held with the same lines, the rest are
    // decided now. The last answer of each is what the hub holds.
    let mut granted: HashMap<String, Vec<Value>> = HashMap::new();
    for client in 0..CLIENTS {
        for k in 0..PER_CLIENT {
            let (id, body) = request(client, k);
            if let Some(lines) = reserve_until_answered(&addr, &body).await {
                granted.insert(id, lines);
            }
        }
    }
    assert!(
        granted.len() > CLIENTS,
        "most carts were held: {}",
        granted.len()
    );
    assert!(
        granted.len() < CLIENTS * PER_CLIENT,
        "the scarce items refused some carts"
    );
    let mut want: HashMap<String, i64> = HashMap::new();
    for lines in granted.values() {
        for l in lines {
            *want
                .entry(l["item"].as_str().unwrap().to_string())
                .or_default() += l["qty"].as_i64().unwrap();
        }
    }
    let mut query = hub.client(ADMIN).await;
    for i in 1..=ITEMS {
        let item = format!("SKU-{i}");
        let (s, v) = get(&mut query, &format!("/v1/items/{item}/positions")).await;
        assert_eq!(s, 200, "{v}");
        let p = &v["positions"][0];
        assert_eq!(
            p["reserved"].as_i64().unwrap(),
            want.get(&item).copied().unwrap_or(0),
            "{item}: reserved is exactly what was granted: {v}"
        );
        assert!(p["available"].as_i64().unwrap() >= 0, "{item}: {v}");
    }

    // Releasing everything leaves nothing reserved.
    let mut shop = hub.client(RESERVE).await;
    for id in granted.keys() {
        let (s, v) = post(
            &mut shop,
            &format!("/v1/reservations/{id}/release"),
            &json!({}),
        )
        .await;
        assert_eq!(s, 200, "{id}: {v}");
    }
    for i in 1..=ITEMS {
        let (_, v) = get(&mut query, &format!("/v1/items/SKU-{i}/positions")).await;
        assert_eq!(v["positions"][0]["reserved"], 0, "SKU-{i}: {v}");
    }

    // Readiness reports every partition: each has committed, and together they hold every item.
    let (s, v) = get(&mut query, "/readyz").await;
    assert_eq!(s, 200, "{v}");
    let parts = v["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 4, "{v}");
    for (n, p) in parts.iter().enumerate() {
        assert_eq!(p["partition"], n as u64, "{v}");
        assert!(p["ledger_seq"].as_u64().unwrap() > 0, "{v}");
    }
    let items: u64 = parts.iter().map(|p| p["items"].as_u64().unwrap()).sum();
    assert_eq!(items, ITEMS as u64, "{v}");
}

/// Event `n` of the sequenced 3PL feed: `n` units of one of ten items (on all four partitions),
/// at a fixed time, so a resend is the same event.
fn sequenced(n: u64) -> Value {
    let mut e = event(
        &format!("tpl-{n}"),
        "wms-east",
        "inventory.received.v1",
        json!({"item": format!("SKU-{}", n % 10 + 1), "location": "DC-EAST", "qty": n}),
    );
    e["time"] = json!(format!("2026-12-01T00:{:02}:{:02}Z", n / 60, n % 60));
    e["sequence"] = json!(n.to_string());
    e
}

async fn on_hand(hub: &Hub) -> Vec<i64> {
    let mut q = hub.client(common::QUERY).await;
    let mut out = Vec::new();
    for i in 1..=10 {
        let p = common::positions(&mut q, &format!("SKU-{i}")).await;
        out.push(p.iter().map(|p| p.1).sum());
    }
    out
}

fn expected(applied: &[u64]) -> Vec<i64> {
    let mut out = vec![0; 10];
    for &n in applied {
        out[(n % 10) as usize] += n as i64;
    }
    out
}

async fn converges(hub: &Hub, applied: &[u64], what: &str) {
    let want = expected(applied);
    for _ in 0..400 {
        if on_hand(hub).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(on_hand(hub).await, want, "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sequenced_feed_spans_partitions_through_duplicates_disorder_a_gap_and_a_kill() {
    let config = common::config("[engine]\npartitions = 4\n[resequencer]\ngap_wait_s = 1\n")
        .replacen(
            "id = \"wms-east\"\n",
            "id = \"wms-east\"\nsequenced = true\n",
            1,
        );
    let mut hub = Hub::start_with("partitions-seq", &config).await;
    let send = |hub: &Hub, n: u64| {
        let addr = hub.addr.clone();
        async move {
            let mut c = crossdock_cli::client::Client::connect(&addr, EAST)
                .await
                .unwrap();
            post(&mut c, "/v1/events", &sequenced(n)).await
        }
    };

    // 1 starts the stream; 2..=20 arrive shuffled, each held until its turn.
    let mut order: Vec<u64> = (2..=20).collect();
    fastrand::Rng::with_seed(3).shuffle(&mut order);
    order.insert(0, 1);
    let (mut next, mut arrived) = (1, std::collections::BTreeSet::new());
    for &n in &order {
        let (status, v) = send(&hub, n).await;
        arrived.insert(n);
        if n == next {
            assert_eq!(
                (status, v["status"].as_str()),
                (200, Some("applied")),
                "{n}: {v}"
            );
            while arrived.contains(&next) {
                next += 1;
            }
        } else {
            assert_eq!(
                (status, v["status"].as_str()),
                (202, Some("held")),
                "{n}: {v}"
            );
        }
    }
    let mut applied: Vec<u64> = (1..=20).collect();
    converges(&hub, &applied, "1..=20 in").await;
    for n in [1, 7, 20] {
        let (status, v) = send(&hub, n).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("duplicate")),
            "{v}"
        );
    }

    // 22 and 24 wait for 21 and 23 across a SIGKILL.
    for n in [24, 22] {
        let (status, v) = send(&hub, n).await;
        assert_eq!(status, 202, "{v}");
    }
    hub.kill();
    hub.restart().await;
    converges(&hub, &applied, "nothing held was applied").await;
    for n in [21, 23] {
        let (status, v) = send(&hub, n).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("applied")),
            "{n}: {v}"
        );
    }
    applied.extend(21..=24);
    converges(&hub, &applied, "22 and 24 released after the restart").await;

    // 26 without 25: released after the wait, with a sequence_gap exception.
    let (status, _) = send(&hub, 26).await;
    assert_eq!(status, 202);
    applied.push(26);
    converges(&hub, &applied, "26 after the gap's wait").await;
    let mut q = hub.client(ADMIN).await;
    let (_, v) = get(&mut q, "/v1/exceptions?kind=sequence_gap").await;
    let gaps = v["exceptions"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{v}");
    assert!(
        gaps[0]["reason"]
            .as_str()
            .unwrap()
            .contains("skipped sequence 25..=25"),
        "{v}"
    );

    // The whole feed again: every event a repeat, nothing moves.
    for n in (1..=24).chain([26]) {
        let (status, v) = send(&hub, n).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("duplicate")),
            "{n}: {v}"
        );
    }
    assert_eq!(on_hand(&hub).await, expected(&applied));
}

/// Order `k` of client `client`: three distinct items (on different partitions as often as
/// not), 1 to 3 units each.
fn order_request(client: usize, k: usize) -> (String, Value) {
    let id = format!("so-{client}-{k}");
    let mut rng = fastrand::Rng::with_seed((client * 7919 + k) as u64);
    let mut items: Vec<usize> = Vec::new();
    while items.len() < 3 {
        let i = rng.usize(1..=ITEMS);
        if !items.contains(&i) {
            items.push(i);
        }
    }
    let lines: Vec<Value> = items
        .iter()
        .map(|i| json!({"item": format!("SKU-{i}"), "qty": rng.i64(1..=3)}))
        .collect();
    let body = json!({"id": id, "channel": "shopify", "lines": lines,
        "ship_to": {"name": "Acme", "region": "NY"}, "amount_minor": 1000});
    (id, body)
}

/// Places one order until the hub answers: `Some(order)` when accepted (or a repeat of an
/// accepted one), `None` when refused for stock.
async fn order_until_answered(hub_addr: &Arc<Mutex<String>>, body: &Value) -> Option<Value> {
    for _ in 0..600 {
        let addr = hub_addr.lock().await.clone();
        let Ok(mut c) = crossdock_cli::client::Client::connect(&addr, RESERVE).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(r) = c
            .post_json("/v1/orders", serde_json::to_vec(body).unwrap())
            .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        match r.status {
            200 | 201 => return Some(v),
            409 if v["type"] == "urn:crossdock:problem:insufficient-stock" => return None,
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("unexpected answer {other}: {v}"),
        }
    }
    panic!("no answer for {body}");
}

/// Units each accepted order allocated, per item.
fn allocated_by_item(orders: &HashMap<String, Value>) -> HashMap<String, i64> {
    let mut out: HashMap<String, i64> = HashMap::new();
    for o in orders.values() {
        for line in o["lines"].as_array().unwrap() {
            for a in line["allocations"].as_array().unwrap() {
                *out.entry(a["item"].as_str().unwrap().to_string())
                    .or_default() += a["qty"].as_i64().unwrap();
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_across_partitions_survive_a_kill_and_allocate_once() {
    const CLIENTS: usize = 12;
    const PER_CLIENT: usize = 8;
    let mut hub = Hub::start("partitions-orders", "[engine]\npartitions = 4\n").await;
    seed(&hub, 8).await;
    let addr = clients_through_a_kill(
        &mut hub,
        CLIENTS,
        PER_CLIENT,
        CLIENTS * PER_CLIENT / 4,
        |addr, client, k| async move {
            let (_, body) = order_request(client, k);
            order_until_answered(&addr, &body).await;
        },
    )
    .await;

    // Every order again: an accepted one is answered as it was, the rest are decided now.
    let mut accepted: HashMap<String, Value> = HashMap::new();
    for client in 0..CLIENTS {
        for k in 0..PER_CLIENT {
            let (id, body) = order_request(client, k);
            if let Some(order) = order_until_answered(&addr, &body).await {
                accepted.insert(id, order);
            }
        }
    }
    assert!(
        accepted.len() > CLIENTS,
        "most orders accepted: {}",
        accepted.len()
    );
    assert!(
        accepted.len() < CLIENTS * PER_CLIENT,
        "the scarce items refused some orders"
    );
    let want = allocated_by_item(&accepted);
    let mut query = hub.client(ADMIN).await;
    for i in 1..=ITEMS {
        let item = format!("SKU-{i}");
        let (_, v) = get(&mut query, &format!("/v1/items/{item}/positions")).await;
        let p = &v["positions"][0];
        assert_eq!(
            p["allocated"].as_i64().unwrap(),
            want.get(&item).copied().unwrap_or(0),
            "{item}: allocated is exactly what the accepted orders hold: {v}"
        );
        assert!(p["available"].as_i64().unwrap() >= 0, "{item}: {v}");
    }

    // Cancelling every order gives every allocation back, in every partition.
    let mut shop = hub.client(RESERVE).await;
    for id in accepted.keys() {
        let (s, v) = post(
            &mut shop,
            &format!("/v1/orders/{id}/cancel"),
            &json!({"reason": "test"}),
        )
        .await;
        assert_eq!(
            (s, v["state"].as_str()),
            (200, Some("cancelled")),
            "{id}: {v}"
        );
    }
    for i in 1..=ITEMS {
        let (_, v) = get(&mut query, &format!("/v1/items/SKU-{i}/positions")).await;
        assert_eq!(v["positions"][0]["allocated"], 0, "SKU-{i}: {v}");
    }
}

/// Values at the edges from a resequenced source on four partitions, one by one and as an
/// NDJSON batch: refused at the door with a specific problem and an exception record, nothing
/// applied, and the source's sequence goes on.
#[tokio::test(flavor = "multi_thread")]
async fn edge_values_from_a_sequenced_source_on_four_partitions_are_refused_and_recorded() {
    let config = common::config("[engine]\npartitions = 4\n[resequencer]\ngap_wait_s = 1\n")
        .replacen(
            "id = \"wms-east\"\n",
            "id = \"wms-east\"\nsequenced = true\n",
            1,
        );
    let hub = Hub::start_with("partitions-edges", &config).await;
    let mut east = hub.client(EAST).await;
    let (s, v) = post(&mut east, "/v1/events", &sequenced(1)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("applied")), "{v}");
    let before = on_hand(&hub).await;

    let mut min_qty = sequenced(2);
    min_qty["id"] = json!("edge-min");
    min_qty["type"] = json!("inventory.adjusted.v1");
    min_qty["data"] =
        json!({"item": "SKU-3", "location": "DC-EAST", "delta": i64::MIN, "reason": "x"});
    let mut max_qty = sequenced(2);
    max_qty["id"] = json!("edge-max");
    max_qty["data"]["qty"] = json!(i64::MAX);
    let mut future = sequenced(2);
    future["id"] = json!("edge-future");
    future["time"] = json!("9999-12-31T00:00:00Z");
    let mut negative = sequenced(2);
    negative["id"] = json!("edge-negative");
    negative["data"]["qty"] = json!(-5);
    for bad in [&min_qty, &max_qty, &future, &negative] {
        let (s, v) = post(&mut east, "/v1/events", bad).await;
        assert_eq!(s, 422, "{bad} -> {v}");
        assert!(
            v["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:crossdock:problem:"),
            "{v}"
        );
    }
    // The same as one NDJSON batch: each line refused on its own.
    let body: String = [&min_qty, &max_qty, &future, &negative]
        .iter()
        .map(|e| format!("{e}\n"))
        .collect();
    let (s, v) = common::post_raw(
        &mut east,
        "/v1/events",
        "application/x-ndjson",
        body.into_bytes(),
    )
    .await;
    assert!(s == 200 || s == 207 || s == 422, "{s} {v}");
    assert!(
        !v.to_string().contains("\"applied\""),
        "nothing applied: {v}"
    );

    // Every refusal is a record an operator can see.
    let mut admin = hub.client(ADMIN).await;
    let (_, x) = get(&mut admin, "/v1/exceptions?limit=100").await;
    let kinds: Vec<&str> = x["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"schema_violation"), "{kinds:?}");
    assert!(kinds.contains(&"out_of_bounds"), "{kinds:?}");
    assert_eq!(on_hand(&hub).await, before, "nothing applied");

    // Sequence 2 was never taken: the good event 2 is next in line and applies.
    let (s, v) = post(&mut east, "/v1/events", &sequenced(2)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("applied")), "{v}");
    // The last sequence number has no next one: refused. One just below it waits for the gap,
    // then applies.
    let mut last = sequenced(3);
    last["sequence"] = json!(u64::MAX.to_string());
    let (s, v) = post(&mut east, "/v1/events", &last).await;
    assert_eq!((s, v["field"].as_str()), (422, Some("sequence")), "{v}");
    let mut far = sequenced(3);
    far["id"] = json!("edge-far");
    far["sequence"] = json!((u64::MAX - 1).to_string());
    let (s, v) = post(&mut east, "/v1/events", &far).await;
    assert_eq!((s, v["status"].as_str()), (202, Some("held")), "{v}");
    let mut want = before.clone();
    want[2] += 2;
    want[3] += 3;
    for _ in 0..200 {
        if on_hand(&hub).await == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        on_hand(&hub).await,
        want,
        "the far one applied after the wait"
    );
}
