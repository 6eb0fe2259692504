//! Channel publishers end to end: the real binary publishing the `b2b` channel's availability to
//! the SP-API, WooCommerce and generic webhook simulators over loopback, each through its lane
//! (rate limit, retry, breaker, dead-letter queue).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::{ADMIN, EAST, Hub, QUERY, event, get, post};
use crossdock_sim::{
    AmazonConfig, AmazonSim, RateLimit, RequestRecord, WebhookConfig, WebhookSim, WooConfig, WooSim,
};
use serde_json::{Value, json};

/// A quick breaker and short backoff, so a test sees them act within seconds.
const RESILIENCE: &str = "breaker = { failures = 3, open_ms = 500, open_max_ms = 2000 }\n\
                          retry = { base_ms = 50, cap_ms = 1000 }";

/// `SKU-a` ..= `SKU-b`.
fn skus(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|i| format!("SKU-{i}")).collect()
}

/// One receipt at DC-EAST, which raises the item's `b2b` availability.
fn receipt(id: &str, item: &str, qty: i64) -> Value {
    event(
        id,
        "wms-east",
        "inventory.received.v1",
        json!({"item": item, "location": "DC-EAST", "qty": qty}),
    )
}

async fn receive(c: &mut crossdock_cli::client::Client, id: &str, item: &str, qty: i64) -> u16 {
    post(c, "/v1/events", &receipt(id, item, qty)).await.0
}

/// Receives every item in one NDJSON batch, so their outbox rows reach the lane together.
async fn receive_batch(hub: &Hub, prefix: &str, items: &[String], qty: impl Fn(usize) -> i64) {
    let mut c = hub.client(EAST).await;
    let body: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(i, item)| receipt(&format!("{prefix}-{i}"), item, qty(i)).to_string())
        .collect();
    let r = c
        .send(
            hyper::Method::POST,
            "/v1/events",
            "application/x-ndjson",
            hyper::body::Bytes::from(body.join("\n")),
        )
        .await
        .expect("batch request");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let applied = r
        .body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<Value>(l).unwrap())
        .filter(|v| v["status"] == "applied")
        .count();
    assert_eq!(applied, items.len(), "every receipt applied");
}

