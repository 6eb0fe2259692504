//! Hostile inputs through every door of the real binary: quantities at and beyond the bound of
//! i64 and of the hub, times far off, blank ids, unknown names. Each must be refused with a
//! specific problem (4xx, problem+json, numeric status), leave an exception record an operator
//! can act on, and change no position; what the hub accepts around them still applies.

mod common;

use common::{ADMIN, EAST, Hub, RESERVE, event, get, post, post_raw, sqlite_count};
use crossdock_cli::client::Client;
use serde_json::{Value, json};

const QTY_MAX: i64 = 1_000_000_000_000;

/// Quantities a field that must be positive has to refuse, as raw JSON (some are not `i64`).
fn bad_positive() -> Vec<&'static str> {
    let mut v = bad_count();
    v.push("0");
    v
}

/// Quantities a count (zero allowed) has to refuse.
fn bad_count() -> Vec<&'static str> {
    vec![
        "-1",
        "-5",
        "-9223372036854775808",
        "-1000000000001",
        "1000000000001",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "1.5",
        "1e300",
        "\"5\"",
        "null",
    ]
}

/// Deltas an adjustment has to refuse.
fn bad_delta() -> Vec<&'static str> {
    vec![
        "0",
        "-9223372036854775808",
        "-1000000000001",
        "1000000000001",
        "9223372036854775807",
        "9223372036854775808",
        "0.5",
        "\"-5\"",
        "null",
    ]
}

/// Inventory events with `QTY` where the quantity goes, the field named as the problem names it.
fn inventory_templates() -> Vec<(&'static str, &'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "inventory.received.v1",
            r#"{"item":"SKU-1","location":"DC-EAST","qty":QTY}"#,
            "data.qty",
            bad_positive(),
        ),
        (
            "inventory.adjusted.v1",
            r#"{"item":"SKU-1","location":"DC-EAST","delta":QTY,"reason":"cycle"}"#,
            "data.delta",
            bad_delta(),
        ),
        (
            "inventory.counted.v1",
            r#"{"item":"SKU-1","location":"DC-EAST","qty":QTY}"#,
            "data.qty",
            bad_count(),
        ),
        (
            "inventory.status_changed.v1",
            r#"{"item":"SKU-1","location":"DC-EAST","qty":QTY,"from":"sellable","to":"damaged"}"#,
            "data.qty",
            bad_positive(),
        ),
        (
            "inventory.picked.v1",
            r#"{"order":"o-1","item":"SKU-1","location":"DC-EAST","qty":QTY}"#,
            "data.qty",
            bad_positive(),
        ),
        (
            "inventory.shipped.v1",
            r#"{"order":"o-1","lines":[{"item":"SKU-1","location":"DC-EAST","qty":QTY}]}"#,
            "data.lines",
            bad_positive(),
        ),
        (
            "transfer.shipped.v1",
            r#"{"transfer":"t-1","item":"SKU-1","from":"DC-EAST","to":"DC-WEST","qty":QTY}"#,
            "data.qty",
            bad_positive(),
        ),
        (
            "transfer.received.v1",
            r#"{"transfer":"t-1","item":"SKU-1","location":"DC-EAST","qty":QTY}"#,
            "data.qty",
            bad_positive(),
        ),
        (
            "return.received.v1",
            r#"{"rma":"r-1","item":"SKU-1","location":"DC-EAST","qty":QTY}"#,
            "data.qty",
            bad_positive(),
        ),
        (
            "return.inspected.v1",
            r#"{"rma":"r-1","item":"SKU-1","location":"DC-EAST","qty":QTY,"disposition":"restock"}"#,
            "data.qty",
            bad_positive(),
        ),
    ]
}

