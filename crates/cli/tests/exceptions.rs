//! The exceptions work queue end to end, through the real binary over loopback: lifecycle moves
//! and the moves refused, filters, paging and counts, bulk moves by filter, replay of input kept
//! at the HTTP edge and in partner files, the `retry`, `hold` and `auto_correct` policies, the
//! signed notification of records waiting for a person, and `check-config` refusing a policy
//! that makes no sense.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ADMIN, EAST, Hub, QUERY, event, get, positions, post, post_raw};
use crossdock_cli::client::Client;
use crossdock_model::Timestamp;
use crossdock_sim::{WebhookConfig, WebhookSim};
use serde_json::{Value, json};

const PROBLEM: &str = "urn:crossdock:problem:";

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
"#;

/// An event of a type the hub does not know: refused at the edge, kept as `schema_violation`.
fn unknown_type(id: &str) -> Value {
    event(
        id,
        "wms-east",
        "inventory.teleported.v1",
        json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1}),
    )
}

/// Posts `body` as `c`'s token and returns the id of the exception that keeps it (found by the
/// event id in its raw input).
async fn refused(c: &mut Client, admin: &mut Client, body: &Value) -> String {
    let (status, p) = post(c, "/v1/events", body).await;
    assert!((400..500).contains(&status), "{status} {p}");
    let marker = format!("\"{}\"", body["id"].as_str().unwrap());
    let (_, list) = get(admin, "/v1/exceptions?limit=1000").await;
    list["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["raw"].as_str().is_some_and(|r| r.contains(&marker)))
        .unwrap_or_else(|| panic!("no exception keeps {marker}: {list:#}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn record(c: &mut Client, id: &str) -> Value {
    let (status, list) = get(c, "/v1/exceptions?limit=1000").await;
    assert_eq!(status, 200, "{list}");
    list["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no exception {id}: {list:#}"))
        .clone()
}

/// Polls record `id` until `done` holds (the work queue runs in the background).
async fn wait_record(c: &mut Client, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let r = record(c, id).await;
        if done(&r) {
            return r;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{what}: {r:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn act(c: &mut Client, id: &str, action: &str, note: &str) -> (u16, Value) {
    post(
        c,
        &format!("/v1/exceptions/{id}/{action}"),
        &json!({ "note": note }),
    )
    .await
}

fn ids(list: &Value) -> Vec<String> {
    list["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Drops a file in the partner's inbound folder (written beside, then renamed in).
fn drop_file(hub: &Hub, name: &str, text: &str) {
    let inbound = hub.dir.join("data/partners/acme/inbound");
    std::fs::create_dir_all(&inbound).unwrap();
    let tmp = inbound.join(format!(".{name}.part"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, inbound.join(name)).unwrap();
}

/// An 846 from the partner: one LIN/QTY pair per `(code, qty)`.
fn x12_846(control: u32, lines: &[(&str, i64)]) -> String {
    let mut body = vec![format!("BIA*00*MM*INV{control}*20261123")];
    for (n, (code, qty)) in lines.iter().enumerate() {
        body.push(format!("LIN*{}*VN*{code}", n + 1));
        body.push(format!("QTY*17*{qty}*EA"));
    }
    let mut segs = vec![
        format!(
            "ISA*00*          *00*          *ZZ*ACMEWMS        *ZZ*CROSSDOCK      *261123*1000*U*00401*{control:09}*0*P*>"
        ),
        format!("GS*IB*ACMEWMS*CROSSDOCK*20261123*1000*{control}*X*004010"),
        "ST*846*0001".to_string(),
    ];
    segs.extend(body.iter().cloned());
    segs.push(format!("SE*{}*0001", body.len() + 2));
    segs.push(format!("GE*1*{control}"));
    segs.push(format!("IEA*1*{control:09}"));
    segs.iter().map(|s| format!("{s}~\n")).collect()
}

/// The 997s written to the partner so far.
fn acks_997(hub: &Hub) -> usize {
    std::fs::read_dir(hub.dir.join("data/partners/acme/outbound"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().contains("-997-"))
            })
            .count()
        })
        .unwrap_or(0)
}

async fn wait_exception(c: &mut Client, query: &str, what: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, list) = get(c, query).await;
        if let Some(e) = list["exceptions"].as_array().and_then(|l| l.first()) {
            return e.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn on_hand(c: &mut Client, item: &str, location: &str) -> i64 {
    positions(c, item)
        .await
        .iter()
        .filter(|p| p.0 == location)
        .map(|p| p.1)
        .sum()
}

#[tokio::test]
async fn each_move_of_the_lifecycle_is_audited_and_a_closed_record_does_not_move() {
    let hub = Hub::start("exc-lifecycle", "").await;
    let mut admin = hub.client(ADMIN).await;
    let mut east = hub.client(EAST).await;
    let a = refused(&mut east, &mut admin, &unknown_type("a")).await;
    let b = refused(&mut east, &mut admin, &unknown_type("b")).await;
    let c = refused(&mut east, &mut admin, &unknown_type("c")).await;
    let r = record(&mut admin, &a).await;
    assert_eq!(
        (
            r["kind"].as_str(),
            r["status"].as_str(),
            r["entity"].as_str()
        ),
        (Some("schema_violation"), Some("open"), Some("token:east"))
    );
    assert_eq!(r["policy"], "hold", "the default for schema_violation");
    assert_eq!(r["replay"], "request", "the refused body is kept: {r:#}");

    // open → acknowledged → resolved, each by the caller's token with its note.
    let (status, v) = act(&mut admin, &a, "acknowledge", "looking into it").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["exception"]["status"], "acknowledged");
    assert_eq!(v["exception"]["actor"], "admin");
    assert_eq!(v["exception"]["note"], "looking into it");
    let (status, p) = act(&mut admin, &a, "acknowledge", "again").await;
    assert_eq!(status, 409, "acknowledged is not open: {p}");
    assert_eq!(p["type"], format!("{PROBLEM}invalid-transition"));
    assert_eq!(p["status"], 409, "a numeric status: {p}");
    assert_eq!(p["record_status"], "acknowledged", "{p}");
    let (status, v) = act(&mut admin, &a, "resolve", "the WMS sends a known type now").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["exception"]["status"], "resolved");
    // A closed record moves no more, whatever the move.
    for action in ["acknowledge", "resolve", "discard", "replay"] {
        let (status, p) = act(&mut admin, &a, action, "once more").await;
        assert_eq!(status, 409, "{action} on a resolved record: {p}");
        assert_eq!(p["type"], format!("{PROBLEM}invalid-transition"), "{p}");
        assert_eq!(p["record_status"], "resolved", "{p}");
        assert!(p["detail"].as_str().unwrap().contains("is resolved"), "{p}");
    }
    assert_eq!(record(&mut admin, &a).await["status"], "resolved");

    // open → discarded; open → resolved without an acknowledgement.
    let (status, v) = act(&mut admin, &b, "discard", "a test message").await;
    assert_eq!(
        (status, v["exception"]["status"].as_str()),
        (200, Some("discarded")),
        "{v}"
    );
    let (status, p) = act(&mut admin, &b, "acknowledge", "too late").await;
    assert_eq!(
        (status, p["record_status"].as_str()),
        (409, Some("discarded")),
        "{p}"
    );

    // Two operators acknowledge one record at once: one move, one refusal.
    let mut other = hub.client(ADMIN).await;
    let (first, second) = tokio::join!(
        act(&mut admin, &c, "acknowledge", "mine"),
        act(&mut other, &c, "acknowledge", "no, mine"),
    );
    let mut codes = [first.0, second.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "{first:?} {second:?}");

    // What is refused before anything moves.
    let (status, p) = post(
        &mut admin,
        &format!("/v1/exceptions/{c}/resolve"),
        &json!({}),
    )
    .await;
    assert_eq!((status, p["field"].as_str()), (400, Some("note")), "{p}");
    let (status, p) = act(&mut admin, &c, "resolve", "   ").await;
    assert_eq!(p["type"], format!("{PROBLEM}missing-note"), "{status} {p}");
    let (status, p) = act(&mut admin, "ex-nope", "resolve", "x").await;
    assert_eq!(
        (status, p["type"].as_str()),
        (404, Some("urn:crossdock:problem:no-such-exception"))
    );
    let (status, _) = act(&mut admin, &c, "escalate", "x").await;
    assert_eq!(status, 404);
    let mut query = hub.client(QUERY).await;
    let (status, _) = act(&mut query, &c, "resolve", "x").await;
    assert_eq!(status, 403, "moves need the admin scope");
    assert_eq!(record(&mut admin, &c).await["status"], "acknowledged");

    // Every move is in the audit log, with actor, note and the status it left.
    let (_, audit) = get(&mut admin, "/v1/audit").await;
    let rows: Vec<(String, String, String, String)> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["subject"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
                r["note"].as_str().unwrap().to_string(),
                r["detail"]["from"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let has = |id: &str, action: &str, note: &str, from: &str| {
        rows.contains(&(
            format!("exception:{id}"),
            action.to_string(),
            note.to_string(),
            from.to_string(),
        ))
    };
    assert!(
        has(&a, "acknowledged", "looking into it", "open"),
        "{rows:#?}"
    );
    assert!(
        has(
            &a,
            "resolved",
            "the WMS sends a known type now",
            "acknowledged"
        ),
        "{rows:#?}"
    );
    assert!(has(&b, "discarded", "a test message", "open"), "{rows:#?}");
    assert_eq!(
        rows.iter()
            .filter(|r| r.0 == format!("exception:{a}"))
            .count(),
        2,
        "refused moves leave no audit row: {rows:#?}"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.0 == format!("exception:{c}"))
            .count(),
        1,
        "{rows:#?}"
    );
}

#[tokio::test]
async fn filters_page_and_count_the_records() {
    let hub = Hub::start("exc-filters", "").await;
    let mut admin = hub.client(ADMIN).await;
    let mut east = hub.client(EAST).await;
    let mut schema = Vec::new();
    for i in 0..3 {
        schema.push(refused(&mut east, &mut admin, &unknown_type(&format!("s-{i}"))).await);
    }
    let mut auth = Vec::new();
    for i in 0..2 {
        let as_west = event(
            &format!("w-{i}"),
            "wms-west",
            "inventory.received.v1",
            json!({"item": "SKU-1", "location": "DC-WEST", "qty": 1}),
        );
        auth.push(refused(&mut east, &mut admin, &as_west).await);
    }
    let mut unknown = event(
        "u-1",
        "wms-east",
        "inventory.received.v1",
        json!({"item": "NOT-AN-ITEM", "location": "DC-EAST", "qty": 1}),
    );
    unknown["correlationid"] = json!("corr-77");
    let item = refused(&mut east, &mut admin, &unknown).await;
    let (status, _) = act(&mut admin, &schema[0], "acknowledge", "mine").await;
    assert_eq!(status, 200);
    let (status, _) = act(&mut admin, &auth[0], "discard", "a test").await;
    assert_eq!(status, 200);

    let set = |v: &Value| ids(v).into_iter().collect::<HashSet<_>>();
    let want = |list: &[&String]| list.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
    let (_, v) = get(&mut admin, "/v1/exceptions?kind=schema_violation").await;
    assert_eq!(set(&v), want(&schema.iter().collect::<Vec<_>>()), "{v:#}");
    assert_eq!(v["matching"]["total"], 3);
    assert_eq!(
        v["matching"]["by_kind"]["schema_violation"]["open"], 2,
        "{v:#}"
    );
    assert_eq!(
        v["matching"]["by_kind"]["schema_violation"]["acknowledged"], 1,
        "{v:#}"
    );
    let (_, v) = get(
        &mut admin,
        "/v1/exceptions?kind=schema_violation,auth_rejected",
    )
    .await;
    assert_eq!(v["matching"]["total"], 5, "{v:#}");
    assert_eq!(
        v["open_by_kind"]["schema_violation"], 3,
        "open counts open and acknowledged: {v:#}"
    );
    assert_eq!(v["open_by_kind"]["auth_rejected"], 1, "{v:#}");
    assert_eq!(v["open_by_kind"]["unknown_item"], 1, "{v:#}");
    let (_, v) = get(&mut admin, "/v1/exceptions?status=acknowledged").await;
    assert_eq!(ids(&v), vec![schema[0].clone()]);
    let (_, v) = get(&mut admin, "/v1/exceptions?status=closed").await;
    assert_eq!(ids(&v), vec![auth[0].clone()]);
    let (_, v) = get(&mut admin, "/v1/exceptions?status=active").await;
    assert_eq!(v["matching"]["total"], 5, "{v:#}");
    let (_, v) = get(&mut admin, "/v1/exceptions?entity_prefix=token:").await;
    assert_eq!(v["matching"]["total"], 5, "{v:#}");
    let (_, v) = get(&mut admin, "/v1/exceptions?entity_prefix=item:NOT").await;
    assert_eq!(ids(&v), vec![item.clone()]);
    let (_, v) = get(&mut admin, "/v1/exceptions?correlation_id=corr-77").await;
    assert_eq!(ids(&v), vec![item.clone()]);
    assert_eq!(v["exceptions"][0]["kind"], "unknown_item");

    // Newest first; since/until select by the time the input was received.
    let (_, all) = get(&mut admin, "/v1/exceptions").await;
    let all_list = all["exceptions"].as_array().unwrap().clone();
    assert_eq!(all_list.len(), 6);
    let at = |e: &Value| Timestamp::parse_rfc3339(e["created_at"].as_str().unwrap()).unwrap();
    let times: Vec<Timestamp> = all_list.iter().map(at).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    let middle = all_list[3]["created_at"].as_str().unwrap();
    let (_, v) = get(&mut admin, &format!("/v1/exceptions?since={middle}")).await;
    let expect: HashSet<String> = all_list
        .iter()
        .filter(|e| at(e) >= times[3])
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(set(&v), expect, "since {middle}");
    let (_, v) = get(&mut admin, &format!("/v1/exceptions?until={middle}")).await;
    assert_eq!(
        set(&v).len() + expect.len(),
        6,
        "until is the complement of since"
    );
    assert!(set(&v).is_disjoint(&expect));

    // Pages of two follow each other without gaps or repeats.
    let mut paged = Vec::new();
    let mut pages = 0;
    let mut cursor = String::new();
    for _ in 0..10 {
        pages += 1;
        let (status, v) = get(
            &mut admin,
            &format!("/v1/exceptions?limit=2&cursor={cursor}"),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert!(ids(&v).len() <= 2, "{v:#}");
        paged.extend(ids(&v));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let all_ids: Vec<String> = all_list
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paged, all_ids);
    assert_eq!(pages, 3, "six records, two a page");

    let (_, doc) = get(&mut admin, "/v1/openapi.json").await;
    for path in [
        "/v1/exceptions",
        "/v1/exceptions/{id}/{action}",
        "/v1/exceptions/bulk",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} in the OpenAPI document"
        );
    }

    for (query, field) in [
        ("kind=nope", "kind"),
        ("status=lost", "status"),
        ("since=yesterday", "since"),
        ("cursor=garbage", "cursor"),
    ] {
        let (status, p) = get(&mut admin, &format!("/v1/exceptions?{query}")).await;
        assert_eq!(
            (status, p["field"].as_str()),
            (400, Some(field)),
            "{query}: {p}"
        );
    }
}

#[tokio::test]
async fn bulk_moves_apply_by_filter_and_say_what_was_skipped() {
    let hub = Hub::start("exc-bulk", "").await;
    let mut admin = hub.client(ADMIN).await;
    let mut east = hub.client(EAST).await;
    let mut schema = Vec::new();
    for i in 0..4 {
        schema.push(refused(&mut east, &mut admin, &unknown_type(&format!("s-{i}"))).await);
    }
    let as_west = event(
        "w-1",
        "wms-west",
        "inventory.received.v1",
        json!({"item": "SKU-1", "location": "DC-WEST", "qty": 1}),
    );
    let auth = refused(&mut east, &mut admin, &as_west).await;
    assert_eq!(
        act(&mut admin, &schema[0], "acknowledge", "mine").await.0,
        200
    );
    assert_eq!(act(&mut admin, &schema[1], "resolve", "fixed").await.0, 200);

    // Without a status the filter takes what the move starts from: the two still open.
    let (status, v) = post(
        &mut admin,
        "/v1/exceptions/bulk",
        &json!({"action": "acknowledge", "filter": {"kind": "schema_violation"}, "note": "triage"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["matched"].as_u64(),
            v["applied"].as_u64(),
            v["skipped"].as_u64()
        ),
        (Some(2), Some(2), Some(0)),
        "{v:#}"
    );
    for id in &schema[2..] {
        let r = record(&mut admin, id).await;
        assert_eq!(
            (r["status"].as_str(), r["note"].as_str()),
            (Some("acknowledged"), Some("triage"))
        );
    }

    // A status that includes closed records: those are skipped, each with why.
    let (status, v) = post(
        &mut admin,
        "/v1/exceptions/bulk",
        &json!({"action": "discard", "filter": {"kind": "schema_violation", "status": "active,resolved"},
                "note": "noise from a test rig"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["applied"].as_u64(), v["skipped"].as_u64()),
        (Some(3), Some(1)),
        "{v:#}"
    );
    let skipped: Vec<&Value> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["id"], schema[1].as_str());
    assert_eq!(skipped[0]["status"], "resolved");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("is resolved"),
        "{v:#}"
    );
    let (_, audit) = get(&mut admin, "/v1/audit").await;
    let discards = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "discarded" && r["note"] == "noise from a test rig")
        .count();
    assert_eq!(discards, 3, "one audit row per record");
    assert_eq!(
        record(&mut admin, &auth).await["status"],
        "open",
        "other kinds untouched"
    );

    // A bounded bulk move says there is more; a replay of records with nothing to run says so.
    for i in 0..3 {
        let body = event(
            &format!("u-{i}"),
            "wms-east",
            "inventory.received.v1",
            json!({"item": "NOT-AN-ITEM", "location": "DC-EAST", "qty": 1}),
        );
        post(&mut east, "/v1/events", &body).await;
    }
    let (status, v) = post(
        &mut admin,
        "/v1/exceptions/bulk",
        &json!({"action": "replay", "filter": {"kind": "unknown_item"}, "note": "try", "limit": 2}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["applied"].as_u64(),
            v["skipped"].as_u64(),
            v["more"].as_bool()
        ),
        (Some(0), Some(2), Some(true)),
        "{v:#}"
    );
    assert!(
        v["results"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("already in the log"),
        "{v:#}"
    );
    let (_, list) = get(&mut admin, "/v1/exceptions?kind=unknown_item&status=open").await;
    assert_eq!(list["matching"]["total"], 3, "nothing moved: {list:#}");

    for body in [
        json!({"action": "resolve", "filter": {}, "note": "everything"}),
        json!({"action": "resolve", "note": "everything"}),
        json!({"action": "escalate", "filter": {"kind": "unknown_item"}, "note": "x"}),
        json!({"action": "resolve", "filter": {"kind": "unknown_item"}, "note": ""}),
        json!({"action": "resolve", "filter": {"kind": "unknown_item"}, "note": "x", "limit": 100000}),
        json!({"action": "resolve", "filter": {"kind": "nope"}, "note": "x"}),
    ] {
        let (status, p) = post(&mut admin, "/v1/exceptions/bulk", &body).await;
        assert_eq!(status, 400, "{body}: {p}");
    }
    let (_, list) = get(&mut admin, "/v1/exceptions?kind=unknown_item&status=open").await;
    assert_eq!(
        list["matching"]["total"], 3,
        "refused bulk moves change nothing"
    );
}

#[tokio::test]
async fn a_request_refused_at_the_edge_is_replayed_as_its_token_once_the_token_may_send_it() {
    let mut hub = Hub::start("exc-edge", "").await;
    let mut admin = hub.client(ADMIN).await;
    let mut east = hub.client(EAST).await;
    let as_west = event(
        "w-1",
        "wms-west",
        "inventory.received.v1",
        json!({"item": "SKU-7", "location": "DC-WEST", "qty": 6}),
    );
    let id = refused(&mut east, &mut admin, &as_west).await;
    assert_eq!(record(&mut admin, &id).await["kind"], "auth_rejected");

    // Still not allowed: the replay runs, fails, and the record is open again saying why.
    let (status, p) = act(&mut admin, &id, "replay", "try again").await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["type"], format!("{PROBLEM}replay-failed"));
    let r = record(&mut admin, &id).await;
    assert_eq!(r["status"], "open", "{r:#}");
    assert!(
        r["note"].as_str().unwrap().contains("still may not submit"),
        "{r:#}"
    );
    let mut q = hub.client(QUERY).await;
    assert_eq!(on_hand(&mut q, "SKU-7", "DC-WEST").await, 0);

    // The token is given the scope (config changed, hub restarted): the replay goes through.
    let path = hub.dir.join("crossdock.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "scopes = [\"ingest:wms-east\"]",
        "scopes = [\"ingest:wms-east\", \"ingest:wms-west\"]",
    );
    std::fs::write(&path, text).unwrap();
    hub.kill();
    hub.restart().await;
    let mut admin = hub.client(ADMIN).await;
    let (status, v) = act(
        &mut admin,
        &id,
        "replay",
        "east now ships for the west DC too",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["input"], "request");
    assert_eq!(v["report"]["status"], "applied", "{v:#}");
    assert_eq!(v["exception"]["status"], "replayed");
    assert_eq!(v["exception"]["actor"], "admin");
    let mut q = hub.client(QUERY).await;
    assert_eq!(on_hand(&mut q, "SKU-7", "DC-WEST").await, 6);
    let (status, p) = act(&mut admin, &id, "replay", "twice").await;
    assert_eq!(
        (status, p["record_status"].as_str()),
        (409, Some("replayed")),
        "{p}"
    );

    // An event the ledger quarantined is in the log under its id: not replayable, left as it was.
    let mut east = hub.client(EAST).await;
    let unknown = event(
        "u-1",
        "wms-east",
        "inventory.received.v1",
        json!({"item": "NOT-AN-ITEM", "location": "DC-EAST", "qty": 1}),
    );
    let quarantined = refused(&mut east, &mut admin, &unknown).await;
    assert_eq!(
        act(&mut admin, &quarantined, "acknowledge", "seen").await.0,
        200
    );
    let (status, p) = act(&mut admin, &quarantined, "replay", "try").await;
    assert_eq!(
        (status, p["type"].as_str()),
        (422, Some("urn:crossdock:problem:not-replayable")),
        "{p}"
    );
    assert_eq!(
        record(&mut admin, &quarantined).await["status"],
        "acknowledged"
    );
}

#[tokio::test]
async fn the_retry_policy_replays_a_partner_file_once_master_data_is_fixed() {
    let extra = format!(
        "{PARTNER}\n[exceptions]\nretry_interval_s = 1\nretry_max = 1000\nscan_interval_ms = 100\n"
    );
    let hub = Hub::start("exc-retry", &extra).await;
    let mut admin = hub.client(ADMIN).await;
    let (status, v) = post_raw(
        &mut admin,
        "/v1/master/crosswalks",
        "text/csv",
        b"partner,kind,external,internal\nacme,item,A-1,SKU-1\n".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    drop_file(
        &hub,
        "counts.csv",
        "item,location,qty\nA-1,DC-EAST,12\nA-2,DC-EAST,5\n",
    );
    let first = wait_exception(
        &mut admin,
        "/v1/exceptions?kind=unknown_item&entity_prefix=file:acme/counts.csv",
        "the unknown A-2",
    )
    .await;
    let id = first["id"].as_str().unwrap().to_string();
    drop_file(&hub, "stock.x12", &x12_846(301, &[("A-3", 9)]));
    let x12 = wait_exception(
        &mut admin,
        "/v1/exceptions?kind=unknown_item&entity_prefix=file:acme/stock.x12",
        "the unknown A-3",
    )
    .await;
    let x12 = x12["id"].as_str().unwrap().to_string();
    assert_eq!(first["policy"], "retry");
    assert_eq!(first["replay"], "file");
    assert!(
        first["entity"]
            .as_str()
            .unwrap()
            .starts_with("file:acme/counts.csv"),
        "{first:#}"
    );

    // Replayed automatically while A-2 is still unknown: it fails and stays open, counted.
    let r = wait_record(&mut admin, &id, "a failed automatic replay", |r| {
        r["status"] == "open"
            && r["attempts"].as_u64() >= Some(1)
            && r["note"]
                .as_str()
                .is_some_and(|n| n.contains("automatic replay failed"))
    })
    .await;
    assert_eq!(r["actor"], "crossdock", "{r:#}");
    assert!(r["held_at"].is_null(), "still retrying: {r:#}");
    let mut q = hub.client(QUERY).await;
    assert_eq!(on_hand(&mut q, "SKU-2", "DC-EAST").await, 0);
    wait_record(
        &mut admin,
        &x12,
        "two failed replays of the X12 file",
        |r| r["attempts"].as_u64() >= Some(2),
    )
    .await;

    // Master data is fixed; the next automatic replay goes through.
    let (status, v) = post_raw(
        &mut admin,
        "/v1/master/crosswalks",
        "text/csv",
        b"partner,kind,external,internal\nacme,item,A-1,SKU-1\nacme,item,A-2,SKU-2\nacme,item,A-3,SKU-3\n"
            .to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let done = wait_record(&mut admin, &id, "replayed after the fix", |r| {
        r["status"] == "replayed"
    })
    .await;
    assert_eq!(done["actor"], "crossdock", "{done:#}");
    assert_eq!(on_hand(&mut q, "SKU-2", "DC-EAST").await, 5);
    assert_eq!(
        on_hand(&mut q, "SKU-1", "DC-EAST").await,
        12,
        "the other line is a repeat"
    );
    wait_record(
        &mut admin,
        &x12,
        "the X12 file replayed after the fix",
        |r| r["status"] == "replayed",
    )
    .await;
    assert_eq!(on_hand(&mut q, "SKU-3", "DC-EAST").await, 9);
    assert_eq!(
        acks_997(&hub),
        1,
        "the partner is answered once, not on every replay"
    );
    let (_, audit) = get(&mut admin, "/v1/audit?limit=10000").await;
    assert!(
        audit["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["subject"] == format!("exception:{id}")
                && a["action"] == "replayed"
                && a["actor"] == "crossdock"),
        "{audit:#}"
    );
}

#[tokio::test]
async fn held_records_are_notified_once_signed_and_again_after_the_receiver_was_down() {
    let sim = WebhookSim::start(WebhookConfig::default()).await.unwrap();
    let extra = format!(
        r#"{PARTNER}
[exceptions]
notify_url = "{}/ops/exceptions"
notify_secret_env = "EXC_HOOK_SECRET"
retry_interval_s = 1
retry_max = 1
scan_interval_ms = 100
[exceptions.policy]
oversell_risk = "hold"
"#,
        sim.url()
    );
    let secret = String::from_utf8(sim.config().secret.clone()).unwrap();
    let hub = Hub::start_full(
        "exc-notify",
        &common::config(&extra),
        &[],
        &[],
        &[("EXC_HOOK_SECRET", &secret)],
    )
    .await;
    let mut admin = hub.client(ADMIN).await;
    let mut east = hub.client(EAST).await;
    let received = |id: &str| {
        sim.received()
            .into_iter()
            .filter(|d| d.body["id"] == id)
            .collect::<Vec<_>>()
    };
    async fn until(what: &str, ok: impl Fn() -> bool) {
        let started = Instant::now();
        while !ok() {
            assert!(started.elapsed() < Duration::from_secs(30), "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A held record is announced, signed, with what a person needs.
    let first = refused(&mut east, &mut admin, &unknown_type("n-1")).await;
    until("the first notification", || !received(&first).is_empty()).await;
    let r = wait_record(&mut admin, &first, "marked notified", |r| {
        !r["notified_at"].is_null()
    })
    .await;
    assert!(!r["held_at"].is_null(), "{r:#}");
    let got = &received(&first)[0];
    assert_eq!(got.path, "/ops/exceptions");
    assert_eq!(got.idempotency_key.as_deref(), Some(first.as_str()));
    assert_eq!(got.body["kind"], "schema_violation");
    assert_eq!(got.body["entity"], "token:east");
    assert_eq!(got.body["policy"], "hold");
    assert!(
        got.body["reason"]
            .as_str()
            .unwrap()
            .contains("inventory.teleported.v1"),
        "{:#}",
        got.body
    );
    assert!(got.body.get("correlation_id").is_some(), "{:#}", got.body);
    assert_eq!(sim.bad_signatures(), 0, "signed with the configured secret");

    // Once acknowledged by a 2xx it is not sent again: a later record is, the first is not.
    let second = refused(&mut east, &mut admin, &unknown_type("n-2")).await;
    until("the second notification", || !received(&second).is_empty()).await;
    assert_eq!(received(&first).len(), 1);
    assert_eq!(sim.stats().duplicates, 0, "no notification was sent twice");

    // The receiver is down: the notification waits and goes once it is back, same id.
    sim.faults().outage(true);
    let before = sim.stats().requests_faulted;
    let third = refused(&mut east, &mut admin, &unknown_type("n-3")).await;
    until("a notification refused by the outage", || {
        sim.stats().requests_faulted > before
    })
    .await;
    assert!(record(&mut admin, &third).await["notified_at"].is_null());
    sim.faults().outage(false);
    until("the notification after the outage", || {
        !received(&third).is_empty()
    })
    .await;
    assert_eq!(
        received(&third)[0].idempotency_key.as_deref(),
        Some(third.as_str())
    );
    wait_record(
        &mut admin,
        &third,
        "marked notified after the outage",
        |r| !r["notified_at"].is_null(),
    )
    .await;

    // Retries used up: handed to a person with a note, and announced.
    let (status, v) = post_raw(
        &mut admin,
        "/v1/master/crosswalks",
        "text/csv",
        b"partner,kind,external,internal\nacme,item,A-1,SKU-1\n".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    drop_file(&hub, "counts.csv", "item,location,qty\nA-9,DC-EAST,5\n");
    let unknown = wait_exception(
        &mut admin,
        "/v1/exceptions?kind=unknown_item",
        "the unknown A-9",
    )
    .await;
    let unknown = unknown["id"].as_str().unwrap().to_string();
    let r = wait_record(&mut admin, &unknown, "given up", |r| {
        !r["held_at"].is_null()
    })
    .await;
    assert_eq!(r["status"], "open");
    assert_eq!(r["attempts"], 1, "retry_max = 1: {r:#}");
    assert!(
        r["note"]
            .as_str()
            .unwrap()
            .contains("gave up after 1 automatic replays"),
        "{r:#}"
    );
    until("the notification of the given-up record", || {
        !received(&unknown).is_empty()
    })
    .await;
    assert!(
        received(&unknown)[0].body["note"]
            .as_str()
            .unwrap()
            .contains("gave up")
    );

    // Policy hold on oversell_risk: the ledger lifts the hold on availability when stock is
    // back, but the record stays open for a person, with the correction noted.
    let send = |id: &str, delta: i64| {
        event(
            id,
            "wms-east",
            "inventory.adjusted.v1",
            json!({"item": "SKU-3", "location": "DC-EAST", "delta": delta, "reason": "cycle count"}),
        )
    };
    let (status, v) = post(&mut east, "/v1/events", &send("o-1", -4)).await;
    assert_eq!(status, 200, "{v}");
    let over = wait_exception(
        &mut admin,
        "/v1/exceptions?kind=oversell_risk",
        "an oversell",
    )
    .await;
    let over = over["id"].as_str().unwrap().to_string();
    until("the oversell notification", || !received(&over).is_empty()).await;
    let (status, v) = post(&mut east, "/v1/events", &send("o-2", 10)).await;
    assert_eq!(status, 200, "{v}");
    let r = wait_record(&mut admin, &over, "the correction noted", |r| {
        !r["corrected_at"].is_null()
    })
    .await;
    assert_eq!(
        r["status"], "open",
        "policy hold: not closed by the hub: {r:#}"
    );
    assert!(
        r["note"]
            .as_str()
            .unwrap()
            .contains("kept open for a person"),
        "{r:#}"
    );
    let mut q = hub.client(QUERY).await;
    let (_, a) = get(&mut q, "/v1/availability?item=SKU-3&channel=shopify").await;
    assert_eq!(a["available"], 6, "the availability hold is lifted: {a}");
    assert_eq!(received(&over).len(), 1);
}

#[tokio::test]
async fn by_default_the_ledger_closes_an_oversell_when_stock_is_back() {
    let hub = Hub::start("exc-autocorrect", "").await;
    let mut admin = hub.client(ADMIN).await;
    let mut east = hub.client(EAST).await;
    let adjust = |id: &str, delta: i64| {
        event(
            id,
            "wms-east",
            "inventory.adjusted.v1",
            json!({"item": "SKU-4", "location": "DC-EAST", "delta": delta, "reason": "cycle count"}),
        )
    };
    assert_eq!(
        post(&mut east, "/v1/events", &adjust("o-1", -2)).await.0,
        200
    );
    let over = wait_exception(
        &mut admin,
        "/v1/exceptions?kind=oversell_risk",
        "an oversell",
    )
    .await;
    assert_eq!(over["policy"], "auto_correct");
    assert_eq!(over["status"], "open");
    let id = over["id"].as_str().unwrap().to_string();
    assert_eq!(
        post(&mut east, "/v1/events", &adjust("o-2", 3)).await.0,
        200
    );
    let r = record(&mut admin, &id).await;
    assert_eq!(
        (r["status"].as_str(), r["actor"].as_str()),
        (Some("resolved"), Some("ledger")),
        "{r:#}"
    );
}

#[test]
fn check_config_refuses_a_policy_that_makes_no_sense_with_key_and_line() {
    let dir = common::temp_dir("exc-check");
    let path = dir.join("bad.toml");
    let text = common::config(
        "\n[exceptions]\nretry_max = 0\n[exceptions.policy]\nsequence_gap = \"retry\"\nunknown_item = \"auto_correct\"\noversell_risk = \"sometimes\"\n",
    );
    std::fs::write(&path, &text).unwrap();
    std::fs::write(dir.join("items.csv"), "item\nSKU-1\n").unwrap();
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.starts_with(needle))
            .map(|i| i + 1)
            .unwrap()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .arg("check-config")
        .arg(&path)
        .env("T_ADMIN", ADMIN)
        .env("T_EAST", EAST)
        .env("T_QUERY", QUERY)
        .env("T_RESERVE", common::RESERVE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (key, words) in [
        ("exceptions.policy.sequence_gap", "retry makes no sense"),
        ("exceptions.policy.unknown_item", "does not correct it"),
        ("exceptions.policy.oversell_risk", "\"sometimes\""),
        ("exceptions.retry_max", "1 ..= 1000"),
    ] {
        let leaf = key.rsplit('.').next().unwrap();
        let expected = format!("line {}: {key}: ", line_of(leaf));
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&expected) && l.contains(words)),
            "{expected} … {words}:\n{stderr}"
        );
    }
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_channel_drift_repaired_by_compare_and_set_is_closed_by_auto_correct() {
    use common::shop::{converged, receive, shopify_sim, start_hub_with};
    let sim = shopify_sim(1).await;
    let hub = start_hub_with(
        "exc-cas",
        &sim,
        1,
        &[],
        &[],
        "[exceptions]\nscan_interval_ms = 100\n",
    )
    .await;
    let mut east = hub.client(EAST).await;
    assert_eq!(receive(&mut east, "cas-1", "SKU-5", 4).await, 200);
    converged(&hub, &sim, Duration::from_secs(10)).await;
    // Someone sets SKU-5 by hand in the shop; the next write is refused and repaired.
    sim.set_quantity("5", 40);
    assert_eq!(receive(&mut east, "cas-2", "SKU-5", 1).await, 200);
    converged(&hub, &sim, Duration::from_secs(10)).await;
    let mut admin = hub.client(ADMIN).await;
    let drift = wait_exception(
        &mut admin,
        "/v1/exceptions?kind=inventory_mismatch",
        "the drift",
    )
    .await;
    assert_eq!(drift["policy"], "auto_correct");
    let id = drift["id"].as_str().unwrap().to_string();
    let r = wait_record(&mut admin, &id, "closed once repaired", |r| {
        r["status"] == "resolved"
    })
    .await;
    assert_eq!(r["actor"], "crossdock", "{r:#}");
    assert!(
        r["note"]
            .as_str()
            .unwrap()
            .contains("shopify took Crossdock's value for SKU-5 again by compare-and-set"),
        "{r:#}"
    );
    assert_eq!(sim.quantity("5"), Some(5));
}

#[tokio::test]
async fn a_refused_delivery_is_replayed_from_the_dead_letter_queue() {
    let sim = WebhookSim::start(WebhookConfig::default()).await.unwrap();
    sim.faults().permanent_items(["SKU-2"]);
    let endpoint = format!(
        r#"
[[endpoints]]
channel = "b2b"
kind = "webhook"
secrets_env = {{ signing_secret = "B2B_SECRET" }}
retry = {{ base_ms = 50, cap_ms = 1000 }}
[endpoints.webhook]
url = "{}/b2b"
"#,
        sim.url()
    );
    let secret = String::from_utf8(sim.config().secret.clone()).unwrap();
    let hub = Hub::start_full(
        "exc-dlq",
        &common::config(&endpoint),
        &[],
        &[],
        &[("B2B_SECRET", &secret)],
    )
    .await;
    let mut admin = hub.client(ADMIN).await;
    let mut east = hub.client(EAST).await;
    let receipt = event(
        "r-1",
        "wms-east",
        "inventory.received.v1",
        json!({"item": "SKU-2", "location": "DC-EAST", "qty": 10}),
    );
    assert_eq!(post(&mut east, "/v1/events", &receipt).await.0, 200);
    let failed = wait_exception(
        &mut admin,
        "/v1/exceptions?kind=delivery_failed",
        "the refused delivery",
    )
    .await;
    assert_eq!(failed["replay"], "dead_letter", "{failed:#}");
    let id = failed["id"].as_str().unwrap().to_string();
    assert_eq!(sim.quantity("SKU-2"), None);

    // The receiver takes the item now: the parked message goes back into its lane.
    sim.faults().permanent_items(Vec::<String>::new());
    let (status, v) = act(&mut admin, &id, "replay", "the ERP knows SKU-2 now").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["input"], "dead_letter");
    assert_eq!(v["exception"]["status"], "replayed");
    let started = Instant::now();
    while sim.quantity("SKU-2") != Some(9) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "SKU-2 delivered after the replay: {:?}",
            sim.quantity("SKU-2")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, dlq) = get(&mut admin, "/v1/dlq?status=retried").await;
    assert_eq!(dlq["dead_letters"].as_array().unwrap().len(), 1, "{dlq:#}");
    // Nothing is parked behind it any more.
    let (status, p) = act(&mut admin, &id, "replay", "again").await;
    assert_eq!(
        (status, p["record_status"].as_str()),
        (409, Some("replayed")),
        "{p}"
    );
}
