//! The real binary on the PostgreSQL store: the same API, durable across a SIGKILL.

mod common;

use common::*;
use serde_json::json;

fn pg_url() -> String {
    std::env::var("CROSSDOCK_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_runs_on_postgres_and_survives_a_kill() {
    let schema = format!("cd_e2e_{}", fastrand::u64(..));
    let store = format!(
        "[store]\nkind = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\n",
        pg_url()
    );
    let mut hub = Hub::start("pg", &store).await;
    let mut east = hub.client(EAST).await;
    let received = event(
        "pg-1",
        "wms-east",
        "inventory.received.v1",
        json!({"item": "SKU-1", "location": "DC-EAST", "qty": 12}),
    );
    let (s, v) = post(&mut east, "/v1/events", &received).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("applied")), "{v}");
    let mut shop = hub.client(RESERVE).await;
    let (s, v) = post(
        &mut shop,
        "/v1/reservations",
        &json!({"id": "pg-cart", "channel": "shopify", "lines": [{"item": "SKU-1", "qty": 5}], "ttl_s": 600}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = post(
        &mut east,
        "/v1/events",
        &event(
            "pg-2",
            "wms-east",
            "inventory.received.v1",
            json!({"item": "SKU-404", "location": "DC-EAST", "qty": 1}),
        ),
    )
    .await;
    assert_eq!(s, 422, "unknown item quarantined");

    assert!(!hub.db().exists(), "nothing went to an embedded file");
    hub.kill();
    hub.restart().await;
    let mut q = hub.client(QUERY).await;
    let p = &positions(&mut q, "SKU-1").await[0];
    assert_eq!(
        (p.1, p.2, p.4),
        (12, 5, 7),
        "on_hand, reserved and available survive the kill"
    );
    let (_, v) = get(&mut q, "/v1/exceptions?kind=unknown_item").await;
    assert_eq!(v["exceptions"].as_array().unwrap().len(), 1, "{v}");
    let mut east = hub.client(EAST).await;
    let (s, v) = post(&mut east, "/v1/events", &received).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("duplicate")),
        "idempotency survives too: {v}"
    );
    hub.kill();
    drop_schema(schema).await;
}

async fn drop_schema(schema: String) {
    tokio::task::spawn_blocking(move || {
        let mut c =
            postgres::Client::connect(&pg_url(), postgres::NoTls).expect("postgres is running");
        c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_runs_on_postgres_across_a_kill() {
    use common::shop::*;
    let schema = format!("cd_e2e_{}", fastrand::u64(..));
    let store = format!(
        "[store]\nkind = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\n",
        pg_url()
    );
    let sim = shopify_sim(1).await;
    sim.faults().permanent_items(["9"]);
    let mut hub = start_hub_with("pg-delivery", &sim, 1, &[], &[], &store).await;
    assert!(!hub.db().exists(), "nothing went to an embedded file");
    let mut east = hub.client(EAST).await;
    for i in 1..=ITEMS {
        assert_eq!(
            receive(&mut east, &format!("pd-{i}"), &format!("SKU-{i}"), 3).await,
            200
        );
    }
    hub.kill();
    hub.restart().await;
    let mut east = hub.client(EAST).await;
    for i in 1..=ITEMS {
        assert_eq!(
            receive(&mut east, &format!("pd2-{i}"), &format!("SKU-{i}"), 2).await,
            200
        );
    }
    // Everything but the refused item converges; the refused one is parked in PostgreSQL.
    let mut admin = hub.client(ADMIN).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, v) = get(&mut admin, "/v1/dlq?endpoint=shopify").await;
        let parked = v["dead_letters"].as_array().unwrap().len();
        let others = (1..=ITEMS)
            .filter(|i| *i != 9)
            .all(|i| sim.quantity(&i.to_string()) == Some(5));
        if parked >= 1 && others {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "dlq {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sim.faults().clear();
    let (s, v) = post(
        &mut admin,
        "/v1/dlq/retry",
        &json!({"key": "SKU-9", "note": "fixed"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    converged(&hub, &sim, std::time::Duration::from_secs(30)).await;
    assert_histories_rise(&sim);
    assert_eq!(sim.stats().rate_limit_violations, 0);
    hub.kill();
    drop_schema(schema).await;
}

/// Reconciliation and item history on PostgreSQL: the journal, the runs and the corrections
/// live there, and a correction survives a kill.
#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_and_history_run_on_postgres() {
    let schema = format!("cd_e2e_{}", fastrand::u64(..));
    let config = format!(
        "[store]\nkind = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\n\n\
         [[reconciliation.sources]]\nname = \"wms\"\nkind = \"csv\"\nstale_after_s = 86400000\n\
         [reconciliation.sources.actions]\nquantity_variance = \"auto_correct\"\n",
        pg_url()
    );
    let mut hub = Hub::start("pg-recon", &config).await;
    let mut east = hub.client(EAST).await;
    let at = |id: &str, ty: &str, time: &str, data: serde_json::Value| {
        json!({"specversion": "1.0", "id": id, "source": "wms-east", "type": ty,
               "time": time, "data": data})
    };
    for ev in [
        at(
            "r1",
            "inventory.received.v1",
            "2026-11-23T09:00:00Z",
            json!({"item": "SKU-1", "location": "DC-EAST", "qty": 40}),
        ),
        at(
            "r2",
            "inventory.received.v1",
            "2026-11-23T09:00:00Z",
            json!({"item": "SKU-2", "location": "DC-EAST", "qty": 8}),
        ),
        // After the snapshot's 09:30: backed out, not drift.
        at(
            "r3",
            "inventory.received.v1",
            "2026-11-23T09:45:00Z",
            json!({"item": "SKU-1", "location": "DC-EAST", "qty": 5}),
        ),
    ] {
        let (s, v) = post(&mut east, "/v1/events", &ev).await;
        assert_eq!(s, 200, "{v}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let before_correction = crossdock_model::Timestamp::now().to_rfc3339();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut admin = hub.client(ADMIN).await;
    let (s, run) = post_raw(
        &mut admin,
        "/v1/reconciliations?source=wms&as_of=2026-11-23T09:30:00Z",
        "text/csv",
        b"item,location,qty\nSKU-1,DC-EAST,40\nSKU-2,DC-EAST,6\n".to_vec(),
    )
    .await;
    assert_eq!(s, 201, "{run}");
    assert_eq!(
        run["counts"],
        json!({"match": 1, "quantity_variance": 1}),
        "{run}"
    );
    assert_eq!(run["variances"][0]["item"], "SKU-2");
    assert_eq!(run["variances"][0]["action"], "corrected");

    hub.kill();
    hub.restart().await;
    let mut q = hub.client(QUERY).await;
    assert_eq!(
        positions(&mut q, "SKU-2").await[0].1,
        6,
        "corrected, durably"
    );
    let id = run["id"].as_str().unwrap();
    let (s, stored) = get(&mut q, &format!("/v1/reconciliations/{id}")).await;
    assert_eq!(s, 200, "{stored}");
    assert_eq!(stored["counts"], run["counts"]);
    // History before the correction still shows what the hub had then.
    let (s, h) = get(
        &mut q,
        &format!("/v1/items/SKU-2/history?at={before_correction}"),
    )
    .await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["positions"][0]["on_hand"], 8, "{h}");
    hub.kill();
    drop_schema(schema).await;
}
