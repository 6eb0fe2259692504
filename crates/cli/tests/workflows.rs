//! Workflows end to end through the real binary over loopback HTTP: orders (sourcing, credit
//! check, backorders, partial shipment, cancel), returns, transfers and purchase orders (ack
//! timeout, ASN matching and decisions), their history, and restarts in the middle of each.
//! Every test runs with one partition and with four, where a workflow's items (SKU-1 ..) hash
//! to different partitions, so it runs wide (`crossdock_engine`'s `wide` module): the answers
//! must be the same.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, EAST, Hub, QUERY, RESERVE, event, get, positions, post};
use crossdock_sim::credit::{CreditConfig, CreditSim};
use crossdock_sim::webhook::{WebhookConfig, WebhookSim};
use serde_json::{Value, json};

/// The ERP reports acknowledgments and ASNs (posted with the admin token in these tests).
const WORKFLOWS: &str = r#"
[[sources]]
id = "erp"
"#;

fn workflow_config(extra: &str, partitions: u32) -> String {
    // `regions` on DC-WEST make west-coast orders prefer it.
    common::config(&format!("{extra}\n[engine]\npartitions = {partitions}\n")).replace(
        "[[locations]]\nid = \"DC-WEST\"",
        "[[locations]]\nid = \"DC-WEST\"\nregions = [\"CA\", \"WA\"]",
    )
}

async fn hub(name: &str, workflows: &str, partitions: u32) -> Hub {
    Hub::start_with(name, &workflow_config(workflows, partitions)).await
}

async fn stock(hub: &Hub, source: &str, item: &str, location: &str, qty: i64) {
    let mut c = hub
        .client(if source == "wms-east" { EAST } else { ADMIN })
        .await;
    let (s, v) = post(
        &mut c,
        "/v1/events",
        &event(
            &format!("rcv-{item}-{location}-{qty}-{}", fastrand::u64(..)),
            source,
            "inventory.received.v1",
            json!({"item": item, "location": location, "qty": qty}),
        ),
    )
    .await;
    assert!(s == 200 || s == 201 || s == 202, "{s} {v}");
}

async fn wms(hub: &Hub, id: &str, ty: &str, data: Value) -> (u16, Value) {
    let mut c = hub.client(EAST).await;
    post(&mut c, "/v1/events", &event(id, "wms-east", ty, data)).await
}

fn order(id: &str, channel: &str, lines: &[(&str, i64)], region: &str) -> Value {
    json!({
        "id": id, "channel": channel,
        "lines": lines.iter().map(|(i, q)| json!({"item": i, "qty": q})).collect::<Vec<_>>(),
        "ship_to": {"name": "Acme Retail", "region": region},
        "amount_minor": 12_500,
    })
}

fn states(history: &Value) -> Vec<String> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["to"].as_str().unwrap().to_string())
        .collect()
}

