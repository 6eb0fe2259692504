//! The engine: one writer thread per partition applies commands with the pure ledger, commits each
//! batch in one storage transaction (group commit), then answers every caller and publishes a read
//! view. Queries read the view, never uncommitted state.
//!
//! Architecture invariants:
//! * a caller is answered only after its input is durable (or with an error if the commit failed);
//! * all changes to one item pass through one writer (partition = hash of the item);
//! * every queue is bounded: a full queue is [`EngineError::Overloaded`], never growth.

mod committer;
mod cross;
mod keys;
mod persist;
mod sequence;
mod timers;
mod wide;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};

use crossdock_ledger::state::hub_command;
use crossdock_ledger::workflow::{creation_hash, workflow_key};
use crossdock_ledger::{
    ItemMap, ItemState, Policy, PostTo, Rejection, Reservation, Shortfall, Workflow,
};
use crossdock_model::event::{ReservationRef, ReservationRequested};
use crossdock_model::{
    ChannelId, Event, EventData, ExceptionKind, ExceptionRecord, ItemId, Timestamp,
};
use crossdock_store::thread::{Stopped, StoreThread};
use crossdock_store::{
    ExceptionFilter, OutboxRow, StepRow, Store, StoreError, StoredOutbox, WorkflowFilter,
    WorkflowRow,
};
use tokio::sync::oneshot;

pub use cross::{PREPARE_S, partition_of_key};
pub use crossdock_store::EventStatus;
pub use persist::{event_from_row, event_row, workflow_from_row};

/// Where the engine keeps its state.
#[derive(Debug, Clone)]
pub enum StoreSpec {
    Sqlite(PathBuf),
    Postgres {
        url: String,
        schema: Option<String>,
    },
    /// Any other `Store`: the engine opens one connection per writer, committer and reader.
    Custom(StoreFactory),
}

/// Opens a connection to a custom store.
#[derive(Clone)]
pub struct StoreFactory(pub Arc<dyn Fn() -> Result<Box<dyn Store>, StoreError> + Send + Sync>);

impl std::fmt::Debug for StoreFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreFactory")
    }
}

impl StoreSpec {
    pub fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            StoreSpec::Sqlite(path) => Box::new(crossdock_store::sqlite::SqliteStore::open(path)?),
            StoreSpec::Postgres { url, schema } => Box::new(
                crossdock_store::postgres::PgStore::connect(url, schema.as_deref())?,
            ),
            StoreSpec::Custom(factory) => (factory.0)()?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub store: StoreSpec,
    pub partitions: u32,
    /// `partitions` was configured: a store written with another count is refused. Otherwise it
    /// is only the default for a new store, and a store keeps the count it was written with.
    pub partitions_fixed: bool,
    /// Commands waiting per partition before callers are told to back off.
    pub queue_max: usize,
    /// Commands applied and committed together at most.
    pub batch_max: usize,
    pub outbox: OutboxHook,
}

/// Called on a committer thread with the outbox rows of each batch, once they are durable.
pub type OutboxSink = Arc<dyn Fn(&[OutboxRow]) + Send + Sync>;

/// What delivery needs from the engine.
#[derive(Clone, Default)]
pub struct OutboxHook {
    /// Channels whose availability changes go to the outbox (those with a delivery endpoint);
    /// `None`: every channel.
    pub channels: Option<Arc<HashSet<String>>>,
    /// Endpoints that take every applied event of some types, in ledger order per key.
    pub feeds: Arc<Vec<Feed>>,
    pub on_commit: Option<OutboxSink>,
    /// Called after a partition reloaded from the store (a failed commit): outbox rows may be
    /// in the store that `on_commit` never saw.
    pub on_reload: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Where workflow postings go.
    pub postings: Arc<PostingRoutes>,
    /// Told of every durable batch and how long its commit took (telemetry).
    pub on_committed: Option<CommitObserver>,
}

/// Sees every committed batch and the time its transaction took.
pub type CommitObserver =
    Arc<dyn Fn(&crossdock_store::CommitBatch, std::time::Duration) + Send + Sync>;

/// The delivery endpoint of each posting target (from config); a posting to a target without
/// one is not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostingRoutes {
    pub erp: Option<String>,
    /// Location → endpoint taking its releases.
    pub warehouses: HashMap<String, String>,
    /// Trading partner → endpoint writing its documents.
    pub partners: HashMap<String, String>,
}

impl PostingRoutes {
    pub fn endpoint(&self, to: &PostTo) -> Option<&str> {
        match to {
            PostTo::Erp => self.erp.as_deref(),
            PostTo::Warehouse(l) => self.warehouses.get(l.as_str()).map(String::as_str),
            PostTo::Partner(p) => self.partners.get(p).map(String::as_str),
        }
    }
}

