//! The HTTP face of Crossdock: config loading, auth, the `/v1` API, problem+json errors.

// `Problem` (about 130 bytes) is the error of every handler and is built only on the error path,
// once per request; boxing it would add an allocation and noise for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod auth;
pub mod config;
pub mod openapi;
pub mod problem;

use std::sync::Arc;

use crossdock_engine::{Engine, EngineConfig, StoreSpec};

pub use config::Config;

/// Opens the store and starts the engine the config describes.
pub fn start_engine(config: &Config) -> Result<Arc<Engine>, crossdock_store::StoreError> {
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
    let engine_config = EngineConfig {
        store,
        partitions: config.partitions,
        queue_max: config.queue_max,
        batch_max: config.batch_max,
    };
    Engine::start(engine_config, Arc::new(config.policy.clone()))
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    config: Arc<Config>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(api::AppState { engine, config });
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
