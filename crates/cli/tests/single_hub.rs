//! One hub per store until cluster mode: a second hub on the same SQLite file or PostgreSQL
//! schema refuses to start and names the one that holds it; a killed hub releases the store.

mod common;

use common::*;
use serde_json::json;

/// The second hub exits with a message naming the first's pid and address; the first keeps
/// serving; after a SIGKILL of the first, a new hub takes the store and has its data.
async fn refused_then_released(mut hub: Hub, what: &str) {
    let mut east = hub.client(EAST).await;
    let (s, v) = post(
        &mut east,
        "/v1/events",
        &event(
            "one-1",
            "wms-east",
            "inventory.received.v1",
            json!({"item": "SKU-1", "location": "DC-EAST", "qty": 3}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let (status, stderr) = hub.second_hub();
    assert!(!status.success(), "{what}: the second hub must not start");
    for part in [
        format!("pid {}", hub.pid()),
        hub.addr.clone(),
        "held".to_string(),
    ] {
        assert!(
            stderr.contains(&part),
            "{what}: {part:?} missing from the refusal: {stderr}"
        );
    }
    let mut q = hub.client(QUERY).await;
    assert_eq!(
        positions(&mut q, "SKU-1").await[0].1,
        3,
        "{what}: the first hub still serves"
    );

    hub.kill();
    hub.restart().await;
    let mut q = hub.client(QUERY).await;
    assert_eq!(
        positions(&mut q, "SKU-1").await[0].1,
        3,
        "{what}: the store is free once its holder died"
    );
    let (status, stderr) = hub.second_hub();
    assert!(!status.success(), "{what}: held again by the new hub");
    assert!(stderr.contains(&format!("pid {}", hub.pid())), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_hub_on_the_same_sqlite_file_is_refused() {
    let hub = Hub::start("one-sqlite", "").await;
    assert!(
        hub.dir.join("data/crossdock.db.lock").is_file(),
        "the lock file sits beside the database"
    );
    refused_then_released(hub, "sqlite").await;
}

fn pg_url() -> String {
    std::env::var("CROSSDOCK_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_hub_on_the_same_postgres_schema_is_refused() {
    let schema = format!("cd_one_{}", fastrand::u64(..));
    let store = format!(
        "[store]\nkind = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\n",
        pg_url()
    );
    let hub = Hub::start("one-pg", &store).await;
    refused_then_released(hub, "postgres").await;
    tokio::task::spawn_blocking(move || {
        let mut c =
            postgres::Client::connect(&pg_url(), postgres::NoTls).expect("postgres is running");
        c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
    })
    .await
    .unwrap();
}
