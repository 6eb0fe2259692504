//! The HTTP face of Crossdock: config loading, auth, the `/v1` API, problem+json errors.

// `Problem` (about 130 bytes) is the error of every handler and is built only on the error path,
// once per request; boxing it would add an allocation and noise for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod api;
pub mod auth;
pub mod canary;
pub mod config;
pub mod dashboard;
pub mod delivery_api;
pub mod edi;
pub mod edi_api;
pub mod edi_postings;
pub mod endpoints;
pub mod exception_policy;
pub mod exceptions_api;
pub mod extract;
pub mod http_server;
pub mod master_data;
pub mod openapi;
pub mod problem;
pub mod reconcile;
pub mod reconcile_api;
pub mod replay;
pub mod telemetry;
pub mod trace_api;
pub mod webhooks;
pub mod workflow_api;
pub mod workqueue;

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
    pub partners: Arc<edi::Partners>,
    /// The exceptions work queue's store connection.
    pub exceptions: StoreThread,
    pub reconciler: Arc<reconcile::Reconciler>,
    pub telemetry: Arc<telemetry::Telemetry>,
    /// This hub's hold on its store (one hub per store until cluster mode), released when the
    /// last clone is dropped or the process dies.
    pub store_lock: Arc<crossdock_store::HubLock>,
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
    // Taken before anything else touches the store: a second hub stops here, naming the first.
    let me = crossdock_store::Holder::me(&config.listen);
    let (store, store_lock) = match &config.store {
        config::StoreChoice::Sqlite(path) => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                crossdock_store::StoreError::Config(format!(
                    "cannot create data dir {}: {e}",
                    config.data_dir.display()
                ))
            })?;
            let db = config.data_dir.join(path);
            let lock = crossdock_store::HubLock::sqlite(&db, &me)?;
            (StoreSpec::Sqlite(db), lock)
        }
        config::StoreChoice::Postgres { url, schema } => (
            StoreSpec::Postgres {
                url: url.clone(),
                schema: schema.clone(),
            },
            crossdock_store::HubLock::postgres(url, schema.as_deref(), &me)?,
        ),
    };
    let master = Arc::new(
        master_data::MasterHandle::open(
            master_data::dir(&config.data_dir),
            config.items_file.clone(),
            config.locations.clone(),
        )
        .map_err(|e| crossdock_store::StoreError::Config(format!("master data: {e}")))?,
    );
    let partner_store = StoreThread::spawn("partners-store", store.open()?);
    let exceptions = StoreThread::spawn("exceptions-store", store.open()?);
    let mut lanes: Vec<_> = config
        .endpoints
        .iter()
        .map(|e| Lane::new(e.lane.clone(), e.target.clone()))
        .collect();
    let mut channels: HashSet<String> = config
        .endpoints
        .iter()
        .filter(|e| e.feed.is_none())
        .map(|e| e.id().to_string())
        .collect();
    for p in &config.partners {
        if let (Some(channel), Some(_)) = (&p.channel, &p.isa) {
            channels.insert(channel.to_string());
            lanes.push(Lane::new(
                edi::lane_config(channel.as_str()),
                Arc::new(edi::Edi846Target {
                    spec: p.clone(),
                    master: master.clone(),
                    store: partner_store.clone(),
                }),
            ));
        }
    }
    for p in config.partners.iter().filter(|p| p.isa.is_some()) {
        let endpoint = config::workflows::partner_endpoint(&p.id);
        lanes.push(Lane::new(
            edi_postings::lane_config(&endpoint),
            Arc::new(edi_postings::EdiPostingTarget {
                spec: p.clone(),
                master: master.clone(),
                store: partner_store.clone(),
            }),
        ));
    }
    let delivery = Delivery::new(StoreThread::spawn("delivery-store", store.open()?), lanes);
    let feeds = config
        .endpoints
        .iter()
        .filter_map(|e| e.feed.clone())
        .collect();
    let sink = delivery.clone();
    let rescan = delivery.clone();
    let telemetry = telemetry::Telemetry::new(
        config.policy.sources.keys().map(|s| s.to_string()),
        &config.slos,
    );
    let observer = telemetry.clone();
    let engine_config = EngineConfig {
        store,
        partitions: config.partitions,
        partitions_fixed: config.partitions_fixed,
        queue_max: config.queue_max,
        batch_max: config.batch_max,
        outbox: OutboxHook {
            channels: Some(Arc::new(channels)),
            feeds: Arc::new(feeds),
            on_reload: Some(Arc::new(move || rescan.rescan())),
            postings: Arc::new(config.workflows.routes.clone()),
            on_committed: Some(Arc::new(move |batch, took| observer.committed(batch, took))),
            on_commit: Some(Arc::new(move |rows| {
                if let Some(o) = &observe {
                    o(rows);
                }
                sink.on_commit(rows);
            })),
        },
    };
    let engine = Engine::start(engine_config, Arc::new(config.policy.clone()))?;
    let partners = Arc::new(edi::Partners {
        engine: engine.clone(),
        store: partner_store,
        master,
        specs: config.partners.clone(),
        data_dir: config.data_dir.clone(),
    });
    let readers = config
        .endpoints
        .iter()
        .filter_map(|e| Some((e.id().to_string(), e.reader.clone()?)))
        .collect();
    let reconciler = Arc::new(reconcile::Reconciler::new(
        engine.clone(),
        delivery.clone(),
        partners.clone(),
        readers,
        config.reconciliation.clone(),
        config.data_dir.clone(),
    ));
    Ok(Hub {
        engine,
        delivery,
        partners,
        exceptions,
        reconciler,
        telemetry,
        store_lock: Arc::new(store_lock),
    })
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: Hub,
    config: Arc<Config>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    hub.delivery.start();
    let (stop_partners, stopped) = tokio::sync::watch::channel(false);
    hub.partners.start(stopped);
    hub.reconciler.start_schedules(stop_partners.subscribe());
    let readers = config
        .endpoints
        .iter()
        .filter_map(|e| Some((e.id().to_string(), e.reader.clone()?)))
        .collect();
    canary::start(
        &config.telemetry.canaries,
        hub.engine.clone(),
        &readers,
        hub.telemetry.clone(),
        stop_partners.subscribe(),
    );
    let delivery = hub.delivery.clone();
    let state = Arc::new(api::AppState {
        engine: hub.engine,
        delivery: hub.delivery,
        partners: hub.partners,
        exceptions: hub.exceptions,
        reconciler: hub.reconciler,
        telemetry: hub.telemetry,
        admission: admission::Admission::new(&config),
        connections: http_server::Connections::new(config.http.connections_max),
        config,
        dashboard: Arc::default(),
    });
    workqueue::start(state.clone(), stop_partners.subscribe());
    dashboard::start(state.clone(), stop_partners.subscribe());
    let limits = state.config.http.clone();
    let connections = state.connections.clone();
    let result =
        http_server::serve(listener, api::router(state), &limits, connections, shutdown).await;
    let _ = stop_partners.send(true);
    delivery.shutdown().await;
    result
}
