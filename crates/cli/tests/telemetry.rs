//! The telemetry contract: `docs/telemetry.md` and a running hub's `/metrics` agree, both ways,
//! on every metric's name, type and labels; label values stay bounded; the numbers move with
//! what the hub did.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::shop::{converged, shopify_sim, start_hub_with};
use common::{ADMIN, EAST, QUERY, event, post, post_raw};
use serde_json::json;

/// `name -> (type, labels)` from the contract's table.
fn contract() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/telemetry.md");
    let text = std::fs::read_to_string(path).expect("docs/telemetry.md");
    text.lines()
        .filter(|l| l.starts_with("| `crossdock_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_string();
            let labels = cells[3]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            (name, (cells[2].to_string(), labels))
        })
        .collect()
}

struct Exposed {
    types: BTreeMap<String, String>,
    /// Label names of every sample, by metric.
    labels: BTreeMap<String, BTreeSet<BTreeSet<String>>>,
    /// `(metric sample name, labels) -> value`
    values: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

fn parse(text: &str) -> Exposed {
    let mut types = BTreeMap::new();
    let mut labels: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    let mut values = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE name type");
            types.insert(name.to_string(), ty.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').expect("sample value");
        let (sample, label_text) = match head.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (head, ""),
        };
        let pairs: BTreeMap<String, String> = label_text
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').expect("label=value");
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        let base = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| sample.strip_suffix(s).filter(|b| types.contains_key(*b)))
            .unwrap_or(sample)
            .to_string();
        let keys = pairs.keys().filter(|k| *k != "le").cloned().collect();
        labels.entry(base).or_default().insert(keys);
        values.insert(
            (sample.to_string(), pairs),
            value.parse().expect("a number"),
        );
    }
    Exposed {
        types,
        labels,
        values,
    }
}

fn value(e: &Exposed, sample: &str, pairs: &[(&str, &str)]) -> f64 {
    let key: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    *e.values
        .get(&(sample.to_string(), key))
        .unwrap_or_else(|| panic!("no sample {sample}{pairs:?}"))
}

