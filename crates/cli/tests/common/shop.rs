//! A hub publishing its `shopify` channel to the Shopify simulator, and what tests check
//! about it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossdock_sim::{ShopifyConfig, ShopifySim};
use serde_json::{Value, json};

use super::{ADMIN, Hub, QUERY, event, get, post};

pub const SHOP_TOKEN: &str = "shpat_simulator";
pub const ITEMS: u64 = 100;

/// An endpoint for the `shopify` channel on the simulator at `url`, with a quick breaker.
pub fn shopify_endpoint(url: &str, location: u64, webhook_secret: bool) -> String {
    let secrets = if webhook_secret {
        r#"{ access_token = "SHOP_TOKEN", webhook_secret = "SHOP_HOOK_SECRET" }"#
    } else {
        r#"{ access_token = "SHOP_TOKEN" }"#
    };
    format!(
        r#"
[[endpoints]]
channel = "shopify"
kind = "shopify"
crosswalk = "shopify-items.csv"
secrets_env = {secrets}
breaker = {{ failures = 3, open_ms = 500, open_max_ms = 2000 }}
retry = {{ base_ms = 50, cap_ms = 1000 }}
[endpoints.shopify]
shop_url = "{url}"
location_id = "gid://shopify/Location/{location}"
timeout_ms = 2000
"#
    )
}

/// `SKU-n` is Shopify inventory item `n`.
pub fn crosswalk(extra: &[(&str, u64)]) -> String {
    let mut text = String::from("item,external_id\n");
    for i in 1..=ITEMS {
        text.push_str(&format!("SKU-{i},{i}\n"));
    }
    for (item, id) in extra {
        text.push_str(&format!("{item},{id}\n"));
    }
    text
}

pub async fn shopify_sim(location: u64) -> ShopifySim {
    let sim = ShopifySim::start(ShopifyConfig {
        location_ids: vec![location],
        ..ShopifyConfig::default()
    })
    .await
    .expect("start the Shopify simulator");
    for i in 1..=ITEMS {
        sim.insert_item(i, 0);
    }
    sim
}

pub async fn start_hub(
    name: &str,
    sim: &ShopifySim,
    location: u64,
    extra_items: &[&str],
    xwalk: &[(&str, u64)],
) -> Hub {
    start_hub_with(name, sim, location, extra_items, xwalk, "").await
}

/// [`start_hub`] with more config (a `[store]` section, say).
pub async fn start_hub_with(
    name: &str,
    sim: &ShopifySim,
    location: u64,
    extra_items: &[&str],
    xwalk: &[(&str, u64)],
    more_config: &str,
) -> Hub {
    let config = super::config(&format!(
        "{more_config}\n{}",
        shopify_endpoint(sim.url(), location, true)
    ));
    Hub::start_full(
        name,
        &config,
        extra_items,
        &[("shopify-items.csv", crosswalk(xwalk))],
        &[
            ("SHOP_TOKEN", SHOP_TOKEN),
            ("SHOP_HOOK_SECRET", "hook-secret"),
        ],
    )
    .await
}

pub async fn receive(c: &mut crossdock_cli::client::Client, id: &str, item: &str, qty: i64) -> u16 {
    let ev = event(
        id,
        "wms-east",
        "inventory.received.v1",
        json!({"item": item, "location": "DC-EAST", "qty": qty}),
    );
    post(c, "/v1/events", &ev).await.0
}

/// Crossdock's availability of every `SKU-n` for the shopify channel.
pub async fn hub_ats(hub: &Hub) -> HashMap<u64, i64> {
    let mut c = hub.client(QUERY).await;
    let items: Vec<String> = (1..=ITEMS).map(|i| format!("SKU-{i}")).collect();
    let (status, v) = post(
        &mut c,
        "/v1/availability/query",
        &json!({"channel": "shopify", "items": items}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let item = r["item"].as_str().unwrap();
            (
                item.trim_start_matches("SKU-").parse().unwrap(),
                r["available"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Waits until the channel shows Crossdock's ATS for every item.
pub async fn converged(hub: &Hub, sim: &ShopifySim, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let ats = hub_ats(hub).await;
        let off: Vec<(u64, i64, Option<i64>)> = ats
            .iter()
            .filter(|(i, a)| sim.quantity(&i.to_string()) != Some(**a))
            .map(|(i, a)| (*i, *a, sim.quantity(&i.to_string())))
            .collect();
        if off.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "channel differs from Crossdock for {} items, e.g. {:?}",
            off.len(),
            &off[..off.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Receipts only raise stock, so no item's channel history may ever step back: that would be an
/// older value overwriting a newer one. The same value twice in a row is allowed: a first write
/// (no compare-and-set value yet) that landed just before a kill, and was not recorded, goes out
/// again after the restart, possibly batched with other items under another idempotency key; it
/// sets the same quantity again.
pub fn assert_histories_rise(sim: &ShopifySim) {
    for i in 1..=ITEMS {
        let h = sim.history(&i.to_string());
        assert!(h.windows(2).all(|w| w[0] <= w[1]), "SKU-{i} went {h:?}");
        assert!(
            h.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])),
            "SKU-{i} was set to the same value three times: {h:?}"
        );
    }
}

pub async fn endpoint_status(hub: &Hub) -> Value {
    let mut c = hub.client(ADMIN).await;
    let (status, v) = get(&mut c, "/v1/endpoints").await;
    assert_eq!(status, 200, "{v}");
    v["endpoints"][0].clone()
}
