//! Workflows across partitions ("wide" inputs).
//!
//! A workflow whose items hash to several partitions lives in the partition of its key
//! (`partition_of_key("order:<id>")`, its home), and every input that changes it (its commands,
//! and the physical events that name it: picks, shipments, receipts against it) runs there with
//! the items it may touch lent by their partitions for that one input:
//!
//! 1. One wide input at a time (`Engine::wide_lock`): every other partition is untouched.
//! 2. Each partition holding some of the items gets `Command::Lend`: its writer hands over what
//!    it applied so far (on PostgreSQL, where partitions commit on their own connections, it
//!    waits until all of it is committed; on SQLite one committer takes every partition's
//!    batches in order, so the wide input commits after them, and fails if one of them did),
//!    sends the items' state ([`Loan`]) and then waits, applying nothing, until the input is
//!    settled.
//! 3. The home's writer gets `Command::Wide`: it puts the lent items in its ledger, moves its
//!    sequence past every lender's, and applies the input with the ordinary pure ledger, exactly
//!    as one partition would (sourcing, allocation, splits, backorders, cancel, picks,
//!    shipments, invoices). The rows of each lent item go to its own partition, and each lender
//!    logs a part row (`<id>#at:<partition>`) at the same sequence; the home's committer commits
//!    all of them in one transaction.
//! 4. After the commit the lenders' views are published and each lender gets its items back
//!    ([`Return::Install`]) and goes on; if the commit failed they get [`Return::Unchanged`] and
//!    the home reloads, as after any failed commit. The caller is answered after that.
//!
//! A lender never waits for another writer, and only the one wide input waits for lenders, so
//! nothing can deadlock. The registry of live wide workflows ([`WideEntry`], rebuilt at start
//! from the live workflows) tells the engine which inputs are wide.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::mpsc::{Receiver, Sender, TrySendError};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use crossdock_ledger::ItemState;
use crossdock_ledger::workflow::{
    Workflow, creation_hash, items_touched, named_workflow, workflow_items,
};
use crossdock_model::{Event, EventData, ItemId, Timestamp};
use tokio::sync::oneshot;
use tracing::{error, warn};

use crate::{Command, EngineError, View, WideAnswer};

/// A live workflow whose items span partitions.
#[derive(Debug, Clone)]
pub(crate) struct WideEntry {
    pub home: u32,
    pub items: Vec<ItemId>,
}

/// What a partition lends for one wide input.
pub(crate) struct Loan {
    pub partition: u32,
    /// Its ledger sequence when it lent.
    pub seq: u64,
    /// The items asked for that it has (an item it does not have yet is created by the input).
    pub items: Vec<(ItemId, Arc<ItemState>)>,
    /// Every item asked for of this partition, present or not.
    pub asked: Vec<ItemId>,
    pub view: Arc<RwLock<View>>,
    /// The lender's poison flag: a batch it applied before lending failed to commit, so the
    /// state it lent was never durable and the wide input fails too.
    pub poisoned: Arc<std::sync::atomic::AtomicBool>,
    pub back: Sender<Return>,
}

/// What a lender gets back once the wide input is settled.
pub(crate) enum Return {
    /// The input committed: these items' new state, and the sequence it was logged at.
    Install {
        items: Vec<(ItemId, Arc<ItemState>)>,
        seq: u64,
    },
    /// Nothing changed (the commit failed or the input did not apply).
    Unchanged,
}

/// A lender's share of a committed wide input, settled by the home's committer.
pub(crate) struct Settle {
    pub back: Sender<Return>,
    pub view: Arc<RwLock<View>>,
    pub items: Vec<(ItemId, Arc<ItemState>)>,
    pub seq: u64,
}

impl Settle {
    /// After the commit: publish the lender's view (so the caller reads its own writes), then
    /// give the items back.
    pub fn committed(self) {
        {
            let mut view = self.view.write().expect("view lock");
            for (_, state) in &self.items {
                view.items.insert(state.clone());
            }
            view.seq = view.seq.max(self.seq);
        }
        let _ = self.back.send(Return::Install {
            items: self.items,
            seq: self.seq,
        });
    }

    pub fn failed(self) {
        let _ = self.back.send(Return::Unchanged);
    }
}

/// The partitions of `items` other than `home`, in order.
pub(crate) fn lenders(items: &[ItemId], home: u32, partitions: u32) -> BTreeSet<u32> {
    items
        .iter()
        .map(|i| crate::partition_of(i, partitions))
        .filter(|p| *p != home)
        .collect()
}

/// Where a wide input runs and the items it may touch.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub home: u32,
    pub items: Vec<ItemId>,
}

