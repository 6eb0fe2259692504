//! A committer commits the batches writers applied, each partition's in order, then publishes
//! their views, arms timers and answers callers. Running it beside the writers lets the next
//! batch be applied while this one is written and fsynced.
//!
//! On PostgreSQL each partition has its own committer and connection, so partitions commit
//! concurrently. On SQLite, where every transaction takes the one write lock, one committer
//! serves every partition and commits the batches waiting from all of them in one transaction
//! (one fsync), instead of partitions queueing for the lock.
//!
//! A failed commit poisons the partitions in it: every batch already applied on top of it fails
//! too, until each writer has drained the pipeline (a barrier) and reloaded its state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crossdock_ledger::ItemState;
use crossdock_ledger::state::TimerSet;
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
    pub publish: Vec<Arc<ItemState>>,
    pub seq: u64,
    pub timers_set: Vec<TimerSet>,
    pub timers_done: Vec<String>,
    pub applied_at: Instant,
    pub started_at: Instant,
    /// Parts of cross-partition reservations to settle as a timer decided, once durable.
    pub part_commands: Vec<crossdock_ledger::cross::PartCommand>,
    /// Events of resequenced sources this batch put in line, for the partitions of their items.
    pub forwards: Vec<crate::sequence::Forward>,
    /// A wide input's rows for the partitions that lent it items, committed with `batch`.
    pub extras: Vec<CommitBatch>,
    /// The lenders to give their items back to once committed.
    pub settles: Vec<crate::wide::Settle>,
    /// The lenders' poison flags: a wide input built on a batch that failed fails too.
    pub lenders_poisoned: Vec<Arc<AtomicBool>>,
    /// Items whose stock changed, for orders of other partitions waiting for them.
    pub fills: Vec<crate::wide::Fill>,
    pub partition: u32,
    /// Told once the batch is committed (or failed), so the writer bounds what is in flight.
    pub done: Option<Sender<()>>,
}

/// What a committer needs of one partition.
#[derive(Clone)]
pub(crate) struct Handles {
    pub view: Arc<RwLock<View>>,
    pub poisoned: Arc<AtomicBool>,
}

/// Batches committed together at most (from as many writers as have one waiting).
const GROUP_MAX: usize = 64;

pub(crate) enum ToCommitter {
    Work(Box<Work>),
    /// Answered once every earlier message is handled.
    Barrier(Sender<()>),
}

pub(crate) struct Committer {
    pub store: Box<dyn Store>,
    /// The partitions it commits for, by partition number.
    pub partitions: Vec<Option<Handles>>,
    pub timers: TimerHandle,
    pub on_commit: Option<OutboxSink>,
    pub on_committed: Option<crate::CommitObserver>,
    pub parts: crate::cross::PartSink,
    pub forwards: crate::sequence::ForwardSink,
    pub fills: crate::wide::FillSink,
}

