//! What channels would have shown against what they could really sell: the event log replayed
//! through two policies side by side, the configured one (the baseline) and an alternative that
//! differs only in its channels, measuring per channel how long and by how much a channel showed
//! stock that was not there (oversell exposure) or hid stock that was (hidden).
//! `crossdock what-if` feeds it the log.
//!
//! The measure, per side, per (item, channel), over the hub's received time:
//! * `ats`: the value the channel was published (`ItemState::published`), 0 before the first;
//! * `truth`: `sum over the channel's eligible positions of max(0, available)`, what a
//!   reservation of the channel could really draw (DESIGN section 3), from that side's ledger;
//! * exposure `∫ max(0, ats - truth) dt`, hidden `∫ max(0, truth - ats) dt` over the window,
//!   an exposure event each time `ats <= truth` becomes `ats > truth` in the window.
//!
//! Both only change when an event touches the item, so the integral is exact between events.
//! Events before the window only set the state the window starts from.
//!
//! Pure: the caller reads the log and feeds it in order; nothing here does I/O or reads a clock.

use std::collections::{HashMap, HashSet};
use std::mem::discriminant;

use crossdock_model::{ChannelId, Event, ItemId, Timestamp};

use crate::policy::{ChannelPolicy, Policy};
use crate::state::{Effects, ItemState, Ledger, Outcome};

/// What one channel showed against what it had, over the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Times an (item, channel) went from showing at most what it had to showing more. A pair
    /// already showing more when the window opens is exposed (its unit·s count) but is not an
    /// event.
    pub exposure_events: u64,
    /// `∫ max(0, ats - truth) dt` summed over items, in unit·µs.
    pub exposure_unit_us: u128,
    /// `∫ max(0, truth - ats) dt` summed over items, in unit·µs.
    pub hidden_unit_us: u128,
    /// Distinct items that showed more than they had at some point in the window.
    pub items_exposed: u64,
    /// Most units any one item showed beyond what it had.
    pub peak_exposure: i64,
}

impl Exposure {
    pub fn exposure_unit_seconds(&self) -> f64 {
        self.exposure_unit_us as f64 / 1e6
    }
    pub fn hidden_unit_seconds(&self) -> f64 {
        self.hidden_unit_us as f64 / 1e6
    }
}

/// One channel under both policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelComparison {
    pub channel: ChannelId,
    /// Whether the alternative's policy of this channel differs from the baseline's.
    pub changed: bool,
    pub baseline: Exposure,
    pub alternative: Exposure,
}

/// The result of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Events applied, from the start of the log to the end of the window.
    pub events_replayed: u64,
    /// Of those, the ones received in the window.
    pub events_in_window: u64,
    /// Events the two ledgers answered differently (a reservation one could make and the other
    /// could not, when a channel's locations change); from the first, the two states differ in
    /// more than the channels' published values.
    pub outcomes_differing: u64,
    /// In the policies' channel order.
    pub channels: Vec<ChannelComparison>,
}

/// A replay in progress. Feed it every logged event with [`WhatIf::apply`], then [`WhatIf::finish`].
pub struct WhatIf {
    from: Timestamp,
    to: Timestamp,
    /// Latest received time seen: the replay's clock never goes back.
    clock: Timestamp,
    window_open: bool,
    baseline: Side,
    alternative: Side,
    events_replayed: u64,
    events_in_window: u64,
    outcomes_differing: u64,
}

impl WhatIf {
    /// Measures the window `[from, to]` of received time.
    ///
    /// # Panics
    /// If `to < from`, or the two policies do not have the same channels in the same order.
    pub fn new(
        mut baseline: Policy,
        mut alternative: Policy,
        from: Timestamp,
        to: Timestamp,
    ) -> Self {
        assert!(from <= to, "the window ends before it starts");
        // The log's events passed the time bounds in force when they arrived; a replay takes
        // them as they were, whatever the bounds are now.
        baseline.time_bounds = crossdock_model::event::TimeBounds::UNBOUNDED;
        alternative.time_bounds = crossdock_model::event::TimeBounds::UNBOUNDED;
        assert!(
            baseline.channels.len() == alternative.channels.len()
                && baseline
                    .channels
                    .iter()
                    .zip(&alternative.channels)
                    .all(|(a, b)| a.id == b.id),
            "the alternative policy has the baseline's channels, in the same order"
        );
        WhatIf {
            from,
            to,
            clock: Timestamp::from_micros(i64::MIN),
            window_open: false,
            baseline: Side::new(baseline),
            alternative: Side::new(alternative),
            events_replayed: 0,
            events_in_window: 0,
            outcomes_differing: 0,
        }
    }