impl crate::Engine {
    /// The plan of a workflow command when it is wide: its workflow is a live wide one, or it
    /// starts one whose items (and, for an order, their substitutes) span partitions.
    pub(crate) fn wide_command_plan(&self, key: &str, data: &EventData) -> Option<Plan> {
        let n = self.partitions();
        if n <= 1 {
            return None;
        }
        if let Some(plan) = self.wide_event_plan(key, data) {
            return Some(plan);
        }
        creation_hash(data)?;
        self.wide_if_spanning(key, data, None, crate::partition_of_key(key, n))
    }

    /// A plan for `data` (on live workflow `wf` living in `home`, or starting one there) when the
    /// items it may touch are not all on one partition.
    pub(crate) fn wide_if_spanning(
        &self,
        key: &str,
        data: &EventData,
        wf: Option<&Workflow>,
        home: u32,
    ) -> Option<Plan> {
        let n = self.partitions();
        let _ = key;
        let items = items_touched(self.policy(), data, wf);
        let first = crate::partition_of(items.first()?, n);
        if wf.is_none() && lenders(&items, first, n).is_empty() {
            // A new workflow whose items share a partition lives there.
            return None;
        }
        if wf.is_some() && lenders(&items, home, n).is_empty() {
            return None;
        }
        Some(Plan { home, items })
    }

    /// The plan of an input naming live wide workflow `key`.
    pub(crate) fn wide_event_plan(&self, key: &str, data: &EventData) -> Option<Plan> {
        let wide = self.wide.read().expect("wide registry lock");
        let entry = wide.get(key)?;
        let mut items = entry.items.clone();
        items.extend(data.items().into_iter().cloned());
        items.sort();
        items.dedup();
        Some(Plan {
            home: entry.home,
            items,
        })
    }

    /// The plan of an event, when it names a live wide workflow.
    pub(crate) fn wide_plan_of(&self, event: &Event) -> Option<Plan> {
        if self.partitions() <= 1 {
            return None;
        }
        let key = named_workflow(&event.data)?;
        self.wide_event_plan(&key, &event.data)
    }

    /// Keeps the registry as a wide command left its workflow.
    pub(crate) fn note_wide(&self, home: u32, reply: &crate::WorkflowReply) {
        let crate::WorkflowReply::Done { workflow, .. } = reply else {
            return;
        };
        let mut wide = self.wide.write().expect("wide registry lock");
        if workflow.is_final() {
            wide.remove(&workflow.key());
        } else {
            wide.insert(
                workflow.key(),
                WideEntry {
                    home,
                    items: workflow_items(self.policy(), workflow),
                },
            );
        }
    }

