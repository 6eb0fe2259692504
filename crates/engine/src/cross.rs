//! Reservations whose lines live on several partitions: the engine's side of the protocol in
//! [`crossdock_ledger::cross`].
//!
//! [`Engine::reserve`] begins the record in the partition that owns the reservation id, holds each
//! partition's lines as a part there (all at once), and decides: held when every part was held,
//! aborted otherwise. The caller is answered after the decision is durable. Parts are then
//! settled as their coordinator decided: inline for a caller (so it reads its own writes), by
//! the [`Driver`] thread for what timers decide (an expiry, a decision's deadline), and at
//! start for every part still open whose coordinator has decided.

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use crossdock_ledger::cross::{PART_GRACE_S, PartCommand, part_target, part_target_of};
use crossdock_ledger::state::hub_command;
use crossdock_ledger::{Rejection, ResStatus, Reservation, Shortfall};
use crossdock_model::event::{
    CROSS_PART_MARK, CrossBegun, CrossDecided, CrossLine, OwnPart, ReservationRef,
    ReservationRequested, ReserveLine, cross_part_id,
};
use crossdock_model::{ChannelId, Event, EventData, Timestamp};
use tokio::sync::oneshot;
use tracing::warn;

use crate::{Command, Engine, EngineError, ReservationReply, partition_of};

/// How long a cross-partition reservation may stay undecided before its coordinator aborts it.
pub const PREPARE_S: u64 = 30;

/// The partition that coordinates a reservation: a stable hash of its id.
pub fn partition_of_key(key: &str, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % u64::from(partitions)) as u32
}

/// What a client asked for.
struct Request<'a> {
    id: &'a str,
    channel: &'a ChannelId,
    lines: &'a [ReserveLine],
    ttl_s: u64,
    correlation_id: &'a str,
}

enum Attempt {
    Answer(ReservationReply),
    /// Another request for the same reservation is deciding.
    Busy,
}

/// A fresh attempt number: the hub's clock and a counter, so two attempts never share one.
fn nonce(id: &str) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(id.as_bytes());
    h.update(&Timestamp::now().as_micros().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.digest()
}

/// The command that moves a part to `to` (`Released` or `Committed`).
pub(crate) fn part_command(part: &str, to: ResStatus, correlation_id: String) -> Event {
    let r = ReservationRef {
        reservation: part.to_string(),
    };
    let (name, data) = if to == ResStatus::Committed {
        ("commit", EventData::ReservationCommitted(r))
    } else {
        ("release", EventData::ReservationReleased(r))
    };
    hub_command(
        format!("{name}:{part}"),
        Timestamp::now(),
        correlation_id,
        data,
    )
}

impl Engine {
    /// Whether `id` may be chosen by a client (parts' ids are the hub's own).
    pub fn is_reservation_id_allowed(id: &str) -> bool {
        !id.contains(CROSS_PART_MARK)
    }

