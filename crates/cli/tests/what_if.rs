//! `crossdock what-if` through the real binary, reading the log of a hub that keeps running:
//! a bigger buffer hides exactly the buffer and exposes nothing, ignoring soft reservations
//! exposes exactly the held units for as long as they are held, a policy file that repeats the
//! configured channel changes nothing, and bad arguments exit 2 naming what is wrong; a log
//! written by four partitions (reservations and orders across them) gives what one gives.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{EAST, Hub, RESERVE, event, post, sqlite_count};
use crossdock_model::Timestamp;
use serde_json::{Value, json};

/// Runs `crossdock what-if` against the hub's config with the hub's token secrets in the
/// environment (the config names them, and is checked as a whole).
fn what_if(hub: &Hub, policy: &Path, from: &str, to: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["what-if", "--config"])
        .arg(hub.dir.join("crossdock.toml"))
        .arg("--policy")
        .arg(policy)
        .args(["--from", from, "--to", to, "--json"])
        .env("T_ADMIN", common::ADMIN)
        .env("T_EAST", EAST)
        .env("T_QUERY", common::QUERY)
        .env("T_RESERVE", RESERVE)
        .output()
        .expect("run crossdock what-if")
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn channel<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == id)
        .unwrap_or_else(|| panic!("no channel {id} in {r:#}"))
}

/// The hub's received time of a logged event, in µs.
fn received_at(hub: &Hub, id: &str) -> i64 {
    sqlite_count(
        &hub.db(),
        &format!("SELECT received_at_us FROM events WHERE id = '{id}'"),
    )
}