    /// Runs one wide input (see the module docs); `answer` gets its reply.
    pub(crate) async fn run_wide(
        &self,
        plan: Plan,
        mut event: Event,
        answer: WideAnswer,
    ) -> Result<(), EngineError> {
        let _one_at_a_time = self.wide_lock.lock().await;
        let n = self.partitions();
        let mut by_partition: BTreeMap<u32, Vec<ItemId>> = BTreeMap::new();
        for item in plan.items {
            let q = crate::partition_of(&item, n);
            if q != plan.home {
                by_partition.entry(q).or_default().push(item);
            }
        }
        let mut asked = Vec::with_capacity(by_partition.len());
        let mut failed = None;
        for (q, items) in by_partition {
            let (tx, rx) = oneshot::channel();
            match self
                .send_waiting(q, Command::Lend { items, reply: tx })
                .await
            {
                Ok(()) => asked.push(rx),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let mut loans = Vec::with_capacity(asked.len());
        for rx in asked {
            match rx.await {
                Ok(loan) => loans.push(loan),
                Err(_) => failed = Some(EngineError::Stopped),
            }
        }
        if let Some(e) = failed {
            for loan in loans {
                let _ = loan.back.send(Return::Unchanged);
            }
            return Err(e);
        }
        event.received_at = Timestamp::now();
        let cmd = Command::Wide {
            event,
            answer,
            loans,
        };
        if let Err((e, cmd)) = self.send_waiting_back(plan.home, cmd).await {
            if let Command::Wide { loans, .. } = cmd {
                for loan in loans {
                    let _ = loan.back.send(Return::Unchanged);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Queues `cmd`, waiting while the partition's queue is full.
    async fn send_waiting(&self, partition: u32, cmd: Command) -> Result<(), EngineError> {
        self.send_waiting_back(partition, cmd)
            .await
            .map_err(|(e, _)| e)
    }

    async fn send_waiting_back(
        &self,
        partition: u32,
        mut cmd: Command,
    ) -> Result<(), (EngineError, Command)> {
        let mut pause = Duration::from_millis(1);
        loop {
            let traced = Box::new(crate::Traced(cmd, tracing::Span::current()));
            match self.partitions[partition as usize].try_send(traced) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(t)) => {
                    cmd = t.0;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(TrySendError::Disconnected(t)) => return Err((EngineError::Stopped, t.0)),
            }
        }
    }

    /// A workflow command run wide; the registry follows the workflow it left.
    pub(crate) async fn wide_command(
        &self,
        plan: Plan,
        event: Event,
    ) -> Result<crate::WorkflowReply, EngineError> {
        let home = plan.home;
        let (tx, rx) = oneshot::channel();
        self.run_wide(plan, event, WideAnswer::Workflow(tx)).await?;
        let reply = rx.await.map_err(|_| EngineError::Stopped)??;
        self.note_wide(home, &reply);
        Ok(reply)
    }

    /// An event naming a live wide workflow, run wide.
    pub(crate) async fn submit_wide(
        &self,
        plan: Plan,
        event: Event,
    ) -> Result<crate::EventReply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.run_wide(plan, event, WideAnswer::Event(tx)).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }
}

/// Items that orders of other partitions wait for (backordered lines of wide orders), with the
/// partitions those orders live in: stock of them arriving or freed elsewhere is offered to
/// them by a [`Filler`].
pub(crate) type Backordered = Arc<RwLock<HashMap<ItemId, BTreeSet<u32>>>>;

/// Stock of `item` changed in a commit of partition `from` (`None`: at start, unknown).
pub(crate) struct Fill {
    pub item: ItemId,
    pub from: Option<u32>,
}

/// Where committers hand fills once durable.
pub(crate) type FillSink = Sender<Vec<Fill>>;

/// Offers stock to orders waiting in other partitions, off the writers' threads: for each item
/// whose stock changed, an `order.backorders_due.v1` runs wide in every partition with orders
/// waiting for it, and in the item's own partition when the change came from elsewhere (a wide
/// input freed or added its stock), each filling what it can, oldest order first.
///
/// Orders in the item's own partition are filled in the same apply as the receipt; those in
/// other partitions just after its commit, so in between another input may take the stock.
pub(crate) struct Filler {
    engine: Weak<crate::Engine>,
    work: Receiver<Vec<Fill>>,
}

impl Filler {
    pub fn spawn(engine: Weak<crate::Engine>, work: Receiver<Vec<Fill>>) {
        let filler = Filler { engine, work };
        std::thread::Builder::new()
            .name("backorder-filler".into())
            .spawn(move || filler.run())
            .expect("spawn the backorder filler");
    }

    fn run(self) {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        else {
            error!(
                "cannot start the backorder filler; backorders across partitions wait for the next receipt"
            );
            return;
        };
        while let Ok(first) = self.work.recv() {
            // Whatever else is waiting, each item once.
            let mut due: BTreeMap<ItemId, bool> = BTreeMap::new();
            for fill in first.into_iter().chain(self.work.try_iter().flatten()) {
                let own = crate::partition_of(
                    &fill.item,
                    self.engine.upgrade().map_or(1, |e| e.partitions()),
                );
                *due.entry(fill.item).or_default() |= fill.from != Some(own);
            }
            for (item, elsewhere) in due {
                let Some(engine) = self.engine.upgrade() else {
                    return;
                };
                runtime.block_on(engine.offer(item, elsewhere));
            }
        }
    }
}

impl crate::Engine {
    /// Offers `item`'s stock to the orders waiting for it in other partitions (and in its own
    /// when `elsewhere`: the change came from a wide input).
    async fn offer(&self, item: ItemId, elsewhere: bool) {
        let homes: Vec<u32> = self
            .backordered
            .read()
            .expect("backordered lock")
            .get(&item)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        let own = crate::partition_of(&item, self.partitions());
        let due = || {
            crossdock_ledger::state::hub_command(
                format!(
                    "backorders:{item}:{}:{}",
                    Timestamp::now().as_micros(),
                    FILLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ),
                Timestamp::now(),
                format!("backorders:{item}"),
                EventData::BackordersDue(crossdock_model::event::BackordersDue {
                    item: item.clone(),
                }),
            )
        };
        if elsewhere && let Err(e) = self.submit(due()).await {
            warn!(%item, error = %e, "could not offer stock to the orders waiting in its partition");
        }
        for home in homes {
            let plan = Plan {
                home,
                items: vec![item.clone()],
            };
            let result = if home == own {
                self.submit(due()).await
            } else {
                self.submit_wide(plan, due()).await
            };
            if let Err(e) = result {
                warn!(%item, home, error = %e, "could not offer stock to the orders waiting in another partition");
            }
        }
    }
}

static FILLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