/// An event feed: every applied event whose type matches goes to `endpoint` as an "ordered"
/// outbox message (the CloudEvents envelope), keyed by its first item (or its reservation, or
/// its source), so a subscriber sees each item's events in ledger order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub endpoint: String,
    /// `inventory.*`, `inventory.received.v1`, or `*`.
    pub types: Vec<String>,
}

impl Feed {
    pub fn wants(&self, ty: &str) -> bool {
        self.types.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => ty.starts_with(prefix),
            None => p == ty,
        })
    }
}

impl std::fmt::Debug for OutboxHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxHook")
            .field("channels", &self.channels)
            .field("feeds", &self.feeds)
            .field("on_commit", &self.on_commit.is_some())
            .field("on_committed", &self.on_committed.is_some())
            .field("on_reload", &self.on_reload.is_some())
            .field("postings", &self.postings)
            .finish()
    }
}

impl EngineConfig {
    pub fn new(store: StoreSpec) -> Self {
        EngineConfig {
            store,
            partitions: 1,
            partitions_fixed: true,
            queue_max: 100_000,
            batch_max: 10_000,
            outbox: OutboxHook::default(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("the engine is overloaded; retry after a short wait")]
    Overloaded,
    #[error("the store failed to commit: {0}")]
    Store(String),
    #[error("the engine is shutting down")]
    Stopped,
}

impl From<Stopped> for EngineError {
    fn from(_: Stopped) -> Self {
        EngineError::Stopped
    }
}

/// How an event submission ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventReply {
    /// Newly recorded with this status at this ledger sequence.
    Recorded {
        status: EventStatus,
        seq: u64,
        exception: Option<(ExceptionKind, String)>,
    },
    /// The same `(source, id)` with the same payload was recorded before.
    Duplicate { status: EventStatus, seq: u64 },
    /// The same `(source, id)` was recorded before with a different payload.
    Conflict { seq: u64, exception_id: String },
    /// Refused without being logged (a hub command with nothing to do, a conflicting sequence).
    Rejected(String),
}

/// How a reservation command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationReply {
    Done {
        reservation: Reservation,
        repeat: bool,
    },
    Insufficient(Vec<Shortfall>),
    Rejected(Rejection),
}

/// How a workflow command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowReply {
    Done {
        workflow: Box<Workflow>,
        repeat: bool,
    },
    /// Not enough stock and the channel does not backorder; nothing was recorded.
    Insufficient(Vec<Shortfall>),
    Rejected(Rejection),
}

type EventReceiver = oneshot::Receiver<Result<EventReply, EngineError>>;

/// What a writer thread receives.
pub(crate) enum Command {
    Event {
        event: Event,
        reply: oneshot::Sender<Result<EventReply, EngineError>>,
    },
    Reservation {
        event: Event,
        reply: oneshot::Sender<Result<ReservationReply, EngineError>>,
    },
    /// Record an exception about input that never became an event (bad JSON, wrong token).
    Exception {
        record: ExceptionRecord,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// A workflow command (capture an order, cancel it, create a PO, ...).
    Workflow {
        event: Event,
        reply: oneshot::Sender<Result<WorkflowReply, EngineError>>,
    },
    /// A durable timer fired.
    Timer { event: Event },
    /// The copies of forwarded event `seq` answered: its log row becomes `status`.
    Forwarded { seq: u64, status: EventStatus },
    /// Lend these items to a wide input and wait until it is settled ([`wide`]).
    Lend {
        items: Vec<ItemId>,
        reply: oneshot::Sender<wide::Loan>,
    },
    /// Apply a wide input with the items lent to it ([`wide`]).
    Wide {
        event: Event,
        answer: WideAnswer,
        loans: Vec<wide::Loan>,
    },
    /// Finish what is queued before this, then stop.
    Stop,
}

/// Who waits for a wide input's answer: a workflow command's caller or an event's.
pub(crate) enum WideAnswer {
    Workflow(oneshot::Sender<Result<WorkflowReply, EngineError>>),
    Event(oneshot::Sender<Result<EventReply, EngineError>>),
}

/// A command with the span of whoever sent it (a request's `http` span): the writer enters it
/// while it applies the command, so the engine's spans are children of the request's.
pub(crate) struct Traced(pub Command, pub tracing::Span);

/// What a partition's queue holds. Boxed: a bounded queue allocates every slot when it is made,
/// and a command is hundreds of bytes, so `queue_max` commands inline would hold tens of MiB
/// from the start whether or not anything is queued.
pub(crate) type Queued = Box<Traced>;

/// Committed state of one partition, as queries see it.
#[derive(Default)]
pub(crate) struct View {
    /// The same states as the writer's ledger where they have not changed since (shared `Arc`s).
    pub items: ItemMap,
    pub seq: u64,
}

/// One partition as `GET /readyz` and `/metrics` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStatus {
    pub partition: u32,
    pub ledger_seq: u64,
    pub items: usize,
}

