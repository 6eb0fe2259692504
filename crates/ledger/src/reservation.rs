//! Reservations (soft holds with a TTL) and how a request is sourced from positions.

use crossdock_model::event::{ReservationRequested, ReserveLine};
use crossdock_model::{ChannelId, ItemId, LocationId, Lot, Timestamp};
use serde::{Deserialize, Serialize};

use crate::policy::{ChannelPolicy, Policy};
use crate::state::ItemState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResStatus {
    Held,
    Committed,
    Released,
    Expired,
    /// A cross-partition reservation whose parts are being held (the coordinator's record).
    Preparing,
    /// A cross-partition reservation that was not held whole: every part is released.
    Aborted,
}

impl ResStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResStatus::Held => "held",
            ResStatus::Committed => "committed",
            ResStatus::Released => "released",
            ResStatus::Expired => "expired",
            ResStatus::Preparing => "preparing",
            ResStatus::Aborted => "aborted",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Held,
            Self::Committed,
            Self::Released,
            Self::Expired,
            Self::Preparing,
            Self::Aborted,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// Part of a reservation drawn from one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResLine {
    pub item: ItemId,
    pub location: LocationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<Lot>,
    pub qty: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: String,
    pub channel: ChannelId,
    pub status: ResStatus,
    pub lines: Vec<ResLine>,
    pub request_hash: u64,
    pub expires_at: Timestamp,
    pub created_seq: u64,
    pub updated_seq: u64,
    /// Set on the coordinator's record of a reservation whose lines live on several
    /// partitions: it holds no stock itself, its parts do.
    pub cross: Option<Cross>,
}

/// How a cross-partition reservation is split: attempt `nonce`, one part per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cross {
    pub nonce: u64,
    pub partitions: Vec<u32>,
    pub ttl_s: u64,
}

impl Reservation {
    /// The parts of a cross-partition reservation: (partition, part id).
    pub fn parts(&self) -> Vec<(u32, String)> {
        self.cross.as_ref().map_or_else(Vec::new, |c| {
            c.partitions
                .iter()
                .map(|&p| {
                    (
                        p,
                        crossdock_model::event::cross_part_id(&self.id, c.nonce, p),
                    )
                })
                .collect()
        })
    }
}

/// A line that could not be filled: what was asked and what the channel's locations have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    pub item: ItemId,
    pub requested: i64,
    pub available: i64,
    pub short: i64,
}

/// Identifies a request independent of when it was made, so a repeat can be recognised.
pub fn request_hash(r: &ReservationRequested) -> u64 {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(r.channel.as_str().as_bytes());
    buf.push(0);
    buf.extend_from_slice(&r.ttl_s.to_le_bytes());
    for l in &r.lines {
        buf.extend_from_slice(l.item.as_str().as_bytes());
        buf.push(0);
        buf.extend_from_slice(&l.qty.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&buf)
}

/// Sources every line from the channel's locations in priority order, drawing only what keeps
/// each position's `available >= 0`. All lines or none: any shortfall fails the whole request.
pub fn plan_reservation<'a>(
    policy: &Policy,
    lines: &[ReserveLine],
    channel: &ChannelPolicy,
    item: impl Fn(&ItemId) -> Option<&'a ItemState>,
) -> Result<Vec<ResLine>, Vec<Shortfall>> {
    let mut plan = Vec::with_capacity(lines.len());
    let mut shortfalls = Vec::new();
    for line in lines {
        let mut remaining = line.qty;
        let mut available: i64 = 0;
        if let Some(state) = item(&line.item) {
            for &loc in &channel.locations {
                for p in state.positions.iter().filter(|p| p.location == loc) {
                    let free = p.b().free();
                    available = available.saturating_add(free);
                    let take = free.min(remaining);
                    if take > 0 {
                        plan.push(ResLine {
                            item: line.item.clone(),
                            location: policy.location_name(loc).clone(),
                            lot: p.lot.clone(),
                            qty: take,
                        });
                        remaining -= take;
                    }
                }
            }
        }
        if remaining > 0 {
            shortfalls.push(Shortfall {
                item: line.item.clone(),
                requested: line.qty,
                available,
                short: remaining,
            });
        }
    }
    if shortfalls.is_empty() {
        Ok(plan)
    } else {
        Err(shortfalls)
    }
}
