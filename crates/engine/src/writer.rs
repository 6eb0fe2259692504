//! The writer of one partition: drain the queue, apply, group-commit, answer, publish.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, RwLock, Weak};
use std::time::Instant;

use crossdock_ledger::ItemState;
use crossdock_ledger::reservation::request_hash;
use crossdock_ledger::state::{channel_name, expiry_timer};
use crossdock_ledger::{Effects, Ledger, Outcome, Policy, Rejection, ResStatus};
use crossdock_model::event::ReservationRequested;
use crossdock_model::{Envelope, Event, ItemId};
use crossdock_model::{EventData, ExceptionKind, ExceptionRecord, ExceptionStatus, Timestamp};
use crossdock_store::{
    AtsRow, ChangeRow, CommitBatch, EventRow, EventStatus, ExceptionStatusChange, OutboxKind,
    OutboxRow, SourceSeqRow, Store, StoreError, TimerRow,
};
use tracing::{error, warn};

use crate::committer::{Pending, ToCommitter, Work};

use crate::persist::{
    event_row, item_rows, load_ledger, reservation_from_row, reservation_row, step_row,
    workflow_row,
};
use crate::timers::TimerHandle;
use crate::{
    Command, EventReply, OutboxHook, Queued, ReservationReply, Traced, View, WorkflowReply,
};
use crossdock_ledger::workflow::{creation_hash, workflow_key};

pub(crate) struct Writer {
    partition: u32,
    store: Box<dyn Store>,
    policy: Arc<Policy>,
    ledger: Ledger,
    /// Fingerprints of every logged `(source, id)`; a hit is confirmed against the store.
    keys: Arc<crate::keys::Keys>,
    view: Arc<RwLock<View>>,
    batch_max: usize,
    /// Batches handed to the committer that may not be durable yet, newest last: what they
    /// logged and which reservations they settled, so repeats are recognised before the store has them.
    recent: VecDeque<Recent>,
    poisoned: Arc<AtomicBool>,
    outbox: OutboxHook,
    /// For each posting of the batch being applied (`Effects::postings`, by index), the ledger
    /// sequence of the input that made it. A delivery lane keys ordered messages by
    /// (endpoint, key, ledger sequence): two postings of one key made by two inputs of one batch
    /// (the backorder fills of two receipts, say) must not share a sequence, or a receiver
    /// deduplicating on the idempotency key takes only the first, and its ack deletes both.
    posting_seqs: Vec<u64>,
    /// Where part commands of what timers decided go once committed (the cross driver).
    parts: crate::cross::PartSink,
    /// Events of resequenced sources this partition put in line before the last stop and whose
    /// copies have not answered (`forwarding` rows), to forward again at start.
    forwarding: Vec<(u64, Event)>,
    /// How many partitions the engine runs (a wide input's rows go to each item's own).
    partitions: u32,
    /// Items orders of other partitions wait for, shared by the writers ([`crate::wide`]).
    backordered: crate::wide::Backordered,
    /// Every partition commits through one committer, in the order the writers hand it batches
    /// (SQLite): a lender need not wait for its batches to commit before lending.
    shared_committer: bool,
}

/// Most batches that can be in the pipeline behind the one being applied: one committing, one queued.
const IN_FLIGHT_MAX: usize = 2;

/// A batch handed to the committer, shared with it rather than copied. Held weakly: the committer
/// drops a batch once it is committed, and from then on the store has all of it (or the partition
/// is poisoned and reloads), so an idle writer does not keep its last batches alive.
struct Recent {
    batch: Weak<CommitBatch>,
    /// Its events by key fingerprint.
    keys: BatchKeys,
}

/// Events the batch logged so far by key fingerprint, to answer repeats inside one batch.
type BatchKeys = HashMap<u64, Vec<usize>>;

