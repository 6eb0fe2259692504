//! The HTTP face of Crossdock: config loading, auth, the `/v1` API, problem+json errors.

// `Problem` (about 130 bytes) is the error of every handler and is built only on the error path,
// once per request; boxing it would add an allocation and noise for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod auth;
pub mod config;
pub mod delivery_api;
pub mod endpoints;
pub mod openapi;
pub mod problem;
pub mod webhooks;

use std::collections::HashSet;
use std::sync::Arc;

use crossdock_delivery::{Delivery, Lane};
use crossdock_engine::{Engine, EngineConfig, OutboxHook, StoreSpec};
use crossdock_store::thread::StoreThread;

pub use config::Config;

/// A running hub: the engine and the delivery lanes it feeds.
#[derive(Clone)]
pub struct Hub {
    pub engine: Arc<Engine>,
    pub delivery: Arc<Delivery>,
}

/// Opens the store and starts the engine the config describes, with a delivery lane per
/// configured endpoint (the lanes start working in [`serve`]).
pub fn start(config: &Config) -> Result<Hub, crossdock_store::StoreError> {
    start_observed(config, None)
}

/// [`start`], with `observe` called on each committed batch's outbox rows before delivery
/// takes them (benchmarks time commits with it).
pub fn start_observed(
    config: &Config,
    observe: Option<crossdock_engine::OutboxSink>,
) -> Result<Hub, crossdock_store::StoreError> {
    let store = match &config.store {
        config::StoreChoice::Sqlite(path) => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                crossdock_store::StoreError::Config(format!(
                    "cannot create data dir {}: {e}",
                    config.data_dir.display()
                ))
            })?;
            StoreSpec::Sqlite(config.data_dir.join(path))
        }
        config::StoreChoice::Postgres { url, schema } => StoreSpec::Postgres {
            url: url.clone(),
            schema: schema.clone(),
        },
    };
    let lanes = config
        .endpoints
        .iter()
        .map(|e| Lane::new(e.lane.clone(), e.target.clone()))
        .collect();
    let delivery = Delivery::new(StoreThread::spawn("delivery-store", store.open()?), lanes);
    let channels: HashSet<String> = config
        .endpoints
        .iter()
        .filter(|e| e.feed.is_none())
        .map(|e| e.id().to_string())
        .collect();
    let feeds = config
        .endpoints
        .iter()
        .filter_map(|e| e.feed.clone())
        .collect();
    let sink = delivery.clone();
    let rescan = delivery.clone();
    let engine_config = EngineConfig {
        store,
        partitions: config.partitions,
        queue_max: config.queue_max,
        batch_max: config.batch_max,
        outbox: OutboxHook {
            channels: Some(Arc::new(channels)),
            feeds: Arc::new(feeds),
            on_reload: Some(Arc::new(move || rescan.rescan())),
            on_commit: Some(Arc::new(move |rows| {
                if let Some(o) = &observe {
                    o(rows);
                }
                sink.on_commit(rows);
            })),
        },
    };
    let engine = Engine::start(engine_config, Arc::new(config.policy.clone()))?;
    Ok(Hub { engine, delivery })
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: Hub,
    config: Arc<Config>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    hub.delivery.start();
    let delivery = hub.delivery.clone();
    let state = Arc::new(api::AppState {
        engine: hub.engine,
        delivery: hub.delivery,
        config,
    });
    let result = axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    delivery.shutdown().await;
    result
}