    /// Holds `lines` on several partitions all or nothing (see the module docs).
    pub(crate) async fn reserve_across(
        &self,
        id: String,
        channel: ChannelId,
        lines: Vec<ReserveLine>,
        ttl_s: u64,
        correlation_id: String,
    ) -> Result<ReservationReply, EngineError> {
        // An earlier request for the same reservation still deciding: wait for its decision
        // (bounded by its deadline), then answer as it decided.
        let give_up = std::time::Instant::now() + Duration::from_secs(PREPARE_S + 2);
        let mut pause = Duration::from_millis(10);
        loop {
            let request = Request {
                id: &id,
                channel: &channel,
                lines: &lines,
                ttl_s,
                correlation_id: &correlation_id,
            };
            match self.attempt(request).await? {
                Attempt::Answer(reply) => return Ok(reply),
                Attempt::Busy if std::time::Instant::now() > give_up => {
                    return Ok(ReservationReply::Rejected(Rejection::InvalidState(
                        format!("reservation {id} is being decided by an earlier request; retry"),
                    )));
                }
                Attempt::Busy => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// One attempt: the coordinator's record begins while every part is held (at once: a part
    /// durable without its record is released at the next start, presumed abort), then the
    /// decision.
    async fn attempt(&self, r: Request<'_>) -> Result<Attempt, EngineError> {
        let n = self.partitions();
        let mut groups: Vec<(u32, Vec<ReserveLine>)> = Vec::new();
        for line in r.lines {
            let p = partition_of(&line.item, n);
            match groups.iter_mut().find(|(gp, _)| *gp == p) {
                Some((_, ls)) => ls.push(line.clone()),
                None => groups.push((p, vec![line.clone()])),
            }
        }
        groups.sort_by_key(|(p, _)| *p);
        let partitions: Vec<u32> = groups.iter().map(|(p, _)| *p).collect();
        let coordinator = partition_of_key(r.id, n);
        let attempt = nonce(r.id);
        let part_ttl_s = r.ttl_s + PREPARE_S + PART_GRACE_S;
        // The coordinator's own lines are held by the command that begins the record.
        let own = groups
            .iter()
            .position(|(p, _)| *p == coordinator)
            .map(|i| groups.remove(i))
            .map(|(partition, lines)| OwnPart {
                partition,
                lines,
                ttl_s: part_ttl_s,
            });
        let begin = hub_command(
            format!("begin:{}:{attempt:016x}", r.id),
            Timestamp::now(),
            r.correlation_id.to_string(),
            EventData::CrossBegun(CrossBegun {
                reservation: r.id.to_string(),
                channel: r.channel.clone(),
                lines: r.lines.to_vec(),
                ttl_s: r.ttl_s,
                nonce: attempt,
                partitions,
                prepare_s: PREPARE_S,
                own: own.clone(),
            }),
        );
        let begun = self.send_reservation(coordinator, begin);
        let mut waiting = Vec::with_capacity(groups.len());
        for (p, part_lines) in groups {
            let part = cross_part_id(r.id, attempt, p);
            let hold = hub_command(
                crossdock_ledger::state::reserve_command_id(&part),
                Timestamp::now(),
                r.correlation_id.to_string(),
                EventData::ReservationRequested(ReservationRequested {
                    reservation: part.clone(),
                    channel: r.channel.clone(),
                    lines: part_lines,
                    ttl_s: part_ttl_s,
                }),
            );
            waiting.push((p, part, self.send_reservation(p, hold)));
        }
        let begun = match begun {
            Ok(rx) => rx.await.map_err(|_| EngineError::Stopped).and_then(|r| r),
            Err(e) => Err(e),
        };
        let mut held = Vec::new();
        let mut held_parts = Vec::new();
        let mut shortfalls: Vec<Shortfall> = Vec::new();
        let mut refused: Option<Rejection> = None;
        let mut failed: Option<EngineError> = None;
        for (p, part, w) in waiting {
            let reply = match w {
                Ok(rx) => rx.await.map_err(|_| EngineError::Stopped).and_then(|r| r),
                Err(e) => Err(e),
            };
            match reply {
                Ok(ReservationReply::Done { reservation, .. }) => {
                    held_parts.push((p, part));
                    held.extend(reservation.lines.into_iter().map(|l| CrossLine {
                        item: l.item,
                        location: l.location,
                        lot: l.lot,
                        qty: l.qty,
                    }))
                }
                Ok(ReservationReply::Insufficient(s)) => shortfalls.extend(s),
                Ok(ReservationReply::Rejected(r)) => refused = Some(r),
                Err(e) => failed = Some(e),
            }
        }
        match begun? {
            ReservationReply::Done {
                repeat: false,
                reservation,
            } if reservation.status == ResStatus::Preparing => {
                // The lines of the coordinator's own part, held with the record.
                if let Some(own) = &own {
                    held_parts.push((own.partition, cross_part_id(r.id, attempt, own.partition)));
                    held.extend(reservation.lines.into_iter().map(|l| CrossLine {
                        item: l.item,
                        location: l.location,
                        lot: l.lot,
                        qty: l.qty,
                    }));
                }
            }
            // Not ours to decide (a repeat, a conflict, a request still deciding, the
            // coordinator's own lines short): the parts just held belong to no record.
            other => {
                self.release(&held_parts, r.correlation_id).await;
                return Ok(match other {
                    ReservationReply::Done {
                        reservation,
                        repeat: true,
                    } if reservation.status == ResStatus::Preparing => Attempt::Busy,
                    ReservationReply::Insufficient(mut short) => {
                        short.extend(shortfalls);
                        Attempt::Answer(ReservationReply::Insufficient(short))
                    }
                    other => Attempt::Answer(other),
                });
            }
        }
        let whole = shortfalls.is_empty() && refused.is_none() && failed.is_none();
        let decide = hub_command(
            format!("decide:{}:{attempt:016x}", r.id),
            Timestamp::now(),
            r.correlation_id.to_string(),
            EventData::CrossDecided(CrossDecided {
                reservation: r.id.to_string(),
                nonce: attempt,
                held: whole,
                lines: if whole { held } else { Vec::new() },
            }),
        );
        // Should this fail, the deadline's timer aborts the attempt and releases every part.
        let decided = self.reservation_command(coordinator, decide).await?;
        let ReservationReply::Done { reservation, .. } = decided else {
            return Ok(Attempt::Answer(decided));
        };
        if reservation.status == ResStatus::Held {
            return Ok(Attempt::Answer(ReservationReply::Done {
                reservation,
                repeat: false,
            }));
        }
        self.settle_parts(&reservation, r.correlation_id).await;
        if !shortfalls.is_empty() {
            return Ok(Attempt::Answer(ReservationReply::Insufficient(shortfalls)));
        }
        if let Some(rej) = refused {
            return Ok(Attempt::Answer(ReservationReply::Rejected(rej)));
        }
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(Attempt::Answer(ReservationReply::Rejected(
            Rejection::InvalidState(format!(
                "reservation {} was not decided in time and nothing is held; retry",
                r.id
            )),
        )))
    }

    /// Releases parts that belong to no decision.
    async fn release(&self, parts: &[(u32, String)], correlation_id: &str) {
        for (p, part) in parts {
            let command = part_command(part, ResStatus::Released, correlation_id.to_string());
            if let Ok(rx) = self.send_reservation(*p, command) {
                let _ = rx.await;
            }
        }
    }

    /// Moves every part of a coordinator's record as it decided, and waits for them.
    pub(crate) async fn settle_parts(&self, reservation: &Reservation, correlation_id: &str) {
        let Some(to) = part_target(Some(reservation.status)) else {
            return;
        };
        let mut waiting = Vec::new();
        for (p, part) in reservation.parts() {
            waiting.push((
                part.clone(),
                self.send_reservation(p, part_command(&part, to, correlation_id.to_string())),
            ));
        }
        for (part, w) in waiting {
            let reply = match w {
                Ok(rx) => rx.await.map_err(|_| EngineError::Stopped).and_then(|r| r),
                Err(e) => Err(e),
            };
            if let Err(e) = reply {
                // The driver's sweep at the next start, or the part's own expiry, settles it.
                warn!(part, error = %e, "a part of a cross-partition reservation is not settled yet");
            }
        }
    }

    fn send_reservation(
        &self,
        partition: u32,
        mut event: Event,
    ) -> Result<oneshot::Receiver<Result<ReservationReply, EngineError>>, EngineError> {
        event.received_at = Timestamp::now();
        let (tx, rx) = oneshot::channel();
        self.send(partition, Command::Reservation { event, reply: tx })?;
        Ok(rx)
    }

    /// A part's own expiry: it settles as its coordinator decided, never on its own (the
    /// coordinator may have committed it). Runs on the timer thread.
    pub(crate) fn expire_part(&self, owner: &str, part: &str, event: Event) -> Option<Command> {
        let owner = owner.to_string();
        let found = self
            .reader
            .call_blocking(move |s| s.find_reservation(&owner));
        let target = match found {
            Ok(Ok(row)) => match row.map(|r| crate::persist::reservation_from_row(&r)) {
                Some(Ok(record)) => part_target_of(part, Some(&record)),
                Some(Err(_)) => None,
                None => part_target_of(part, None),
            },
            // The store cannot say now: ask again later.
            _ => None,
        };
        match target {
            Some(to) => Some(Command::Timer {
                event: part_command(part, to, event.correlation_id.clone()),
            }),
            None => {
                // Still held or being decided: look again after another grace period.
                let due = Timestamp::now().plus_secs(PART_GRACE_S);
                self.timers.set(
                    crossdock_ledger::state::reservation_timer_id(part),
                    due,
                    event,
                );
                None
            }
        }
    }
}

/// Settles parts as timers decided, off the writers' threads: a writer never waits for another.
pub(crate) struct Driver {
    pub engine: Weak<Engine>,
    pub work: Receiver<PartCommand>,
}

impl Driver {
    pub fn spawn(engine: Weak<Engine>, work: Receiver<PartCommand>) {
        let driver = Driver { engine, work };
        std::thread::Builder::new()
            .name("cross-parts".into())
            .spawn(move || driver.run())
            .expect("spawn the cross-partition driver");
    }

    fn run(self) {
        while let Ok(cmd) = self.work.recv() {
            let mut wait = Duration::from_millis(20);
            loop {
                let Some(engine) = self.engine.upgrade() else {
                    return;
                };
                let event = part_command(&cmd.part, cmd.to, format!("reservation:{}", cmd.part));
                match engine.send(cmd.partition, Command::Timer { event }) {
                    Ok(()) => break,
                    Err(EngineError::Overloaded) => {
                        drop(engine);
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(Duration::from_secs(1));
                    }
                    Err(_) => return,
                }
            }
        }
    }
}

/// Where committers hand the part commands of what timers decided.
pub(crate) type PartSink = Sender<PartCommand>;

/// The parts still open at start whose coordinator decided, with what each must become.
pub(crate) fn open_parts_to_settle(
    parts: Vec<(u32, Reservation)>,
    mut coordinator: impl FnMut(&str) -> Option<Reservation>,
) -> Vec<PartCommand> {
    let mut out = Vec::new();
    for (partition, part) in parts {
        let Some(owner) = crossdock_model::event::cross_part_owner(&part.id) else {
            continue;
        };
        let Some(to) = part_target_of(&part.id, coordinator(owner).as_ref()) else {
            continue;
        };
        if to == part.status {
            continue;
        }
        out.push(PartCommand {
            partition,
            part: part.id,
            to,
        });
    }
    out
}