    /// Applies one logged event to both sides and measures the items it touched; a forwarded
    /// copy or a wide input's part row is skipped (see [`Side`]).
    ///
    /// Events come in the order of their `received_at` (ties by partition, then log sequence),
    /// and always in log order within a partition; a received time earlier than one already seen
    /// (requests stamped concurrently) counts as the later one. An event received after the window
    /// is not applied and `false` is returned: the replay ends there, since a partition's later
    /// events must not be applied without it.
    pub fn apply(&mut self, ev: &Event) -> bool {
        if ev.received_at > self.to {
            return false;
        }
        if ev.is_hub_copy() {
            return true;
        }
        self.clock = self.clock.max(ev.received_at);
        let in_window = self.clock >= self.from;
        if in_window && !self.window_open {
            self.open_window();
        }
        let window = in_window.then_some(self.from);
        let a = self.baseline.apply(ev, self.clock, window);
        let b = self.alternative.apply(ev, self.clock, window);
        if discriminant(&a) != discriminant(&b) || a.is_logged() != b.is_logged() {
            self.outcomes_differing += 1;
        }
        self.events_replayed += 1;
        if in_window {
            self.events_in_window += 1;
        }
        true
    }

    /// Closes the window at its end and reports per channel.
    pub fn finish(mut self) -> Comparison {
        if !self.window_open {
            self.open_window();
        }
        let (from, to) = (self.from, self.to);
        let baseline = self.baseline.finish(from, to);
        let alternative = self.alternative.finish(from, to);
        let channels = self
            .baseline
            .policy
            .channels
            .iter()
            .zip(&self.alternative.policy.channels)
            .zip(baseline.into_iter().zip(alternative))
            .map(|((b, a), (baseline, alternative))| ChannelComparison {
                channel: b.id.clone(),
                changed: a != b,
                baseline,
                alternative,
            })
            .collect();
        Comparison {
            from,
            to,
            events_replayed: self.events_replayed,
            events_in_window: self.events_in_window,
            outcomes_differing: self.outcomes_differing,
            channels,
        }
    }

    /// The state before the window is where it starts: pairs exposed then are exposed items.
    fn open_window(&mut self) {
        self.window_open = true;
        self.baseline.open_window();
        self.alternative.open_window();
    }
}

/// What one (item, channel) shows and has, since when.
#[derive(Debug, Clone, Copy, Default)]
struct Level {
    ats: i64,
    truth: i64,
    since: Timestamp,
}

#[derive(Debug, Default)]
struct Tally {
    exposure_events: u64,
    exposure_unit_us: u128,
    hidden_unit_us: u128,
    items: HashSet<ItemId>,
    peak_exposure: i64,
}

impl Tally {
    /// Adds what `level` showed from when it began (or the window opened) until `until`.
    fn accrue(&mut self, level: &Level, from: Timestamp, until: Timestamp) {
        let start = level.since.max(from);
        if until <= start {
            return;
        }
        let us = (until.as_micros() - start.as_micros()) as u128;
        self.exposure_unit_us += us * (level.ats - level.truth).max(0) as u128;
        self.hidden_unit_us += us * (level.truth - level.ats).max(0) as u128;
    }

    fn exposed(&mut self, item: &ItemId, level: &Level) {
        if level.ats > level.truth {
            self.items.insert(item.clone());
            self.peak_exposure = self.peak_exposure.max(level.ats - level.truth);
        }
    }
}

/// One policy's ledger and what it measured. One ledger holds every partition's state, so an
/// input is applied once whatever partitions took part: the log's forwarded copies of a
/// resequenced source's events and the part rows of wide inputs are skipped (their originals
/// are in the log, and this ledger puts them in line and applies them itself).
struct Side {
    policy: Policy,
    ledger: Ledger,
    /// Per item, per channel (policy order).
    levels: HashMap<ItemId, Vec<Level>>,
    /// Per channel.
    tallies: Vec<Tally>,
}

