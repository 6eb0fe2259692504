//! Reservations whose lines live on several partitions: the coordinator's side.
//!
//! The protocol is presumed abort, coordinated by the partition that owns the reservation id:
//!
//! 1. `reservation.cross_begun` logs the coordinator's record, `preparing`, with a deadline.
//! 2. Each partition holds its lines as an ordinary reservation, a *part*
//!    ([`crossdock_model::event::cross_part_id`]), with the reservation's lifetime plus a grace,
//!    so a part never runs out before its coordinator does.
//! 3. `reservation.cross_decided` moves the record to `held` with every part's lines, once every
//!    part was held, or to `aborted`: sent by the engine when a part was refused, or by the
//!    deadline's timer when no decision came (a crash). An abort releases every part.
//! 4. Release, commit and expiry move the record, then every part the same way.
//!
//! The coordinator's record holds no stock; the parts are ordinary reservations, so nothing can
//! oversell, and a part is settled only by what its coordinator decided ([`PartCommand`]s, run
//! by the engine after the decision is durable, and again at start for any part still open).

use crossdock_model::event::{
    CrossBegun, CrossDecided, Event, ReservationRequested, cross_part_id,
};
use crossdock_model::{ChannelId, ExceptionKind};

use crate::policy::Policy;
use crate::reservation::{Cross, ResLine, ResStatus, Reservation, request_hash};
use crate::state::{
    Effects, Ledger, Outcome, Rejection, TimerSet, hub_command, reservation_timer_id,
};

/// What a part must become after its coordinator decided: `Released` or `Committed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCommand {
    pub partition: u32,
    pub part: String,
    pub to: ResStatus,
}

/// How long a part outlives its reservation's expiry: the coordinator expires the reservation
/// and then its parts; a part's own expiry is only the last resort, checked with the coordinator.
pub const PART_GRACE_S: u64 = 600;

/// What a part should become given its coordinator's record (`None`: no record, presumed
/// abort). `None` as the answer leaves the part as it is (still being decided, or held).
pub fn part_target(coordinator: Option<ResStatus>) -> Option<ResStatus> {
    match coordinator {
        None | Some(ResStatus::Aborted | ResStatus::Released | ResStatus::Expired) => {
            Some(ResStatus::Released)
        }
        Some(ResStatus::Committed) => Some(ResStatus::Committed),
        Some(ResStatus::Held | ResStatus::Preparing) => None,
    }
}

/// What part `part` should become given the coordinator's record of its reservation: as the
/// record decided when the part is one of the record's attempt; released when the part belongs
/// to no record or to another attempt (an orphan of a request that was not the one deciding).
pub fn part_target_of(part: &str, record: Option<&Reservation>) -> Option<ResStatus> {
    match record {
        Some(r) if r.parts().iter().any(|(_, p)| p == part) => part_target(Some(r.status)),
        _ => Some(ResStatus::Released),
    }
}

impl Ledger {
    pub(crate) fn cross_begin(
        &mut self,
        policy: &Policy,
        ev: &Event,
        d: &CrossBegun,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let hash = request_hash(&ReservationRequested {
            reservation: d.reservation.clone(),
            channel: d.channel.clone(),
            lines: d.lines.clone(),
            ttl_s: d.ttl_s,
        });
        if let Some(existing) = self.reservations.get(&d.reservation) {
            if existing.request_hash == hash {
                return Outcome::Reservation {
                    view: existing.clone(),
                    repeat: true,
                };
            }
            return Outcome::Rejected(Rejection::Conflict(format!(
                "reservation {} already exists with other lines or channel",
                d.reservation
            )));
        }
        if policy.channel(&d.channel).is_none() {
            return Outcome::Rejected(unknown_channel(&d.channel));
        }
        for (i, line) in d.lines.iter().enumerate() {
            if !policy.knows_item(&line.item) {
                return Outcome::Rejected(Rejection::Invalid {
                    field: format!("lines[{i}].item"),
                    reason: format!("unknown item {:?}", line.item.as_str()),
                });
            }
        }
        // The coordinator's own part, held by this same command; refused, nothing begins.
        let mut own_lines = Vec::new();
        if let Some(own) = &d.own {
            let part = ReservationRequested {
                reservation: cross_part_id(&d.reservation, d.nonce, own.partition),
                channel: d.channel.clone(),
                lines: own.lines.clone(),
                ttl_s: own.ttl_s,
            };
            match self.reserve(policy, ev, &part, seq, fx) {
                Outcome::Reservation {
                    view,
                    repeat: false,
                } => own_lines = view.lines,
                other => return other,
            }
        }
        let res = Reservation {
            id: d.reservation.clone(),
            channel: d.channel.clone(),
            status: ResStatus::Preparing,
            // Until decided, the lines of the coordinator's own part.
            lines: own_lines,
            request_hash: hash,
            // Until decided, the deadline of the decision.
            expires_at: ev.time.plus_secs(d.prepare_s),
            created_seq: seq,
            updated_seq: seq,
            cross: Some(Cross {
                nonce: d.nonce,
                partitions: d.partitions.clone(),
                ttl_s: d.ttl_s,
            }),
        };
        fx.timers_set.push(decision_timer(&res));
        fx.touch_reservation(&res);
        self.reservations.insert(res.id.clone(), res.clone());
        Outcome::Reservation {
            view: res,
            repeat: false,
        }
    }

