//! The committer of one partition: commits the batches its writer applied, in order, then
//! publishes the view, arms timers and answers callers. Running it beside the writer lets the next
//! batch be applied while this one is written and fsynced.
//!
//! A failed commit poisons the partition: every batch already applied on top of it fails too, until
//! the writer has drained the pipeline (a barrier) and reloaded its state from the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crossdock_ledger::ItemState;
use crossdock_ledger::state::TimerSet;
use crossdock_model::ItemId;
use crossdock_store::{CommitBatch, Store};
use tokio::sync::oneshot;
use tracing::{debug, error};

use crate::timers::TimerHandle;
use crate::{EngineError, EventReply, OutboxSink, ReservationReply, View, WorkflowReply};

pub(crate) enum Pending {
    Event(oneshot::Sender<Result<EventReply, EngineError>>, EventReply),
    Reservation(
        oneshot::Sender<Result<ReservationReply, EngineError>>,
        ReservationReply,
    ),
    Unit(oneshot::Sender<Result<(), EngineError>>),
    Workflow(
        oneshot::Sender<Result<WorkflowReply, EngineError>>,
        WorkflowReply,
    ),
    None,
}

impl Pending {
    fn answer(self, err: Option<&EngineError>) {
        match (self, err) {
            (Pending::Event(tx, r), None) => drop(tx.send(Ok(r))),
            (Pending::Reservation(tx, r), None) => drop(tx.send(Ok(r))),
            (Pending::Unit(tx), None) => drop(tx.send(Ok(()))),
            (Pending::Workflow(tx, r), None) => drop(tx.send(Ok(r))),
            (Pending::Workflow(tx, _), Some(e)) => drop(tx.send(Err(e.clone()))),
            (Pending::Event(tx, _), Some(e)) => drop(tx.send(Err(e.clone()))),
            (Pending::Reservation(tx, _), Some(e)) => drop(tx.send(Err(e.clone()))),
            (Pending::Unit(tx), Some(e)) => drop(tx.send(Err(e.clone()))),
            (Pending::None, _) => {}
        }
    }
}

/// One applied batch on its way to the store.
pub(crate) struct Work {
    pub batch: Arc<CommitBatch>,
    pub pending: Vec<Pending>,
    /// The touched items as applied, to publish once durable.
    pub publish: Vec<(ItemId, Arc<ItemState>)>,
    pub seq: u64,
    pub timers_set: Vec<TimerSet>,
    pub timers_done: Vec<String>,
    pub applied_at: Instant,
    pub started_at: Instant,
    /// Parts of cross-partition reservations to settle as a timer decided, once durable.
    pub part_commands: Vec<crossdock_ledger::cross::PartCommand>,
}

pub(crate) enum ToCommitter {
    Work(Box<Work>),
    /// Answered once every earlier message is handled.
    Barrier(Sender<()>),
}

pub(crate) struct Committer {
    pub partition: u32,
    pub store: Box<dyn Store>,
    pub view: Arc<RwLock<View>>,
    pub timers: TimerHandle,
    pub poisoned: Arc<AtomicBool>,
    pub on_commit: Option<OutboxSink>,
    pub on_committed: Option<crate::CommitObserver>,
    pub parts: crate::cross::PartSink,
}

impl Committer {
    pub fn run(mut self, rx: Receiver<ToCommitter>) {
        for msg in rx {
            match msg {
                ToCommitter::Barrier(done) => drop(done.send(())),
                ToCommitter::Work(work) => self.commit(*work),
            }
        }
    }

    fn commit(&mut self, work: Work) {
        if self.poisoned.load(Ordering::Acquire) {
            let err = EngineError::Store("an earlier batch failed to commit; retry".into());
            work.pending.into_iter().for_each(|p| p.answer(Some(&err)));
            return;
        }
        let started = Instant::now();
        let _span = tracing::info_span!(
            "commit",
            partition = self.partition,
            events = work.batch.events.len(),
            outbox = work.batch.outbox.len(),
        )
        .entered();
        if !work.batch.is_empty()
            && let Err(e) = self.store.commit(&work.batch)
        {
            error!(partition = self.partition, error = %e, "commit failed; failing the batch and reloading");
            self.poisoned.store(true, Ordering::Release);
            let err = EngineError::Store(e.to_string());
            work.pending.into_iter().for_each(|p| p.answer(Some(&err)));
            return;
        }
        debug!(
            partition = self.partition,
            commands = work.pending.len(),
            events = work.batch.events.len(),
            positions = work.batch.positions.len(),
            outbox = work.batch.outbox.len(),
            apply_us = (work.applied_at - work.started_at).as_micros() as u64,
            commit_us = work.applied_at.elapsed().as_micros() as u64,
            "batch committed"
        );
        {
            let mut view = self.view.write().expect("view lock");
            for (id, state) in work.publish {
                view.items.insert(id, state);
            }
            view.seq = work.seq;
        }
        for t in &work.timers_done {
            self.timers.cancel(t);
        }
        for t in work.timers_set {
            if !work.timers_done.contains(&t.id) {
                self.timers.set(t.id, t.due_at, t.command);
            }
        }
        if let Some(sink) = &self.on_commit
            && !work.batch.outbox.is_empty()
        {
            sink(&work.batch.outbox);
        }
        if let Some(observe) = &self.on_committed
            && !work.batch.is_empty()
        {
            observe(&work.batch, started.elapsed());
        }
        for cmd in work.part_commands {
            // The driver lives as long as the engine; gone, the next start settles the part.
            let _ = self.parts.send(cmd);
        }
        work.pending.into_iter().for_each(|p| p.answer(None));
    }
}