/// Every bucket of every position, as the store holds them.
fn all_positions(hub: &Hub) -> Vec<String> {
    let conn = rusqlite::Connection::open(hub.db()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT item || '@' || location || '/' || lot || ':' || on_hand || ',' || quarantined || ',' || \
             damaged || ',' || returns_pending || ',' || picked || ',' || allocated || ',' || reserved || ',' || \
             in_transit || ',' || incoming || ',' || safety_stock FROM positions ORDER BY item, location, lot",
        )
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn exception_count(hub: &Hub) -> i64 {
    sqlite_count(&hub.db(), "SELECT count(*) FROM exceptions")
}

/// One refused input: a 4xx answered as problem+json whose `status` is the HTTP status, naming
/// `field` when given, and one more exception record than before.
struct Refusals<'a> {
    hub: &'a Hub,
    seen: usize,
}

impl Refusals<'_> {
    async fn expect(
        &mut self,
        what: &str,
        c: &mut Client,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        field: Option<&str>,
    ) -> Value {
        let before = exception_count(self.hub);
        let (status, problem) = post_raw(c, path, content_type, body).await;
        assert!(
            (400..500).contains(&status),
            "{what}: answered {status} {problem}"
        );
        assert_eq!(
            problem["status"].as_u64(),
            Some(u64::from(status)),
            "{what}: problem+json with a numeric status: {problem}"
        );
        assert!(
            problem["type"].is_string() && problem["detail"].is_string(),
            "{what}: {problem}"
        );
        if let Some(field) = field {
            let named = problem["field"].as_str().unwrap_or_default();
            assert!(
                named.starts_with(field),
                "{what}: names {named:?}, expected {field:?}: {problem}"
            );
        }
        assert!(
            exception_count(self.hub) > before,
            "{what}: refused without an exception record: {problem}"
        );
        self.seen += 1;
        problem
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_through_every_door_are_refused_and_change_nothing() {
    let hub = Hub::start(
        "hostile",
        r#"
[[sources]]
id = "erp"
[[sources.owns]]
types = ["supply.*"]
"#,
    )
    .await;
    let mut east = hub.client(EAST).await;
    let mut admin = hub.client(ADMIN).await;
    let mut shop = hub.client(RESERVE).await;
    for (id, item, qty) in [("open-1", "SKU-1", 100), ("open-2", "SKU-2", 40)] {
        let (s, v) = post(
            &mut east,
            "/v1/events",
            &event(
                id,
                "wms-east",
                "inventory.received.v1",
                json!({"item": item, "location": "DC-EAST", "qty": qty}),
            ),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let before = all_positions(&hub);
    let mut r = Refusals { hub: &hub, seen: 0 };

    // 1. Single events, every quantity field, every bad value.
    let mut lines = Vec::new();
    for (n, (ty, template, field, values)) in inventory_templates().into_iter().enumerate() {
        for (k, q) in values.iter().enumerate() {
            let data = template.replace("QTY", q);
            let body = format!(
                r#"{{"specversion":"1.0","id":"bad-{n}-{k}","source":"wms-east","type":"{ty}","time":"2026-11-23T10:00:00Z","data":{data}}}"#
            );
            r.expect(
                &format!("{ty} with {q}"),
                &mut east,
                "/v1/events",
                "application/cloudevents+json",
                body.into_bytes(),
                Some(field),
            )
            .await;
            lines.push(format!(
                r#"{{"specversion":"1.0","id":"nd-{n}-{k}","source":"wms-east","type":"{ty}","time":"2026-11-23T10:00:00Z","data":{data}}}"#
            ));
        }
    }
    let single = r.seen;
    assert!(single >= 110, "{single}");

    // 2. The same as one NDJSON batch: every line refused, each with its own record.
    let records = exception_count(&hub);
    let (status, text) = post_raw(
        &mut east,
        "/v1/events",
        "application/x-ndjson",
        lines.join("\n").into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let answers: Vec<Value> = text
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), lines.len());
    for a in &answers {
        assert_eq!(a["status"], "rejected", "{a}");
        assert!(a["problem"]["status"].is_u64(), "{a}");
    }
    assert_eq!(
        exception_count(&hub) - records,
        lines.len() as i64,
        "one record per refused line"
    );
    r.seen += lines.len();

    // 3. Times far off, before and after the hub's clock.
    for (k, time) in [
        "9999-12-31T23:59:59Z",
        "2099-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "1900-06-01T12:00:00+02:00",
    ]
    .iter()
    .enumerate()
    {
        for (j, (ty, data)) in [
            (
                "inventory.counted.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 7}),
            ),
            (
                "inventory.received.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 7}),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let mut ev = event(&format!("time-{k}-{j}"), "wms-east", ty, data);
            ev["time"] = json!(time);
            let p = r
                .expect(
                    &format!("{ty} at {time}"),
                    &mut east,
                    "/v1/events",
                    "application/json",
                    serde_json::to_vec(&ev).unwrap(),
                    Some("time"),
                )
                .await;
            assert!(
                p["type"]
                    .as_str()
                    .unwrap()
                    .ends_with("event-time-out-of-bounds"),
                "{p}"
            );
        }
    }
    // An hour ahead is beyond the default five minutes of skew.
    let ahead = crossdock_model::Timestamp::now()
        .plus_secs(3600)
        .to_rfc3339();
    let mut ev = event(
        "time-ahead",
        "wms-east",
        "inventory.counted.v1",
        json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1}),
    );
    ev["time"] = json!(ahead);
    r.expect(
        "a count an hour ahead",
        &mut east,
        "/v1/events",
        "application/json",
        serde_json::to_vec(&ev).unwrap(),
        Some("time"),
    )
    .await;

    // 4. Blank, whitespace and control-character ids and names.
    for (what, field, ev) in [
        (
            "empty id",
            "id",
            event(
                "",
                "wms-east",
                "inventory.received.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1}),
            ),
        ),
        (
            "blank id",
            "id",
            event(
                "   ",
                "wms-east",
                "inventory.received.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1}),
            ),
        ),
        (
            "tab id",
            "id",
            event(
                "\t",
                "wms-east",
                "inventory.received.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1}),
            ),
        ),
        (
            "blank item",
            "data.item",
            event(
                "b-1",
                "wms-east",
                "inventory.received.v1",
                json!({"item": " ", "location": "DC-EAST", "qty": 1}),
            ),
        ),
        (
            "blank location",
            "data.location",
            event(
                "b-2",
                "wms-east",
                "inventory.received.v1",
                json!({"item": "SKU-1", "location": "\u{a0}", "qty": 1}),
            ),
        ),
        (
            "control in item",
            "data.item",
            event(
                "b-3",
                "wms-east",
                "inventory.received.v1",
                json!({"item": "SKU\u{0}1", "location": "DC-EAST", "qty": 1}),
            ),
        ),
        (
            "blank order",
            "data.order",
            event(
                "b-4",
                "wms-east",
                "inventory.picked.v1",
                json!({"order": " ", "item": "SKU-1", "location": "DC-EAST", "qty": 1}),
            ),
        ),
        (
            "blank reason",
            "data.reason",
            event(
                "b-5",
                "wms-east",
                "inventory.adjusted.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "delta": 1, "reason": "  "}),
            ),
        ),
        (
            "blank source",
            "source",
            event(
                "b-6",
                " ",
                "inventory.received.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1}),
            ),
        ),
    ] {
        r.expect(
            what,
            &mut east,
            "/v1/events",
            "application/json",
            serde_json::to_vec(&ev).unwrap(),
            Some(field),
        )
        .await;
    }

    // 5. Reservations: bad quantities, unknown names, blank ids, silly lifetimes.
    let reservation = |id: &str, channel: &str, lines: Value, ttl: Value| {
        serde_json::to_vec(&json!({"id": id, "channel": channel, "lines": lines, "ttl_s": ttl}))
            .unwrap()
    };
    for (k, q) in bad_positive().iter().enumerate() {
        let body = format!(
            r#"{{"id":"res-q{k}","channel":"shopify","lines":[{{"item":"SKU-1","qty":{q}}}],"ttl_s":60}}"#
        );
        r.expect(
            &format!("reservation of {q}"),
            &mut shop,
            "/v1/reservations",
            "application/json",
            body.into_bytes(),
            Some("lines"),
        )
        .await;
    }
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"item": format!("X-{i}"), "qty": 1}))
        .collect();
    for (what, field, body) in [
        (
            "reservation of an unknown item",
            "lines",
            reservation(
                "res-u1",
                "shopify",
                json!([{"item": "NOPE", "qty": 1}]),
                json!(60),
            ),
        ),
        (
            "reservation on an unknown channel",
            "channel",
            reservation(
                "res-u2",
                "ebay",
                json!([{"item": "SKU-1", "qty": 1}]),
                json!(60),
            ),
        ),
        (
            "reservation with a blank id",
            "id",
            reservation(
                "  ",
                "shopify",
                json!([{"item": "SKU-1", "qty": 1}]),
                json!(60),
            ),
        ),
        (
            "reservation with no lines",
            "lines",
            reservation("res-u3", "shopify", json!([]), json!(60)),
        ),
        (
            "reservation naming an item twice",
            "lines",
            reservation(
                "res-u4",
                "shopify",
                json!([{"item": "SKU-1", "qty": 1}, {"item": "SKU-1", "qty": 2}]),
                json!(60),
            ),
        ),
        (
            "reservation of 1001 lines",
            "lines",
            reservation("res-u5", "shopify", json!(many), json!(60)),
        ),
        (
            "reservation for no time",
            "ttl_s",
            reservation(
                "res-u6",
                "shopify",
                json!([{"item": "SKU-1", "qty": 1}]),
                json!(0),
            ),
        ),
        (
            "reservation for ever",
            "ttl_s",
            reservation(
                "res-u7",
                "shopify",
                json!([{"item": "SKU-1", "qty": 1}]),
                json!(u64::MAX),
            ),
        ),
        (
            "reservation for negative time",
            "ttl_s",
            reservation(
                "res-u8",
                "shopify",
                json!([{"item": "SKU-1", "qty": 1}]),
                json!(-1),
            ),
        ),
    ] {
        r.expect(
            what,
            &mut shop,
            "/v1/reservations",
            "application/json",
            body,
            Some(field),
        )
        .await;
    }
    // More than there is: refused with the shortfall (409), nothing held.
    let (status, v) = post_raw(
        &mut shop,
        "/v1/reservations",
        "application/json",
        reservation(
            "res-big",
            "shopify",
            json!([{"item": "SKU-1", "qty": QTY_MAX}]),
            json!(60),
        ),
    )
    .await;
    assert_eq!(status, 409, "{v}");

    // 6. Orders: the same quantities, unknown names, blank ids and regions.
    let order = |id: &str, channel: &str, lines: Value, region: &str| {
        serde_json::to_vec(
            &json!({"id": id, "channel": channel, "lines": lines, "ship_to": {"region": region}}),
        )
        .unwrap()
    };
    for (k, q) in bad_positive().iter().enumerate() {
        let body = format!(
            r#"{{"id":"ord-q{k}","channel":"b2b","lines":[{{"item":"SKU-1","qty":{q}}}],"ship_to":{{"region":"east"}}}}"#
        );
        r.expect(
            &format!("order of {q}"),
            &mut shop,
            "/v1/orders",
            "application/json",
            body.into_bytes(),
            Some("lines"),
        )
        .await;
    }
    for (what, field, body) in [
        (
            "order of an unknown item",
            "lines",
            order("ord-u1", "b2b", json!([{"item": "NOPE", "qty": 1}]), "east"),
        ),
        (
            "order on an unknown channel",
            "channel",
            order(
                "ord-u2",
                "ebay",
                json!([{"item": "SKU-1", "qty": 1}]),
                "east",
            ),
        ),
        (
            "order with a blank id",
            "order",
            order(" ", "b2b", json!([{"item": "SKU-1", "qty": 1}]), "east"),
        ),
        (
            "order with a blank region",
            "ship_to.region",
            order("ord-u3", "b2b", json!([{"item": "SKU-1", "qty": 1}]), " "),
        ),
        (
            "order with no lines",
            "lines",
            order("ord-u4", "b2b", json!([]), "east"),
        ),
        ("order with a negative amount", "amount_minor", {
            let mut v: Value = serde_json::from_slice(&order(
                "ord-u5",
                "b2b",
                json!([{"item": "SKU-1", "qty": 1}]),
                "east",
            ))
            .unwrap();
            v["amount_minor"] = json!(i64::MIN);
            serde_json::to_vec(&v).unwrap()
        }),
    ] {
        r.expect(
            what,
            &mut shop,
            "/v1/orders",
            "application/json",
            body,
            Some(field),
        )
        .await;
    }

    // 7. Purchase orders: bad quantities, and open supply beyond the bound.
    let po = |id: &str, qty: &str| {
        format!(
            r#"{{"po":"{id}","location":"DC-EAST","lines":[{{"item":"SKU-3","qty":{qty}}}],"expected_at":"2026-12-20T00:00:00Z"}}"#
        )
        .into_bytes()
    };
    for (k, q) in bad_positive().iter().enumerate() {
        r.expect(
            &format!("purchase order of {q}"),
            &mut admin,
            "/v1/purchase-orders",
            "application/json",
            po(&format!("po-q{k}"), q),
            Some("lines"),
        )
        .await;
    }

    // Everything refused so far changed nothing.
    assert_eq!(
        all_positions(&hub),
        before,
        "refused inputs changed a position"
    );

    let (s, v) = post_raw(
        &mut admin,
        "/v1/purchase-orders",
        "application/json",
        po("po-max", "1000000000000"),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let p = r
        .expect(
            "a second purchase order past the bound",
            &mut admin,
            "/v1/purchase-orders",
            "application/json",
            po("po-over", "1"),
            Some("lines"),
        )
        .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("incoming of SKU-3 at DC-EAST"),
        "{p}"
    );

    // 8. Sums beyond the bound: each adjustment in bounds, the second would pass it.
    let adjust = |id: &str, delta: i64| {
        event(
            id,
            "wms-east",
            "inventory.adjusted.v1",
            json!({"item": "SKU-4", "location": "DC-EAST", "delta": delta, "reason": "cycle"}),
        )
    };
    let (s, v) = post(&mut east, "/v1/events", &adjust("sum-1", -QTY_MAX)).await;
    assert_eq!(s, 200, "{v}");
    let records = exception_count(&hub);
    let (s, v) = post(&mut east, "/v1/events", &adjust("sum-2", -1000)).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["exception_kind"], "out_of_bounds", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("on_hand of SKU-4 at DC-EAST"),
        "{v}"
    );
    assert_eq!(exception_count(&hub), records + 1);
    r.seen += 1;
    let (s, v) = post(&mut shop, "/v1/reservations", &json!({"id": "res-sum", "channel": "shopify", "lines": [{"item": "SKU-4", "qty": 1_000_000}], "ttl_s": 60})).await;
    assert_eq!(s, 409, "no stock conjured: {v}");

    // 9. A count from the future did not freeze SKU-1: a receipt still applies.
    let (s, v) = post(
        &mut east,
        "/v1/events",
        &event(
            "after-1",
            "wms-east",
            "inventory.received.v1",
            json!({"item": "SKU-1", "location": "DC-EAST", "qty": 5}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, p) = get(&mut shop, "/v1/items/SKU-1/positions").await;
    assert_eq!(p["positions"][0]["on_hand"], 105, "{p}");

    println!("{} hostile inputs refused", r.seen);
    assert!(
        r.seen >= 200,
        "the battery holds at least 200 hostile inputs, has {}",
        r.seen
    );
}