    pub(crate) fn cross_decide(
        &mut self,
        ev: &Event,
        d: &CrossDecided,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let Some(res) = self.reservations.get_mut(&d.reservation) else {
            // Decided and settled before: the engine reads the record from the store.
            return Outcome::Noop;
        };
        let attempt = res.cross.as_ref().map(|c| c.nonce);
        if res.status != ResStatus::Preparing || attempt != Some(d.nonce) {
            return Outcome::Reservation {
                view: res.clone(),
                repeat: true,
            };
        }
        res.updated_seq = seq;
        if d.held {
            let ttl_s = res.cross.as_ref().map_or(0, |c| c.ttl_s);
            res.status = ResStatus::Held;
            res.lines = d
                .lines
                .iter()
                .map(|l| ResLine {
                    item: l.item.clone(),
                    location: l.location.clone(),
                    lot: l.lot.clone(),
                    qty: l.qty,
                })
                .collect();
            res.expires_at = ev.time.plus_secs(ttl_s);
            let view = res.clone();
            // Replaces the decision's deadline (same timer id).
            fx.timers_set.push(crate::state::expiry_timer(&view));
            fx.touch_reservation(&view);
            return Outcome::Reservation {
                view,
                repeat: false,
            };
        }
        res.status = ResStatus::Aborted;
        res.lines.clear();
        let view = res.clone();
        self.reservations.remove(&d.reservation);
        fx.timers_cancelled
            .push(reservation_timer_id(&d.reservation));
        fx.touch_reservation(&view);
        release_parts(&view, ResStatus::Released, fx);
        if ev.id.starts_with(TIMEOUT_PREFIX) {
            fx.exception(
                ev,
                ExceptionKind::ReservationTimeout,
                format!("reservation:{}", d.reservation),
                format!(
                    "cross-partition reservation {} was not decided in time; aborted and every part released",
                    d.reservation
                ),
            );
        }
        Outcome::Reservation {
            view,
            repeat: false,
        }
    }

    /// Release, commit or expiry of a coordinator's record: the record moves, then its parts.
    pub(crate) fn cross_settle(
        &mut self,
        id: &str,
        to: ResStatus,
        seq: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let res = self.reservations.get_mut(id).expect("checked by settle");
        res.status = to;
        res.updated_seq = seq;
        let view = res.clone();
        if to != ResStatus::Committed {
            self.reservations.remove(id);
        }
        fx.touch_reservation(&view);
        fx.timers_cancelled.push(reservation_timer_id(id));
        let part = if to == ResStatus::Committed {
            ResStatus::Committed
        } else {
            ResStatus::Released
        };
        release_parts(&view, part, fx);
        Outcome::Reservation {
            view,
            repeat: false,
        }
    }
}

fn release_parts(res: &Reservation, to: ResStatus, fx: &mut Effects) {
    for (partition, part) in res.parts() {
        fx.part_commands.push(PartCommand {
            partition,
            part,
            to,
        });
    }
}

fn unknown_channel(channel: &ChannelId) -> Rejection {
    Rejection::Invalid {
        field: "channel".into(),
        reason: format!("unknown channel {:?}", channel.as_str()),
    }
}

/// Command ids of decisions made by the deadline's timer.
pub const TIMEOUT_PREFIX: &str = "cross-timeout:";

/// The deadline of a record still `preparing`: abort unless decided by then.
pub fn decision_timer(res: &Reservation) -> TimerSet {
    let nonce = res.cross.as_ref().map_or(0, |c| c.nonce);
    TimerSet {
        id: reservation_timer_id(&res.id),
        due_at: res.expires_at,
        command: hub_command(
            format!("{TIMEOUT_PREFIX}{}:{nonce:016x}", res.id),
            res.expires_at,
            format!("reservation:{}", res.id),
            crossdock_model::EventData::CrossDecided(CrossDecided {
                reservation: res.id.clone(),
                nonce,
                held: false,
                lines: Vec::new(),
            }),
        ),
        durable: false,
    }
}