async fn exceptions(hub: &Hub, kind: &str) -> Vec<Value> {
    let mut q = hub.client(ADMIN).await;
    let (s, v) = get(&mut q, &format!("/v1/exceptions?kind={kind}")).await;
    assert_eq!(s, 200, "{v}");
    v["exceptions"].as_array().unwrap().clone()
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alloc(p: &[(String, i64, i64, i64, i64)], loc: &str) -> i64 {
    p.iter().find(|x| x.0 == loc).map_or(0, |x| x.3)
}

async fn an_order_is_sourced_allocated_released_shipped_in_parts_and_closed(partitions: u32) {
    let erp = WebhookSim::start(WebhookConfig::default()).await.unwrap();
    let wms_east = WebhookSim::start(WebhookConfig::default()).await.unwrap();
    let extra = format!(
        r#"{WORKFLOWS}
[[endpoints]]
name = "erp-postings"
kind = "webhook"
secrets_env = {{ signing_secret = "HOOK_SECRET" }}
[endpoints.webhook]
url = "{}/erp"

[[endpoints]]
name = "wms-east-releases"
kind = "webhook"
secrets_env = {{ signing_secret = "HOOK_SECRET" }}
[endpoints.webhook]
url = "{}/wms"

[workflows]
erp_endpoint = "erp-postings"
[[workflows.warehouses]]
location = "DC-EAST"
endpoint = "wms-east-releases"
"#,
        erp.url(),
        wms_east.url()
    );
    let hub = Hub::start_full(
        "wf-order",
        &workflow_config(&extra, partitions),
        &[],
        &[],
        &[("HOOK_SECRET", "whsec_simulator")],
    )
    .await;
    stock(&hub, "wms-east", "SKU-1", "DC-EAST", 10).await;
    stock(&hub, "wms-east", "SKU-2", "DC-EAST", 5).await;
    let mut shop = hub.client(RESERVE).await;
    let body = order("SO-1", "shopify", &[("SKU-1", 4), ("SKU-2", 2)], "NY");
    let (s, v) = post(&mut shop, "/v1/orders", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "released", "{v}");
    assert_eq!(v["lines"][0]["allocations"][0]["location"], "DC-EAST");
    assert_eq!(v["lines"][0]["allocations"][0]["qty"], 4);
    assert_eq!(v["lines"][1]["backordered"], 0);
    let mut q = hub.client(QUERY).await;
    assert_eq!(alloc(&positions(&mut q, "SKU-1").await, "DC-EAST"), 4);

    // The same order again: the stored answer. Other lines under the same id: refused.
    let (s, again) = post(&mut shop, "/v1/orders", &body).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["state"], "released");
    assert_eq!(
        alloc(&positions(&mut q, "SKU-1").await, "DC-EAST"),
        4,
        "allocated once"
    );
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &order("SO-1", "shopify", &[("SKU-1", 5)], "NY"),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["type"], "urn:crossdock:problem:workflow-conflict");

    // Picked and shipped in two parts: the rest stays allocated in between.
    let (s, v) = wms(
        &hub,
        "pick-1",
        "inventory.picked.v1",
        json!({"order": "SO-1", "item": "SKU-1", "location": "DC-EAST", "qty": 4}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = wms(&hub, "ship-1", "inventory.shipped.v1", json!({"order": "SO-1", "shipment": "SH-1", "lines": [{"item": "SKU-1", "location": "DC-EAST", "qty": 4}]})).await;
    assert_eq!(s, 200, "{v}");
    let (_, o) = get(&mut q, "/v1/orders/SO-1").await;
    assert_eq!(o["state"], "partially_shipped", "{o}");
    assert_eq!(
        alloc(&positions(&mut q, "SKU-2").await, "DC-EAST"),
        2,
        "the unshipped line stays allocated"
    );
    let (s, v) = wms(&hub, "ship-2", "inventory.shipped.v1", json!({"order": "SO-1", "shipment": "SH-2", "lines": [{"item": "SKU-2", "location": "DC-EAST", "qty": 2}]})).await;
    assert_eq!(s, 200, "{v}");
    let (_, o) = get(&mut q, "/v1/orders/SO-1").await;
    assert_eq!(o["state"], "closed", "{o}");
    assert_eq!(
        states(&o["history"]),
        // The pick of one line is recorded without a state change: the order is "picked" only
        // once everything allocated is.
        [
            "captured",
            "validated",
            "sourced",
            "reserved",
            "accepted",
            "released",
            "released",
            "partially_shipped",
            "shipped",
            "invoiced",
            "closed"
        ],
        "{o}"
    );
    let history = o["history"].as_array().unwrap();
    assert!(
        history[0]["cause"]
            .as_str()
            .unwrap()
            .starts_with("crossdock/order:SO-1")
    );
    assert_eq!(history[7]["cause"], "wms-east/ship-1");
    assert!(
        history
            .iter()
            .all(|h| h["correlation_id"].as_str().is_some_and(|c| !c.is_empty()))
    );
    let p1 = positions(&mut q, "SKU-1").await;
    assert_eq!(
        (p1[0].1, p1[0].3),
        (6, 0),
        "shipped units left on_hand and allocation"
    );
    // SKU-2 shipped without a pick message: it leaves the allocation all the same.
    let (_, pos) = get(&mut q, "/v1/items/SKU-2/positions").await;
    let p2 = &pos["positions"][0];
    assert_eq!(
        (
            p2["on_hand"].as_i64(),
            p2["allocated"].as_i64(),
            p2["picked"].as_i64(),
            p2["available"].as_i64()
        ),
        (Some(3), Some(0), Some(0), Some(3)),
        "{pos}"
    );

    // Postings went through the outbox: accepted + invoiced to the ERP, the release to the WMS.
    wait_for("the ERP postings", Duration::from_secs(15), || async {
        erp.received().len() >= 2 && !wms_east.received().is_empty()
    })
    .await;
    let types: Vec<String> = erp
        .received()
        .iter()
        .map(|d| {
            d.body["document"]["type"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(types, ["order.accepted", "order.invoiced"]);
    let release = &wms_east.received()[0].body["document"];
    assert_eq!(release["type"], "order.release");
    assert_eq!(release["location"], "DC-EAST");
    assert_eq!(release["lines"].as_array().unwrap().len(), 2);
}

async fn sourcing_prefers_the_region_splits_within_the_limit_and_backorders_what_is_missing(
    partitions: u32,
) {
    let rules = format!(
        r#"{WORKFLOWS}
[workflows]
[[workflows.sourcing]]
channel = "shopify"
max_splits = 1
backorder = true
"#
    );
    let hub = hub("wf-source", &rules, partitions).await;
    let mut admin = hub.client(ADMIN).await;
    for (source, loc, qty) in [("wms-east", "DC-EAST", 3), ("wms-west", "DC-WEST", 2)] {
        let (s, v) = post(
            &mut admin,
            "/v1/events",
            &event(
                &format!("seed-{loc}"),
                source,
                "inventory.received.v1",
                json!({"item": "SKU-3", "location": loc, "qty": qty}),
            ),
        )
        .await;
        assert!(s < 300, "{v}");
    }
    let mut shop = hub.client(RESERVE).await;
    // A Californian order: DC-WEST first, then DC-EAST, the rest backordered.
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &order("SO-W", "shopify", &[("SKU-3", 8)], "CA"),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let allocs = v["lines"][0]["allocations"].as_array().unwrap();
    assert_eq!(allocs[0]["location"], "DC-WEST");
    assert_eq!(allocs[0]["qty"], 2);
    assert_eq!(allocs[1]["location"], "DC-EAST");
    assert_eq!(allocs[1]["qty"], 3);
    assert_eq!(v["lines"][0]["backordered"], 3);
    assert_eq!(v["state"], "released");

    // Stock arrives: the backordered line is filled and released.
    stock(&hub, "wms-east", "SKU-3", "DC-EAST", 10).await;
    let mut q = hub.client(QUERY).await;
    let (_, o) = get(&mut q, "/v1/orders/SO-W").await;
    assert_eq!(o["lines"][0]["backordered"], 0, "{o}");
    let allocated: i64 = o["lines"][0]["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["qty"].as_i64().unwrap())
        .sum();
    assert_eq!(allocated, 8);
    assert!(
        o["history"].as_array().unwrap().iter().any(|h| h["note"]
            .as_str()
            .unwrap()
            .contains("backorder filled: 3 SKU-3")),
        "{o}"
    );
    assert_eq!(alloc(&positions(&mut q, "SKU-3").await, "DC-EAST"), 6);

    // b2b does not backorder: a short order is refused and nothing is recorded.
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &order("SO-B", "b2b", &[("SKU-4", 1)], "NY"),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["type"], "urn:crossdock:problem:insufficient-stock");
    assert_eq!(get(&mut q, "/v1/orders/SO-B").await.0, 404);

    // Bad input: named field, nothing recorded, an exception kept with the raw body.
    let (s, v) = post(&mut shop, "/v1/orders", &json!({"id": "SO-X", "channel": "shopify", "lines": [{"item": "SKU-1", "qty": 0}], "ship_to": {"region": "NY"}})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["field"], "lines[0].qty");
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &order("SO-Y", "shopify", &[("NOPE", 1)], "NY"),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["field"], "lines[0].item");
    assert!(
        exceptions(&hub, "schema_violation")
            .await
            .iter()
            .any(|e| e["raw"].as_str().unwrap_or("").contains("\"qty\":0"))
    );
}

async fn the_credit_check_falls_back_on_timeout_and_holds_what_it_cannot_approve(partitions: u32) {
    let credit = CreditSim::start(CreditConfig {
        latency: Duration::from_millis(5),
        limit_minor: 20_000,
    })
    .await
    .unwrap();
    let rules = format!(
        r#"{WORKFLOWS}
[workflows]
[workflows.credit]
url = "{}"
timeout_ms = 300
fallback = "approve_up_to"
approve_up_to_minor = 10000
"#,
        credit.url()
    );
    let hub = hub("wf-credit", &rules, partitions).await;
    stock(&hub, "wms-east", "SKU-5", "DC-EAST", 50).await;
    let mut shop = hub.client(RESERVE).await;
    let mut body = order("SO-C1", "shopify", &[("SKU-5", 1)], "NY");
    let (s, v) = post(&mut shop, "/v1/orders", &body).await;
    assert_eq!(
        (s, v["credit"]["decision"].as_str()),
        (201, Some("approved")),
        "{v}"
    );

    // Declined by the ERP (over its limit): held for a person, nothing allocated.
    body = order("SO-C2", "shopify", &[("SKU-5", 2)], "NY");
    body["amount_minor"] = json!(50_000);
    let (s, v) = post(&mut shop, "/v1/orders", &body).await;
    assert_eq!((s, v["state"].as_str()), (201, Some("held")), "{v}");
    let held = exceptions(&hub, "credit_hold").await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["entity"], "order:SO-C2");

    // The ERP hangs: small orders approved by the fallback, large ones held.
    credit.set_hang(true);
    let started = Instant::now();
    let mut small = order("SO-C3", "shopify", &[("SKU-5", 1)], "NY");
    small["amount_minor"] = json!(5_000);
    let (s, v) = post(&mut shop, "/v1/orders", &small).await;
    assert_eq!(
        (s, v["credit"]["decision"].as_str()),
        (201, Some("approved_by_fallback")),
        "{v}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the timeout bounded the wait"
    );
    let mut big = order("SO-C4", "shopify", &[("SKU-5", 1)], "NY");
    big["amount_minor"] = json!(15_000);
    let (s, v) = post(&mut shop, "/v1/orders", &big).await;
    assert_eq!((s, v["state"].as_str()), (201, Some("held")), "{v}");
    assert!(
        v["credit"]["note"]
            .as_str()
            .unwrap()
            .contains("did not answer within 300 ms"),
        "{v}"
    );
    let mut q = hub.client(QUERY).await;
    assert_eq!(
        alloc(&positions(&mut q, "SKU-5").await, "DC-EAST"),
        2,
        "held orders allocate nothing"
    );

    // A person approves: the order is sourced and released; the exception is resolved.
    let mut admin = hub.client(ADMIN).await;
    let (s, v) = post(
        &mut admin,
        "/v1/orders/SO-C4/approve",
        &json!({"note": "customer paid upfront"}),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("released")), "{v}");
    assert_eq!(alloc(&positions(&mut q, "SKU-5").await, "DC-EAST"), 3);
    let (_, ex) = get(
        &mut admin,
        "/v1/exceptions?kind=credit_hold&status=resolved",
    )
    .await;
    assert_eq!(ex["exceptions"].as_array().unwrap().len(), 1, "{ex}");

    // Cancel releases what is not shipped.
    let (s, v) = post(
        &mut shop,
        "/v1/orders/SO-C4/cancel",
        &json!({"reason": "customer changed their mind"}),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("cancelled")), "{v}");
    assert_eq!(alloc(&positions(&mut q, "SKU-5").await, "DC-EAST"), 2);
    let (s, _) = post(&mut shop, "/v1/orders/SO-C4/cancel", &json!({})).await;
    assert_eq!(s, 200, "a repeated cancel is answered, not an error");
    credit.set_hang(false);
}

