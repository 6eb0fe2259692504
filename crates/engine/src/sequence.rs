//! Resequenced sources with several partitions.
//!
//! A source's sequence is checked by one writer, the partition of the source
//! (`partition_of_key(source)`): every event of it that carries a sequence number goes there, and
//! that ledger's resequencer holds, orders and releases it exactly as with one partition (held
//! events are logged and survive a restart; a gap is given up after the wait). An event in line
//! is not applied there but logged as `forwarding` and handed, once that commit is durable, to
//! the [`Forwarder`], which sends a copy (`<id>#fwd`, no sequence number, caused by the original)
//! to the partitions of its items. The forwarder is one thread taking forwards in commit order
//! and a partition's queue is first in, first out, so a source's events reach each partition in
//! sequence order. When the copies' commit answers, the caller of the original (if it is still
//! waiting) gets their answer and the original's row becomes `applied` or `quarantined`.
//!
//! A crash after the original's commit leaves its row `forwarding`: the next start forwards it
//! again before anything else, and a copy already applied is a repeat, so it applies once.

use std::sync::Weak;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use crossdock_model::Event;
use crossdock_model::event::forward_copy_id;
use crossdock_store::EventStatus;
use tokio::sync::oneshot;
use tracing::warn;

use crate::{Command, Engine, EngineError, EventReceiver, EventReply};

/// An event in line for its resequenced source, committed as `forwarding` in `home`.
pub(crate) struct Forward {
    pub home: u32,
    pub log_seq: u64,
    pub event: Event,
    /// The caller of the original, answered with the copies' answer.
    pub reply: Option<oneshot::Sender<Result<EventReply, EngineError>>>,
}

/// Where committers hand what their batches forwarded, once durable.
pub(crate) type ForwardSink = Sender<Forward>;

/// The copy the partitions of the event's items apply: an ordinary input of the same source.
pub(crate) fn copy_of(event: &Event) -> Event {
    let mut copy = event.clone();
    copy.id = forward_copy_id(&event.id);
    copy.sequence = None;
    copy.causation_id = Some(event.id.clone());
    copy
}

/// The log status of the original once its copies answered.
fn settled_status(reply: &EventReply) -> EventStatus {
    match reply {
        EventReply::Recorded { status, .. } | EventReply::Duplicate { status, .. } => {
            match status {
                EventStatus::Applied => EventStatus::Applied,
                _ => EventStatus::Quarantined,
            }
        }
        EventReply::Conflict { .. } | EventReply::Rejected(_) => EventStatus::Quarantined,
    }
}

pub(crate) struct Forwarder {
    engine: Weak<Engine>,
    work: Receiver<Forward>,
}

impl Forwarder {
    pub fn spawn(engine: Weak<Engine>, work: Receiver<Forward>) {
        let (settle_tx, settle_rx) = std::sync::mpsc::channel();
        let settler = Settler {
            engine: engine.clone(),
            work: settle_rx,
        };
        std::thread::Builder::new()
            .name("seq-settle".into())
            .spawn(move || settler.run())
            .expect("spawn the forward settler");
        let forwarder = Forwarder { engine, work };
        std::thread::Builder::new()
            .name("seq-forward".into())
            .spawn(move || forwarder.run(settle_tx))
            .expect("spawn the forwarder");
    }

    fn run(self, settle: Sender<(Forward, Vec<EventReceiver>)>) {
        while let Ok(f) = self.work.recv() {
            let Some(receivers) = send_copy(&self.engine, &f.event) else {
                return;
            };
            if settle.send((f, receivers)).is_err() {
                return;
            }
        }
    }
}

/// Queues the copy of `event` with the partitions of its items, waiting while they are full
/// (never dropping it: the order of a source's events depends on it). `None` once the engine
/// stops.
fn send_copy(engine: &Weak<Engine>, event: &Event) -> Option<Vec<EventReceiver>> {
    let copy = copy_of(event);
    let mut wait = Duration::from_millis(5);
    loop {
        let engine = engine.upgrade()?;
        match engine.dispatch_blocking(copy.clone()) {
            Ok(receivers) => return Some(receivers),
            Err(EngineError::Overloaded) => {
                drop(engine);
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            Err(_) => return None,
        }
    }
}

/// Waits for each forward's copies, in order, answers its caller and settles the original.
struct Settler {
    engine: Weak<Engine>,
    work: Receiver<(Forward, Vec<EventReceiver>)>,
}

impl Settler {
    fn run(self) {
        while let Ok((mut f, mut receivers)) = self.work.recv() {
            let reply = loop {
                let mut replies = Vec::with_capacity(receivers.len());
                let mut failed = None;
                for rx in receivers {
                    match rx.blocking_recv() {
                        Ok(Ok(r)) => replies.push(r),
                        Ok(Err(e)) => failed = Some(e),
                        Err(_) => failed = Some(EngineError::Stopped),
                    }
                }
                match failed {
                    None => break Ok(Engine::combine_replies(replies)),
                    Some(EngineError::Stopped) => break Err(EngineError::Stopped),
                    // A copy's commit failed (its partition reloads): send it again; a part
                    // that did land is a repeat.
                    Some(e) => {
                        warn!(source = %f.event.source, id = %f.event.id, error = %e,
                            "a forwarded event's copy was not committed; forwarding it again");
                        match send_copy(&self.engine, &f.event) {
                            Some(again) => receivers = again,
                            None => break Err(EngineError::Stopped),
                        }
                    }
                }
            };
            let Ok(reply) = reply else {
                if let Some(tx) = f.reply.take() {
                    let _ = tx.send(Err(EngineError::Stopped));
                }
                return;
            };
            let status = settled_status(&reply);
            if let Some(tx) = f.reply.take() {
                let _ = tx.send(Ok(reply));
            }
            if !self.mark(&f, status) {
                return;
            }
        }
    }

    /// Tells the source's partition how its original ended; a row left `forwarding` by a stop
    /// is forwarded again at the next start (a repeat), so this may be lost.
    fn mark(&self, f: &Forward, status: EventStatus) -> bool {
        let mut wait = Duration::from_millis(5);
        loop {
            let Some(engine) = self.engine.upgrade() else {
                return false;
            };
            let cmd = Command::Forwarded {
                seq: f.log_seq,
                status,
            };
            match engine.send(f.home, cmd) {
                Ok(()) => return true,
                Err(EngineError::Overloaded) => {
                    drop(engine);
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                Err(_) => return false,
            }
        }
    }
}