impl Writer {
    #[allow(clippy::too_many_arguments)] // what a writer is wired to at start; each is distinct
    pub fn load(
        partition: u32,
        mut store: Box<dyn Store>,
        policy: Arc<Policy>,
        view: Arc<RwLock<View>>,
        timers: TimerHandle,
        batch_max: usize,
        outbox: OutboxHook,
        parts: crate::cross::PartSink,
        partitions: u32,
        keys: Arc<crate::keys::Keys>,
    ) -> Result<Self, StoreError> {
        let (mut ledger, snapshot) = load_ledger(&policy, store.as_mut(), partition)?;
        ledger.forward_sequenced = partitions > 1;
        let forwarding = snapshot
            .held_events
            .iter()
            .filter(|row| row.status == EventStatus::Forwarding)
            .map(|row| Ok((row.seq, crate::persist::event_from_row(row)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        keys.extend(store.key_hashes(partition)?);
        for t in &snapshot.timers {
            let env: Envelope = serde_json::from_str(&t.command)
                .map_err(|e| StoreError::Corrupt(format!("timer {}: {e}", t.id)))?;
            let command =
                Event::from_envelope(&env, Timestamp::from_micros(t.due_at_us), || t.id.clone())
                    .map_err(|e| StoreError::Corrupt(format!("timer {}: {e}", t.id)))?;
            timers.set(t.id.clone(), Timestamp::from_micros(t.due_at_us), command);
        }
        // Reservation expiries are derived from the durable reservation rows, and so are the
        // deadlines of cross-partition reservations still being decided.
        for row in &snapshot.reservations {
            let r = reservation_from_row(row)?;
            let t = match r.status {
                ResStatus::Held => expiry_timer(&r),
                // Whoever was deciding it died with the last process: abort it now.
                ResStatus::Preparing => {
                    let mut t = crossdock_ledger::cross::decision_timer(&r);
                    t.due_at = t.due_at.min(Timestamp::now());
                    t
                }
                _ => continue,
            };
            timers.set(t.id, t.due_at, t.command);
        }
        // So are workflow deadlines, from the workflow rows.
        for wf in ledger.workflows() {
            if let Some(t) = crossdock_ledger::workflow::deadline_timer(wf) {
                timers.set(t.id, t.due_at, t.command);
            }
        }
        let mut writer = Writer {
            partition,
            store,
            policy,
            ledger,
            keys,
            view,
            batch_max,
            recent: VecDeque::new(),
            poisoned: Arc::new(AtomicBool::new(false)),
            outbox,
            posting_seqs: Vec::new(),
            parts,
            forwarding,
            partitions,
            backordered: Default::default(),
            shared_committer: false,
        };
        writer.publish_all();
        Ok(writer)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Says that every partition commits through one committer.
    pub fn set_shared_committer(&mut self, shared: bool) {
        self.shared_committer = shared;
    }

    /// Shares the engine's registry of items orders of other partitions wait for.
    pub fn share_backordered(&mut self, backordered: crate::wide::Backordered) {
        self.backordered = backordered;
    }

    /// Items this batch changed that orders of other partitions wait for (`all`: every item of
    /// another partition too, changed by a wide input here).
    fn fills(&self, fx: &Effects, all_foreign: bool) -> Vec<crate::wide::Fill> {
        let waiting = self.backordered.read().expect("backordered lock");
        fx.touched_items
            .iter()
            .filter(|id| {
                waiting.contains_key(*id)
                    || (all_foreign && self.partition_of_item(id) != self.partition)
            })
            .map(|id| crate::wide::Fill {
                item: id.clone(),
                from: Some(self.partition),
            })
            .collect()
    }

    /// The `forwarding` rows found at start, in log order (taken once).
    pub fn take_forwarding(&mut self) -> Vec<(u64, Event)> {
        std::mem::take(&mut self.forwarding)
    }

    fn publish_all(&mut self) {
        let mut view = self.view.write().expect("view lock");
        view.items = self.ledger.item_map().clone();
        view.seq = self.ledger.seq;
    }

    /// The committer's share of this partition: its view and poison flag.
    pub fn handles(&self) -> crate::committer::Handles {
        crate::committer::Handles {
            view: self.view.clone(),
            poisoned: self.poisoned.clone(),
        }
    }

    /// The outbox hooks and part sink a committer of this writer calls after each commit.
    pub fn hooks(&self) -> (OutboxHook, crate::cross::PartSink) {
        (self.outbox.clone(), self.parts.clone())
    }

    /// Applies batches and hands them to the committer (a thread of its own, shared with other
    /// partitions on SQLite), so the next batch is applied while this one is written.
    pub fn run(mut self, rx: Receiver<Queued>, to_committer: SyncSender<ToCommitter>) {
        self.pipeline(rx, &to_committer);
    }

    fn pipeline(&mut self, rx: Receiver<Queued>, to_committer: &SyncSender<ToCommitter>) {
        let mut cmds = Vec::with_capacity(self.batch_max);
        // Batches handed over and not yet committed: at most IN_FLIGHT_MAX when the next one is
        // applied, so `recent` holds every batch the store may not have yet.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let mut in_flight = 0usize;
        loop {
            match rx.recv() {
                Ok(c) => cmds.push(c),
                Err(_) => return,
            }
            if self.poisoned.load(Ordering::Acquire) {
                if !self.drain(to_committer, &done_rx) {
                    return;
                }
                in_flight = 0;
            }
            while cmds.len() < self.batch_max {
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            // Lending for a wide input and applying one are steps of their own: what came
            // before them is a batch, and so is what comes after.
            let mut rest = std::mem::take(&mut cmds).into_iter().peekable();
            while rest.peek().is_some() {
                let (mut work, stop) = match rest.peek().map(|c| &c.0) {
                    Some(Command::Lend { .. }) => {
                        let Some(Traced(Command::Lend { items, reply }, _)) =
                            rest.next().map(|queued| *queued)
                        else {
                            unreachable!("peeked")
                        };
                        // With one committer for every partition, what this writer handed
                        // over commits before the wide input (and should it fail, so does the
                        // wide input); otherwise it must be durable before the items are lent.
                        if !self.shared_committer || self.poisoned.load(Ordering::Acquire) {
                            if !self.drain(to_committer, &done_rx) {
                                return;
                            }
                            in_flight = 0;
                        }
                        self.lend(items, reply);
                        continue;
                    }
                    Some(Command::Wide { .. }) => {
                        let Some(Traced(cmd, span)) = rest.next().map(|queued| *queued) else {
                            unreachable!("peeked")
                        };
                        let _sender = span.enter();
                        (self.process_wide(cmd), false)
                    }
                    _ => {
                        let mut batch = Vec::new();
                        while let Some(c) = rest.next_if(|c| {
                            !matches!(c.0, Command::Lend { .. } | Command::Wide { .. })
                        }) {
                            batch.push(c);
                        }
                        let stop = batch.iter().any(|c| matches!(c.0, Command::Stop));
                        (self.process(batch), stop)
                    }
                };
                work.done = Some(done_tx.clone());
                if to_committer
                    .send(ToCommitter::Work(Box::new(work)))
                    .is_err()
                {
                    return;
                }
                if stop {
                    return;
                }
                in_flight += 1;
                while done_rx.try_recv().is_ok() {
                    in_flight -= 1;
                }
                while in_flight > IN_FLIGHT_MAX {
                    if done_rx.recv().is_err() {
                        return;
                    }
                    in_flight -= 1;
                }
            }
        }
    }

    /// Waits until everything handed to the committer is settled; after a failed commit,
    /// starts again from what the store has. False once the committer is gone.
    fn drain(&mut self, to_committer: &SyncSender<ToCommitter>, done_rx: &Receiver<()>) -> bool {
        let (done, wait) = std::sync::mpsc::channel();
        if to_committer.send(ToCommitter::Barrier(done)).is_err() || wait.recv().is_err() {
            return false;
        }
        while done_rx.try_recv().is_ok() {}
        if self.poisoned.load(Ordering::Acquire) {
            self.reload();
            self.poisoned.store(false, Ordering::Release);
        }
        self.recent.clear();
        true
    }

    /// Lends `items` to a wide input (everything applied is committed) and waits, applying
    /// nothing, until it is settled; then takes back their new state.
    fn lend(&mut self, items: Vec<ItemId>, reply: tokio::sync::oneshot::Sender<crate::wide::Loan>) {
        let (back, settled) = std::sync::mpsc::channel();
        let loan = crate::wide::Loan {
            partition: self.partition,
            seq: self.ledger.seq,
            items: items
                .iter()
                .filter_map(|id| self.ledger.item(id).map(|s| (id.clone(), s.clone())))
                .collect(),
            asked: items,
            view: self.view.clone(),
            poisoned: self.poisoned.clone(),
            back,
        };
        if reply.send(loan).is_err() {
            return;
        }
        match settled.recv() {
            Ok(crate::wide::Return::Install { items, seq }) => {
                for (_, state) in items {
                    self.ledger.lend_item(state);
                }
                self.ledger.seq = self.ledger.seq.max(seq);
            }
            Ok(crate::wide::Return::Unchanged) | Err(_) => {}
        }
    }

    /// Applies a batch and turns it into work for the committer.
    fn process(&mut self, cmds: Vec<Queued>) -> Work {
        let started_at = Instant::now();
        let mut fx = Effects::default();
        let mut batch = CommitBatch {
            partition: self.partition,
            ..Default::default()
        };
        let mut batch_keys = BatchKeys::new();
        let mut pending = Vec::with_capacity(cmds.len());
        self.posting_seqs.clear();
        let mut part_commands = Vec::new();
        // Callers of events this batch forwards, by log sequence: answered with the copies' answer.
        let mut forward_replies = HashMap::new();
        for queued in cmds {
            let Traced(cmd, span) = *queued;
            let _sender = span.enter();
            let parts_before = fx.part_commands.len();
            let by_timer = matches!(cmd, Command::Timer { .. });
            let p = match cmd {
                Command::Event { event, reply } => {
                    match self.apply_event(&event, &mut fx, &mut batch, &mut batch_keys) {
                        EventReply::Recorded {
                            status: EventStatus::Forwarding,
                            seq,
                            ..
                        } => {
                            forward_replies.insert(seq, reply);
                            Pending::None
                        }
                        answer => Pending::Event(reply, answer),
                    }
                }
                Command::Forwarded { seq, status } => {
                    batch.event_status.push((self.partition, seq, status));
                    Pending::None
                }
                Command::Timer { event } => {
                    self.apply_event(&event, &mut fx, &mut batch, &mut batch_keys);
                    Pending::None
                }
                Command::Reservation { event, reply } => Pending::Reservation(
                    reply,
                    self.apply_reservation(&event, &mut fx, &mut batch, &mut batch_keys),
                ),
                Command::Workflow { event, reply } => Pending::Workflow(
                    reply,
                    self.apply_workflow(&event, &mut fx, &mut batch, &mut batch_keys),
                ),
                Command::Exception { record, reply } => {
                    batch.exceptions.push(record);
                    Pending::Unit(reply)
                }
                Command::Stop => Pending::None,
                Command::Lend { .. } | Command::Wide { .. } => {
                    unreachable!("the pipeline takes them apart from batches")
                }
            };
            pending.push(p);
            self.stamp_postings(&fx);
            // A caller settles the parts of what it decided itself (and waits for them);
            // what a timer decided goes to the driver once durable.
            let decided = fx.part_commands.drain(parts_before..);
            if by_timer {
                part_commands.extend(decided);
            }
        }
        self.ledger.finish_batch(&self.policy, &mut fx);
        self.stamp_postings(&fx);
        for &(seq, applied) in &fx.released {
            if applied {
                self.feed_released(seq, &mut batch);
            }
        }
        let forwards = std::mem::take(&mut fx.forwards)
            .into_iter()
            .map(|f| {
                if f.was_held {
                    batch
                        .event_status
                        .push((self.partition, f.log_seq, EventStatus::Forwarding));
                }
                crate::sequence::Forward {
                    home: self.partition,
                    log_seq: f.log_seq,
                    reply: forward_replies.remove(&f.log_seq),
                    event: f.event,
                }
            })
            .collect();
        self.collect(&fx, &mut batch);
        let batch = self.remember(batch, batch_keys);
        let mut work = self.work(batch, pending, fx, started_at, false);
        work.part_commands = part_commands;
        work.forwards = forwards;
        work
    }

    /// A batch's work for the committer: its rows, callers and timers, and the items it touched
    /// as applied here (to publish) and for orders of other partitions (`wide`: every item of
    /// another partition it touched too).
    fn work(
        &self,
        batch: Arc<CommitBatch>,
        pending: Vec<Pending>,
        fx: Effects,
        started_at: Instant,
        wide: bool,
    ) -> Work {
        Work {
            batch,
            pending,
            publish: self.touched(&fx),
            seq: self.ledger.seq,
            fills: self.fills(&fx, wide),
            timers_set: fx.timers_set,
            timers_done: fx
                .timers_done
                .into_iter()
                .chain(fx.timers_cancelled)
                .collect(),
            applied_at: Instant::now(),
            started_at,
            part_commands: Vec::new(),
            forwards: Vec::new(),
            extras: Vec::new(),
            settles: Vec::new(),
            lenders_poisoned: Vec::new(),
            partition: self.partition,
            done: None,
        }
    }

    /// The partition whose rows an item's are (its own; another's only in a wide input).
    fn partition_of_item(&self, item: &ItemId) -> u32 {
        if self.partitions > 1 {
            crate::partition_of(item, self.partitions)
        } else {
            self.partition
        }
    }

    /// Applies one wide input with the items its lenders lent (see [`crate::wide`]): the rows of
    /// each lent item go in its partition's batch, committed with this one.
    fn process_wide(&mut self, cmd: Command) -> Work {
        let Command::Wide {
            event,
            answer,
            loans,
        } = cmd
        else {
            unreachable!("only wide inputs come here")
        };
        let started_at = Instant::now();
        let mut fx = Effects::default();
        let mut batch = CommitBatch {
            partition: self.partition,
            ..Default::default()
        };
        let mut batch_keys = BatchKeys::new();
        self.posting_seqs.clear();
        for loan in &loans {
            for (_, state) in &loan.items {
                self.ledger.lend_item(state.clone());
            }
            // Logged past every lender's sequence, so each lent item's rows stay in order.
            self.ledger.seq = self.ledger.seq.max(loan.seq);
        }
        let pending = match answer {
            crate::WideAnswer::Workflow(reply) => Pending::Workflow(
                reply,
                self.apply_workflow(&event, &mut fx, &mut batch, &mut batch_keys),
            ),
            crate::WideAnswer::Event(reply) => Pending::Event(
                reply,
                self.apply_event(&event, &mut fx, &mut batch, &mut batch_keys),
            ),
        };
        self.stamp_postings(&fx);
        self.ledger.finish_batch(&self.policy, &mut fx);
        self.stamp_postings(&fx);
        self.collect(&fx, &mut batch);
        let seq = self.ledger.seq;
        let logged = batch.events.iter().any(|e| e.id == event.id);
        {
            // Which lent items this partition's orders now wait for.
            let mut waiting = self.backordered.write().expect("backordered lock");
            for id in loans.iter().flat_map(|l| l.asked.iter()) {
                if self.ledger.waits_for(id) {
                    waiting
                        .entry(id.clone())
                        .or_default()
                        .insert(self.partition);
                } else if let Some(homes) = waiting.get_mut(id) {
                    homes.remove(&self.partition);
                    if homes.is_empty() {
                        waiting.remove(id);
                    }
                }
            }
        }
        let mut extras = Vec::new();
        let mut settles = Vec::new();
        let lenders_poisoned = loans.iter().map(|l| l.poisoned.clone()).collect();
        for loan in loans {
            let q = loan.partition;
            let items: Vec<(ItemId, Arc<ItemState>)> = loan
                .asked
                .iter()
                .filter_map(|id| self.ledger.take_item(id).map(|s| (id.clone(), s)))
                .collect();
            let mut part = CommitBatch {
                partition: q,
                last_seq: seq,
                ..Default::default()
            };
            move_rows(&mut batch, &mut part, q, |item| {
                self.partition_of_item(item)
            });
            if logged {
                // Its own id (and envelope), caused by the input: a replay skips it.
                let mut part_row = event.clone();
                part_row.id = crossdock_model::event::wide_part_id(&event.id, q);
                part_row.causation_id = Some(event.id.clone());
                part.events
                    .push(event_row(q, seq, &part_row, EventStatus::Applied));
            }
            extras.push(part);
            settles.push(crate::wide::Settle {
                back: loan.back,
                view: loan.view,
                items,
                seq,
            });
        }
        let strays: Vec<ItemId> = fx
            .touched_items
            .iter()
            .filter(|id| self.partition_of_item(id) != self.partition)
            .filter(|id| self.ledger.item(id).is_some())
            .cloned()
            .collect();
        for id in strays {
            error!(partition = self.partition, item = %id, "a wide input touched an item no partition lent; dropped from memory");
            self.ledger.take_item(&id);
        }
        let batch = self.remember(batch, batch_keys);
        let mut work = self.work(batch, vec![pending], fx, started_at, true);
        work.extras = extras;
        work.settles = settles;
        work.lenders_poisoned = lenders_poisoned;
        work
    }

    /// The batches handed to the committer and not yet committed, oldest first.
    fn in_pipeline(&self) -> Vec<Arc<CommitBatch>> {
        self.recent
            .iter()
            .filter_map(|r| r.batch.upgrade())
            .collect()
    }

    /// Keeps what a batch logged, so repeats are recognised before the store has it.
    fn remember(&mut self, batch: CommitBatch, batch_keys: BatchKeys) -> Arc<CommitBatch> {
        self.keys.extend(batch_keys.keys().copied());
        let batch = Arc::new(batch);
        if self.recent.len() == IN_FLIGHT_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            batch: Arc::downgrade(&batch),
            keys: batch_keys,
        });
        batch
    }

    /// The items a batch touched, as applied here, to publish once durable.
    fn touched(&self, fx: &Effects) -> Vec<Arc<ItemState>> {
        fx.touched_items
            .iter()
            .filter_map(|id| self.ledger.item(id).cloned())
            .collect()
    }

    /// Notes the current ledger sequence for the postings the last input made.
    fn stamp_postings(&mut self, fx: &Effects) {
        if self.posting_seqs.len() < fx.postings.len() {
            self.posting_seqs.resize(fx.postings.len(), self.ledger.seq);
        }
    }

    /// Rebuilds the partition from the store after a failed commit: memory may hold changes the
    /// store refused.
    fn reload(&mut self) {
        loop {
            match load_ledger(&self.policy, self.store.as_mut(), self.partition) {
                Ok((mut ledger, _)) => {
                    // Its `forwarding` rows are with the forwarder already.
                    ledger.forward_sequenced = self.ledger.forward_sequenced;
                    self.ledger = ledger;
                    self.publish_all();
                    // A commit that reported failure may have landed after all; its outbox rows
                    // were never handed over, so delivery looks at the store again.
                    if let Some(rescan) = &self.outbox.on_reload {
                        rescan();
                    }
                    return;
                }
                Err(e) => {
                    error!(partition = self.partition, error = %e, "reload failed; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
        }
    }

    /// The idempotency check: `Some(reply)` when `(source, id)` was seen before.
    fn seen(
        &mut self,
        event: &Event,
        batch: &mut CommitBatch,
        batch_keys: &BatchKeys,
    ) -> Option<EventReply> {
        let fingerprint = event.key_hash();
        let logged = |events: &[EventRow], rows: &[usize]| {
            rows.iter()
                .map(|&i| &events[i])
                .find(|row| row.id == event.id && row.source == event.source.as_str())
                .map(|row| (row.status, row.seq, row.payload_hash))
        };
        let in_batch = batch_keys
            .get(&fingerprint)
            .and_then(|rows| logged(&batch.events, rows));
        let in_flight = || {
            self.recent.iter().rev().find_map(|r| {
                let rows = r.keys.get(&fingerprint)?;
                logged(&r.batch.upgrade()?.events, rows)
            })
        };
        let earlier: Option<(EventStatus, u64, u64)> = match in_batch.or_else(in_flight) {
            Some(found) => Some(found),
            None if self.keys.contains(fingerprint) => {
                match self.store.find_event(event.source.as_str(), &event.id) {
                    Ok(found) => found.map(|row| (row.status, row.seq, row.payload_hash)),
                    Err(e) => {
                        warn!(error = %e, "idempotency lookup failed");
                        return Some(EventReply::Rejected(format!(
                            "idempotency lookup failed: {e}"
                        )));
                    }
                }
            }
            None => None,
        };
        let (status, seq, hash) = earlier?;
        if hash == event.payload_hash() {
            return Some(EventReply::Duplicate { status, seq });
        }
        let record = ExceptionRecord::open(
            ExceptionKind::DuplicateConflict,
            &format!(
                "conflict:{}/{}:{:x}",
                event.source,
                event.id,
                event.payload_hash()
            ),
            format!("event:{}/{}", event.source, event.id),
            Some(event.correlation_id.clone()),
            format!(
                "event id {} from {} was already recorded at ledger sequence {seq} with a different payload; \
                 the new payload was not applied",
                event.id, event.source
            ),
            serde_json::to_string(&event.to_envelope()).ok(),
            event.received_at,
        );
        let exception_id = record.id.clone();
        batch.exceptions.push(record);
        Some(EventReply::Conflict { seq, exception_id })
    }

    fn log(
        &self,
        event: &Event,
        status: EventStatus,
        batch: &mut CommitBatch,
        batch_keys: &mut BatchKeys,
    ) {
        batch_keys
            .entry(event.key_hash())
            .or_default()
            .push(batch.events.len());
        let row = event_row(self.partition, self.ledger.seq, event, status);
        if status == EventStatus::Applied {
            self.feed(event, &row, batch);
        }
        batch.events.push(row);
    }

    /// Outbox rows for the event feeds that want this applied event.
    fn feed(&self, event: &Event, row: &EventRow, batch: &mut CommitBatch) {
        for f in self.outbox.feeds.iter().filter(|f| f.wants(&row.ty)) {
            let key = match event.data.items().first() {
                Some(item) => item.to_string(),
                None => reservation_of(&event.data).unwrap_or_else(|| event.source.to_string()),
            };
            batch.outbox.push(OutboxRow {
                partition: self.partition,
                endpoint: f.endpoint.clone(),
                key,
                ledger_seq: row.seq,
                priority: 2,
                kind: OutboxKind::Ordered,
                payload: row.envelope.clone(),
                correlation_id: Some(row.correlation_id.clone()),
                created_at_us: row.received_at_us,
            });
        }
    }

    /// A held event the resequencer let through in this batch: feed it now, from the batch it
    /// was logged in (still in the pipeline) or from the store.
    fn feed_released(&mut self, seq: u64, batch: &mut CommitBatch) {
        if self.outbox.feeds.is_empty() {
            return;
        }
        let pipeline = self.in_pipeline();
        let in_flight = pipeline
            .iter()
            .flat_map(|b| b.events.iter())
            .chain(batch.events.iter())
            .find(|e| e.seq == seq)
            .cloned();
        let row = match in_flight {
            Some(row) => Some(row),
            None => match self.store.read_events(self.partition, seq - 1, 1) {
                Ok(rows) => rows.into_iter().find(|e| e.seq == seq),
                Err(e) => {
                    tracing::error!(partition = self.partition, seq, error = %e, "cannot read a released event to feed it");
                    None
                }
            },
        };
        match row.map(|r| crate::persist::event_from_row(&r).map(|e| (e, r))) {
            Some(Ok((event, row))) => self.feed(&event, &row, batch),
            failed => {
                // Not silent: an operator sees which event the feeds missed.
                let why = match failed {
                    Some(Err(e)) => e.to_string(),
                    _ => "the event was not found".into(),
                };
                let endpoints: Vec<&str> = self
                    .outbox
                    .feeds
                    .iter()
                    .map(|f| f.endpoint.as_str())
                    .collect();
                batch.exceptions.push(ExceptionRecord::open(
                    ExceptionKind::DeliveryFailed,
                    &format!("feed-release\0{}\0{seq}", self.partition),
                    format!("event:partition {}/seq {seq}", self.partition),
                    None,
                    format!(
                        "event {seq} of partition {} was released by the resequencer but could not \
                         be read to feed {}: {why}",
                        self.partition,
                        endpoints.join(", ")
                    ),
                    None,
                    Timestamp::now(),
                ));
            }
        }
    }

    fn apply_event(
        &mut self,
        event: &Event,
        fx: &mut Effects,
        batch: &mut CommitBatch,
        batch_keys: &mut BatchKeys,
    ) -> EventReply {
        // One span per input, at debug level: exported when `[telemetry] span_level = "debug"`.
        let _span = tracing::debug_span!(
            "apply",
            correlation_id = %event.correlation_id,
            source = %event.source,
            id = %event.id,
            partition = self.partition,
        )
        .entered();
        if let Some(reply) = self.seen(event, batch, batch_keys) {
            return reply;
        }
        match self.ledger.apply(&self.policy, event, fx) {
            Outcome::Applied => {
                self.log(event, EventStatus::Applied, batch, batch_keys);
                EventReply::Recorded {
                    status: EventStatus::Applied,
                    seq: self.ledger.seq,
                    exception: None,
                }
            }
            Outcome::Quarantined { kind, reason } => {
                self.log(event, EventStatus::Quarantined, batch, batch_keys);
                EventReply::Recorded {
                    status: EventStatus::Quarantined,
                    seq: self.ledger.seq,
                    exception: Some((kind, reason)),
                }
            }
            Outcome::Held => {
                self.log(event, EventStatus::Held, batch, batch_keys);
                EventReply::Recorded {
                    status: EventStatus::Held,
                    seq: self.ledger.seq,
                    exception: None,
                }
            }
            Outcome::Forwarded => {
                self.log(event, EventStatus::Forwarding, batch, batch_keys);
                EventReply::Recorded {
                    status: EventStatus::Forwarding,
                    seq: self.ledger.seq,
                    exception: None,
                }
            }
            // A timer's expiry settles a reservation like any hub command.
            Outcome::Reservation { repeat: false, .. } => {
                self.log(event, EventStatus::Applied, batch, batch_keys);
                EventReply::Recorded {
                    status: EventStatus::Applied,
                    seq: self.ledger.seq,
                    exception: None,
                }
            }
            Outcome::Reservation { repeat: true, .. } => {
                EventReply::Rejected("already settled".into())
            }
            Outcome::Workflow { repeat: false, .. } => {
                self.log(event, EventStatus::Applied, batch, batch_keys);
                EventReply::Recorded {
                    status: EventStatus::Applied,
                    seq: self.ledger.seq,
                    exception: None,
                }
            }
            Outcome::Workflow { repeat: true, .. } => EventReply::Rejected("already done".into()),
            Outcome::Insufficient(_) => EventReply::Rejected("insufficient stock".into()),
            Outcome::Rejected(r) => EventReply::Rejected(rejection_text(&r)),
            Outcome::Noop => EventReply::Rejected("nothing to do".into()),
        }
    }

    /// A workflow command: the workflow's new state (or its stored state for a repeat).
    fn apply_workflow(
        &mut self,
        event: &Event,
        fx: &mut Effects,
        batch: &mut CommitBatch,
        batch_keys: &mut BatchKeys,
    ) -> WorkflowReply {
        if let Some(reply) = self.finished_workflow(event, batch) {
            return reply;
        }
        let outcome = self.ledger.apply(&self.policy, event, fx);
        match outcome {
            Outcome::Workflow { view, repeat } => {
                if !repeat {
                    self.log(event, EventStatus::Applied, batch, batch_keys);
                }
                WorkflowReply::Done {
                    workflow: view,
                    repeat,
                }
            }
            Outcome::Insufficient(s) => WorkflowReply::Insufficient(s),
            Outcome::Rejected(r) => WorkflowReply::Rejected(r),
            Outcome::Quarantined { reason, .. } => {
                self.log(event, EventStatus::Quarantined, batch, batch_keys);
                WorkflowReply::Rejected(Rejection::Invalid {
                    field: "data".into(),
                    reason,
                })
            }
            Outcome::Noop => {
                WorkflowReply::Rejected(Rejection::InvalidState("nothing to do".into()))
            }
            other => WorkflowReply::Rejected(Rejection::InvalidState(format!(
                "unexpected outcome {other:?}"
            ))),
        }
    }

    /// Answers commands about workflows that finished and left memory, from the batches in
    /// flight or the store: a repeated request gets the stored workflow, anything else is refused.
    fn finished_workflow(&mut self, event: &Event, batch: &CommitBatch) -> Option<WorkflowReply> {
        let key = workflow_key(&event.data)?;
        if self.ledger.workflow(&key).is_some() {
            return None;
        }
        // A start whose command was never logged creates a new workflow: no need to ask the
        // store (every start of an id uses the same command id, so its fingerprint is known).
        if creation_hash(&event.data).is_some() && !self.keys.contains(event.key_hash()) {
            return None;
        }
        let pipeline = self.in_pipeline();
        let in_flight = pipeline
            .iter()
            .map(|b| &**b)
            .chain(std::iter::once(batch))
            .flat_map(|b| b.workflows.iter())
            .rev()
            .find(|w| w.key == key)
            .cloned();
        let row = match in_flight.map_or_else(
            || {
                self.store
                    .find_workflow(&key)
                    .map(|o| o.map(|(row, _)| row))
            },
            |row| Ok(Some(row)),
        ) {
            Ok(Some(row)) => row,
            Ok(None) => return None,
            Err(e) => {
                return Some(WorkflowReply::Rejected(Rejection::InvalidState(format!(
                    "lookup failed: {e}"
                ))));
            }
        };
        let stored = match crate::persist::workflow_from_row(&row) {
            Ok(w) => w,
            Err(e) => {
                return Some(WorkflowReply::Rejected(Rejection::InvalidState(
                    e.to_string(),
                )));
            }
        };
        Some(match creation_hash(&event.data) {
            Some(hash) if hash == stored.request_hash => WorkflowReply::Done {
                workflow: Box::new(stored),
                repeat: true,
            },
            Some(_) => WorkflowReply::Rejected(Rejection::Conflict(format!(
                "{key} already exists with other content"
            ))),
            None if matches!(event.data, EventData::OrderCancelled(_))
                && stored.state == "cancelled" =>
            {
                WorkflowReply::Done {
                    workflow: Box::new(stored),
                    repeat: true,
                }
            }
            None => WorkflowReply::Rejected(Rejection::InvalidState(format!(
                "{key} is {}; nothing can change it any more",
                stored.state
            ))),
        })
    }

    fn apply_reservation(
        &mut self,
        event: &Event,
        fx: &mut Effects,
        batch: &mut CommitBatch,
        batch_keys: &mut BatchKeys,
    ) -> ReservationReply {
        if let Some(reply) = self.settled_reservation(event, batch, batch_keys) {
            return reply;
        }
        let outcome = self.ledger.apply(&self.policy, event, fx);
        if outcome.is_logged() {
            self.log(event, EventStatus::Applied, batch, batch_keys);
        }
        match outcome {
            Outcome::Reservation { view, repeat } => ReservationReply::Done {
                reservation: view,
                repeat,
            },
            Outcome::Insufficient(s) => ReservationReply::Insufficient(s),
            Outcome::Rejected(r) => ReservationReply::Rejected(r),
            Outcome::Quarantined { reason, .. } => ReservationReply::Rejected(Rejection::Invalid {
                field: "id".into(),
                reason,
            }),
            other => ReservationReply::Rejected(Rejection::InvalidState(format!(
                "unexpected outcome {other:?}"
            ))),
        }
    }

    /// Answers commands about reservations that have left memory (released, expired) from the store.
    fn settled_reservation(
        &mut self,
        event: &Event,
        batch: &CommitBatch,
        batch_keys: &BatchKeys,
    ) -> Option<ReservationReply> {
        let (id, target) = match &event.data {
            EventData::ReservationRequested(r) => (&r.reservation, None),
            EventData::ReservationReleased(r) => (&r.reservation, Some("released")),
            EventData::ReservationCommitted(r) => (&r.reservation, Some("committed")),
            EventData::CrossBegun(r) => (&r.reservation, None),
            EventData::CrossDecided(r) => (&r.reservation, None),
            _ => return None,
        };
        if self.ledger.reservation(id).is_some() {
            return None;
        }
        // A reservation whose creating command (`reserve:<id>`, the only one that makes a row
        // for a new id) was never logged does not exist: no need to ask the store. Parts of
        // cross-partition reservations always take this path (a fresh attempt, a fresh id).
        if let EventData::ReservationRequested(_) = &event.data {
            let created = crossdock_model::event::key_hash(
                crossdock_model::HUB_SOURCE,
                &crossdock_ledger::state::reserve_command_id(id),
            );
            if !self.keys.contains(created) && !batch_keys.contains_key(&created) {
                return None;
            }
        }
        let pipeline = self.in_pipeline();
        let in_flight = std::iter::once(batch)
            .chain(pipeline.iter().rev().map(|b| &**b))
            .find_map(|b| {
                b.reservations
                    .iter()
                    .rev()
                    .find(|row| &row.id == id)
                    .cloned()
            });
        let row =
            match in_flight.map_or_else(|| self.store.find_reservation(id), |row| Ok(Some(row))) {
                Ok(Some(row)) => row,
                Ok(None) => return None,
                Err(e) => {
                    return Some(ReservationReply::Rejected(Rejection::InvalidState(
                        format!("lookup failed: {e}"),
                    )));
                }
            };
        let stored = match reservation_from_row(&row) {
            Ok(r) => r,
            Err(e) => {
                return Some(ReservationReply::Rejected(Rejection::InvalidState(
                    e.to_string(),
                )));
            }
        };
        let request = match &event.data {
            // A reservation that was not held whole is asked for afresh.
            EventData::ReservationRequested(_) | EventData::CrossBegun(_)
                if stored.status == ResStatus::Aborted =>
            {
                return None;
            }
            EventData::CrossDecided(_) => {
                return Some(ReservationReply::Done {
                    reservation: stored,
                    repeat: true,
                });
            }
            EventData::CrossBegun(b) => Some(ReservationRequested {
                reservation: b.reservation.clone(),
                channel: b.channel.clone(),
                lines: b.lines.clone(),
                ttl_s: b.ttl_s,
            }),
            EventData::ReservationRequested(r) => Some(r.clone()),
            _ => None,
        };
        Some(match (&request, target) {
            (Some(r), _) if request_hash(r) == stored.request_hash => ReservationReply::Done {
                reservation: stored,
                repeat: true,
            },
            (Some(_), _) => ReservationReply::Rejected(Rejection::Conflict(format!(
                "reservation {id} already exists with other lines or channel"
            ))),
            (_, Some(t)) if t == row.status => ReservationReply::Done {
                reservation: stored,
                repeat: true,
            },
            (_, Some(t)) => ReservationReply::Rejected(Rejection::InvalidState(format!(
                "reservation {id} is {}, it cannot become {t}",
                row.status
            ))),
            _ => return None,
        })
    }

    /// Turns the batch's effects into rows.
    fn collect(&self, fx: &Effects, batch: &mut CommitBatch) {
        let p = self.partition;
        for id in &fx.touched_items {
            if let Some(state) = self.ledger.item(id) {
                let (positions, item) =
                    item_rows(&self.policy, self.partition_of_item(id), id, state);
                batch.positions.extend(positions);
                batch.items.push(item);
            }
        }
        batch
            .reservations
            .extend(fx.reservations.iter().map(|r| reservation_row(p, r)));
        for s in &fx.touched_sources {
            if let Some(state) = self.ledger.source_seq(s) {
                batch.source_seqs.push(SourceSeqRow {
                    partition: p,
                    source: s.to_string(),
                    next_expected: state.next,
                });
            }
        }
        let now = fx.now.max(Timestamp::now()).as_micros();
        batch
            .changes
            .extend(fx.changes.iter().enumerate().map(|(n, c)| ChangeRow {
                partition: self.partition_of_item(&c.item),
                seq: c.seq,
                n: n as u32,
                item: c.item.to_string(),
                location: self.policy.locations[c.location.0 as usize].to_string(),
                lot: c.lot.as_ref().map_or_else(String::new, |l| l.to_string()),
                time_us: c.time.as_micros(),
                at_us: now,
                delta: bucket_array(&c.delta),
            }));
        batch.ats.extend(fx.ats_changes.iter().map(|c| AtsRow {
            item: c.item.to_string(),
            channel: channel_name(&self.policy, c.channel).to_string(),
            at_us: now,
            seq: c.seq,
            ats: c.ats,
            previous: c.previous,
        }));
        for c in &fx.ats_changes {
            let channel = channel_name(&self.policy, c.channel);
            if let Some(delivered) = &self.outbox.channels
                && !delivered.contains(channel.as_str())
            {
                continue;
            }
            let payload = AvailabilityMessage {
                item: c.item.as_str(),
                channel: channel.as_str(),
                available: c.ats,
                previous: c.previous,
                ledger_seq: c.seq,
            };
            batch.outbox.push(OutboxRow {
                partition: self.partition_of_item(&c.item),
                endpoint: channel.to_string(),
                key: c.item.to_string(),
                ledger_seq: c.seq,
                priority: c.priority,
                kind: OutboxKind::Latest,
                payload: serde_json::to_string(&payload).expect("message serializes"),
                correlation_id: correlation_at(&batch.events, c.seq),
                created_at_us: now,
            });
        }
        batch
            .workflows
            .extend(fx.workflows.iter().map(|w| workflow_row(p, w)));
        batch.steps.extend(fx.steps.iter().map(step_row));
        for (i, posting) in fx.postings.iter().enumerate() {
            let Some(endpoint) = self.outbox.postings.endpoint(&posting.to) else {
                continue;
            };
            batch.outbox.push(OutboxRow {
                partition: p,
                endpoint: endpoint.to_string(),
                key: posting.key.clone(),
                ledger_seq: self.posting_seqs.get(i).copied().unwrap_or(self.ledger.seq),
                priority: 2,
                kind: OutboxKind::Ordered,
                payload: posting.payload.to_string(),
                correlation_id: Some(posting.correlation_id.clone()),
                created_at_us: now,
            });
        }
        batch.exceptions.extend(fx.exceptions.iter().cloned());
        batch
            .exception_status
            .extend(
                fx.exceptions_resolved
                    .iter()
                    .map(|(id, at, note)| ExceptionStatusChange {
                        id: id.clone(),
                        status: ExceptionStatus::Resolved,
                        at_us: at.as_micros(),
                        actor: "ledger".into(),
                        note: note.clone(),
                    }),
            );
        for t in &fx.timers_set {
            if !t.durable || fx.timers_done.contains(&t.id) {
                continue;
            }
            batch.timers_set.push(TimerRow {
                partition: p,
                id: t.id.clone(),
                due_at_us: t.due_at.as_micros(),
                command: t.command.envelope_json(),
            });
        }
        batch.timers_done.extend(fx.timers_done.iter().cloned());
        batch
            .event_status
            .extend(fx.released.iter().map(|&(seq, applied)| {
                (
                    p,
                    seq,
                    if applied {
                        EventStatus::Applied
                    } else {
                        EventStatus::Quarantined
                    },
                )
            }));
        batch.last_seq = self.ledger.seq;
    }
}

/// Buckets in the store's column order ([`crossdock_store::BUCKETS`]).
fn bucket_array(b: &crossdock_ledger::Buckets) -> [i64; 10] {
    [
        b.on_hand,
        b.quarantined,
        b.damaged,
        b.returns_pending,
        b.picked,
        b.allocated,
        b.reserved,
        b.in_transit,
        b.incoming,
        b.safety_stock,
    ]
}

/// The reservation a hub command is about, if it is one.
fn reservation_of(data: &EventData) -> Option<String> {
    match data {
        EventData::ReservationRequested(r) => Some(r.reservation.clone()),
        EventData::ReservationReleased(r)
        | EventData::ReservationCommitted(r)
        | EventData::ReservationExpired(r) => Some(r.reservation.clone()),
        _ => None,
    }
}

/// The outbox payload of a channel availability change ("latest value" per endpoint and item).
#[derive(serde::Serialize)]
struct AvailabilityMessage<'a> {
    item: &'a str,
    channel: &'a str,
    available: i64,
    previous: Option<i64>,
    ledger_seq: u64,
}

fn rejection_text(r: &Rejection) -> String {
    match r {
        Rejection::NotFound(s) | Rejection::Conflict(s) | Rejection::InvalidState(s) => s.clone(),
        Rejection::Invalid { field, reason } => format!("{field}: {reason}"),
    }
}

/// The correlation id of the batch's input applied at ledger sequence `seq` (the batch's events
/// are in sequence order), carried by the outbox messages that input caused.
fn correlation_at(events: &[EventRow], seq: u64) -> Option<String> {
    let i = events.partition_point(|e| e.seq < seq);
    events
        .get(i)
        .filter(|e| e.seq == seq)
        .map(|e| e.correlation_id.clone())
}

/// Moves the rows of partition `q`'s items out of a wide input's batch into `part`.
fn move_rows(
    batch: &mut CommitBatch,
    part: &mut CommitBatch,
    q: u32,
    partition_of: impl Fn(&ItemId) -> u32,
) {
    fn split<T>(from: &mut Vec<T>, to: &mut Vec<T>, theirs: impl Fn(&T) -> bool) {
        let (moved, kept): (Vec<T>, Vec<T>) = std::mem::take(from).into_iter().partition(theirs);
        *from = kept;
        to.extend(moved);
    }
    split(&mut batch.positions, &mut part.positions, |r| {
        r.partition == q
    });
    split(&mut batch.items, &mut part.items, |r| r.partition == q);
    split(&mut batch.changes, &mut part.changes, |r| r.partition == q);
    split(&mut batch.ats, &mut part.ats, |r| {
        ItemId::new(&r.item).is_ok_and(|i| partition_of(&i) == q)
    });
    split(&mut batch.outbox, &mut part.outbox, |r| {
        r.kind == OutboxKind::Latest && r.partition == q
    });
}