async fn a_damaged_return_is_credited_and_never_sellable(partitions: u32) {
    let hub = hub("wf-return", WORKFLOWS, partitions).await;
    let mut admin = hub.client(ADMIN).await;
    let (s, v) = post(&mut admin, "/v1/returns", &json!({"rma": "RMA-1", "order": "SO-9", "location": "DC-EAST", "lines": [{"item": "SKU-6", "qty": 3}], "reason": "broken in transit"})).await;
    assert_eq!((s, v["state"].as_str()), (201, Some("authorized")), "{v}");
    let (s, v) = wms(
        &hub,
        "ret-1",
        "return.received.v1",
        json!({"rma": "RMA-1", "item": "SKU-6", "location": "DC-EAST", "qty": 3}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let mut q = hub.client(QUERY).await;
    assert_eq!(
        positions(&mut q, "SKU-6").await[0].4,
        0,
        "received returns are not sellable"
    );
    let (s, v) = wms(&hub, "insp-1", "return.inspected.v1", json!({"rma": "RMA-1", "item": "SKU-6", "location": "DC-EAST", "qty": 1, "disposition": "restock"})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = wms(&hub, "insp-2", "return.inspected.v1", json!({"rma": "RMA-1", "item": "SKU-6", "location": "DC-EAST", "qty": 2, "disposition": "damaged"})).await;
    assert_eq!(s, 200, "{v}");
    let p = positions(&mut q, "SKU-6").await;
    assert_eq!(
        (p[0].1, p[0].4),
        (3, 1),
        "3 on hand, only the restocked unit sellable"
    );
    let (_, r) = get(&mut q, "/v1/returns/RMA-1").await;
    assert_eq!(r["state"], "credited", "{r}");
    assert_eq!(
        states(&r["history"]),
        [
            "authorized",
            "received",
            "inspected",
            "restocked",
            "inspected",
            "damaged",
            "credited"
        ]
    );
    assert_eq!(r["lines"][0]["damaged"], 2);
}

async fn stock_in_transit_is_not_sold_at_either_end_and_a_short_receipt_is_a_variance(
    partitions: u32,
) {
    let hub = hub("wf-transfer", WORKFLOWS, partitions).await;
    stock(&hub, "wms-east", "SKU-7", "DC-EAST", 10).await;
    let mut admin = hub.client(ADMIN).await;
    let (s, v) = post(&mut admin, "/v1/transfers", &json!({"transfer": "TR-1", "from": "DC-EAST", "to": "DC-WEST", "lines": [{"item": "SKU-7", "qty": 6}]})).await;
    assert_eq!((s, v["state"].as_str()), (201, Some("requested")), "{v}");
    let (s, v) = wms(
        &hub,
        "tr-ship",
        "transfer.shipped.v1",
        json!({"transfer": "TR-1", "item": "SKU-7", "from": "DC-EAST", "to": "DC-WEST", "qty": 6}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // In transit: 4 sellable at DC-EAST, none at DC-WEST; a 5-unit order for the channel fails.
    let mut shop = hub.client(RESERVE).await;
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &order("SO-T", "b2b", &[("SKU-7", 5)], "NY"),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let (_, avail) = get(&mut shop, "/v1/availability?item=SKU-7&channel=shopify").await;
    assert_eq!(avail["available"], 4, "{avail}");
    let mut q = hub.client(QUERY).await;
    let (_, t) = get(&mut q, "/v1/transfers/TR-1").await;
    assert_eq!(t["state"], "shipped", "{t}");
    // Five of six arrive: the line closes, one unit is written off with a variance.
    let mut west = hub.client(ADMIN).await;
    let (s, v) = post(
        &mut west,
        "/v1/events",
        &event(
            "tr-rcv",
            "wms-west",
            "transfer.received.v1",
            json!({"transfer": "TR-1", "item": "SKU-7", "location": "DC-WEST", "qty": 5}),
        ),
    )
    .await;
    assert!(s < 300, "{v}");
    let (_, t) = get(&mut q, "/v1/transfers/TR-1").await;
    assert_eq!(t["state"], "received", "{t}");
    assert_eq!(t["lines"][0]["lost"], 1);
    let variance = exceptions(&hub, "transfer_variance").await;
    assert_eq!(variance.len(), 1, "{variance:?}");
    assert!(
        variance[0]["reason"]
            .as_str()
            .unwrap()
            .contains("received 5 of 6")
    );
    let p = positions(&mut q, "SKU-7").await;
    let west_pos = p.iter().find(|x| x.0 == "DC-WEST").unwrap();
    assert_eq!((west_pos.1, west_pos.4), (5, 5));
}

async fn a_purchase_order_times_out_unacknowledged_and_a_substituted_asn_waits_for_a_decision(
    partitions: u32,
) {
    let hub = hub(
        "wf-po",
        &format!("{WORKFLOWS}\n[workflows]\nack_timeout_s = 1\n"),
        partitions,
    )
    .await;
    let mut admin = hub.client(ADMIN).await;
    let (s, v) = post(&mut admin, "/v1/purchase-orders", &json!({"po": "PO-1", "location": "DC-EAST", "lines": [{"item": "SKU-8", "qty": 10}], "expected_at": "2026-12-01T00:00:00Z"})).await;
    assert_eq!((s, v["state"].as_str()), (201, Some("created")), "{v}");
    let mut q = hub.client(QUERY).await;
    let (_, pos) = get(&mut q, "/v1/items/SKU-8/positions").await;
    assert_eq!(pos["positions"][0]["incoming"], 10, "{pos}");
    wait_for("partner_ack_timeout", Duration::from_secs(15), || async {
        !exceptions(&hub, "partner_ack_timeout").await.is_empty()
    })
    .await;
    // The acknowledgment comes late: recorded, the timeout resolved.
    let mut erp = hub.client(ADMIN).await;
    let (s, v) = post(
        &mut erp,
        "/v1/events",
        &event(
            "ack-1",
            "erp",
            "purchase_order.acknowledged.v1",
            json!({"po": "PO-1", "status": "accepted"}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "applied", "{v}");
    let (_, ex) = get(
        &mut admin,
        "/v1/exceptions?kind=partner_ack_timeout&status=resolved",
    )
    .await;
    assert_eq!(ex["exceptions"].as_array().unwrap().len(), 1, "{ex}");
    // An ASN ships 6 of SKU-8 and a substitute SKU-9: the PO waits for a decision.
    let (s, v) = post(&mut erp, "/v1/events", &event("asn-1", "erp", "asn.received.v1", json!({"asn": "ASN-1", "po": "PO-1", "lines": [{"item": "SKU-8", "qty": 6}, {"item": "SKU-9", "qty": 4}]}))).await;
    assert_eq!(s, 200, "{v}");
    let (_, po) = get(&mut q, "/v1/purchase-orders/PO-1").await;
    assert_eq!(po["state"], "asn_hold", "{po}");
    assert_eq!(po["pending"][0]["item"], "SKU-9");
    assert_eq!(exceptions(&hub, "asn_mismatch").await.len(), 1);
    let (s, v) = post(
        &mut admin,
        "/v1/purchase-orders/PO-1/asn-decision",
        &json!({"asn": "ASN-1", "accept": true, "note": "substitute agreed with the buyer"}),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("asn_received")), "{v}");
    let (_, pos) = get(&mut q, "/v1/items/SKU-9/positions").await;
    assert_eq!(
        pos["positions"][0]["incoming"], 4,
        "the accepted substitute is expected supply"
    );
    // Receipts against the PO close it and keep incoming right.
    for (id, item, qty) in [("r1", "SKU-8", 10), ("r2", "SKU-9", 4)] {
        let (s, v) = wms(
            &hub,
            id,
            "inventory.received.v1",
            json!({"item": item, "location": "DC-EAST", "qty": qty, "reference": "PO-1"}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, po) = get(&mut q, "/v1/purchase-orders/PO-1").await;
    assert_eq!(po["state"], "closed", "{po}");
    for item in ["SKU-8", "SKU-9"] {
        let (_, pos) = get(&mut q, &format!("/v1/items/{item}/positions")).await;
        assert_eq!(pos["positions"][0]["incoming"], 0, "{pos}");
    }
    // An ASN for an unknown PO is an exception, not a silent skip.
    let (s, v) = post(
        &mut erp,
        "/v1/events",
        &event(
            "asn-2",
            "erp",
            "asn.received.v1",
            json!({"asn": "ASN-2", "po": "PO-404", "lines": [{"item": "SKU-8", "qty": 1}]}),
        ),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(
        (v["event_status"].as_str(), v["exception_kind"].as_str()),
        (Some("quarantined"), Some("asn_mismatch")),
        "{v}"
    );
}

async fn workflows_continue_after_a_kill_and_their_deadlines_fire_once(partitions: u32) {
    let rules = format!("{WORKFLOWS}\n[workflows]\nshipment_sla_s = 3\nack_timeout_s = 3\n");
    let mut hub = hub("wf-restart", &rules, partitions).await;
    stock(&hub, "wms-east", "SKU-10", "DC-EAST", 5).await;
    let mut shop = hub.client(RESERVE).await;
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &order("SO-R", "shopify", &[("SKU-10", 2)], "NY"),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mut admin = hub.client(ADMIN).await;
    let (s, v) = post(&mut admin, "/v1/purchase-orders", &json!({"po": "PO-R", "location": "DC-EAST", "lines": [{"item": "SKU-10", "qty": 4}], "expected_at": "2026-12-01T00:00:00Z"})).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(&mut admin, "/v1/transfers", &json!({"transfer": "TR-R", "from": "DC-EAST", "to": "DC-WEST", "lines": [{"item": "SKU-10", "qty": 1}]})).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(
        &mut admin,
        "/v1/returns",
        &json!({"rma": "RMA-R", "location": "DC-EAST", "lines": [{"item": "SKU-10", "qty": 1}]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    hub.kill();
    hub.restart().await;
    // Both deadlines pass while the hub runs again: one exception each.
    wait_for("deadline exceptions", Duration::from_secs(20), || async {
        !exceptions(&hub, "shipment_posting_delay").await.is_empty()
            && !exceptions(&hub, "partner_ack_timeout").await.is_empty()
    })
    .await;
    hub.kill();
    hub.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(exceptions(&hub, "shipment_posting_delay").await.len(), 1);
    assert_eq!(exceptions(&hub, "partner_ack_timeout").await.len(), 1);
    let mut q = hub.client(QUERY).await;
    let (_, o) = get(&mut q, "/v1/orders/SO-R").await;
    let notes = o["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["note"].as_str().unwrap().contains("not shipped"))
        .count();
    assert_eq!(notes, 1, "the deadline fired once: {o}");
    // And each workflow goes on from where it was.
    let (s, v) = wms(
        &hub,
        "ship-r",
        "inventory.shipped.v1",
        json!({"order": "SO-R", "lines": [{"item": "SKU-10", "location": "DC-EAST", "qty": 2}]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, o) = get(&mut q, "/v1/orders/SO-R").await;
    assert_eq!(o["state"], "closed", "{o}");
    let (s, v) = wms(
        &hub,
        "tr-r",
        "transfer.shipped.v1",
        json!({"transfer": "TR-R", "item": "SKU-10", "from": "DC-EAST", "to": "DC-WEST", "qty": 1}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, t) = get(&mut q, "/v1/transfers/TR-R").await;
    assert_eq!(t["state"], "shipped", "{t}");
    let (s, v) = wms(
        &hub,
        "po-r",
        "inventory.received.v1",
        json!({"item": "SKU-10", "location": "DC-EAST", "qty": 4, "reference": "PO-R"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, po) = get(&mut q, "/v1/purchase-orders/PO-R").await;
    assert_eq!(po["state"], "closed", "{po}");
    for (id, ty, extra) in [
        ("rr-1", "return.received.v1", json!({})),
        (
            "ri-1",
            "return.inspected.v1",
            json!({"disposition": "restock"}),
        ),
    ] {
        let mut data = json!({"rma": "RMA-R", "item": "SKU-10", "location": "DC-EAST", "qty": 1});
        if let Some(d) = extra.get("disposition") {
            data["disposition"] = d.clone();
        }
        let (s, v) = wms(&hub, id, ty, data).await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, r) = get(&mut q, "/v1/returns/RMA-R").await;
    assert_eq!(r["state"], "credited", "{r}");
}

async fn a_short_line_is_filled_with_a_configured_substitute(partitions: u32) {
    let rules = format!(
        r#"{WORKFLOWS}
[workflows]
[[workflows.sourcing]]
channel = "shopify"
substitute = true
[[workflows.substitutions]]
item = "SKU-11"
with = ["SKU-12"]
"#
    );
    let hub = hub("wf-substitute", &rules, partitions).await;
    stock(&hub, "wms-east", "SKU-11", "DC-EAST", 1).await;
    stock(&hub, "wms-east", "SKU-12", "DC-EAST", 5).await;
    let mut shop = hub.client(RESERVE).await;
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &order("SO-S", "shopify", &[("SKU-11", 3)], "NY"),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let allocs = v["lines"][0]["allocations"].as_array().unwrap();
    assert_eq!(
        (allocs[0]["item"].as_str(), allocs[0]["qty"].as_i64()),
        (Some("SKU-11"), Some(1)),
        "{v}"
    );
    assert_eq!(
        (allocs[1]["item"].as_str(), allocs[1]["qty"].as_i64()),
        (Some("SKU-12"), Some(2)),
        "{v}"
    );
    let mut q = hub.client(QUERY).await;
    assert_eq!(alloc(&positions(&mut q, "SKU-12").await, "DC-EAST"), 2);
    // b2b has no substitution rule: the same order is refused there.
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &order("SO-S2", "b2b", &[("SKU-11", 3)], "NY"),
    )
    .await;
    assert_eq!(s, 409, "{v}");
}

/// Two items of different partitions (with four), so an order of both runs wide.
fn two_partitions_apart() -> (String, String) {
    let p = |i: usize| {
        crossdock_engine::partition_of(
            &crossdock_model::ItemId::new(&format!("SKU-{i}")).unwrap(),
            4,
        )
    };
    let b = (2..=100).find(|&i| p(i) != p(1)).unwrap();
    ("SKU-1".to_string(), format!("SKU-{b}"))
}

async fn a_backordered_line_of_an_order_across_partitions_is_filled_when_stock_arrives(
    partitions: u32,
) {
    let rules = format!(
        r#"{WORKFLOWS}
[workflows]
[[workflows.sourcing]]
channel = "shopify"
backorder = true
"#
    );
    let hub = hub("wf-wide-fill", &rules, partitions).await;
    let (a, b) = two_partitions_apart();
    stock(&hub, "wms-east", &a, "DC-EAST", 5).await;
    stock(&hub, "wms-east", &b, "DC-EAST", 1).await;
    let mut shop = hub.client(RESERVE).await;
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &order(
            "SO-WIDE",
            "shopify",
            &[(a.as_str(), 2), (b.as_str(), 3)],
            "NY",
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["lines"][0]["backordered"], 0, "{v}");
    assert_eq!(v["lines"][1]["backordered"], 2, "{v}");
    let mut q = hub.client(QUERY).await;
    assert_eq!(alloc(&positions(&mut q, &a).await, "DC-EAST"), 2);
    assert_eq!(alloc(&positions(&mut q, &b).await, "DC-EAST"), 1);

    // Stock of the backordered item arrives in its own partition: the order, living in
    // another, is filled.
    stock(&hub, "wms-east", &b, "DC-EAST", 5).await;
    wait_for(
        "the backorder to be filled",
        Duration::from_secs(15),
        || async {
            let mut q = hub.client(QUERY).await;
            let (_, o) = get(&mut q, "/v1/orders/SO-WIDE").await;
            o["lines"][1]["backordered"] == 0
        },
    )
    .await;
    let (_, o) = get(&mut q, "/v1/orders/SO-WIDE").await;
    assert!(
        o["history"].as_array().unwrap().iter().any(|h| h["note"]
            .as_str()
            .unwrap()
            .contains(&format!("backorder filled: 2 {b}"))),
        "{o}"
    );
    let pb = positions(&mut q, &b).await;
    assert_eq!((alloc(&pb, "DC-EAST"), pb[0].4), (3, 3), "{pb:?}");

    // Cancelled: every allocation, in both partitions, is given back.
    let (s, v) = post(
        &mut shop,
        "/v1/orders/SO-WIDE/cancel",
        &json!({"reason": "customer changed their mind"}),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("cancelled")), "{v}");
    let (pa, pb) = (positions(&mut q, &a).await, positions(&mut q, &b).await);
    assert_eq!((alloc(&pa, "DC-EAST"), pa[0].4), (0, 5), "{pa:?}");
    assert_eq!((alloc(&pb, "DC-EAST"), pb[0].4), (0, 6), "{pb:?}");
}

async fn returns_transfers_and_purchase_orders_across_partitions_go_on_after_a_kill(
    partitions: u32,
) {
    let mut hub = hub("wf-wide-kill", WORKFLOWS, partitions).await;
    let (a, b) = two_partitions_apart();
    stock(&hub, "wms-east", &a, "DC-EAST", 5).await;
    stock(&hub, "wms-east", &b, "DC-EAST", 5).await;
    let mut admin = hub.client(ADMIN).await;
    let (s, v) = post(&mut admin, "/v1/purchase-orders", &json!({"po": "PO-W", "location": "DC-EAST", "lines": [{"item": a, "qty": 4}, {"item": b, "qty": 3}], "expected_at": "2026-12-01T00:00:00Z"})).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(&mut admin, "/v1/transfers", &json!({"transfer": "TR-W", "from": "DC-EAST", "to": "DC-WEST", "lines": [{"item": a, "qty": 1}, {"item": b, "qty": 2}]})).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(
        &mut admin,
        "/v1/returns",
        &json!({"rma": "RMA-W", "location": "DC-EAST", "lines": [{"item": a, "qty": 1}, {"item": b, "qty": 1}]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = wms(
        &hub,
        "trw-a",
        "transfer.shipped.v1",
        json!({"transfer": "TR-W", "item": a, "from": "DC-EAST", "to": "DC-WEST", "qty": 1}),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    hub.kill();
    hub.restart().await;

    let mut q = hub.client(QUERY).await;
    let (_, t) = get(&mut q, "/v1/transfers/TR-W").await;
    assert_eq!(t["state"], "shipping", "{t}");
    let (s, v) = wms(
        &hub,
        "trw-b",
        "transfer.shipped.v1",
        json!({"transfer": "TR-W", "item": b, "from": "DC-EAST", "to": "DC-WEST", "qty": 2}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, t) = get(&mut q, "/v1/transfers/TR-W").await;
    assert_eq!(t["state"], "shipped", "{t}");
    let in_transit = |p: &Value| {
        p["positions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["location"] == "DC-WEST")
            .map_or(0, |x| x["in_transit"].as_i64().unwrap())
    };
    let (_, pa) = get(&mut q, &format!("/v1/items/{a}/positions")).await;
    let (_, pb) = get(&mut q, &format!("/v1/items/{b}/positions")).await;
    assert_eq!((in_transit(&pa), in_transit(&pb)), (1, 2), "{pa} {pb}");

    for (item, qty) in [(&a, 4), (&b, 3)] {
        let (s, v) = wms(
            &hub,
            &format!("pow-{item}"),
            "inventory.received.v1",
            json!({"item": item, "location": "DC-EAST", "qty": qty, "reference": "PO-W"}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, po) = get(&mut q, "/v1/purchase-orders/PO-W").await;
    assert_eq!(po["state"], "closed", "{po}");
    let (_, pa) = get(&mut q, &format!("/v1/items/{a}/positions")).await;
    assert_eq!(pa["positions"][0]["incoming"], 0, "{pa}");

    for item in [&a, &b] {
        for (id, ty) in [("rr", "return.received.v1"), ("ri", "return.inspected.v1")] {
            let mut data = json!({"rma": "RMA-W", "item": item, "location": "DC-EAST", "qty": 1});
            if ty == "return.inspected.v1" {
                data["disposition"] = json!("restock");
            }
            let (s, v) = wms(&hub, &format!("{id}-{item}"), ty, data).await;
            assert_eq!(s, 200, "{v}");
        }
    }
    let (_, r) = get(&mut q, "/v1/returns/RMA-W").await;
    assert_eq!(r["state"], "credited", "{r}");
}

macro_rules! on_one_and_four_partitions {
    ($($name:ident),* $(,)?) => {
        mod one_partition {
            $(#[tokio::test]
            async fn $name() {
                super::$name(1).await
            })*
        }
        mod four_partitions {
            $(#[tokio::test]
            async fn $name() {
                super::$name(4).await
            })*
        }
    };
}

on_one_and_four_partitions!(
    an_order_is_sourced_allocated_released_shipped_in_parts_and_closed,
    sourcing_prefers_the_region_splits_within_the_limit_and_backorders_what_is_missing,
    the_credit_check_falls_back_on_timeout_and_holds_what_it_cannot_approve,
    a_damaged_return_is_credited_and_never_sellable,
    stock_in_transit_is_not_sold_at_either_end_and_a_short_receipt_is_a_variance,
    a_purchase_order_times_out_unacknowledged_and_a_substituted_asn_waits_for_a_decision,
    workflows_continue_after_a_kill_and_their_deadlines_fire_once,
    a_short_line_is_filled_with_a_configured_substitute,
    a_backordered_line_of_an_order_across_partitions_is_filled_when_stock_arrives,
    returns_transfers_and_purchase_orders_across_partitions_go_on_after_a_kill,
);