#[tokio::test]
async fn metrics_and_the_contract_agree_and_move_with_the_hub() {
    let sim = shopify_sim(9).await;
    sim.insert_item(900, 0);
    let hub = start_hub_with(
        "telemetry",
        &sim,
        9,
        &["CANARY-1"],
        &[("CANARY-1", 900)],
        "[[telemetry.canaries]]\nchannel = \"shopify\"\nitem = \"CANARY-1\"\nlocation = \"DC-EAST\"\n\
         interval_s = 1\ntimeout_s = 1\n\
         [[slo]]\nname = \"canary-2s\"\nflow = \"channel_visible\"\nthreshold_ms = 2000\nobjective = 0.9\n\
         [[reconciliation.sources]]\nname = \"erp\"\nkind = \"csv\"\nstale_after_s = 86400000\n\
         [[slo]]\nname = \"visible-5s\"\nflow = \"committed_to_delivered\"\n\
         threshold_ms = 5000\nobjective = 0.99\n\
         [[slo]]\nname = \"ingest-1ms\"\nflow = \"occurred_to_committed\"\n\
         threshold_ms = 1\nobjective = 0.5\n",
    )
    .await;
    let mut east = hub.client(EAST).await;
    let receipt = event(
        "t1",
        "wms-east",
        "inventory.received.v1",
        json!({"item": "SKU-1", "location": "DC-EAST", "qty": 7}),
    );
    assert_eq!(post(&mut east, "/v1/events", &receipt).await.0, 200);
    // Not wms-east's location: recorded, quarantined.
    let foreign = event(
        "t2",
        "wms-east",
        "inventory.received.v1",
        json!({"item": "SKU-1", "location": "DC-WEST", "qty": 1}),
    );
    assert_eq!(post(&mut east, "/v1/events", &foreign).await.0, 422);
    // Refused at the edge.
    let (status, _) = post_raw(
        &mut east,
        "/v1/events",
        "application/json",
        b"{nope".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    converged(&hub, &sim, Duration::from_secs(30)).await;
    let mut admin = hub.client(ADMIN).await;
    let (status, run) = post_raw(
        &mut admin,
        "/v1/reconciliations?source=erp&as_of=2026-11-23T12:00:00Z",
        "text/csv",
        b"item,location,qty\nSKU-1,DC-EAST,9\n".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{run}");

    let mut q = hub.client(QUERY).await;
    // A canary round has gone through: the test update was seen on the channel.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let reply = q.get("/metrics").await.expect("scrape");
        assert_eq!(reply.status, 200);
        let text = String::from_utf8(reply.body.to_vec()).unwrap();
        if text.contains("crossdock_canary_checks_total{channel=\"shopify\",result=\"visible\"}") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no canary round: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let exposed = parse(&text);
    let contract = contract();
    assert!(contract.len() >= 16, "{contract:?}");

    let documented: BTreeSet<&String> = contract.keys().collect();
    let served: BTreeSet<&String> = exposed.types.keys().collect();
    assert_eq!(served, documented, "documented and exposed metrics differ");
    for (name, (ty, labels)) in &contract {
        assert_eq!(&exposed.types[name], ty, "type of {name}");
        let seen = exposed
            .labels
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no samples; the test should make one"));
        for keys in seen {
            assert_eq!(keys, labels, "labels of {name}");
        }
    }
    assert!(
        exposed
            .labels
            .values()
            .flatten()
            .flatten()
            .all(|k| k != "item"),
        "no per-item labels"
    );

    // The numbers are the hub's.
    let ingested = value(
        &exposed,
        "crossdock_events_ingested_total",
        &[
            ("source", "wms-east"),
            ("event_type", "inventory.received.v1"),
        ],
    );
    assert_eq!(ingested, 1.0);
    let rejected = value(
        &exposed,
        "crossdock_events_rejected_total",
        &[
            ("source", "wms-east"),
            ("event_type", "inventory.received.v1"),
        ],
    );
    assert_eq!(rejected, 1.0);
    assert!(
        value(
            &exposed,
            "crossdock_exceptions_raised_total",
            &[("kind", "schema_violation")]
        ) >= 1.0
    );
    assert_eq!(value(&exposed, "crossdock_oversell_total", &[]), 0.0);
    assert!(
        value(
            &exposed,
            "crossdock_deliveries_total",
            &[("endpoint", "shopify"), ("result", "delivered")]
        ) >= 1.0
    );
    assert!(
        value(
            &exposed,
            "crossdock_committed_to_delivered_seconds_count",
            &[("endpoint", "shopify")]
        ) >= 1.0
    );
    assert_eq!(
        value(
            &exposed,
            "crossdock_reconciliation_variances",
            &[("source", "erp"), ("class", "quantity_variance")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &exposed,
            "crossdock_breaker_state",
            &[("endpoint", "shopify")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &exposed,
            "crossdock_outbox_depth",
            &[("endpoint", "shopify"), ("priority", "0")]
        ),
        0.0,
        "caught up"
    );
    // Objectives: deliveries came well within 5 s; the test's events say they happened at
    // 10:00 today, long before they were committed, so the 1 ms ingest objective is missed.
    assert_eq!(
        value(
            &exposed,
            "crossdock_slo_attainment",
            &[("slo", "visible-5s")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &exposed,
            "crossdock_slo_objective",
            &[("slo", "visible-5s")]
        ),
        0.99
    );
    assert_eq!(
        value(
            &exposed,
            "crossdock_slo_attainment",
            &[("slo", "ingest-1ms")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &exposed,
            "crossdock_slo_burn_rate",
            &[("slo", "ingest-1ms")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &exposed,
            "crossdock_slo_observations_total",
            &[("slo", "ingest-1ms"), ("outcome", "bad")]
        ),
        1.0
    );
    assert!(
        value(
            &exposed,
            "crossdock_canary_visible_seconds_count",
            &[("channel", "shopify")]
        ) >= 1.0
    );
    assert!(
        value(
            &exposed,
            "crossdock_slo_observations_total",
            &[("slo", "canary-2s"), ("outcome", "good")]
        ) >= 1.0
    );
    let canary = sim
        .quantity("900")
        .expect("the canary item is on the channel");
    assert!((1..=2).contains(&canary), "{canary}");

    // While the channel is down the canary's rounds time out and count against the objective.
    sim.faults().outage(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = String::from_utf8(q.get("/metrics").await.unwrap().body.to_vec()).unwrap();
        let e = parse(&text);
        let timeouts = e.values.get(&(
            "crossdock_canary_checks_total".to_string(),
            [("channel", "shopify"), ("result", "timeout")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        if timeouts.is_some_and(|n| *n >= 1.0) {
            assert!(
                value(
                    &e,
                    "crossdock_slo_observations_total",
                    &[("slo", "canary-2s"), ("outcome", "bad")]
                ) >= 1.0
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no canary timeout: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sim.faults().outage(false);

    let (status, _) = post_raw(
        &mut hub.client("wrong-token").await,
        "/v1/events",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 401);
    let unauthenticated = hub
        .client("wrong-token")
        .await
        .get("/metrics")
        .await
        .unwrap();
    assert_eq!(unauthenticated.status, 401, "metrics need a token");
}
