//! What the engine's tests share: fresh stores of each kind and a way to call them.

#![allow(dead_code)]

use crossdock_engine::StoreSpec;

/// The stores are synchronous (the PostgreSQL client runs its own runtime): call them from a
/// plain thread, as the engine does.
pub fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("blocking call"))
}

pub fn pg_url() -> String {
    std::env::var("CROSSDOCK_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into())
}

/// A fresh store of each kind; `cleanup` drops it.
pub struct Fresh {
    pub spec: StoreSpec,
    pub cleanup: Box<dyn Fn() + Send + Sync>,
}

/// A SQLite file in a new temporary folder.
pub fn sqlite(name: &str) -> Fresh {
    let dir = std::env::temp_dir().join(format!(
        "crossdock-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.clone();
    Fresh {
        spec: StoreSpec::Sqlite(dir.join("x.db")),
        cleanup: Box::new(move || drop(std::fs::remove_dir_all(&d))),
    }
}

/// A new schema in the local PostgreSQL.
pub fn postgres(name: &str) -> Fresh {
    let schema = format!("cd_{name}_{}", fastrand::u64(..));
    let s = schema.clone();
    Fresh {
        spec: StoreSpec::Postgres {
            url: pg_url(),
            schema: Some(schema),
        },
        cleanup: Box::new(move || {
            let mut c =
                postgres::Client::connect(&pg_url(), postgres::NoTls).expect("postgres is running");
            c.batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
                .unwrap();
        }),
    }
}

/// A policy with `locations`, one channel `web` over all of them, and one source `wms` that owns
/// every inventory type everywhere.
pub fn policy(locations: &[&str]) -> std::sync::Arc<crossdock_ledger::Policy> {
    std::sync::Arc::new(plain_policy(locations, false))
}

/// [`policy`] with source `wms` resequenced, giving up a gap after `gap_wait_s`.
pub fn sequenced_policy(
    locations: &[&str],
    gap_wait_s: u64,
) -> std::sync::Arc<crossdock_ledger::Policy> {
    let mut p = plain_policy(locations, true);
    p.gap_wait_s = gap_wait_s;
    std::sync::Arc::new(p)
}

fn plain_policy(locations: &[&str], sequenced: bool) -> crossdock_ledger::Policy {
    use crossdock_ledger::{ChannelPolicy, LocIdx, OwnershipRule, Policy, SourcePolicy};
    use crossdock_model::{ChannelId, LocationId, SourceId};
    let sources = std::collections::HashMap::from([(
        SourceId::new("wms").unwrap(),
        SourcePolicy {
            rules: vec![OwnershipRule {
                types: vec!["inventory.*".into()],
                locations: None,
            }],
            sequenced,
        },
    )]);
    Policy::new(
        None,
        locations
            .iter()
            .map(|l| LocationId::new(l).unwrap())
            .collect(),
        vec![ChannelPolicy::plain(
            ChannelId::new("web").unwrap(),
            (0..locations.len() as u16).map(LocIdx).collect(),
        )],
        sources,
    )
}

/// 2026-11-01T00:00:00Z: event times are seconds after it (inside the hub's time bounds).
pub const BASE_US: i64 = 1_793_491_200_000_000;

/// Event `n` of source `wms`, at second `n` after [`BASE_US`], so a resend is the same event.
pub fn wms_event(n: u64, data: crossdock_model::EventData) -> crossdock_model::Event {
    use crossdock_model::{Event, SourceId, Timestamp};
    Event {
        id: format!("e{n}"),
        source: SourceId::new("wms").unwrap(),
        time: Timestamp::from_micros(BASE_US + n as i64 * 1_000_000),
        sequence: None,
        correlation_id: format!("c{n}"),
        causation_id: None,
        data,
        received_at: Timestamp::now(),
    }
}

/// The hub command capturing order `order` of channel `web`, shipped to NY, no credit check,
/// nothing backordered.
pub fn capture_order(
    order: &str,
    lines: Vec<crossdock_model::workflow::OrderLine>,
    correlation_id: &str,
) -> crossdock_model::Event {
    use crossdock_model::workflow::{Credit, CreditDecision, OrderCaptured, ShipTo};
    use crossdock_model::{ChannelId, EventData, Timestamp};
    crossdock_ledger::state::hub_command(
        format!("order:{order}:capture"),
        Timestamp::now(),
        correlation_id.into(),
        EventData::OrderCaptured(OrderCaptured {
            order: order.into(),
            channel: ChannelId::new("web").unwrap(),
            lines,
            ship_to: ShipTo {
                region: "NY".into(),
                ..ShipTo::default()
            },
            amount_minor: 0,
            credit: Credit {
                decision: CreditDecision::NotRequired,
                note: "test".into(),
            },
            sold: false,
            backorder: false,
            origin: "api".into(),
        }),
    )
}

/// The hub command cancelling order `order`.
pub fn cancel_order(order: &str, correlation_id: &str) -> crossdock_model::Event {
    use crossdock_model::workflow::OrderCancelled;
    use crossdock_model::{EventData, Timestamp};
    crossdock_ledger::state::hub_command(
        format!("order:{order}:cancel"),
        Timestamp::now(),
        correlation_id.into(),
        EventData::OrderCancelled(OrderCancelled {
            order: order.into(),
            reason: "test".into(),
        }),
    )
}