impl Side {
    fn new(policy: Policy) -> Self {
        let tallies = policy.channels.iter().map(|_| Tally::default()).collect();
        Side {
            policy,
            ledger: Ledger::default(),
            levels: HashMap::new(),
            tallies,
        }
    }

    /// Applies `ev` as the engine would in a batch of its own and records what every item it
    /// touched shows and has from `now`; in the window (starting at `window`), measures the change.
    fn apply(&mut self, ev: &Event, now: Timestamp, window: Option<Timestamp>) -> Outcome {
        let ledger = &mut self.ledger;
        let mut fx = Effects::default();
        let outcome = ledger.apply(&self.policy, ev, &mut fx);
        ledger.finish_batch(&self.policy, &mut fx);
        let channels = self.policy.channels.len();
        for id in &fx.touched_items {
            let item = ledger.item(id).map(|a| &**a);
            let levels = self
                .levels
                .entry(id.clone())
                .or_insert_with(|| vec![Level::default(); channels]);
            for (c, channel) in self.policy.channels.iter().enumerate() {
                let next = Level {
                    ats: published(item, c),
                    truth: item.map_or(0, |i| sellable(i, channel)),
                    since: now,
                };
                if let Some(from) = window {
                    let tally = &mut self.tallies[c];
                    let was = levels[c];
                    tally.accrue(&was, from, now);
                    if was.ats <= was.truth && next.ats > next.truth {
                        tally.exposure_events += 1;
                    }
                    tally.exposed(id, &next);
                }
                levels[c] = next;
            }
        }
        outcome
    }

    fn open_window(&mut self) {
        for (id, levels) in &self.levels {
            for (tally, level) in self.tallies.iter_mut().zip(levels) {
                tally.exposed(id, level);
            }
        }
    }

    fn finish(&mut self, from: Timestamp, to: Timestamp) -> Vec<Exposure> {
        for levels in self.levels.values() {
            for (tally, level) in self.tallies.iter_mut().zip(levels) {
                tally.accrue(level, from, to);
            }
        }
        self.tallies
            .iter()
            .map(|t| Exposure {
                exposure_events: t.exposure_events,
                exposure_unit_us: t.exposure_unit_us,
                hidden_unit_us: t.hidden_unit_us,
                items_exposed: t.items.len() as u64,
                peak_exposure: t.peak_exposure,
            })
            .collect()
    }
}

/// The value channel `c` was last published for the item; 0 before the first.
fn published(item: Option<&ItemState>, c: usize) -> i64 {
    item.and_then(|i| i.published.get(c).copied().flatten())
        .map_or(0, |p| p.ats)
}