impl Committer {
    pub fn run(mut self, rx: Receiver<ToCommitter>) {
        let mut ready: Vec<Work> = Vec::new();
        while let Ok(msg) = rx.recv() {
            let mut barrier = match msg {
                ToCommitter::Work(work) => {
                    ready.push(*work);
                    None
                }
                ToCommitter::Barrier(done) => Some(done),
            };
            // Whatever else is waiting goes in the same transaction, up to a barrier.
            while barrier.is_none() && ready.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(ToCommitter::Work(work)) => ready.push(*work),
                    Ok(ToCommitter::Barrier(done)) => barrier = Some(done),
                    Err(_) => break,
                }
            }
            if !ready.is_empty() {
                self.commit(std::mem::take(&mut ready));
            }
            if let Some(done) = barrier {
                let _ = done.send(());
            }
        }
    }

    fn handles(&self, partition: u32) -> &Handles {
        self.partitions[partition as usize]
            .as_ref()
            .expect("work comes only from the committer's partitions")
    }

    fn commit(&mut self, works: Vec<Work>) {
        // A wide input built on a lender's batch that failed fails too, and its home, which
        // applied it, starts again from the store like the lender.
        for w in &works {
            if w.lenders_poisoned.iter().any(|p| p.load(Ordering::Acquire)) {
                self.handles(w.partition)
                    .poisoned
                    .store(true, Ordering::Release);
            }
        }
        let (live, dead): (Vec<Work>, Vec<Work>) = works
            .into_iter()
            .partition(|w| !self.handles(w.partition).poisoned.load(Ordering::Acquire));
        for work in dead {
            let err = EngineError::Store("an earlier batch failed to commit; retry".into());
            finish(work, Some(&err));
        }
        if live.is_empty() {
            return;
        }
        let started = Instant::now();
        let _span = tracing::info_span!(
            "commit",
            partition = live[0].partition,
            batches = live.len(),
            events = live.iter().map(|w| w.batch.events.len()).sum::<usize>(),
            outbox = live.iter().map(|w| w.batch.outbox.len()).sum::<usize>(),
        )
        .entered();
        let batches: Vec<&CommitBatch> = live
            .iter()
            .flat_map(|w| std::iter::once(&*w.batch).chain(w.extras.iter()))
            .filter(|b| !b.is_empty())
            .collect();
        let result = match batches.as_slice() {
            [] => Ok(()),
            [one] => self.store.commit(one),
            many => self.store.commit_all(many),
        };
        if let Err(e) = result {
            error!(error = %e, batches = live.len(), "commit failed; failing the batches and reloading");
            let err = EngineError::Store(e.to_string());
            for work in live {
                self.handles(work.partition)
                    .poisoned
                    .store(true, Ordering::Release);
                finish(work, Some(&err));
            }
            return;
        }
        let elapsed = started.elapsed();
        for work in live {
            debug!(
                partition = work.partition,
                commands = work.pending.len(),
                events = work.batch.events.len(),
                positions = work.batch.positions.len(),
                outbox = work.batch.outbox.len(),
                apply_us = (work.applied_at - work.started_at).as_micros() as u64,
                commit_us = work.applied_at.elapsed().as_micros() as u64,
                "batch committed"
            );
            self.published(work, elapsed);
        }
    }

    /// After the commit: the view, timers, outbox hand-over, observers, parts, then the callers.
    fn published(&self, mut work: Work, elapsed: std::time::Duration) {
        {
            let mut view = self
                .handles(work.partition)
                .view
                .write()
                .expect("view lock");
            for state in std::mem::take(&mut work.publish) {
                view.items.insert(state);
            }
            view.seq = work.seq;
        }
        for t in &work.timers_done {
            self.timers.cancel(t);
        }
        for t in std::mem::take(&mut work.timers_set) {
            if !work.timers_done.contains(&t.id) {
                self.timers.set(t.id, t.due_at, t.command);
            }
        }
        // A wide input's lenders' rows (their items' availability) go out with the home's; the
        // input counts once, in its home.
        for batch in std::iter::once(&*work.batch).chain(work.extras.iter()) {
            if let Some(sink) = &self.on_commit
                && !batch.outbox.is_empty()
            {
                sink(&batch.outbox);
            }
        }
        if let Some(observe) = &self.on_committed
            && !work.batch.is_empty()
        {
            observe(&work.batch, elapsed);
        }
        for cmd in std::mem::take(&mut work.part_commands) {
            // The driver lives as long as the engine; gone, the next start settles the part.
            let _ = self.parts.send(cmd);
        }
        for f in std::mem::take(&mut work.forwards) {
            // Gone with the engine: the row stays `forwarding` and the next start sends it.
            let _ = self.forwards.send(f);
        }
        for s in std::mem::take(&mut work.settles) {
            s.committed();
        }
        let fills = std::mem::take(&mut work.fills);
        if !fills.is_empty() {
            let _ = self.fills.send(fills);
        }
        finish(work, None);
    }
}

/// Answers a batch's callers and tells its writer it is done.
fn finish(work: Work, err: Option<&EngineError>) {
    work.pending.into_iter().for_each(|p| p.answer(err));
    // Left here only when the batch failed: lenders take their items back unchanged, and the
    // forwards' callers get its error.
    for s in work.settles {
        s.failed();
    }
    for f in work.forwards {
        if let (Some(tx), Some(e)) = (f.reply, err) {
            let _ = tx.send(Err(e.clone()));
        }
    }
    if let Some(done) = work.done {
        let _ = done.send(());
    }
}