/// A partition's committed items as of its ledger sequence `seq`.
pub struct CommittedPartition {
    pub partition: u32,
    pub seq: u64,
    pub items: Vec<(ItemId, Arc<ItemState>)>,
}

pub struct Engine {
    /// The embedded store's WAL checkpoints, off the commit path.
    checkpointer: Mutex<Option<crossdock_store::sqlite::Checkpointer>>,
    policy: Arc<Policy>,
    partitions: Vec<SyncSender<Queued>>,
    views: Vec<Arc<RwLock<View>>>,
    reader: StoreThread,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    timers: timers::TimerHandle,
    /// Live workflows whose items span partitions, by key ([`wide`]).
    wide: RwLock<HashMap<String, wide::WideEntry>>,
    /// One wide input at a time.
    wide_lock: tokio::sync::Mutex<()>,
    /// Items orders of other partitions wait for ([`wide::Filler`]).
    backordered: wide::Backordered,
    /// Every logged input's fingerprint, whatever partition logged it ([`keys`]).
    keys: Arc<keys::Keys>,
}

/// Partition of an item: a stable hash, so it never changes between runs.
pub fn partition_of(item: &ItemId, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    (xxhash_rust::xxh3::xxh3_64(item.as_str().as_bytes()) % u64::from(partitions)) as u32
}