/// Crossdock's `b2b` availability of `items`.
async fn hub_ats(hub: &Hub, items: &[String]) -> BTreeMap<String, i64> {
    let mut c = hub.client(QUERY).await;
    let (status, v) = post(
        &mut c,
        "/v1/availability/query",
        &json!({"channel": "b2b", "items": items}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["item"].as_str().unwrap().to_string(),
                r["available"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Waits until the channel `shown` shows Crossdock's availability for every one of `items`.
async fn converged(
    hub: &Hub,
    items: &[String],
    shown: impl Fn(&str) -> Option<i64>,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let ats = hub_ats(hub, items).await;
        assert!(
            ats.values().all(|a| *a > 0),
            "receipts made every item available: {ats:?}"
        );
        let off: Vec<(&String, i64, Option<i64>)> = ats
            .iter()
            .filter(|(item, a)| shown(item) != Some(**a))
            .map(|(item, a)| (item, *a, shown(item)))
            .collect();
        if off.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "channel differs from Crossdock for {} items (item, hub, channel), e.g. {:?}",
            off.len(),
            &off[..off.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Receipts only raise stock, so every item's channel history must rise strictly: a repeat or a
/// step back would be a message applied twice or an older value overwriting a newer one.
fn assert_histories_rise(items: &[String], history: impl Fn(&str) -> Vec<i64>) {
    for item in items {
        let h = history(item);
        assert!(!h.is_empty(), "{item} was never written");
        assert!(h.windows(2).all(|w| w[0] < w[1]), "{item} went {h:?}");
    }
}

/// The `/v1/endpoints` entry of the `b2b` lane.
async fn b2b_status(hub: &Hub) -> Value {
    let mut c = hub.client(ADMIN).await;
    let (status, v) = get(&mut c, "/v1/endpoints").await;
    assert_eq!(status, 200, "{v}");
    v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == "b2b")
        .unwrap_or_else(|| panic!("no b2b endpoint in {v}"))
        .clone()
}

/// Waits until the `b2b` lane has settled `n` messages as delivered: the channel can show a
/// value before the call that set it has returned (a feed is applied before it is polled).
async fn delivered(hub: &Hub, n: u64, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = b2b_status(hub).await;
        if s["stats"]["delivered"].as_u64().unwrap() >= n {
            return s;
        }
        assert!(Instant::now() < deadline, "{n} not delivered: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Amazon SP-API

fn amazon_endpoint(sim: &AmazonSim, feed_threshold: usize) -> String {
    let c = sim.config();
    format!(
        r#"
[[endpoints]]
channel = "b2b"
kind = "amazon"
secrets_env = {{ refresh_token = "AMZ_REFRESH_TOKEN", client_id = "AMZ_CLIENT_ID", client_secret = "AMZ_CLIENT_SECRET" }}
rate = {{ kind = "token", rate = 5, burst = 5 }}
{RESILIENCE}
[endpoints.amazon]
endpoint = "{url}"
lwa_url = "{lwa}"
seller_id = "{seller}"
marketplace_id = "{marketplace}"
feed_threshold = {feed_threshold}
feed_poll_ms = 100
timeout_ms = 2000
"#,
        url = sim.url(),
        lwa = sim.token_url(),
        seller = c.seller_id,
        marketplace = c.marketplace_ids[0],
    )
}

/// A hub whose `b2b` channel goes to `sim` (SKU = item id), with the sim's LWA credentials.
async fn amazon_hub(name: &str, sim: &AmazonSim, feed_threshold: usize) -> Hub {
    let c = sim.config();
    Hub::start_full(
        name,
        &common::config(&amazon_endpoint(sim, feed_threshold)),
        &[],
        &[],
        &[
            ("AMZ_REFRESH_TOKEN", c.refresh_token.as_str()),
            ("AMZ_CLIENT_ID", c.client_id.as_str()),
            ("AMZ_CLIENT_SECRET", c.client_secret.as_str()),
        ],
    )
    .await
}

fn requests_to(sim: &AmazonSim, method: &str, path_prefix: &str) -> Vec<RequestRecord> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.starts_with(path_prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amazon_patches_keep_to_the_listings_limit_and_a_large_backlog_goes_as_one_feed() {
    // Patches only: one patchListingsItem per SKU, paced by the lane at the usage plan's 5/s.
    let sim = AmazonSim::start(AmazonConfig::default())
        .await
        .expect("start the SP-API simulator");
    let hub = amazon_hub("amazon-patch", &sim, 0).await;
    let items = skus(1..=20);
    let mut c = hub.client(EAST).await;
    for (i, item) in items.iter().enumerate() {
        assert_eq!(
            receive(&mut c, &format!("ap-{i}"), item, 10 + i as i64).await,
            200
        );
    }
    converged(&hub, &items, |i| sim.quantity(i), Duration::from_secs(30)).await;
    let stats = sim.stats();
    assert_eq!(stats.rate_limit_violations, 0, "{stats:?}");
    assert_eq!(stats.auth_failures, 0, "LWA and seller accepted: {stats:?}");
    assert_eq!(stats.duplicates, 0, "no value was patched twice: {stats:?}");
    assert_histories_rise(&items, |i| sim.history(i));
    let patches = requests_to(&sim, "PATCH", "/listings/2021-08-01/items/");
    assert!(patches.iter().all(|r| r.status == Some(200)), "{patches:?}");
    assert_eq!(
        patches.len(),
        items.len(),
        "one patch per SKU, each value once"
    );
    assert!(
        requests_to(&sim, "POST", "/feeds/").is_empty(),
        "feed_threshold = 0 never uses a feed"
    );
    // 5 per second with a bucket of 5: n calls span at least (n - 5) / 5 seconds.
    let span = patches.last().unwrap().received_at - patches[0].received_at;
    let floor = Duration::from_secs_f64((patches.len() as f64 - 5.0) / 5.0 * 0.98);
    assert!(span >= floor, "{} patches in {span:?}", patches.len());
    let s = b2b_status(&hub).await;
    assert_eq!(
        (s["target"].as_str(), s["dead_letters"].as_u64()),
        (Some("amazon"), Some(0)),
        "{s}"
    );
    drop(hub);

    // A backlog of 60 at once with feed_threshold 10: a JSON_LISTINGS_FEED instead of patches.
    let sim = AmazonSim::start(AmazonConfig::default())
        .await
        .expect("start the SP-API simulator");
    let hub = amazon_hub("amazon-feed", &sim, 10).await;
    let items = skus(1..=60);
    let started = Instant::now();
    receive_batch(&hub, "af", &items, |i| 20 + i as i64).await;
    converged(&hub, &items, |i| sim.quantity(i), Duration::from_secs(30)).await;
    let took = started.elapsed();
    delivered(&hub, items.len() as u64, Duration::from_secs(10)).await;
    let stats = sim.stats();
    assert_eq!(stats.rate_limit_violations, 0, "{stats:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
    assert_histories_rise(&items, |i| sim.history(i));
    let created = requests_to(&sim, "POST", "/feeds/2021-06-30/feeds");
    assert!(!created.is_empty(), "a feed was created");
    assert!(created.iter().all(|r| r.status == Some(202)), "{created:?}");
    let fed: BTreeSet<&String> = created.iter().flat_map(|r| &r.items).collect();
    assert!(fed.len() >= 10, "the feed carried the backlog: {fed:?}");
    // The feed ids the publisher polled: each was processed.
    let polled: BTreeSet<String> = requests_to(&sim, "GET", "/feeds/2021-06-30/feeds/")
        .iter()
        .map(|r| r.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert!(!polled.is_empty(), "the publisher polled its feed");
    for id in &polled {
        assert_eq!(sim.feed_status(id), Some("DONE"), "feed {id}");
    }
    assert!(
        !requests_to(&sim, "GET", "/feeds/2021-06-30/documents/").is_empty(),
        "the processing report was fetched"
    );
    let patches = requests_to(&sim, "PATCH", "/listings/2021-08-01/items/");
    let patched: BTreeSet<&String> = patches.iter().flat_map(|r| &r.items).collect();
    for item in &items {
        assert!(
            fed.contains(item) || patched.contains(item),
            "{item} neither fed nor patched"
        );
    }
    assert!(
        patches.len() < items.len() / 2,
        "most SKUs went by feed, not {} patches",
        patches.len()
    );
    // 60 patches at 5/s would take 11 s or more.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let s = b2b_status(&hub).await;
    assert_eq!(s["dead_letters"], 0, "{s}");
}

// ---------------------------------------------------------------------------------------------
// WooCommerce

const WOO_ITEMS: u64 = 40;
/// The item mapped to a variation (product 22, variation 23) instead of a simple product.
const WOO_VARIATION: (&str, &str) = ("SKU-22", "22/23");
/// The product WooCommerce refuses for good.
const WOO_REFUSED: (&str, &str) = ("SKU-7", "7");

/// `SKU-n` is product `n`, except [`WOO_VARIATION`].
fn woo_id(item: &str) -> String {
    if item == WOO_VARIATION.0 {
        WOO_VARIATION.1.to_string()
    } else {
        item.trim_start_matches("SKU-").to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn woocommerce_batches_apply_all_but_a_refused_product_which_is_parked_alone() {
    let sim = WooSim::start(WooConfig {
        rate_limit: Some(RateLimit::new(4.0, 4.0)),
        ..WooConfig::default()
    })
    .await
    .expect("start the WooCommerce simulator");
    let items = skus(1..=WOO_ITEMS);
    for item in &items {
        match woo_id(item).split_once('/') {
            Some((p, v)) => sim.insert_variation(p.parse().unwrap(), v.parse().unwrap(), 0),
            None => sim.insert_product(woo_id(item).parse().unwrap(), 0),
        }
    }
    sim.faults().permanent_items([WOO_REFUSED.1]);
    let mut crosswalk = String::from("item,external_id\n");
    for item in &items {
        crosswalk.push_str(&format!("{item},{}\n", woo_id(item)));
    }
    let endpoint = format!(
        r#"
[[endpoints]]
channel = "b2b"
kind = "woocommerce"
crosswalk = "woo-items.csv"
secrets_env = {{ consumer_key = "WOO_KEY", consumer_secret = "WOO_SECRET" }}
rate = {{ kind = "token", rate = 4, burst = 4 }}
{RESILIENCE}
[endpoints.woocommerce]
url = "{}"
timeout_ms = 2000
"#,
        sim.url()
    );
    let hub = Hub::start_full(
        "woo",
        &common::config(&endpoint),
        &[],
        &[("woo-items.csv", crosswalk)],
        &[
            ("WOO_KEY", sim.config().consumer_key.as_str()),
            ("WOO_SECRET", sim.config().consumer_secret.as_str()),
        ],
    )
    .await;
    // Three rounds of receipts, paced so that the lane needs many calls.
    let mut c = hub.client(EAST).await;
    for round in 0..3 {
        for (i, item) in items.iter().enumerate() {
            let qty = if round == 0 { 10 + i as i64 } else { 1 };
            let id = format!("w-{round}-{i}");
            assert_eq!(receive(&mut c, &id, item, qty).await, 200);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    let others: Vec<String> = items
        .iter()
        .filter(|i| *i != WOO_REFUSED.0)
        .cloned()
        .collect();
    converged(
        &hub,
        &others,
        |i| sim.quantity(&woo_id(i)),
        Duration::from_secs(20),
    )
    .await;

    // The refused product is parked, and only it: one parked letter holding its latest value.
    let refused_ats = hub_ats(&hub, &[WOO_REFUSED.0.to_string()]).await[WOO_REFUSED.0];
    let mut admin = hub.client(ADMIN).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let letters = loop {
        let (status, v) = get(&mut admin, "/v1/dlq").await;
        assert_eq!(status, 200, "{v}");
        let letters = v["dead_letters"].as_array().unwrap().clone();
        if letters
            .iter()
            .any(|l| l["payload"]["available"] == refused_ats)
        {
            break letters;
        }
        assert!(
            Instant::now() < deadline,
            "the latest value of {} ({refused_ats}) is not parked: {letters:?}",
            WOO_REFUSED.0
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (letters[0]["endpoint"].as_str(), letters[0]["key"].as_str()),
        (Some("b2b"), Some(WOO_REFUSED.0))
    );
    assert_eq!(
        letters[0]["attempts"], 1,
        "a permanent refusal is not retried"
    );
    assert!(
        letters[0]["last_response"]
            .as_str()
            .unwrap()
            .contains("woocommerce_rest_product_invalid_id"),
        "{}",
        letters[0]
    );
    // Older values of the same item that were parked before are superseded, not left parked.
    let (_, all) = get(&mut admin, "/v1/dlq?status=all").await;
    let all = all["dead_letters"].as_array().unwrap();
    assert!(all.iter().all(|l| l["key"] == WOO_REFUSED.0), "{all:?}");
    assert_eq!(
        all.iter().filter(|l| l["status"] == "parked").count(),
        1,
        "{all:?}"
    );
    assert!(
        all.iter()
            .all(|l| l["status"] == "parked" || l["status"] == "superseded"),
        "{all:?}"
    );
    assert_eq!(
        sim.quantity(WOO_REFUSED.1),
        Some(0),
        "the refused product is untouched"
    );
    assert!(sim.history(WOO_REFUSED.1).is_empty());
    let (_, x) = get(&mut admin, "/v1/exceptions?kind=delivery_failed").await;
    let exceptions = x["exceptions"].as_array().unwrap();
    assert_eq!(exceptions.len(), all.len(), "one per parked message: {x}");
    let open = exceptions.iter().filter(|e| e["status"] == "open").count();
    assert_eq!(open, 1, "superseded letters' records are resolved: {x}");
    assert!(
        exceptions.iter().all(|e| e["entity"] == "item:SKU-7"),
        "{x}"
    );

    // Batches of products, the variation through its parent's endpoint, within the host limit.
    let calls = sim.requests();
    assert!(
        calls
            .iter()
            .any(|r| r.path == "/wp-json/wc/v3/products/22/variations/batch"
                && r.items == [WOO_VARIATION.1]),
        "no variation batch"
    );
    assert!(
        calls.iter().all(|r| r.status == Some(200)),
        "every call answered 200: {calls:?}"
    );
    assert!(
        calls.iter().any(|r| r.items.len() > 1),
        "the lane batches products"
    );
    // 4 per second with a bucket of 4: n calls span at least (n - 4) / 4 seconds.
    assert!(calls.len() >= 6, "only {} calls", calls.len());
    let span = calls.last().unwrap().received_at - calls[0].received_at;
    let floor = Duration::from_secs_f64((calls.len() as f64 - 4.0) / 4.0 * 0.98);
    assert!(span >= floor, "{} calls in {span:?}", calls.len());
    let stats = sim.stats();
    assert_eq!(stats.rate_limit_violations, 0, "{stats:?}");
    assert_eq!(stats.auth_failures, 0, "{stats:?}");
    assert_histories_rise(&others, |i| sim.history(&woo_id(i)));
    let s = b2b_status(&hub).await;
    assert_eq!(
        (s["target"].as_str(), s["dead_letters"].as_u64()),
        (Some("woocommerce"), Some(1)),
        "{s}"
    );
    eprintln!(
        "woocommerce: {} calls over {span:?}, {} dead letters in all",
        calls.len(),
        all.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Generic webhook

const HOOK_PATH: &str = "/crossdock/availability";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_deliveries_are_signed_keyed_and_survive_an_outage_and_restarts() {
    let sim = WebhookSim::start(WebhookConfig::default())
        .await
        .expect("start the webhook receiver");
    let secret = String::from_utf8(sim.config().secret.clone()).unwrap();
    let endpoint = format!(
        r#"
[[endpoints]]
channel = "b2b"
kind = "webhook"
secrets_env = {{ signing_secret = "HOOK_SECRET" }}
rate = {{ kind = "token", rate = 50, burst = 50 }}
{RESILIENCE}
[endpoints.webhook]
url = "{}{HOOK_PATH}"
timeout_ms = 1000
"#,
        sim.url()
    );
    let mut hub = Hub::start_full(
        "webhook",
        &common::config(&endpoint),
        &[],
        &[],
        &[("HOOK_SECRET", secret.as_str())],
    )
    .await;
    let items = skus(1..=30);
    let shown = |item: &str| sim.quantity(item);
    let mut c = hub.client(EAST).await;
    for (i, item) in items.iter().enumerate() {
        assert_eq!(
            receive(&mut c, &format!("h1-{i}"), item, 10 + i as i64).await,
            200
        );
    }
    converged(&hub, &items, shown, Duration::from_secs(15)).await;

    // The receiver goes down for a few seconds while stock keeps arriving.
    sim.faults().outage(true);
    let outage = Instant::now();
    let mut open_seen = false;
    let mut n = 0;
    while outage.elapsed() < Duration::from_secs(4) {
        let item = &items[n % items.len()];
        assert_eq!(receive(&mut c, &format!("h2-{n}"), item, 1).await, 200);
        n += 1;
        if !open_seen && n % 10 == 0 {
            open_seen = b2b_status(&hub).await["breaker"] == "open";
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(open_seen, "the breaker opened during the outage");
    sim.faults().outage(false);
    converged(&hub, &items, shown, Duration::from_secs(20)).await;
    let s = b2b_status(&hub).await;
    assert!(s["breaker_opened"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["breaker"], "closed", "{s}");
    assert_eq!(s["dead_letters"], 0, "an outage parks nothing: {s}");
    assert!(sim.stats().requests_faulted > 0, "the outage was seen");

    // Killed the moment the receiver has applied a delivery, before the hub can have recorded
    // it: after the restart the message goes again with the same Idempotency-Key, and the
    // receiver acknowledges it without applying it twice.
    let duplicates_before = sim.stats().duplicates;
    let mut rounds = 0;
    // Each round's kill usually catches one unrecorded delivery; a few rounds make it certain.
    while rounds < 2 || (rounds < 6 && sim.stats().duplicates == duplicates_before) {
        let accepted = sim.stats().requests_accepted;
        receive_batch(&hub, &format!("h3-{rounds}"), &items, |_| 1).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while sim.stats().requests_accepted == accepted {
            assert!(
                Instant::now() < deadline,
                "nothing delivered in round {rounds}"
            );
            tokio::task::yield_now().await;
        }
        hub.kill();
        hub.restart().await;
        converged(&hub, &items, shown, Duration::from_secs(20)).await;
        rounds += 1;
    }
    let resent = sim.stats().duplicates - duplicates_before;
    assert!(
        resent >= 1,
        "after {rounds} kills no delivery was resent under its first Idempotency-Key"
    );

    let received = sim.received();
    assert_eq!(sim.bad_signatures(), 0, "every delivery was signed");
    assert!(received.iter().all(|d| {
        d.path == HOOK_PATH
            && d.idempotency_key.as_deref().is_some_and(|k| !k.is_empty())
            && d.body["type"] == "availability"
            && d.body["key"] == d.body["item"]
    }));
    // A message sent twice under different keys would be applied twice: each (key, ledger seq)
    // arrives once, and per key in rising ledger order.
    let mut seqs: HashMap<&str, Vec<u64>> = HashMap::new();
    for d in &received {
        seqs.entry(d.body["key"].as_str().unwrap())
            .or_default()
            .push(d.body["ledger_seq"].as_u64().unwrap());
    }
    for (key, s) in &seqs {
        assert!(s.windows(2).all(|w| w[0] < w[1]), "{key} arrived as {s:?}");
        assert_eq!(
            sim.history(key).len(),
            s.len(),
            "{key}: one applied value per accepted delivery"
        );
    }
    assert_histories_rise(&items, |i| sim.history(i));
    let s = b2b_status(&hub).await;
    assert_eq!(s["dead_letters"], 0, "{s}");
    eprintln!(
        "webhook: {} deliveries, {resent} resends acknowledged as duplicates in {rounds} kills, receiver {:?}",
        received.len(),
        sim.stats()
    );
}
