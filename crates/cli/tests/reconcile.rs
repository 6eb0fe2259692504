//! Reconciliation and time travel through the real binary: drift injected on purpose into
//! snapshot files, an 846 and the Shopify simulator is found exactly (and nothing else, even
//! with events in flight), auto-correction is idempotent, and item history at a time matches
//! what the API answered at that time.

mod common;

use std::time::Duration;

use common::shop::{converged, shopify_sim, start_hub_with};
use common::{ADMIN, EAST, Hub, QUERY, RESERVE, get, positions, post, post_raw, sqlite_count};
use crossdock_cli::client::Client;
use serde_json::{Value, json};

const SOURCES: &str = r#"
[[sources]]
id = "wms-all"
[[sources.owns]]
types = ["inventory.*"]

[[reconciliation.sources]]
name = "erp"
kind = "csv"
stale_after_s = 86400000
[reconciliation.sources.actions]
quantity_variance = "exception"
default = "report"

[[reconciliation.sources]]
name = "wms"
kind = "csv"
stale_after_s = 86400000
[reconciliation.sources.actions]
quantity_variance = "auto_correct"
missing_in_source = "auto_correct"
missing_in_crossdock = "auto_correct"

[[reconciliation.sources]]
name = "east-west"
kind = "csv"
locations = ["DC-EAST", "DC-WEST"]
stale_after_s = 86400000

[[reconciliation.sources]]
name = "feed"
kind = "csv"
stale_after_s = 3600
[reconciliation.sources.actions]
stale = "exception"
"#;

/// An event from `wms-all` with its own event time.
fn at(id: &str, ty: &str, time: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "wms-all", "type": ty, "time": time, "data": data,
    })
}

async fn send(c: &mut Client, events: &[Value]) {
    for ev in events {
        let (status, v) = post(c, "/v1/events", ev).await;
        assert!(
            status == 200 || status == 201 || status == 202,
            "{status} {v}"
        );
    }
}

async fn reconcile(c: &mut Client, source: &str, as_of: &str, csv: &str) -> (u16, Value) {
    post_raw(
        c,
        &format!("/v1/reconciliations?source={source}&as_of={as_of}"),
        "text/csv",
        csv.as_bytes().to_vec(),
    )
    .await
}

/// The variances of a run as `(item, location, class, source, ledger, action)`, sorted.
type Row = (String, String, String, Option<i64>, Option<i64>, String);