impl Engine {
    /// Opens the store, loads every partition and starts the writers and the timer wheel.
    pub fn start(mut config: EngineConfig, policy: Arc<Policy>) -> Result<Arc<Engine>, StoreError> {
        assert!(config.partitions >= 1 && config.batch_max >= 1 && config.queue_max >= 1);
        let mut reader = config.store.open()?;
        if !config.partitions_fixed
            && let Some(recorded) = reader.recorded_partitions()?
        {
            config.partitions = recorded;
        }
        reader.migrate(config.partitions)?;
        let timers = timers::TimerHandle::new();
        let (part_sink, part_work) = std::sync::mpsc::channel();
        let (forward_sink, forward_work) = std::sync::mpsc::channel();
        let (fill_sink, fill_work) = std::sync::mpsc::channel();
        let keys = Arc::new(keys::Keys::new());
        let backordered = wide::Backordered::default();
        let mut senders = Vec::new();
        let mut views = Vec::new();
        let mut threads = Vec::new();
        let mut writers = Vec::new();
        for p in 0..config.partitions {
            let store = config.store.open()?;
            let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_max);
            let view = Arc::new(RwLock::new(View::default()));
            let writer = writer::Writer::load(
                p,
                store,
                policy.clone(),
                view.clone(),
                timers.clone(),
                config.batch_max,
                config.outbox.clone(),
                part_sink.clone(),
                config.partitions,
                keys.clone(),
            )?;
            writers.push((writer, rx));
            senders.push(tx);
            views.push(view);
        }
        // Parts of cross-partition reservations left open by a crash, settled as their
        // coordinator decided (a coordinator still deciding aborts at its deadline).
        let open_parts: Vec<(u32, Reservation)> = writers
            .iter()
            .enumerate()
            .flat_map(|(p, (w, _))| {
                w.ledger()
                    .reservations()
                    .filter(|r| crossdock_model::event::cross_part_owner(&r.id).is_some())
                    .map(move |r| (p as u32, r.clone()))
            })
            .collect();
        let n = config.partitions;
        let settle = cross::open_parts_to_settle(open_parts, |owner| {
            let c = partition_of_key(owner, n) as usize;
            match writers[c].0.ledger().reservation(owner) {
                Some(r) => Some(r.clone()),
                None => reader
                    .find_reservation(owner)
                    .ok()
                    .flatten()
                    .and_then(|row| persist::reservation_from_row(&row).ok()),
            }
        });
        for cmd in settle {
            let _ = part_sink.send(cmd);
        }
        drop(part_sink);
        // Live workflows whose items span partitions: their inputs run wide; and the items
        // their orders wait for.
        let mut wide_workflows = HashMap::new();
        let mut fills = Vec::new();
        let shared_committer = matches!(config.store, StoreSpec::Sqlite(_));
        for (p, (w, _)) in writers.iter_mut().enumerate() {
            w.share_backordered(backordered.clone());
            w.set_shared_committer(shared_committer);
            for item in w.ledger().backordered_items() {
                if partition_of(item, config.partitions) != p as u32 {
                    backordered
                        .write()
                        .expect("backordered lock")
                        .entry(item.clone())
                        .or_default()
                        .insert(p as u32);
                    fills.push(wide::Fill {
                        item: item.clone(),
                        from: None,
                    });
                }
            }
            for wf in w.ledger().workflows() {
                let items = crossdock_ledger::workflow::workflow_items(&policy, wf);
                if !wide::lenders(&items, p as u32, config.partitions).is_empty() {
                    wide_workflows.insert(
                        wf.key(),
                        wide::WideEntry {
                            home: p as u32,
                            items,
                        },
                    );
                }
            }
        }
        // Events of resequenced sources put in line before a stop and not yet applied by the
        // partitions of their items go first, in each source's order.
        for (p, (w, _)) in writers.iter_mut().enumerate() {
            for (log_seq, event) in w.take_forwarding() {
                let _ = forward_sink.send(sequence::Forward {
                    home: p as u32,
                    log_seq,
                    event,
                    reply: None,
                });
            }
        }
        // Committers: one for every partition on SQLite (one write lock: the partitions'
        // batches are committed together), else one per partition, each on its connection.
        let shared = matches!(config.store, StoreSpec::Sqlite(_));
        let groups: Vec<Vec<usize>> = if shared {
            vec![(0..writers.len()).collect()]
        } else {
            (0..writers.len()).map(|p| vec![p]).collect()
        };
        let mut committer_threads = Vec::new();
        let mut to_committers: Vec<Option<SyncSender<committer::ToCommitter>>> =
            vec![None; writers.len()];
        for group in groups {
            let mut partitions = vec![None; writers.len()];
            for &p in &group {
                partitions[p] = Some(writers[p].0.handles());
            }
            let (outbox, parts) = writers[group[0]].0.hooks();
            let committer = committer::Committer {
                store: config.store.open()?,
                partitions,
                timers: timers.clone(),
                on_commit: outbox.on_commit.clone(),
                on_committed: outbox.on_committed.clone(),
                parts,
                forwards: forward_sink.clone(),
                fills: fill_sink.clone(),
            };
            let (tx, rx) = std::sync::mpsc::sync_channel(2 * group.len());
            for &p in &group {
                to_committers[p] = Some(tx.clone());
            }
            let name = if shared {
                "committer".to_string()
            } else {
                format!("committer-{}", group[0])
            };
            committer_threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || committer.run(rx))
                    .expect("spawn committer thread"),
            );
        }
        for (p, (writer, rx)) in writers.into_iter().enumerate() {
            let to_committer = to_committers[p]
                .take()
                .expect("every partition has a committer");
            let handle = std::thread::Builder::new()
                .name(format!("writer-{p}"))
                .spawn(move || writer.run(rx, to_committer))
                .expect("spawn writer thread");
            threads.push(handle);
        }
        // Joined after the writers: a committer ends once every writer it serves has.
        threads.extend(committer_threads);
        let checkpointer = match &config.store {
            StoreSpec::Sqlite(path) => Some(crossdock_store::sqlite::Checkpointer::spawn(
                path,
                std::time::Duration::from_millis(200),
            )?),
            _ => None,
        };
        let engine = Arc::new(Engine {
            checkpointer: Mutex::new(checkpointer),
            policy,
            partitions: senders,
            views,
            reader: StoreThread::spawn("store-reader", reader),
            threads: Mutex::new(threads),
            timers: timers.clone(),
            wide: RwLock::new(wide_workflows),
            wide_lock: tokio::sync::Mutex::new(()),
            backordered,
            keys,
        });
        drop(forward_sink);
        cross::Driver::spawn(Arc::downgrade(&engine), part_work);
        sequence::Forwarder::spawn(Arc::downgrade(&engine), forward_work);
        // Stock that came in before a stop is offered again to orders of other partitions.
        if !fills.is_empty() {
            let _ = fill_sink.send(fills);
        }
        drop(fill_sink);
        wide::Filler::spawn(Arc::downgrade(&engine), fill_work);
        let weak = Arc::downgrade(&engine);
        timers.start(move |event| match weak.upgrade() {
            Some(engine) => engine.fire_timer(event),
            None => false,
        });
        Ok(engine)
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    pub fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    fn send(&self, partition: u32, cmd: Command) -> Result<(), EngineError> {
        let traced = Box::new(Traced(cmd, tracing::Span::current()));
        match self.partitions[partition as usize].try_send(traced) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Stopped),
        }
    }

    /// The partition of an input: its first item's; for one that names no item, the partition
    /// of the key it is about (a reservation, a source), so no partition is special.
    fn route(&self, data: &EventData) -> u32 {
        let n = self.partitions();
        if let Some(item) = data.items().first() {
            return partition_of(item, n);
        }
        match data {
            EventData::CrossBegun(d) => partition_of_key(&d.reservation, n),
            EventData::CrossDecided(d) => partition_of_key(&d.reservation, n),
            EventData::GapTimeout(d) => partition_of_key(d.source.as_str(), n),
            _ => 0,
        }
    }

    /// Whether `event` goes first to the partition of its source, to be put in line
    /// ([`sequence`]): with several partitions, an event of a resequenced source that carries a
    /// sequence number.
    fn sequenced_elsewhere(&self, event: &Event) -> bool {
        self.partitions() > 1 && event.sequence.is_some() && self.policy.is_sequenced(&event.source)
    }

    /// Whether `event` was logged before whole, in any partition: its fingerprint is known
    /// ([`keys`]) and the store has it with the same payload. Such an input is a repeat wherever
    /// it goes, so it goes whole to one writer, which answers it from the store, however it was
    /// run the first time (wide, or forwarded: that may differ now, a workflow it named having
    /// finished). One logged in parts (a shipment split by partition) is split again and each
    /// part answered as the repeat it is.
    async fn logged_before(&self, event: &Event) -> Result<bool, EngineError> {
        if self.partitions() <= 1 || !self.keys.contains(event.key_hash()) {
            return Ok(false);
        }
        let (source, id) = (event.source.to_string(), event.id.clone());
        let hash = event.payload_hash();
        self.reader
            .call(move |s| s.find_event(&source, &id))
            .await?
            .map(|row| row.is_some_and(|r| r.payload_hash == hash))
            .map_err(|e| EngineError::Store(e.to_string()))
    }

    /// [`Engine::logged_before`] off the async executor.
    fn logged_before_blocking(&self, event: &Event) -> Result<bool, EngineError> {
        if self.partitions() <= 1 || !self.keys.contains(event.key_hash()) {
            return Ok(false);
        }
        let (source, id) = (event.source.to_string(), event.id.clone());
        let hash = event.payload_hash();
        self.reader
            .call_blocking(move |s| s.find_event(&source, &id))
            .map_err(|_| EngineError::Stopped)?
            .map(|row| row.is_some_and(|r| r.payload_hash == hash))
            .map_err(|e| EngineError::Store(e.to_string()))
    }

    /// A repeat, whole, to the writer of its first item (or key).
    fn send_repeat(&self, event: Event) -> Result<Vec<EventReceiver>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(self.route(&event.data), Command::Event { event, reply: tx })?;
        Ok(vec![rx])
    }

    /// Submits an event; resolves once it is durable.
    pub async fn submit(&self, event: Event) -> Result<EventReply, EngineError> {
        if self.logged_before(&event).await? {
            return Self::combine(self.send_repeat(event)?).await;
        }
        if !self.sequenced_elsewhere(&event)
            && let Some(plan) = self.wide_plan_of(&event)
        {
            return self.submit_wide(plan, event).await;
        }
        if !self.sequenced_elsewhere(&event)
            && self.partitions() > 1
            && event.data.items().is_empty()
            && let Some(key) = workflow_key(&event.data)
        {
            let partition = self.workflow_partition(&key).await?;
            let (tx, rx) = oneshot::channel();
            self.send(partition, Command::Event { event, reply: tx })?;
            return rx.await.map_err(|_| EngineError::Stopped)?;
        }
        let parts = self.dispatch(event)?;
        Self::combine(parts).await
    }

    /// Submits many events; each answer comes once its batch is durable. Order is kept per partition.
    pub async fn submit_many(&self, events: Vec<Event>) -> Vec<Result<EventReply, EngineError>> {
        let mut out = Vec::with_capacity(events.len());
        let mut waiting = Vec::with_capacity(events.len());
        for e in events {
            // An event naming a wide workflow runs after the events before it, and before
            // those after it are queued.
            // So does one that names only its workflow, which is looked up to find where it
            // lives.
            let looked_up = self.partitions() > 1
                && e.data.items().is_empty()
                && workflow_key(&e.data).is_some();
            let maybe_repeat = self.partitions() > 1 && self.keys.contains(e.key_hash());
            if maybe_repeat
                || !self.sequenced_elsewhere(&e) && (looked_up || self.wide_plan_of(&e).is_some())
            {
                for w in waiting.drain(..) {
                    out.push(Self::settled(w).await);
                }
                out.push(self.submit(e).await);
                continue;
            }
            waiting.push(self.dispatch(e));
        }
        for w in waiting {
            out.push(Self::settled(w).await);
        }
        out
    }

    async fn settled(
        w: Result<Vec<EventReceiver>, EngineError>,
    ) -> Result<EventReply, EngineError> {
        match w {
            Ok(parts) => Self::combine(parts).await,
            Err(e) => Err(e),
        }
    }

    /// Queues an event with the writer that owns its items. A shipment whose lines belong to
    /// several partitions is split into one event per partition; the first part keeps the id and
    /// the others get `<id>#<n>`, so a resent shipment is recognised part by part.
    fn dispatch(&self, event: Event) -> Result<Vec<EventReceiver>, EngineError> {
        let parts = match &event.data {
            _ if self.sequenced_elsewhere(&event) => {
                vec![(
                    partition_of_key(event.source.as_str(), self.partitions()),
                    event,
                )]
            }
            EventData::Shipped(shipped) if self.partitions() > 1 => {
                let mut groups: Vec<(u32, Vec<crossdock_model::event::ShipLine>)> = Vec::new();
                for line in &shipped.lines {
                    let p = partition_of(&line.item, self.partitions());
                    match groups.iter_mut().find(|(gp, _)| *gp == p) {
                        Some((_, lines)) => lines.push(line.clone()),
                        None => groups.push((p, vec![line.clone()])),
                    }
                }
                groups
                    .into_iter()
                    .enumerate()
                    .map(|(n, (p, lines))| {
                        let mut part = event.clone();
                        if n > 0 {
                            part.id = format!("{}#{n}", event.id);
                            part.causation_id = Some(event.id.clone());
                        }
                        part.data = EventData::Shipped(crossdock_model::event::Shipped {
                            lines,
                            ..shipped.clone()
                        });
                        (p, part)
                    })
                    .collect()
            }
            data => vec![(self.route(data), event)],
        };
        let mut receivers = Vec::with_capacity(parts.len());
        for (partition, part) in parts {
            let (tx, rx) = oneshot::channel();
            self.send(
                partition,
                Command::Event {
                    event: part,
                    reply: tx,
                },
            )?;
            receivers.push(rx);
        }
        Ok(receivers)
    }

    /// [`Engine::dispatch`] for a forwarded copy, off the async executor: an input that names no
    /// item but a workflow goes where the workflow lives (looked up in the store).
    pub(crate) fn dispatch_blocking(
        &self,
        event: Event,
    ) -> Result<Vec<EventReceiver>, EngineError> {
        if self.logged_before_blocking(&event)? {
            return self.send_repeat(event);
        }
        if let Some(plan) = self.wide_plan_of(&event) {
            // Rare (a resequenced feed naming a workflow across partitions): run it here.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|e| EngineError::Store(format!("cannot run a wide input: {e}")))?;
            let reply = runtime.block_on(self.submit_wide(plan, event));
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(reply);
            return Ok(vec![rx]);
        }
        if self.partitions() > 1
            && event.data.items().is_empty()
            && let Some(key) = workflow_key(&event.data)
        {
            let found = self
                .reader
                .call_blocking(move |s| s.find_workflow(&key))
                .map_err(|_| EngineError::Stopped)?
                .map_err(|e| EngineError::Store(e.to_string()))?;
            let partition = found.map_or(0, |(row, _)| row.partition);
            let (tx, rx) = oneshot::channel();
            self.send(partition, Command::Event { event, reply: tx })?;
            return Ok(vec![rx]);
        }
        self.dispatch(event)
    }

    /// One answer for an event from the answers of its parts: the first problem wins, else the
    /// first part's outcome.
    async fn combine(parts: Vec<EventReceiver>) -> Result<EventReply, EngineError> {
        let mut replies = Vec::with_capacity(parts.len());
        for rx in parts {
            replies.push(rx.await.map_err(|_| EngineError::Stopped)??);
        }
        Ok(Self::combine_replies(replies))
    }

    pub(crate) fn combine_replies(mut replies: Vec<EventReply>) -> EventReply {
        let worst = replies.iter().position(|r| {
            matches!(
                r,
                EventReply::Conflict { .. }
                    | EventReply::Rejected(_)
                    | EventReply::Recorded {
                        status: EventStatus::Quarantined,
                        ..
                    }
            )
        });
        replies.swap_remove(worst.unwrap_or(0))
    }

    /// Records an exception about input that never became an event, in the partition of its
    /// id (spread over the partitions, so a flood of bad input does not queue behind one writer).
    pub async fn record_exception(&self, record: ExceptionRecord) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        let partition = partition_of_key(&record.id, self.partitions());
        self.send(partition, Command::Exception { record, reply: tx })?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Holds stock for a channel, all lines or none: on one partition's writer directly, or
    /// across partitions with [`cross`]'s protocol.
    pub async fn reserve(
        &self,
        id: String,
        channel: ChannelId,
        lines: Vec<crossdock_model::event::ReserveLine>,
        ttl_s: u64,
        correlation_id: String,
    ) -> Result<ReservationReply, EngineError> {
        if !Self::is_reservation_id_allowed(&id) {
            return Ok(ReservationReply::Rejected(Rejection::Invalid {
                field: "id".into(),
                reason: format!(
                    "must not contain {:?} (the hub names the parts of a reservation so)",
                    crossdock_model::event::CROSS_PART_MARK
                ),
            }));
        }
        let partition = lines
            .first()
            .map_or(0, |l| partition_of(&l.item, self.partitions()));
        if lines
            .iter()
            .any(|l| partition_of(&l.item, self.partitions()) != partition)
        {
            return self
                .reserve_across(id, channel, lines, ttl_s, correlation_id)
                .await;
        }
        let now = Timestamp::now();
        let data = EventData::ReservationRequested(ReservationRequested {
            reservation: id.clone(),
            channel,
            lines,
            ttl_s,
        });
        self.reservation_command(
            partition,
            hub_command(
                crossdock_ledger::state::reserve_command_id(&id),
                now,
                correlation_id,
                data,
            ),
        )
        .await
    }

    /// Runs a workflow command (see [`crossdock_model::workflow`]) with the writer that owns the
    /// workflow: the partition of its items when it creates one, else where it lives.
    pub async fn workflow_command(&self, mut event: Event) -> Result<WorkflowReply, EngineError> {
        if let Some(key) = workflow_key(&event.data)
            && let Some(plan) = self.wide_command_plan(&key, &event.data)
        {
            return self.wide_command(plan, event).await;
        }
        let live = match workflow_key(&event.data) {
            Some(key) if self.partitions() > 1 && creation_hash(&event.data).is_none() => {
                self.workflow(&key).await?.map(|(row, _)| row)
            }
            _ => None,
        };
        let partition = match (&live, event.data.items().first()) {
            // A workflow lives where it started; an input that would take it to items of other
            // partitions (an ASN's substitute) makes it wide from now on.
            (Some(row), _) => {
                let wf = persist::workflow_from_row(row)
                    .map_err(|e| EngineError::Store(e.to_string()))?;
                let key = wf.key();
                if let Some(plan) =
                    self.wide_if_spanning(&key, &event.data, Some(&wf), row.partition)
                {
                    return self.wide_command(plan, event).await;
                }
                row.partition
            }
            // A new workflow whose items share a partition.
            (None, Some(first)) => partition_of(first, self.partitions()),
            (None, None) => 0,
        };
        event.received_at = Timestamp::now();
        let (tx, rx) = oneshot::channel();
        self.send(partition, Command::Workflow { event, reply: tx })?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    async fn workflow_partition(&self, key: &str) -> Result<u32, EngineError> {
        if self.partitions() == 1 {
            return Ok(0);
        }
        Ok(self
            .workflow(key)
            .await?
            .map_or(0, |(row, _)| row.partition))
    }

    /// A workflow as last committed, with its history.
    pub async fn workflow(
        &self,
        key: &str,
    ) -> Result<Option<(WorkflowRow, Vec<StepRow>)>, EngineError> {
        let key = key.to_string();
        self.reader
            .call(move |s| s.find_workflow(&key))
            .await?
            .map_err(|e| EngineError::Store(e.to_string()))
    }

    pub async fn workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRow>, EngineError> {
        self.reader
            .call(move |s| s.list_workflows(&filter))
            .await?
            .map_err(|e| EngineError::Store(e.to_string()))
    }

    /// A reservation as last committed (held, committed, released or expired).
    pub async fn reservation(&self, id: &str) -> Result<Option<Reservation>, EngineError> {
        let id = id.to_string();
        let row = self.reader.call(move |s| s.find_reservation(&id)).await?;
        match row {
            Ok(Some(row)) => persist::reservation_from_row(&row)
                .map(Some)
                .map_err(|e| EngineError::Store(e.to_string())),
            Ok(None) => Ok(None),
            Err(e) => Err(EngineError::Store(e.to_string())),
        }
    }

    /// Releases (`commit = false`) or commits a held reservation into an allocation.
    pub async fn settle(
        &self,
        id: String,
        commit: bool,
        correlation_id: String,
    ) -> Result<ReservationReply, EngineError> {
        let r = ReservationRef {
            reservation: id.clone(),
        };
        let (name, data) = if commit {
            ("commit", EventData::ReservationCommitted(r))
        } else {
            ("release", EventData::ReservationReleased(r))
        };
        let partition = self.reservation_partition(&id).await?;
        let reply = self
            .reservation_command(
                partition,
                hub_command(
                    format!("{name}:{id}"),
                    Timestamp::now(),
                    correlation_id.clone(),
                    data,
                ),
            )
            .await?;
        if let ReservationReply::Done { reservation, .. } = &reply
            && reservation.cross.is_some()
        {
            self.settle_parts(reservation, &correlation_id).await;
        }
        Ok(reply)
    }

    async fn reservation_partition(&self, id: &str) -> Result<u32, EngineError> {
        if self.partitions() == 1 {
            return Ok(0);
        }
        let id = id.to_string();
        let row = self.reader.call(move |s| s.find_reservation(&id)).await?;
        Ok(row
            .map_err(|e| EngineError::Store(e.to_string()))?
            .map_or(0, |r| r.partition))
    }

    /// Runs one reservation command (a hub command) at `partition` and nothing after it: the
    /// cross-partition protocol tests take the protocol's steps one at a time with it.
    #[doc(hidden)]
    pub async fn reservation_command_at(
        &self,
        partition: u32,
        event: Event,
    ) -> Result<ReservationReply, EngineError> {
        self.reservation_command(partition, event).await
    }

    async fn reservation_command(
        &self,
        partition: u32,
        mut event: Event,
    ) -> Result<ReservationReply, EngineError> {
        event.received_at = Timestamp::now();
        let (tx, rx) = oneshot::channel();
        self.send(partition, Command::Reservation { event, reply: tx })?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    fn fire_timer(&self, mut event: Event) -> bool {
        event.received_at = Timestamp::now();
        if let EventData::ReservationExpired(r) = &event.data
            && let Some(owner) = crossdock_model::event::cross_part_owner(&r.reservation)
        {
            let part = r.reservation.clone();
            let owner = owner.to_string();
            let Some(command) = self.expire_part(&owner, &part, event) else {
                return true;
            };
            let found = self
                .reader
                .call_blocking(move |s| s.find_reservation(&part));
            let Ok(Ok(Some(row))) = found else {
                return false;
            };
            return self.send(row.partition, command).is_ok();
        }
        let partition = match &event.data {
            EventData::ReservationExpired(r) if self.partitions() > 1 => {
                let id = r.reservation.clone();
                match self.reader.call_blocking(move |s| s.find_reservation(&id)) {
                    Ok(Ok(row)) => row.map_or(0, |r| r.partition),
                    _ => return false,
                }
            }
            data if self.partitions() > 1 && workflow_key(data).is_some() => {
                let key = workflow_key(data).expect("checked");
                match self.reader.call_blocking(move |s| s.find_workflow(&key)) {
                    Ok(Ok(row)) => row.map_or(0, |(r, _)| r.partition),
                    _ => return false,
                }
            }
            data => self.route(data),
        };
        self.send(partition, Command::Timer { event }).is_ok()
    }

    /// The committed state of an item.
    pub fn item(&self, item: &ItemId) -> Option<(Arc<ItemState>, u64)> {
        let view = self.views[partition_of(item, self.partitions()) as usize]
            .read()
            .expect("view lock");
        view.items.get(item).map(|s| (s.clone(), view.seq))
    }

    /// Channel availability as last computed, and the ledger sequence it was computed at.
    pub fn availability(&self, item: &ItemId, channel: crossdock_ledger::ChanIdx) -> (i64, u64) {
        let view = self.views[partition_of(item, self.partitions()) as usize]
            .read()
            .expect("view lock");
        match view
            .items
            .get(item)
            .and_then(|s| s.published.get(channel.0 as usize).copied().flatten())
        {
            Some(p) => (p.ats, p.seq),
            None => (0, view.seq),
        }
    }

    /// Every committed item of every partition, with the partition's ledger sequence: one
    /// consistent cut per partition, taken under its view lock (pointer copies only).
    pub fn committed_items(&self) -> Vec<CommittedPartition> {
        self.views
            .iter()
            .enumerate()
            .map(|(p, v)| {
                let view = v.read().expect("view lock");
                CommittedPartition {
                    partition: p as u32,
                    seq: view.seq,
                    items: view
                        .items
                        .iter()
                        .map(|s| (s.id().clone(), s.clone()))
                        .collect(),
                }
            })
            .collect()
    }

    /// Runs `f` on the engine's read connection to the store.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, EngineError> {
        self.reader
            .call(f)
            .await?
            .map_err(|e| EngineError::Store(e.to_string()))
    }

    /// Every partition as queries see it: its last committed ledger sequence and how many
    /// items it holds.
    pub fn partition_status(&self) -> Vec<PartitionStatus> {
        self.views
            .iter()
            .enumerate()
            .map(|(p, v)| {
                let view = v.read().expect("view lock");
                PartitionStatus {
                    partition: p as u32,
                    ledger_seq: view.seq,
                    items: view.items.len(),
                }
            })
            .collect()
    }

    /// Sequence of the last commit of each partition.
    pub fn ledger_seqs(&self) -> Vec<u64> {
        self.views
            .iter()
            .map(|v| v.read().expect("view lock").seq)
            .collect()
    }

    /// Exception records matching `filter`, and open counts by kind.
    pub async fn exceptions(
        &self,
        filter: ExceptionFilter,
    ) -> Result<(Vec<ExceptionRecord>, Vec<(ExceptionKind, u64)>), EngineError> {
        self.reader
            .call(move |s| {
                Ok::<_, StoreError>((s.list_exceptions(&filter)?, s.exception_counts()?))
            })
            .await?
            .map_err(|e| EngineError::Store(e.to_string()))
    }

    pub async fn outbox(
        &self,
        endpoint: Option<String>,
        limit: u32,
    ) -> Result<Vec<StoredOutbox>, EngineError> {
        self.reader
            .call(move |s| s.outbox(endpoint.as_deref(), limit))
            .await?
            .map_err(|e| EngineError::Store(e.to_string()))
    }

    /// Number of timers waiting.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// Stops the writers after they finish what is queued.
    pub fn shutdown(&self) {
        self.timers.stop();
        for tx in &self.partitions {
            let _ = tx.send(Box::new(Traced(Command::Stop, tracing::Span::none())));
        }
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
        for t in threads {
            let _ = t.join();
        }
        drop(self.checkpointer.lock().expect("checkpointer lock").take());
    }
}
