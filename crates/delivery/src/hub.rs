//! All lanes of a hub: started together, fed by the committer, and the dead-letter operations
//! of the API (which must tell lanes what came back or was let go).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crossdock_model::Timestamp;
use crossdock_store::thread::StoreThread;
use crossdock_store::{
    AuditRow, DeadLetter, DeadLetterAction, DeadLetterFilter, OutboxKind, OutboxRow, StoreError,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lane::{Lane, LaneStatus};

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("delivery has stopped")]
    Stopped,
}

impl From<crossdock_store::thread::Stopped> for DeliveryError {
    fn from(_: crossdock_store::thread::Stopped) -> Self {
        DeliveryError::Stopped
    }
}

/// An endpoint's lane status with its dead-letter count.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointStatus {
    #[serde(flatten)]
    pub lane: LaneStatus,
    pub dead_letters: u64,
}

pub struct Delivery {
    lanes: HashMap<String, Arc<Lane>>,
    store: StoreThread,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Delivery {
    pub fn new(store: StoreThread, lanes: Vec<Arc<Lane>>) -> Arc<Delivery> {
        let (stop, _) = watch::channel(false);
        Arc::new(Delivery {
            lanes: lanes
                .into_iter()
                .map(|l| (l.endpoint().to_string(), l))
                .collect(),
            store,
            stop,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Endpoints with a lane, sorted.
    pub fn endpoints(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lanes.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn lane(&self, endpoint: &str) -> Option<&Arc<Lane>> {
        self.lanes.get(endpoint)
    }

    /// Starts every lane on the current runtime.
    pub fn start(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for lane in self.lanes.values() {
            tasks.push(tokio::spawn(
                lane.clone().run(self.store.clone(), self.stop.subscribe()),
            ));
        }
    }

    /// Feeds committed outbox rows to their lanes (called on a committer thread).
    pub fn on_commit(&self, rows: &[OutboxRow]) {
        let mut by_lane: HashMap<&str, Vec<OutboxRow>> = HashMap::new();
        for r in rows {
            if self.lanes.contains_key(r.endpoint.as_str()) {
                by_lane
                    .entry(r.endpoint.as_str())
                    .or_default()
                    .push(r.clone());
            }
        }
        for (endpoint, rows) in by_lane {
            self.lanes[endpoint].push(rows);
        }
    }

    /// Has every lane read its backlog from the store again (after the engine reloaded a
    /// partition, rows may be there that were never handed over).
    pub fn rescan(&self) {
        for lane in self.lanes.values() {
            lane.request_rescan();
        }
    }

    /// Stops the lanes after their current call.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    pub async fn status(&self) -> Result<Vec<EndpointStatus>, DeliveryError> {
        let counts: HashMap<String, u64> = self
            .store
            .call(|s| s.dead_letter_counts())
            .await??
            .into_iter()
            .collect();
        Ok(self
            .endpoints()
            .into_iter()
            .map(|e| EndpointStatus {
                dead_letters: counts.get(&e).copied().unwrap_or(0),
                lane: self.lanes[&e].status(),
            })
            .collect())
    }

    pub async fn dead_letters(
        &self,
        filter: DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, DeliveryError> {
        Ok(self.store.call(move |s| s.dead_letters(&filter)).await??)
    }

    /// Retries or discards parked messages, audited with `actor` and `note`; lanes take retried
    /// messages back and let go of ordered keys the parked messages held.
    pub async fn act(
        &self,
        filter: DeadLetterFilter,
        action: DeadLetterAction,
        actor: String,
        note: String,
    ) -> Result<Vec<DeadLetter>, DeliveryError> {
        let at = Timestamp::now().as_micros();
        let letters = self
            .store
            .call(move |s| s.act_on_dead_letters(&filter, action, &actor, &note, at))
            .await??;
        let mut by_lane: HashMap<&str, (Vec<OutboxRow>, Vec<String>)> = HashMap::new();
        for l in &letters {
            let Some(lane) = self.lanes.get(l.row.endpoint.as_str()) else {
                continue;
            };
            let slot = by_lane.entry(lane.endpoint()).or_default();
            if action == DeadLetterAction::Retry {
                slot.0.push(l.row.clone());
            }
            if l.row.kind == OutboxKind::Ordered {
                slot.1.push(l.row.key.clone());
            }
        }
        for (endpoint, (rows, keys)) in by_lane {
            let lane = &self.lanes[endpoint];
            lane.push(rows);
            lane.release(&keys);
        }
        Ok(letters)
    }

    /// The answer given to an inbound webhook already handled, if any.
    pub async fn webhook_receipt(
        &self,
        channel: String,
        id: String,
    ) -> Result<Option<String>, DeliveryError> {
        Ok(self
            .store
            .call(move |s| s.webhook_receipt(&channel, &id))
            .await??)
    }

    pub async fn record_webhook(
        &self,
        channel: String,
        id: String,
        topic: String,
        outcome: String,
    ) -> Result<(), DeliveryError> {
        let at = Timestamp::now().as_micros();
        Ok(self
            .store
            .call(move |s| s.record_webhook(&channel, &id, &topic, &outcome, at))
            .await??)
    }

    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditRow>, DeliveryError> {
        Ok(self.store.call(move |s| s.audit_log(limit)).await??)
    }
}