fn close(actual: &Value, expected_unit_us: i64) {
    let actual = actual.as_f64().unwrap();
    let expected = expected_unit_us as f64 / 1e6;
    assert!(
        (actual - expected).abs() < 1e-6,
        "{actual} unit·s, expected {expected}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_if_measures_a_policy_change_against_the_running_hubs_log() {
    let hub = Hub::start("what-if", "").await;
    let from = Timestamp::now();
    let mut east = hub.client(EAST).await;
    for (id, item, qty) in [("rcv-1", "SKU-1", 10), ("rcv-2", "SKU-2", 5)] {
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
        assert!(s == 200 || s == 201, "{s} {v}");
    }
    let mut shop = hub.client(RESERVE).await;
    let (s, v) = post(
        &mut shop,
        "/v1/reservations",
        &json!({"id": "cart-1", "channel": "shopify", "lines": [{"item": "SKU-1", "qty": 4}], "ttl_s": 600}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let to_ts = Timestamp::now();
    let (from, to) = (from.to_rfc3339(), to_ts.to_rfc3339());
    let to_us = to_ts.as_micros();
    let (rcv_1, rcv_2) = (received_at(&hub, "rcv-1"), received_at(&hub, "rcv-2"));
    let held = sqlite_count(
        &hub.db(),
        "SELECT received_at_us FROM events WHERE type = 'reservation.requested.v1'",
    );

    // A buffer of 3 on shopify: 3 of SKU-1 hidden from its receipt on (7 of 10 shown, then 3
    // of 6 once 4 are held), 3 of SKU-2's 5 from its receipt on; nothing shown that is not there.
    let dir = &hub.dir;
    let buffer = dir.join("buffer.toml");
    std::fs::write(
        &buffer,
        "[[channels]]\nid = \"shopify\"\nlocations = [\"DC-EAST\", \"DC-WEST\"]\nbuffer = 3\n",
    )
    .unwrap();
    let r = report(&what_if(&hub, &buffer, &from, &to));
    assert_eq!(r["events_replayed"], 3, "{r:#}");
    assert_eq!(r["events_in_window"], 3, "{r:#}");
    assert_eq!(r["outcomes_differing"], 0, "{r:#}");
    let shopify = channel(&r, "shopify");
    assert_eq!(shopify["changed"], true);
    assert_eq!(
        shopify["baseline"],
        json!({"exposure_events": 0, "exposure_unit_seconds": 0.0, "hidden_unit_seconds": 0.0,
               "items_exposed": 0, "peak_exposure": 0}),
        "the configured shopify shows exactly what is sellable"
    );
    let alt = &shopify["alternative"];
    assert_eq!(alt["exposure_events"], 0, "{r:#}");
    assert_eq!(alt["exposure_unit_seconds"], 0.0, "{r:#}");
    assert_eq!(alt["items_exposed"], 0, "{r:#}");
    close(
        &alt["hidden_unit_seconds"],
        3 * (to_us - rcv_1) + 3 * (to_us - rcv_2),
    );
    let b2b = channel(&r, "b2b");
    assert_eq!(b2b["changed"], false);
    assert_eq!(b2b["baseline"], b2b["alternative"], "b2b keeps its policy");
    assert!(
        b2b["baseline"]["hidden_unit_seconds"].as_f64().unwrap() > 0.0,
        "b2b's configured 10% buffer hides stock: {r:#}"
    );

    // Shopify ignoring soft reservations: the 4 held units are shown from the hold on.
    let ignores = dir.join("ignores.toml");
    std::fs::write(
        &ignores,
        "[[channels]]\nid = \"shopify\"\nlocations = [\"DC-EAST\", \"DC-WEST\"]\ncounts_soft_reservations = false\n",
    )
    .unwrap();
    let r = report(&what_if(&hub, &ignores, &from, &to));
    let alt = &channel(&r, "shopify")["alternative"];
    assert_eq!(alt["exposure_events"], 1, "{r:#}");
    assert_eq!(alt["items_exposed"], 1, "{r:#}");
    assert_eq!(alt["peak_exposure"], 4, "{r:#}");
    assert_eq!(alt["hidden_unit_seconds"], 0.0, "{r:#}");
    close(&alt["exposure_unit_seconds"], 4 * (to_us - held));

    // The configured channel repeated: the alternative is the baseline.
    let same = dir.join("same.toml");
    std::fs::write(
        &same,
        "[[channels]]\nid = \"b2b\"\nlocations = [\"DC-EAST\"]\nbuffer = \"10%\"\n",
    )
    .unwrap();
    let r = report(&what_if(&hub, &same, &from, &to));
    for c in r["channels"].as_array().unwrap() {
        assert_eq!(c["changed"], false, "{r:#}");
        assert_eq!(c["baseline"], c["alternative"], "{r:#}");
    }

    // The table, without --json.
    let out = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["what-if", "--config"])
        .arg(dir.join("crossdock.toml"))
        .arg("--policy")
        .arg(&buffer)
        .args(["--from", &from, "--to", &to])
        .env("T_ADMIN", common::ADMIN)
        .env("T_EAST", EAST)
        .env("T_QUERY", common::QUERY)
        .env("T_RESERVE", RESERVE)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("3 events replayed, 3 in the window"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("shopify") && l.contains("alternative")),
        "{table}"
    );

    // Bad arguments: exit 2 and say what is wrong.
    let unknown = dir.join("unknown.toml");
    std::fs::write(
        &unknown,
        "\n[[channels]]\nid = \"amazon\"\nlocations = [\"DC-EAST\"]\n",
    )
    .unwrap();
    let missing = dir.join("missing.toml");
    for (policy, from, to, says) in [
        (
            unknown.as_path(),
            from.as_str(),
            to.as_str(),
            "line 3: channels.0.id: channel \"amazon\" is not configured",
        ),
        (
            buffer.as_path(),
            to.as_str(),
            from.as_str(),
            "is before --from",
        ),
        (
            buffer.as_path(),
            "yesterday",
            to.as_str(),
            "--from \"yesterday\": not an RFC 3339 timestamp",
        ),
        (
            missing.as_path(),
            from.as_str(),
            to.as_str(),
            "missing.toml: cannot read",
        ),
    ] {
        let out = what_if(&hub, policy, from, to);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{says:?} in {stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// Receipts, a reservation and an order whose lines are on different partitions (with four),
/// then `what-if` with shopify ignoring soft reservations: what it finds exposed depends on what
/// the log holds, not on how many partitions wrote it (forwarded copies and wide inputs' part
/// rows are not inputs of their own).
async fn exposure_with(partitions: u32) -> Value {
    let hub = Hub::start(
        &format!("what-if-{partitions}"),
        &format!("[engine]\npartitions = {partitions}\n"),
    )
    .await;
    let from = Timestamp::now();
    let mut east = hub.client(EAST).await;
    for i in 1..=4 {
        let (s, v) = post(
            &mut east,
            "/v1/events",
            &event(
                &format!("rcv-{i}"),
                "wms-east",
                "inventory.received.v1",
                json!({"item": format!("SKU-{i}"), "location": "DC-EAST", "qty": 10}),
            ),
        )
        .await;
        assert!(s == 200 || s == 201, "{s} {v}");
    }
    let mut shop = hub.client(RESERVE).await;
    let (s, v) = post(
        &mut shop,
        "/v1/reservations",
        &json!({"id": "cart-1", "channel": "shopify", "ttl_s": 600,
            "lines": [{"item": "SKU-1", "qty": 4}, {"item": "SKU-2", "qty": 3}]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &json!({"id": "SO-1", "channel": "shopify", "amount_minor": 100,
            "ship_to": {"name": "Acme", "region": "NY"},
            "lines": [{"item": "SKU-3", "qty": 2}, {"item": "SKU-4", "qty": 5}]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let to = Timestamp::now();
    let ignores = hub.dir.join("ignores.toml");
    std::fs::write(
        &ignores,
        "[[channels]]\nid = \"shopify\"\nlocations = [\"DC-EAST\", \"DC-WEST\"]\ncounts_soft_reservations = false\n",
    )
    .unwrap();
    let r = report(&what_if(
        &hub,
        &ignores,
        &from.to_rfc3339(),
        &to.to_rfc3339(),
    ));
    channel(&r, "shopify")["alternative"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn what_if_finds_the_same_on_one_partition_and_four() {
    let one = exposure_with(1).await;
    let four = exposure_with(4).await;
    // The 7 held units shown from the hold on, on two items; the order's allocations are not
    // soft reservations and stay hidden either way.
    for alt in [&one, &four] {
        assert_eq!(alt["items_exposed"], 2, "{alt:#}");
        assert_eq!(alt["peak_exposure"], 4, "{alt:#}");
        assert_eq!(alt["hidden_unit_seconds"], 0.0, "{alt:#}");
    }
    assert_eq!(one["exposure_events"], four["exposure_events"]);
}
