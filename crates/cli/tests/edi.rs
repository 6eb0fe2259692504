//! Trading partners end to end: files dropped in a partner's folder, through the real binary,
//! with 997s, 855s and 846s written back and checked by the independent X12 validator.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ADMIN, Hub, QUERY, RESERVE, assert_valid_x12, get, positions, post, post_raw};
use serde_json::{Value, json};

const PARTNER: &str = r#"
[[sources]]
id = "acme-wms"
[[sources.owns]]
types = ["inventory.*", "transfer.*"]
locations = ["DC-EAST"]

[[channels]]
id = "retail"
locations = ["DC-EAST"]

[[partners]]
id = "acme"
source = "acme-wms"
isa_id = "ACMEWMS"
location = "DC-EAST"
channel = "retail"
poll_ms = 50
settle_ms = 0
"#;

fn folder(hub: &Hub, name: &str) -> PathBuf {
    hub.dir.join("data/partners/acme").join(name)
}

/// Whether `name` is filed (under `inbound/processed` or `inbound/rejected`): the report is
/// written first and the file moved just after, so wait a moment for it.
async fn filed(hub: &Hub, name: &str) -> bool {
    let started = Instant::now();
    while !folder(hub, name).is_file() {
        if started.elapsed() > Duration::from_secs(10) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Drops a file (written beside, then renamed in, as a partner's client would).
fn drop_file(hub: &Hub, name: &str, text: &str) {
    let inbound = folder(hub, "inbound");
    std::fs::create_dir_all(&inbound).unwrap();
    let tmp = inbound.join(format!(".{name}.part"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, inbound.join(name)).unwrap();
}

/// Waits for a dropped file's report under processed/ or rejected/.
async fn report(hub: &Hub, stored: &str) -> (bool, Value) {
    let started = Instant::now();
    loop {
        for (dir, accepted) in [("processed", true), ("rejected", false)] {
            let path = folder(hub, "inbound")
                .join(dir)
                .join(format!("{stored}.report.json"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                return (accepted, serde_json::from_str(&text).unwrap());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{stored} was not handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Outbound files of one set, oldest first.
fn outbound(hub: &Hub, set: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder(hub, "outbound"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .contains(&format!("-{set}-"))
    });
    files.sort();
    files
}

async fn wait_outbound(hub: &Hub, set: &str, n: usize) -> Vec<PathBuf> {
    let started = Instant::now();
    loop {
        let files = outbound(hub, set);
        if files.len() >= n {
            return files;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no {set} written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The values of one element of every segment `id` in a file.
fn elements(path: &Path, id: &str, n: usize) -> Vec<String> {
    let doc = crossdock_x12::parse(&std::fs::read(path).unwrap()).expect("our own X12 parses");
    assert!(!doc.has_errors(), "{:?}", doc.diagnostics);
    doc.sets()
        .flat_map(|(_, s)| s.segments.iter())
        .filter(|s| s.id == id)
        .map(|s| s.value(n).to_string())
        .collect()
}

fn isa13(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    text.split('*').nth(13).unwrap().trim().parse().unwrap()
}

fn x12_846(control: u32, lines: &[(&str, i64)]) -> String {
    let mut body = vec![format!("BIA*00*MM*INV{control}*20261123")];
    for (n, (code, qty)) in lines.iter().enumerate() {
        body.push(format!("LIN*{}*VN*{code}", n + 1));
        body.push(format!("QTY*17*{qty}*EA"));
    }
    interchange("IB", "846", control, &body)
}

fn interchange(functional: &str, set: &str, control: u32, body: &[String]) -> String {
    let mut segs = vec![
        format!(
            "ISA*00*          *00*          *ZZ*ACMEWMS        *ZZ*CROSSDOCK      *261123*1000*U*00401*{control:09}*0*P*>"
        ),
        format!("GS*{functional}*ACMEWMS*CROSSDOCK*20261123*1000*{control}*X*004010"),
        format!("ST*{set}*0001"),
    ];
    segs.extend(body.iter().cloned());
    segs.push(format!("SE*{}*0001", body.len() + 2));
    segs.push(format!("GE*1*{control}"));
    segs.push(format!("IEA*1*{control:09}"));
    segs.iter().map(|s| format!("{s}~\n")).collect()
}

async fn on_hand(hub: &Hub, item: &str) -> i64 {
    let mut c = hub.client(QUERY).await;
    positions(&mut c, item)
        .await
        .iter()
        .filter(|p| p.0 == "DC-EAST")
        .map(|p| p.1)
        .sum()
}

#[tokio::test]
async fn partner_files_apply_once_answer_with_997s_and_replay_after_master_data_is_fixed() {
    let hub = Hub::start("edi-flow", PARTNER).await;
    let mut admin = hub.client(ADMIN).await;
    let (status, v) = post_raw(
        &mut admin,
        "/v1/master/crosswalks",
        "text/csv",
        b"partner,kind,external,internal\nacme,item,A-1,SKU-1\n".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{v}");

    // A-2 is not in the crosswalk yet: that line is an exception, the other applies.
    drop_file(
        &hub,
        "stock-1.x12",
        &x12_846(101, &[("A-1", 40), ("A-2", 7)]),
    );
    let (accepted, r) = report(&hub, "stock-1.x12").await;
    assert!(accepted, "{r:#}");
    assert_eq!(r["events"]["applied"], 1, "{r:#}");
    assert_eq!(on_hand(&hub, "SKU-1").await, 40);
    assert_eq!(on_hand(&hub, "SKU-2").await, 0);
    let exceptions = r["exceptions"].as_array().unwrap();
    assert_eq!(exceptions.len(), 1, "{r:#}");
    assert_eq!(exceptions[0]["kind"], "unknown_item");
    let exception_id = exceptions[0]["id"].as_str().unwrap().to_string();
    let (_, list) = get(&mut admin, "/v1/exceptions?kind=unknown_item").await;
    let record = list["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == exception_id.as_str())
        .expect("the exception is listed")
        .clone();
    assert_eq!(record["raw"], "LIN*2*VN*A-2~", "the raw segment is kept");

    // The 997 says: accepted with errors, naming the LIN segment.
    let acks = wait_outbound(&hub, "997", 1).await;
    assert_eq!(elements(&acks[0], "AK5", 1), vec!["E"]);
    assert_eq!(elements(&acks[0], "AK3", 1), vec!["LIN"]);
    assert_eq!(elements(&acks[0], "AK9", 1), vec!["E"]);

    // The same file again changes nothing.
    drop_file(
        &hub,
        "stock-1.x12",
        &x12_846(101, &[("A-1", 40), ("A-2", 7)]),
    );
    let (_, again) = report(&hub, "stock-1.1.x12").await;
    assert_eq!(again["events"]["applied"], 0, "{again:#}");
    assert_eq!(again["events"]["repeats"], 1, "{again:#}");
    assert_eq!(on_hand(&hub, "SKU-1").await, 40);

    // Fix the crosswalk, replay the exception: the missing line applies, the rest are repeats.
    let (status, v) = post_raw(
        &mut admin,
        "/v1/master/crosswalks",
        "text/csv",
        b"partner,kind,external,internal\nacme,item,A-1,SKU-1\nacme,item,A-2,SKU-2\n".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(
        &mut admin,
        &format!("/v1/exceptions/{exception_id}/replay"),
        &json!({"note": "A-2 added to the crosswalk"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["report"]["events"]["applied"], 1, "{v:#}");
    assert_eq!(v["report"]["events"]["repeats"], 1, "{v:#}");
    assert_eq!(on_hand(&hub, "SKU-2").await, 7);
    let (_, audit) = get(&mut admin, "/v1/audit").await;
    assert!(
        audit["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "replayed" && a["note"] == "A-2 added to the crosswalk"),
        "{audit:#}"
    );

    // Replay is for stored partner input only: anything else is refused and stays open.
    let (status, _) = post(
        &mut admin,
        "/v1/exceptions/nope/replay",
        &json!({"note": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let mut east = hub.client(common::EAST).await;
    let bad = common::event(
        "e-1",
        "wms-east",
        "inventory.received.v1",
        json!({"item": "NOT-AN-ITEM", "location": "DC-EAST", "qty": 1}),
    );
    post(&mut east, "/v1/events", &bad).await;
    let (_, list) = get(&mut admin, "/v1/exceptions?kind=unknown_item&status=open").await;
    let api_exception = list["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["entity"]
                .as_str()
                .is_some_and(|x| !x.starts_with("file:"))
        })
        .expect("an exception from the API")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, v) = post(
        &mut admin,
        &format!("/v1/exceptions/{api_exception}/replay"),
        &json!({"note": "try"}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    let (_, list) = get(&mut admin, "/v1/exceptions?kind=unknown_item&status=open").await;
    assert!(
        list["exceptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == api_exception.as_str()),
        "a refused replay leaves the record open: {list:#}"
    );

    // Every document written so far is valid X12; control numbers never repeat.
    let written: Vec<PathBuf> = std::fs::read_dir(folder(&hub, "outbound"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_valid_x12(&written);
    let mut numbers: Vec<u64> = written.iter().map(|p| isa13(p)).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), written.len());
}

#[tokio::test]
async fn orders_are_acknowledged_availability_is_published_and_bad_files_are_rejected() {
    let mut hub = Hub::start("edi-orders", PARTNER).await;
    let mut admin = hub.client(ADMIN).await;
    post_raw(
        &mut admin,
        "/v1/master/crosswalks",
        "text/csv",
        b"partner,kind,external,internal\nacme,item,A-1,SKU-1\nacme,item,A-3,SKU-3\n".to_vec(),
    )
    .await;
    drop_file(&hub, "stock.x12", &x12_846(201, &[("A-1", 10), ("A-3", 1)]));
    assert!(report(&hub, "stock.x12").await.0);

    // The channel's availability goes out as an 846.
    let feeds = wait_outbound(&hub, "846", 1).await;
    let qty: Vec<String> = elements(feeds.last().unwrap(), "QTY", 2);
    assert!(!qty.is_empty());

    // An order: A-1 is covered, A-3 is short and backordered.
    let po = interchange(
        "PO",
        "850",
        202,
        &[
            "BEG*00*SA*PO-9**20261123".to_string(),
            "PO1*1*4*EA*9.5**VN*A-1".to_string(),
            "PO1*2*5*EA*3**VN*A-3".to_string(),
            "CTT*2".to_string(),
        ],
    );
    drop_file(&hub, "po.x12", &po);
    let (accepted, r) = report(&hub, "po.x12").await;
    assert!(accepted, "{r:#}");
    assert_eq!(r["orders"][0]["status"], "released", "{r:#}");
    assert_eq!(r["orders"][0]["order"], "acme:PO-9", "{r:#}");
    let acks = wait_outbound(&hub, "855", 1).await;
    assert_eq!(elements(&acks[0], "ACK", 1), vec!["IA", "IB"]);
    let mut q = hub.client(QUERY).await;
    let (_, avail) = get(&mut q, "/v1/availability?item=SKU-1&channel=retail").await;
    assert_eq!(avail["available"], 6, "{avail}");

    // The same order again, twice, is one order.
    drop_file(&hub, "po.x12", &po);
    report(&hub, "po.1.x12").await;
    drop_file(&hub, "po.x12", &po);
    let (_, again) = report(&hub, "po.2.x12").await;
    assert_eq!(again["orders"][0]["repeat"], true, "{again:#}");
    let (_, avail) = get(&mut q, "/v1/availability?item=SKU-1&channel=retail").await;
    assert_eq!(avail["available"], 6, "{avail}");
    let (_, order) = get(&mut q, "/v1/orders/acme:PO-9").await;
    let captured = order["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["to"] == "captured")
        .count();
    assert_eq!(captured, 1, "{order:#}");
    assert_eq!(order["lines"][1]["backordered"], 4, "{order:#}");

    // EDIFACT and garbage are rejected with a report and an exception; nothing is lost.
    drop_file(
        &hub,
        "orders.edi",
        "UNA:+.? 'UNB+UNOC:3+SENDER+RECEIVER+261123:1000+1'UNH+1+ORDERS:D:96A:UN'",
    );
    let (accepted, r) = report(&hub, "orders.edi").await;
    assert!(!accepted);
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("EDIFACT is not supported yet"),
        "{r:#}"
    );
    assert!(filed(&hub, "inbound/rejected/orders.edi").await);
    drop_file(
        &hub,
        "other.x12",
        &x12_846(203, &[("A-1", 1)]).replace("ACMEWMS        ", "SOMEONEELSE    "),
    );
    let (accepted, r) = report(&hub, "other.x12").await;
    assert!(!accepted);
    assert!(
        r["error"].as_str().unwrap().contains("not partner acme"),
        "{r:#}"
    );

    // A CSV drop with a bad row applies nothing: rejected, the row kept as an exception.
    drop_file(
        &hub,
        "counts.csv",
        "item,location,qty\nA-1,DC-EAST,12\nA-9,DC-EAST,1\n",
    );
    let (accepted, r) = report(&hub, "counts.csv").await;
    assert!(!accepted, "{r:#}");
    assert_eq!(r["status"], "rejected", "{r:#}");
    assert_eq!(r["events"]["applied"], 0);
    assert_eq!(r["bad_rows"][0]["line"], 3, "{r:#}");
    assert_eq!(r["exceptions"][0]["kind"], "unknown_item");
    assert!(filed(&hub, "inbound/rejected/counts.csv").await);
    assert_eq!(on_hand(&hub, "SKU-1").await, 10);
    // Corrected, it applies.
    drop_file(&hub, "counts.csv", "item,location,qty\nA-1,DC-EAST,12\n");
    let (accepted, r) = report(&hub, "counts.1.csv").await;
    assert!(accepted, "{r:#}");
    assert_eq!(r["events"]["applied"], 1);
    assert_eq!(on_hand(&hub, "SKU-1").await, 12);

    // A shipment goes out as an 856 and an 810, a release as a 940.
    let shipment = json!({
        "shipment": "SH-9", "po_number": "PO-9", "shipped_at": "2026-11-23T12:00:00Z",
        "ship_from": "DC-EAST", "ship_to": "STORE-4",
        "lines": [{"item": "SKU-1", "qty": 4, "unit_price_cents": 950}],
    });
    for set in ["856", "810"] {
        let (status, v) = post(
            &mut admin,
            &format!("/v1/partners/acme/send/{set}"),
            &shipment,
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
    let release = json!({
        "order": "SO-9", "ship_from": "DC-EAST", "ship_to_name": "Store 4",
        "lines": [{"item": "SKU-1", "qty": 4}],
    });
    let (status, v) = post(&mut admin, "/v1/partners/acme/send/940", &release).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        elements(&outbound(&hub, "856")[0], "LIN", 3),
        vec!["A-1"],
        "the partner's code"
    );
    assert_eq!(
        elements(&outbound(&hub, "810")[0], "TDS", 1),
        vec!["3800"],
        "4 x 9.50"
    );
    assert_eq!(elements(&outbound(&hub, "940")[0], "W05", 2), vec!["SO-9"]);
    let (status, v) = post(&mut admin, "/v1/partners/acme/send/850", &release).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = post(
        &mut admin,
        "/v1/partners/acme/send/856",
        &json!({"shipment": 1}),
    )
    .await;
    assert_eq!(status, 400, "{v}");

    // Control numbers continue across a restart.
    let before = std::fs::read_dir(folder(&hub, "outbound")).unwrap().count();
    let last = std::fs::read_dir(folder(&hub, "outbound"))
        .unwrap()
        .map(|e| isa13(&e.unwrap().path()))
        .max()
        .unwrap();
    hub.kill();
    hub.restart().await;
    drop_file(&hub, "stock-2.x12", &x12_846(204, &[("A-1", 11)]));
    report(&hub, "stock-2.x12").await;
    let after: Vec<PathBuf> = std::fs::read_dir(folder(&hub, "outbound"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(after.len() > before);
    let newest = after.iter().map(|p| isa13(p)).max().unwrap();
    assert!(
        newest > last,
        "control numbers are never reused: {newest} after {last}"
    );
    assert_valid_x12(&after);
}

#[tokio::test]
async fn procurement_and_returns_run_through_partner_files() {
    let config = format!(
        "{PARTNER}\n[workflows]\n[[workflows.warehouses]]\nlocation = \"DC-EAST\"\npartner = \"acme\"\n"
    );
    let hub = Hub::start("edi-workflows", &config).await;
    let mut admin = hub.client(ADMIN).await;
    post_raw(
        &mut admin,
        "/v1/master/crosswalks",
        "text/csv",
        b"partner,kind,external,internal\nacme,item,A-1,SKU-1\nacme,item,A-2,SKU-2\n".to_vec(),
    )
    .await;
    // A PO to the partner goes out as an 850 the independent validator accepts.
    let (s, v) = post(
        &mut admin,
        "/v1/purchase-orders",
        &serde_json::json!({"po": "PO-77", "partner": "acme", "location": "DC-EAST",
            "lines": [{"item": "SKU-1", "qty": 10}], "expected_at": "2026-12-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let pos = wait_outbound(&hub, "850", 1).await;
    assert_valid_x12(&pos);
    assert_eq!(elements(&pos[0], "BEG", 3), vec!["PO-77"]);

    // The 855 acknowledges it.
    drop_file(
        &hub,
        "ack.x12",
        &interchange("PR", "855", 301, &["BAK*00*AD*PO-77*20261123".to_string()]),
    );
    assert!(report(&hub, "ack.x12").await.0);
    let mut q = hub.client(QUERY).await;
    let (_, po) = get(&mut q, "/v1/purchase-orders/PO-77").await;
    assert_eq!(po["state"], "acknowledged", "{po:#}");

    // The 856 ships 6 of A-1 and 2 of an item nobody knows: the PO waits for a decision.
    let asn: Vec<String> = [
        "BSN*00*ASN-77*20261123*1000",
        "HL*1**S",
        "HL*2*1*O",
        "PRF*PO-77",
        "HL*3*2*I",
        "LIN**VN*A-1",
        "SN1**6*EA",
        "HL*4*2*I",
        "LIN**VN*A-9",
        "SN1**2*EA",
        "CTT*4",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    drop_file(&hub, "asn.x12", &interchange("SH", "856", 302, &asn));
    assert!(report(&hub, "asn.x12").await.0);
    let (_, po) = get(&mut q, "/v1/purchase-orders/PO-77").await;
    assert_eq!(po["state"], "asn_hold", "{po:#}");
    assert_eq!(po["lines"][0]["shipped"], 6, "{po:#}");
    assert_eq!(po["pending"][0]["item"], "A-9", "{po:#}");
    // It cannot be accepted while the item is unknown; it can be rejected.
    let decide = |accept: bool| serde_json::json!({"asn": "ASN-77", "accept": accept, "note": "A-9 was never ordered"});
    let (s, v) = post(
        &mut admin,
        "/v1/purchase-orders/PO-77/asn-decision",
        &decide(true),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = post(
        &mut admin,
        "/v1/purchase-orders/PO-77/asn-decision",
        &decide(false),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("asn_received")), "{v}");

    // A 180 authorizes a return.
    let rma: Vec<String> = ["BGN*00*RMA-5*20261123", "BLI*VN*A-2*2*EA", "RDR*CR*DR"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    drop_file(&hub, "rma.x12", &interchange("AN", "180", 303, &rma));
    let (ok, r) = report(&hub, "rma.x12").await;
    assert!(ok, "{r:#}");
    let (_, ret) = get(&mut q, "/v1/returns/acme:RMA-5").await;
    assert_eq!(ret["state"], "authorized", "{ret:#}");
    assert_eq!(ret["lines"][0]["item"], "SKU-2", "{ret:#}");

    // An order released to the partner's warehouse goes out as a 940.
    drop_file(&hub, "stock.x12", &x12_846(304, &[("A-1", 5)]));
    assert!(report(&hub, "stock.x12").await.0);
    let mut shop = hub.client(RESERVE).await;
    let (s, v) = post(
        &mut shop,
        "/v1/orders",
        &serde_json::json!({"id": "SO-940", "channel": "retail", "lines": [{"item": "SKU-1", "qty": 2}],
            "ship_to": {"name": "Store 12", "region": "NY"}}),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (201, Some("released")), "{v}");
    let releases = wait_outbound(&hub, "940", 1).await;
    assert_valid_x12(&releases);
}

/// A 947 adjusting each `(code, delta)` at the partner's location (reason 07: on hand moves),
/// dated the day after the 846 counts, so the adjustments come after them.
fn x12_947(control: u32, lines: &[(&str, i64)]) -> String {
    let mut body = vec![format!("W15*20261124*ADJ{control}")];
    for (n, (code, delta)) in lines.iter().enumerate() {
        body.push(format!("LX*{}", n + 1));
        body.push(format!("W19*07*{delta}*EA**VN*{code}"));
    }
    interchange("AW", "947", control, &body)
}

/// The open `schema_violation` record whose entity is `entity`.
async fn schema_violation(admin: &mut crossdock_cli::client::Client, entity: &str) -> Value {
    let (_, list) = get(admin, "/v1/exceptions?kind=schema_violation&status=open").await;
    list["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entity"] == entity)
        .unwrap_or_else(|| panic!("no record for {entity}: {list:#}"))
        .clone()
}

#[tokio::test]
async fn rejected_envelopes_apply_nothing_and_the_corrected_resend_applies_once() {
    let hub = Hub::start("edi-rejected", PARTNER).await;
    let mut admin = hub.client(ADMIN).await;
    let (status, v) = post_raw(
        &mut admin,
        "/v1/master/crosswalks",
        "text/csv",
        b"partner,kind,external,internal\nacme,item,A-1,SKU-1\nacme,item,A-2,SKU-2\n".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    drop_file(
        &hub,
        "stock.x12",
        &x12_846(400, &[("A-1", 40), ("A-2", 20)]),
    );
    assert!(report(&hub, "stock.x12").await.0);
    assert_eq!(
        (on_hand(&hub, "SKU-1").await, on_hand(&hub, "SKU-2").await),
        (40, 20)
    );
    wait_outbound(&hub, "997", 1).await;

    // A 947 whose SE01 says 6 segments for 7: the set is rejected, none of its lines apply.
    let good_401 = x12_947(401, &[("A-1", -3), ("A-2", -2)]);
    let wrong_se = good_401.replace("SE*7*0001", "SE*6*0001");
    assert_ne!(wrong_se, good_401);
    drop_file(&hub, "adjust-401.x12", &wrong_se);
    let (accepted, r) = report(&hub, "adjust-401.x12").await;
    assert!(!accepted, "{r:#}");
    assert_eq!(r["status"], "rejected", "{r:#}");
    assert_eq!(r["events"]["applied"], 0, "{r:#}");
    assert_eq!(r["rejected"][0]["level"], "set", "{r:#}");
    assert!(filed(&hub, "inbound/rejected/adjust-401.x12").await);
    assert_eq!(
        (on_hand(&hub, "SKU-1").await, on_hand(&hub, "SKU-2").await),
        (40, 20)
    );
    let acks = wait_outbound(&hub, "997", 2).await;
    assert_eq!(elements(&acks[1], "AK2", 2), vec!["0001"]);
    assert_eq!(elements(&acks[1], "AK5", 1), vec!["R"]);
    assert_eq!(elements(&acks[1], "AK5", 2), vec!["4"], "SE01 count wrong");
    assert_eq!(elements(&acks[1], "AK9", 1), vec!["R"]);
    assert_eq!(elements(&acks[1], "AK9", 4), vec!["0"], "no set accepted");
    let record =
        schema_violation(&mut admin, "file:acme/adjust-401.x12#ACMEWMS/401/401/0001").await;
    assert_eq!(r["rejected"][0]["exception_id"], record["id"], "{r:#}");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.contains("segment 9 (SE): SE01 says 6 segments, counted 7"),
        "{reason}"
    );
    let raw = record["raw"].as_str().unwrap();
    assert!(
        raw.starts_with("ST*947*0001~")
            && raw.contains("W19*07*-3*EA**VN*A-1~")
            && raw.ends_with("SE*6*0001~\n"),
        "the set as received: {raw}"
    );

    // A 947 whose IEA02 is not its ISA13: the whole interchange is rejected.
    let good_402 = x12_947(402, &[("A-1", -5)]);
    let wrong_iea = good_402.replace("IEA*1*000000402", "IEA*1*000000403");
    assert_ne!(wrong_iea, good_402);
    drop_file(&hub, "adjust-402.x12", &wrong_iea);
    let (accepted, r) = report(&hub, "adjust-402.x12").await;
    assert!(!accepted, "{r:#}");
    assert_eq!(r["rejected"][0]["level"], "interchange", "{r:#}");
    assert_eq!(
        (on_hand(&hub, "SKU-1").await, on_hand(&hub, "SKU-2").await),
        (40, 20)
    );
    let acks = wait_outbound(&hub, "997", 3).await;
    assert_eq!(elements(&acks[2], "AK5", 1), vec!["R"]);
    assert_eq!(elements(&acks[2], "AK9", 1), vec!["R"]);
    let record = schema_violation(&mut admin, "file:acme/adjust-402.x12#ACMEWMS/402").await;
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.contains("segment 9 (IEA): IEA02 is 000000403 but ISA13 is 000000402"),
        "{reason}"
    );
    let raw = record["raw"].as_str().unwrap();
    assert!(
        raw.starts_with("ISA*00*") && raw.ends_with("IEA*1*000000403~\n"),
        "the interchange as received: {raw}"
    );

    // The partner's corrected resends (same control numbers) apply, each exactly once.
    drop_file(&hub, "adjust-401.x12", &good_401);
    let (accepted, r) = report(&hub, "adjust-401.1.x12").await;
    assert!(accepted, "{r:#}");
    assert_eq!(r["status"], "processed", "{r:#}");
    assert_eq!(r["events"]["applied"], 2, "{r:#}");
    assert_eq!(
        (on_hand(&hub, "SKU-1").await, on_hand(&hub, "SKU-2").await),
        (37, 18)
    );
    drop_file(&hub, "adjust-402.x12", &good_402);
    let (accepted, r) = report(&hub, "adjust-402.1.x12").await;
    assert!(accepted, "{r:#}");
    assert_eq!(r["events"]["applied"], 1, "{r:#}");
    assert_eq!(on_hand(&hub, "SKU-1").await, 32);
    // Sent a third time, nothing changes.
    drop_file(&hub, "adjust-401.x12", &good_401);
    let (_, r) = report(&hub, "adjust-401.2.x12").await;
    assert_eq!(r["events"]["applied"], 0, "{r:#}");
    assert_eq!(r["events"]["repeats"], 2, "{r:#}");
    assert_eq!(
        (on_hand(&hub, "SKU-1").await, on_hand(&hub, "SKU-2").await),
        (32, 18)
    );
    let acks = wait_outbound(&hub, "997", 6).await;
    for ack in &acks[3..] {
        assert_eq!(elements(ack, "AK9", 1), vec!["A"], "{}", ack.display());
    }

    // A line failing the check every door makes is an exception on its segment; the rest of
    // the set applies and the 997 notes it.
    drop_file(
        &hub,
        "adjust-403.x12",
        &x12_947(403, &[("A-1", -1), ("A-2", i64::MIN)]),
    );
    let (accepted, r) = report(&hub, "adjust-403.x12").await;
    assert!(accepted, "{r:#}");
    assert_eq!(r["events"]["applied"], 1, "{r:#}");
    assert_eq!(
        (on_hand(&hub, "SKU-1").await, on_hand(&hub, "SKU-2").await),
        (31, 18)
    );
    let refused = r["exceptions"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{r:#}");
    assert_eq!(refused[0]["kind"], "schema_violation");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("data.delta"),
        "{r:#}"
    );
    let acks = wait_outbound(&hub, "997", 7).await;
    assert_eq!(elements(&acks[6], "AK5", 1), vec!["E"]);
    assert_eq!(elements(&acks[6], "AK3", 1), vec!["W19"]);

    // Every 997 written is valid X12.
    assert_valid_x12(&acks);
}