/// What a reservation of the channel could really draw: the positive available stock of every
/// position at its eligible locations.
pub fn sellable(item: &ItemState, channel: &ChannelPolicy) -> i64 {
    item.positions
        .iter()
        .filter(|p| channel.locations.contains(&p.location))
        .map(|p| p.b().available().max(0))
        .sum()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crossdock_model::event::{
        Adjusted, EventData, Received, ReservationRef, ReservationRequested, ReserveLine,
        SupplyExpected,
    };
    use crossdock_model::{LocationId, SourceId};

    use super::*;
    use crate::policy::{Buffer, LocIdx, OwnershipRule, SourcePolicy};
    use crate::state::hub_command;

    const S: i64 = 1_000_000;

    /// Locations A and B; channels `web` (A and B) and `b2b` (A), both plain.
    fn policy() -> Policy {
        let mut sources = HashMap::new();
        sources.insert(
            SourceId::new("wms").unwrap(),
            SourcePolicy {
                rules: vec![OwnershipRule {
                    types: vec!["inventory.*".into(), "supply.*".into()],
                    locations: None,
                }],
                sequenced: false,
            },
        );
        Policy::new(
            None,
            vec![LocationId::new("A").unwrap(), LocationId::new("B").unwrap()],
            vec![
                ChannelPolicy::plain(ChannelId::new("web").unwrap(), vec![LocIdx(0), LocIdx(1)]),
                ChannelPolicy::plain(ChannelId::new("b2b").unwrap(), vec![LocIdx(0)]),
            ],
            sources,
        )
    }

    /// The baseline with channel `c` changed by `f`.
    fn changed(c: usize, f: impl FnOnce(&mut ChannelPolicy)) -> Policy {
        let mut p = policy();
        f(&mut p.channels[c]);
        p
    }

    fn sku() -> ItemId {
        ItemId::new("SKU-1").unwrap()
    }

    fn a() -> LocationId {
        LocationId::new("A").unwrap()
    }

    /// An event from the WMS received at `secs`.
    fn wms(secs: i64, data: EventData) -> Event {
        Event {
            id: format!("e{secs}"),
            source: SourceId::new("wms").unwrap(),
            time: Timestamp::from_micros(secs * S),
            sequence: None,
            correlation_id: format!("c{secs}"),
            causation_id: None,
            data,
            received_at: Timestamp::from_micros(secs * S),
        }
    }

    fn received(secs: i64, qty: i64, reference: Option<&str>) -> Event {
        wms(
            secs,
            EventData::Received(Received {
                item: sku(),
                location: a(),
                qty,
                lot: None,
                reference: reference.map(str::to_string),
            }),
        )
    }

    fn adjusted(secs: i64, delta: i64) -> Event {
        wms(
            secs,
            EventData::Adjusted(Adjusted {
                item: sku(),
                location: a(),
                delta,
                reason: "cycle".into(),
                lot: None,
            }),
        )
    }

    fn reserve(secs: i64, id: &str, channel: &str, qty: i64) -> Event {
        hub_command(
            crate::state::reserve_command_id(id),
            Timestamp::from_micros(secs * S),
            id.into(),
            EventData::ReservationRequested(ReservationRequested {
                reservation: id.into(),
                channel: ChannelId::new(channel).unwrap(),
                lines: vec![ReserveLine { item: sku(), qty }],
                ttl_s: 3600,
            }),
        )
    }

    fn release(secs: i64, id: &str) -> Event {
        hub_command(
            format!("release:{id}"),
            Timestamp::from_micros(secs * S),
            id.into(),
            EventData::ReservationReleased(ReservationRef {
                reservation: id.into(),
            }),
        )
    }

    fn run(alternative: Policy, from: i64, to: i64, events: &[Event]) -> Comparison {
        let mut w = WhatIf::new(
            policy(),
            alternative,
            Timestamp::from_micros(from * S),
            Timestamp::from_micros(to * S),
        );
        for ev in events {
            if !w.apply(ev) {
                break;
            }
        }
        w.finish()
    }

    fn exposure(events: u64, exposure_s: u128, hidden_s: u128, items: u64, peak: i64) -> Exposure {
        Exposure {
            exposure_events: events,
            exposure_unit_us: exposure_s * S as u128,
            hidden_unit_us: hidden_s * S as u128,
            items_exposed: items,
            peak_exposure: peak,
        }
    }

    #[test]
    fn a_buffer_hides_the_buffer_while_it_lasts_and_exposes_nothing() {
        let alt = changed(0, |c| c.buffer = Buffer::Units(5));
        // 20 on hand from 10 s; 3 from 70 s (less than the buffer: all of it hidden).
        let r = run(alt, 0, 100, &[received(10, 20, None), adjusted(70, -17)]);
        assert_eq!((r.events_replayed, r.events_in_window), (2, 2));
        let web = &r.channels[0];
        assert!(web.changed);
        assert_eq!(
            web.baseline,
            Exposure::default(),
            "the plain channel shows the truth"
        );
        assert_eq!(web.alternative, exposure(0, 0, 5 * 60 + 3 * 30, 0, 0));
        let b2b = &r.channels[1];
        assert!(!b2b.changed);
        assert_eq!(b2b.baseline, b2b.alternative);
        assert_eq!(b2b.alternative, Exposure::default());
        assert_eq!(r.outcomes_differing, 0);
    }

    #[test]
    fn ignoring_soft_reservations_shows_the_held_units() {
        let alt = changed(0, |c| c.counts_soft_reservations = false);
        let r = run(
            alt,
            0,
            100,
            &[
                received(0, 10, None),
                reserve(20, "r1", "web", 4),
                release(50, "r1"),
            ],
        );
        let web = &r.channels[0];
        assert_eq!(web.baseline, Exposure::default());
        assert_eq!(web.alternative, exposure(1, 4 * 30, 0, 1, 4));
        assert_eq!(r.channels[1].alternative, Exposure::default());
    }

    #[test]
    fn counting_incoming_supply_shows_what_has_not_arrived() {
        let alt = changed(0, |c| c.incoming_horizon_s = Some(7 * 86_400));
        let po = wms(
            10,
            EventData::SupplyExpected(SupplyExpected {
                reference: "po-1".into(),
                item: sku(),
                location: a(),
                qty: 7,
                expected_at: Timestamp::from_micros(2 * 86_400 * S),
            }),
        );
        // 5 on hand; 7 expected from 10 s until they arrive at 60 s.
        let r = run(
            alt,
            0,
            100,
            &[received(0, 5, None), po, received(60, 7, Some("po-1"))],
        );
        let web = &r.channels[0];
        assert_eq!(web.baseline, Exposure::default());
        assert_eq!(web.alternative, exposure(1, 7 * 50, 0, 1, 7));
    }

    #[test]
    fn events_outside_the_window_only_set_where_it_starts() {
        let mut alt = changed(0, |c| c.counts_soft_reservations = false);
        alt.channels[1].buffer = Buffer::Units(5);
        let r = run(
            alt,
            100,
            200,
            &[
                received(10, 10, None),
                // Held from before the window: exposed when it opens, not an exposure event.
                reserve(50, "r1", "web", 4),
                release(150, "r1"),
                // After the window: not applied.
                adjusted(250, -10),
            ],
        );
        assert_eq!((r.events_replayed, r.events_in_window), (3, 1));
        let web = &r.channels[0];
        assert_eq!(web.baseline, Exposure::default());
        assert_eq!(web.alternative, exposure(0, 4 * 50, 0, 1, 4));
        // b2b: 6 sellable at A until 150 s, then 10; a buffer of 5 hides 5 all window long.
        let b2b = &r.channels[1];
        assert_eq!(b2b.baseline, Exposure::default());
        assert_eq!(b2b.alternative, exposure(0, 0, 5 * 100, 0, 0));
    }

    #[test]
    fn the_baseline_against_itself_differs_in_nothing() {
        let r = run(
            policy(),
            0,
            100,
            &[
                received(0, 10, None),
                reserve(20, "r1", "web", 4),
                adjusted(40, -8),
            ],
        );
        for c in &r.channels {
            assert!(!c.changed);
            assert_eq!(c.baseline, c.alternative, "{}", c.channel);
        }
        assert_eq!(r.outcomes_differing, 0);
        // 10 - 4 held - 8 adjusted: available -2, the item is held at 0 and shows nothing.
        assert_eq!(r.channels[0].baseline, Exposure::default());
    }

    #[test]
    fn a_reservation_the_alternative_could_not_make_is_counted() {
        // Web sells from B only: the hold on A's stock cannot be made, nor released.
        let alt = changed(0, |c| c.locations = vec![LocIdx(1)]);
        let r = run(
            alt,
            0,
            100,
            &[
                received(0, 10, None),
                reserve(20, "r1", "web", 4),
                release(50, "r1"),
            ],
        );
        assert_eq!(r.outcomes_differing, 2);
        // B has nothing: the alternative shows 0 and has 0.
        assert_eq!(r.channels[0].alternative, Exposure::default());
        // b2b in the alternative: without the hold it shows and has all 10.
        assert_eq!(r.channels[1].alternative, Exposure::default());
    }

    #[test]
    fn a_window_with_no_events_measures_the_state_it_starts_from() {
        let alt = changed(0, |c| c.counts_soft_reservations = false);
        let r = run(
            alt,
            100,
            130,
            &[received(10, 10, None), reserve(50, "r1", "web", 4)],
        );
        assert_eq!((r.events_replayed, r.events_in_window), (2, 0));
        assert_eq!(r.channels[0].alternative, exposure(0, 4 * 30, 0, 1, 4));
    }
}