fn variances(run: &Value) -> Vec<Row> {
    let mut out: Vec<_> = run["variances"]
        .as_array()
        .expect("variances")
        .iter()
        .map(|v| {
            (
                v["item"].as_str().unwrap().to_string(),
                v["location"].as_str().unwrap().to_string(),
                v["class"].as_str().unwrap().to_string(),
                v["source_qty"].as_i64(),
                v["ledger_qty"].as_i64(),
                v["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn s(x: &str) -> String {
    x.to_string()
}

/// Stock before the snapshot (09:00), the snapshot at 09:30, and work in flight after it
/// (09:45) that the hub has applied by the time it reconciles.
async fn stock_with_work_in_flight(c: &mut Client) {
    let t0 = "2026-11-23T09:00:00Z";
    let recv = |id: &str, item: &str, loc: &str, qty: i64| {
        at(
            id,
            "inventory.received.v1",
            t0,
            json!({"item": item, "location": loc, "qty": qty}),
        )
    };
    send(
        c,
        &[
            recv("r1", "SKU-1", "DC-EAST", 100),
            recv("r2", "SKU-2", "DC-EAST", 50),
            recv("r3", "SKU-3", "DC-WEST", 30),
            recv("r4", "SKU-4", "DC-EAST", 20),
            recv("r5", "SKU-5", "DC-EAST", 10),
            // Injected: the same receipt posted twice under two ids (double-counted).
            recv("r5-again", "SKU-5", "DC-EAST", 10),
        ],
    )
    .await;
    let t2 = "2026-11-23T09:45:00Z";
    send(
        c,
        &[
            at(
                "s1",
                "inventory.shipped.v1",
                t2,
                json!({"order": "SO-9", "lines": [{"item": "SKU-1", "location": "DC-EAST", "qty": 10}]}),
            ),
            at(
                "r2-late",
                "inventory.received.v1",
                t2,
                json!({"item": "SKU-2", "location": "DC-EAST", "qty": 5}),
            ),
        ],
    )
    .await;
}

/// The other system's stock at 09:30: right for SKU-1 and SKU-2 (whose later moves the hub
/// already has), SKU-3 split by status, SKU-4 missing (a location row the feed lost), SKU-5
/// counted once, SKU-6 at DC-WEST unknown to the hub.
const SNAPSHOT: &str = "item,location,qty,status\n\
SKU-1,DC-EAST,100,\n\
SKU-2,DC-EAST,50,\n\
SKU-3,DC-WEST,25,sellable\n\
SKU-3,DC-WEST,5,damaged\n\
SKU-5,DC-EAST,10,\n\
SKU-6,DC-WEST,7,\n";
const AS_OF: &str = "2026-11-23T09:30:00Z";

#[tokio::test]
async fn injected_drift_is_found_exactly_with_events_in_flight() {
    let hub = Hub::start("recon-drift", SOURCES).await;
    let mut c = hub.client(ADMIN).await;
    stock_with_work_in_flight(&mut c).await;

    let (status, run) = reconcile(&mut c, "erp", AS_OF, SNAPSHOT).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "done");
    assert_eq!(run["rows"], 6);
    assert_eq!(run["as_of"], AS_OF);
    assert_eq!(
        run["counts"],
        json!({"match": 2, "quantity_variance": 1, "status_variance": 1,
               "missing_in_source": 1, "missing_in_crossdock": 1})
    );
    assert_eq!(
        variances(&run),
        vec![
            (
                s("SKU-3"),
                s("DC-WEST"),
                s("status_variance"),
                Some(30),
                Some(30),
                s("reported")
            ),
            (
                s("SKU-4"),
                s("DC-EAST"),
                s("missing_in_source"),
                None,
                Some(20),
                s("reported")
            ),
            (
                s("SKU-5"),
                s("DC-EAST"),
                s("quantity_variance"),
                Some(10),
                Some(20),
                s("exception")
            ),
            (
                s("SKU-6"),
                s("DC-WEST"),
                s("missing_in_crossdock"),
                Some(7),
                None,
                s("reported")
            ),
        ]
    );
    // The quantity variance is an inventory_mismatch for a person, tied to the run.
    let id = run["id"].as_str().unwrap();
    let (_, ex) = get(
        &mut c,
        &format!("/v1/exceptions?kind=inventory_mismatch&correlation_id={id}"),
    )
    .await;
    let records = ex["exceptions"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{ex}");
    assert!(records[0]["reason"].as_str().unwrap().contains("SKU-5"));

    // Kept: the run and its rows, paged, and as CSV.
    let (status, stored) = get(&mut c, &format!("/v1/reconciliations/{id}?limit=2")).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["counts"], run["counts"]);
    assert_eq!(stored["variances"].as_array().unwrap().len(), 2);
    let after = stored["next_after"].as_u64().unwrap();
    let (_, rest) = get(&mut c, &format!("/v1/reconciliations/{id}?after={after}")).await;
    assert_eq!(rest["variances"].as_array().unwrap().len(), 2);
    let csv = c
        .get(&format!("/v1/reconciliations/{id}/variances.csv"))
        .await
        .unwrap();
    assert_eq!(csv.status, 200);
    let text = String::from_utf8(csv.body.to_vec()).unwrap();
    assert!(text.starts_with("item,location,lot,class,"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(
        text.contains("SKU-5,DC-EAST,,quantity_variance,10,20,-10,exception,"),
        "{text}"
    );
    let (_, list) = get(&mut c, "/v1/reconciliations?source=erp").await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);

    // A whole location left out of a feed responsible for it: every position there is missing.
    let east_only = "item,location,qty\nSKU-1,DC-EAST,100\nSKU-2,DC-EAST,50\n\
                     SKU-4,DC-EAST,20\nSKU-5,DC-EAST,20\n";
    let (status, run) = reconcile(&mut c, "east-west", AS_OF, east_only).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(
        variances(&run),
        vec![(
            s("SKU-3"),
            s("DC-WEST"),
            s("missing_in_source"),
            None,
            Some(30),
            s("reported")
        )]
    );
    // A source without configured locations speaks only for the ones its snapshot names.
    let (_, run) = reconcile(&mut c, "erp", AS_OF, east_only).await;
    assert_eq!(run["counts"], json!({"match": 4}), "{run}");

    // Nothing was corrected: report and exception leave the ledger alone.
    assert_eq!(
        positions(&mut c, "SKU-5").await[0].1,
        20,
        "only an auto_correct source changes stock"
    );
}

#[tokio::test]
async fn auto_correct_is_idempotent_and_keeps_later_work() {
    let hub = Hub::start("recon-correct", SOURCES).await;
    let mut c = hub.client(ADMIN).await;
    stock_with_work_in_flight(&mut c).await;

    let (status, first) = reconcile(&mut c, "wms", AS_OF, SNAPSHOT).await;
    assert_eq!(status, 201, "{first}");
    let corrected: Vec<_> = variances(&first)
        .into_iter()
        .filter(|v| v.5 == "corrected")
        .map(|v| (v.0, v.1))
        .collect();
    assert_eq!(
        corrected,
        vec![
            (s("SKU-4"), s("DC-EAST")),
            (s("SKU-5"), s("DC-EAST")),
            (s("SKU-6"), s("DC-WEST"))
        ]
    );
    let on_hand = |p: &[(String, i64, i64, i64, i64)], loc: &str| {
        p.iter().filter(|x| x.0 == loc).map(|x| x.1).sum::<i64>()
    };
    // Counted as of 09:30; what happened after (the 09:45 moves) stays on top.
    assert_eq!(on_hand(&positions(&mut c, "SKU-5").await, "DC-EAST"), 10);
    assert_eq!(on_hand(&positions(&mut c, "SKU-4").await, "DC-EAST"), 0);
    assert_eq!(on_hand(&positions(&mut c, "SKU-6").await, "DC-WEST"), 7);
    assert_eq!(on_hand(&positions(&mut c, "SKU-1").await, "DC-EAST"), 90);

    // The same snapshot again: everything matches but the status split, nothing is counted again.
    let (status, second) = reconcile(&mut c, "wms", AS_OF, SNAPSHOT).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["counts"], json!({"match": 5, "status_variance": 1}));
    assert_eq!(second["digest"], first["digest"]);
    let counts = sqlite_count(
        &hub.db(),
        "SELECT COUNT(*) FROM events WHERE source = 'crossdock.reconciler'",
    );
    assert_eq!(counts, 3, "each correction is one event, once");
    assert_eq!(on_hand(&positions(&mut c, "SKU-5").await, "DC-EAST"), 10);
}

#[tokio::test]
async fn bad_and_stale_snapshots_are_refused_or_flagged_and_kept() {
    let hub = Hub::start("recon-bad", SOURCES).await;
    let mut c = hub.client(ADMIN).await;
    stock_with_work_in_flight(&mut c).await;

    let bad = "item,location,qty\nSKU-1,DC-EAST,100\nSKU-2,DC-EAST,many\nSKU-3,DC-WEST,-1\n";
    let (status, v) = reconcile(&mut c, "erp", AS_OF, bad).await;
    assert_eq!(status, 422, "{v}");
    let errors: Vec<(u64, String)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["column"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(errors, vec![(3, s("qty")), (4, s("qty"))]);
    let exception_id = v["exception_id"].as_str().unwrap();
    let (_, ex) = get(&mut c, "/v1/exceptions?kind=schema_violation").await;
    let record = ex["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == exception_id)
        .expect("the refused snapshot is an exception record")
        .clone();
    assert!(
        record["reason"].as_str().unwrap().contains("line 3"),
        "{record}"
    );
    let kept = std::fs::read_dir(hub.dir.join("data/reconciliation/rejected/erp"))
        .unwrap()
        .count();
    assert_eq!(kept, 1, "the refused snapshot is kept");
    let (_, list) = get(&mut c, "/v1/reconciliations").await;
    assert!(list["runs"].as_array().unwrap().is_empty(), "{list}");

    let (status, v) = reconcile(&mut c, "nope", AS_OF, SNAPSHOT).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = post_raw(
        &mut c,
        "/v1/reconciliations?source=erp",
        "text/csv",
        Vec::new(),
    )
    .await;
    assert_eq!(
        (status, v["type"].as_str()),
        (409, Some("urn:crossdock:problem:no-snapshot")),
        "a csv source without a file needs the snapshot: {v}"
    );
    let mut query = hub.client(QUERY).await;
    let (status, _) = reconcile(&mut query, "erp", AS_OF, SNAPSHOT).await;
    assert_eq!(status, 403, "running a reconciliation is for operators");

    // A stale feed: nothing in it is trusted or corrected; one record says so.
    let (status, stale) = reconcile(&mut c, "feed", "2026-11-20T09:30:00Z", SNAPSHOT).await;
    assert_eq!(status, 201, "{stale}");
    // Six (item, location) keys: five in the file, SKU-4 only in the ledger.
    assert_eq!(stale["counts"], json!({"stale": 6}));
    assert!(stale["variances"].as_array().unwrap().is_empty());
    let id = stale["id"].as_str().unwrap();
    let (_, ex) = get(&mut c, &format!("/v1/exceptions?correlation_id={id}")).await;
    assert_eq!(ex["exceptions"].as_array().unwrap().len(), 1, "{ex}");
}

#[tokio::test]
async fn the_cli_reconciles_a_file_and_reports_bad_lines() {
    let hub = Hub::start("recon-cli", SOURCES).await;
    let mut c = hub.client(ADMIN).await;
    stock_with_work_in_flight(&mut c).await;
    let good = hub.dir.join("snapshot.csv");
    std::fs::write(&good, SNAPSHOT).unwrap();
    let cli = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
            .args(["reconcile", "--source", "erp", "--as-of", AS_OF, "--url"])
            .arg(format!("http://{}", hub.addr))
            .arg("--file")
            .arg(file)
            .env("CROSSDOCK_ADMIN_TOKEN", ADMIN)
            .output()
            .expect("run crossdock reconcile")
    };
    let out = cli(&good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("quantity_variance      1"), "{stdout}");
    assert!(
        stdout
            .contains("SKU-5 @ DC-EAST: quantity_variance (source 10, crossdock 20) -> exception"),
        "{stdout}"
    );

    let bad = hub.dir.join("bad.csv");
    std::fs::write(&bad, "item,location,qty\nSKU-1,DC-EAST,1.5\n").unwrap();
    let out = cli(&bad);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: qty: \"1.5\" is not a whole number"),
        "{stderr}"
    );
    assert!(stderr.contains("recorded as exception"), "{stderr}");
}

const PARTNER: &str = r#"
[[sources]]
id = "acme-wms"
[[sources.owns]]
types = ["inventory.*"]
locations = ["DC-EAST"]

[[partners]]
id = "acme"
source = "acme-wms"
isa_id = "ACMEWMS"
location = "DC-EAST"
poll_ms = 50
settle_ms = 0

[[reconciliation.sources]]
name = "acme-846"
kind = "x12_846"
partner = "acme"
stale_after_s = 86400000
"#;

fn x12_846(lines: &[(&str, i64)]) -> String {
    let mut body = vec!["BIA*00*MM*INV7*20261123*0930".to_string()];
    for (n, (code, qty)) in lines.iter().enumerate() {
        body.push(format!("LIN*{}*VN*{code}", n + 1));
        body.push(format!("QTY*17*{qty}*EA"));
    }
    let mut segs = vec![
        "ISA*00*          *00*          *ZZ*ACMEWMS        *ZZ*CROSSDOCK      *261123*1000*U*00401*000000007*0*P*>".to_string(),
        "GS*IB*ACMEWMS*CROSSDOCK*20261123*1000*7*X*004010".to_string(),
        "ST*846*0001".to_string(),
    ];
    segs.extend(body.iter().cloned());
    segs.push(format!("SE*{}*0001", body.len() + 2));
    segs.push("GE*1*7".into());
    segs.push("IEA*1*000000007".into());
    segs.iter().map(|s| format!("{s}~\n")).collect()
}

#[tokio::test]
async fn an_846_snapshot_is_reconciled_as_of_its_date() {
    let hub = Hub::start("recon-846", PARTNER).await;
    let mut c = hub.client(ADMIN).await;
    let (status, v) = post_raw(
        &mut c,
        "/v1/master/crosswalks",
        "text/csv",
        b"partner,kind,external,internal\nacme,item,A-1,SKU-1\nacme,item,A-2,SKU-2\n".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let recv = |id: &str, item: &str, qty: i64, time: &str| {
        json!({"specversion": "1.0", "id": id, "source": "acme-wms", "type": "inventory.received.v1",
               "time": time, "data": {"item": item, "location": "DC-EAST", "qty": qty}})
    };
    for ev in [
        recv("a", "SKU-1", 40, "2026-11-23T08:00:00Z"),
        recv("b", "SKU-2", 9, "2026-11-23T08:00:00Z"),
        // After the 846's 09:30: in flight, not drift.
        recv("c", "SKU-1", 5, "2026-11-23T09:50:00Z"),
    ] {
        let (status, v) = post(&mut c, "/v1/events", &ev).await;
        assert!(status < 300, "{v}");
    }
    let (status, run) = post_raw(
        &mut c,
        "/v1/reconciliations?source=acme-846",
        "application/edi-x12",
        x12_846(&[("A-1", 40), ("A-2", 7)]).into_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["as_of"], "2026-11-23T09:30:00Z");
    assert_eq!(run["kind"], "x12_846");
    assert_eq!(
        variances(&run),
        vec![(
            s("SKU-2"),
            s("DC-EAST"),
            s("quantity_variance"),
            Some(7),
            Some(9),
            s("reported")
        )]
    );

    // An 846 line the crosswalk does not know: refused whole, the line kept as an exception.
    let (status, v) = post_raw(
        &mut c,
        "/v1/reconciliations?source=acme-846",
        "application/edi-x12",
        x12_846(&[("A-1", 40), ("A-9", 1)]).into_bytes(),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    let (_, ex) = get(&mut c, "/v1/exceptions?kind=unknown_item").await;
    assert!(
        ex["exceptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"].as_str().unwrap().contains("A-9")),
        "{ex}"
    );
}

const SHOP_SOURCE: &str = r#"
[[reconciliation.sources]]
name = "shop"
kind = "channel"
channel = "shopify"
[reconciliation.sources.actions]
quantity_variance = "auto_correct"
"#;

async fn receive(c: &mut Client, id: &str, item: &str, qty: i64) {
    let ev = common::event(
        id,
        "wms-east",
        "inventory.received.v1",
        json!({"item": item, "location": "DC-EAST", "qty": qty}),
    );
    let (status, v) = post(c, "/v1/events", &ev).await;
    assert!(status < 300, "{v}");
}

#[tokio::test]
async fn channel_edits_and_lost_updates_are_repaired_with_compare_and_set() {
    let sim = shopify_sim(7).await;
    let hub = start_hub_with("recon-shop", &sim, 7, &[], &[], SHOP_SOURCE).await;
    let mut east = hub.client(EAST).await;
    for i in 1..=5 {
        receive(&mut east, &format!("r{i}"), &format!("SKU-{i}"), 10 * i).await;
    }
    converged(&hub, &sim, Duration::from_secs(60)).await;
    let mut c = hub.client(ADMIN).await;
    let (status, clean) = post_raw(
        &mut c,
        "/v1/reconciliations?source=shop",
        "text/plain",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 201, "{clean}");
    assert_eq!(
        clean["counts"],
        json!({"match": 100}),
        "in sync: nothing to report"
    );

    // Injected: a merchant edits SKU-3 by hand; the next write (SKU-4's) is acknowledged but lost;
    // the channel lists an item the crosswalk does not map.
    sim.edit_by_hand("3", 999);
    sim.lose_next_writes(1);
    receive(&mut east, "r4-more", "SKU-4", 5).await;
    wait_for("the lost write", || sim.stats().writes_lost == 1).await;
    // The hub has recorded 45 as delivered (until then the channel's 40 is a change still on
    // its way, not drift).
    wait_for("the delivery of 45 to be recorded", || {
        common::sqlite_count(
            &hub.db(),
            "SELECT count(*) FROM delivery_sent WHERE endpoint = 'shopify' AND key = 'SKU-4' AND value = 45",
        ) == 1
    })
    .await;
    sim.insert_item(5000, 3);

    let (status, run) = post_raw(
        &mut c,
        "/v1/reconciliations?source=shop",
        "text/plain",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(
        variances(&run),
        vec![
            (
                s("SKU-3"),
                s("shopify"),
                s("quantity_variance"),
                Some(999),
                Some(30),
                s("repaired")
            ),
            (
                s("SKU-4"),
                s("shopify"),
                s("quantity_variance"),
                Some(40),
                Some(45),
                s("repaired")
            ),
            (
                s("gid://shopify/InventoryItem/5000"),
                s("shopify"),
                s("missing_in_crossdock"),
                None,
                None,
                s("reported")
            ),
        ]
    );
    // Repaired by compare-and-set writes: the channel converges and a new run is clean.
    converged(&hub, &sim, Duration::from_secs(60)).await;
    assert_eq!(sim.quantity("3"), Some(30));
    assert_eq!(sim.quantity("4"), Some(45));
    let (_, again) = post_raw(
        &mut c,
        "/v1/reconciliations?source=shop",
        "text/plain",
        Vec::new(),
    )
    .await;
    assert_eq!(
        again["counts"],
        json!({"match": 100, "missing_in_crossdock": 1}),
        "{again}"
    );
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Moment = (String, (Vec<(String, i64, i64, i64, i64)>, i64));

/// Notes the time and what the API answers then, with quiet gaps around it.
async fn moment(q: &mut Client, seen: &mut Vec<Moment>) {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let now = crossdock_model::Timestamp::now().to_rfc3339();
    seen.push((now, answer_now(q).await));
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// What the API answered about SKU-1 at one moment: positions and the shopify ATS.
async fn answer_now(c: &mut Client) -> (Vec<(String, i64, i64, i64, i64)>, i64) {
    let p = positions(c, "SKU-1").await;
    let (_, a) = get(c, "/v1/availability?item=SKU-1&channel=shopify").await;
    (p, a["available"].as_i64().unwrap())
}

#[tokio::test]
async fn history_at_a_time_matches_what_the_api_answered_then() {
    let sim = shopify_sim(8).await;
    let hub = start_hub_with("recon-history", &sim, 8, &[], &[], "").await;
    let mut east = hub.client(EAST).await;
    let mut q = hub.client(QUERY).await;
    let mut shop = hub.client(RESERVE).await;
    let mut seen: Vec<Moment> = Vec::new();
    moment(&mut q, &mut seen).await;
    receive(&mut east, "h1", "SKU-1", 40).await;
    moment(&mut q, &mut seen).await;
    let (status, v) = post(
        &mut shop,
        "/v1/reservations",
        &json!({"id": "res-1", "channel": "shopify", "ttl_s": 600,
                "lines": [{"item": "SKU-1", "qty": 6}]}),
    )
    .await;
    assert!(status < 300, "{v}");
    moment(&mut q, &mut seen).await;
    let ship = common::event(
        "h2",
        "wms-east",
        "inventory.shipped.v1",
        json!({"order": "SO-8", "lines": [{"item": "SKU-1", "location": "DC-EAST", "qty": 15}]}),
    );
    post(&mut east, "/v1/events", &ship).await;
    moment(&mut q, &mut seen).await;
    converged(&hub, &sim, Duration::from_secs(60)).await;
    moment(&mut q, &mut seen).await;

    for (t, (positions_then, ats_then)) in &seen {
        let (status, h) = get(&mut q, &format!("/v1/items/SKU-1/history?at={t}")).await;
        assert_eq!(status, 200, "{h}");
        let history: Vec<(String, i64, i64, i64, i64)> = h["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["location"].as_str().unwrap().to_string(),
                    p["on_hand"].as_i64().unwrap(),
                    p["reserved"].as_i64().unwrap(),
                    p["allocated"].as_i64().unwrap(),
                    p["available"].as_i64().unwrap(),
                )
            })
            .collect();
        let nonzero: Vec<_> = positions_then
            .iter()
            .filter(|p| (p.1, p.2, p.3, p.4) != (0, 0, 0, 0))
            .cloned()
            .collect();
        assert_eq!(history, nonzero, "positions at {t}");
        let shopify = h["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == "shopify")
            .unwrap();
        assert_eq!(
            shopify["ats"].as_i64().unwrap_or(0),
            *ats_then,
            "ATS at {t}: {h}"
        );
    }
    // What was delivered: by the last moment, the channel had been sent the final value.
    let (last, (_, final_ats)) = seen.last().unwrap();
    let (_, h) = get(&mut q, &format!("/v1/items/SKU-1/history?at={last}")).await;
    let shopify = h["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "shopify")
        .unwrap();
    assert_eq!(shopify["sent"]["value"].as_i64(), Some(*final_ats), "{h}");
    assert_eq!(sim.quantity("1"), Some(*final_ats));
    // Before anything happened, nothing was sent.
    let (first, _) = &seen[0];
    let (_, h) = get(&mut q, &format!("/v1/items/SKU-1/history?at={first}")).await;
    assert!(
        h["channels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["sent"].is_null()),
        "{h}"
    );
    let (status, _) = get(&mut q, "/v1/items/SKU-1/history").await;
    assert_eq!(status, 400, "at is required");
}

#[tokio::test]
async fn a_source_with_an_interval_reconciles_its_file_on_schedule() {
    let config = common::config(
        r#"
[[reconciliation.sources]]
name = "nightly"
kind = "csv"
file = "nightly.csv"
interval_s = 1
stale_after_s = 86400000
"#,
    );
    let hub = Hub::start_full(
        "recon-schedule",
        &config,
        &[],
        &[(
            "nightly.csv",
            "item,location,qty,as_of\nSKU-1,DC-EAST,3,2026-11-23T09:30:00Z\n".to_string(),
        )],
        &[],
    )
    .await;
    let mut q = hub.client(QUERY).await;
    let started = std::time::Instant::now();
    let runs = loop {
        let (_, list) = get(&mut q, "/v1/reconciliations?source=nightly").await;
        let runs = list["runs"].as_array().unwrap().clone();
        if !runs.is_empty() {
            break runs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no scheduled run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(runs[0]["started_by"], "schedule");
    assert_eq!(runs[0]["as_of"], "2026-11-23T09:30:00Z");
    assert_eq!(runs[0]["counts"], json!({"missing_in_crossdock": 1}));
}
