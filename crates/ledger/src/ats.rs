//! Channel availability (ATS): the pool over eligible locations, then the channel policy in order.

use crossdock_model::Timestamp;

use crate::policy::{Buffer, ChannelPolicy};
use crate::state::ItemState;

/// ATS of `item` for `channel` as of `now` (used only for the incoming horizon).
///
/// `sum over eligible locations of max(0, available)`, then: minus buffer, times share, capped at
/// max, 0 below min_publish, plus incoming within the horizon. An item on oversell hold shows 0.
pub fn channel_ats(item: &ItemState, channel: &ChannelPolicy, now: Timestamp) -> i64 {
    if item.oversell_hold().is_some() {
        return 0;
    }
    // Buckets lie within ±QTY_MAX, so none of these sums can come near overflowing; they
    // saturate rather than wrap all the same.
    let mut pool: i64 = 0;
    for &loc in &channel.locations {
        let mut available: i64 = 0;
        for p in item.positions.iter().filter(|p| p.location == loc) {
            available = available.saturating_add(p.b().available());
            if !channel.counts_soft_reservations {
                available = available.saturating_add(p.b().reserved);
            }
        }
        pool = pool.saturating_add(available.max(0));
    }
    let kept = match channel.buffer {
        Buffer::Units(u) => u,
        Buffer::Percent(pct) => ceil_pct(pool, pct),
    };
    let mut ats = pool.saturating_sub(kept).max(0);
    ats = ats.saturating_mul(i64::from(channel.share_pct)) / 100;
    if let Some(max) = channel.max {
        ats = ats.min(max);
    }
    if ats < channel.min_publish {
        ats = 0;
    }
    if let Some(horizon) = channel.incoming_horizon_s {
        let until = now.plus_secs(horizon);
        let incoming: i64 = item
            .supply()
            .iter()
            .filter(|s| s.expected_at <= until && channel.locations.contains(&s.location))
            .fold(0i64, |sum, s| sum.saturating_add(s.open));
        ats = ats.saturating_add(incoming);
    }
    ats
}

fn ceil_pct(pool: i64, pct: u8) -> i64 {
    let num = pool.saturating_mul(i64::from(pct));
    num.saturating_add(99) / 100
}

/// Delivery priority of a change from `old` to `new`: 0 crosses zero, 1 is at or below the
/// low-stock level, 2 is the rest.
pub fn priority(old: i64, new: i64, low_stock: i64) -> u8 {
    if (old > 0) != (new > 0) {
        0
    } else if new <= low_stock {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LocIdx;
    use crate::position::Position;
    use crate::state::SupplyLine;
    use crossdock_model::ChannelId;

    fn item(avail: &[(u16, i64, i64)]) -> ItemState {
        let mut it = ItemState::new(crossdock_model::ItemId::new("i").unwrap());
        for &(loc, on_hand, reserved) in avail {
            let mut p = Position::new(LocIdx(loc), None);
            p.b_mut().on_hand = on_hand;
            p.b_mut().reserved = reserved;
            it.positions.push(p);
        }
        it
    }

    fn chan() -> ChannelPolicy {
        ChannelPolicy::plain(ChannelId::new("c").unwrap(), vec![LocIdx(0), LocIdx(1)])
    }

    #[test]
    fn policy_applies_in_order() {
        let it = item(&[(0, 60, 0), (1, 45, 5), (2, 1000, 0)]);
        let now = Timestamp::from_micros(0);
        assert_eq!(
            channel_ats(&it, &chan(), now),
            100,
            "location 2 is not eligible"
        );
        let c = ChannelPolicy {
            buffer: Buffer::Percent(10),
            ..chan()
        };
        assert_eq!(channel_ats(&it, &c, now), 90);
        let c = ChannelPolicy {
            buffer: Buffer::Percent(15),
            share_pct: 50,
            ..chan()
        };
        assert_eq!(
            channel_ats(&it, &c, now),
            42,
            "100 - 15 = 85, half rounds down"
        );
        let c = ChannelPolicy {
            max: Some(30),
            ..chan()
        };
        assert_eq!(channel_ats(&it, &c, now), 30);
        let c = ChannelPolicy {
            min_publish: 101,
            ..chan()
        };
        assert_eq!(channel_ats(&it, &c, now), 0);
        let c = ChannelPolicy {
            counts_soft_reservations: false,
            ..chan()
        };
        assert_eq!(channel_ats(&it, &c, now), 105);
        let c = ChannelPolicy {
            buffer: Buffer::Units(500),
            ..chan()
        };
        assert_eq!(channel_ats(&it, &c, now), 0);
    }

    #[test]
    fn negative_location_does_not_eat_the_pool_and_hold_shows_zero() {
        let mut it = item(&[(0, -10, 0), (1, 20, 0)]);
        assert_eq!(channel_ats(&it, &chan(), Timestamp::from_micros(0)), 20);
        it.extras_mut().oversell_hold = Some("ex".into());
        assert_eq!(channel_ats(&it, &chan(), Timestamp::from_micros(0)), 0);
    }

    #[test]
    fn incoming_counts_only_within_the_horizon() {
        let mut it = item(&[(0, 5, 0)]);
        let day = 86_400_000_000;
        it.extras_mut().supply.push(SupplyLine {
            reference: "po-1".into(),
            location: LocIdx(0),
            open: 7,
            expected_at: Timestamp::from_micros(2 * day),
        });
        let c = ChannelPolicy {
            incoming_horizon_s: Some(3 * 86_400),
            ..chan()
        };
        assert_eq!(channel_ats(&it, &c, Timestamp::from_micros(0)), 12);
        let c = ChannelPolicy {
            incoming_horizon_s: Some(86_400),
            ..chan()
        };
        assert_eq!(channel_ats(&it, &c, Timestamp::from_micros(0)), 5);
    }

    #[test]
    fn priorities() {
        assert_eq!(priority(0, 5, 2), 0);
        assert_eq!(priority(5, 0, 2), 0);
        assert_eq!(priority(5, 2, 2), 1);
        assert_eq!(priority(5, 9, 2), 2);
    }
}
