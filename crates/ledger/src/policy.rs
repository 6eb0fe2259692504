//! The rules the ledger applies: master data, channel policies, ownership. Built once from the
//! config file; the ledger only reads it.

use std::collections::{HashMap, HashSet};

use crossdock_model::event::TimeBounds;
use crossdock_model::{ChannelId, ItemId, LocationId, SourceId};

/// Index of a location in [`Policy::locations`]; positions store this instead of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocIdx(pub u16);

/// Index of a channel in [`Policy::channels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChanIdx(pub u16);

/// A buffer kept back from a channel's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    Units(i64),
    /// Whole percent of the pool, 0..=100; the kept-back amount rounds up (never oversells).
    Percent(u8),
}

/// How one channel's availability (ATS) is computed from the positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPolicy {
    pub id: ChannelId,
    /// Eligible locations in sourcing priority order.
    pub locations: Vec<LocIdx>,
    pub buffer: Buffer,
    /// Percent of the pool this channel may show, 0..=100 (rounds down).
    pub share_pct: u8,
    pub max: Option<i64>,
    /// Below this, publish 0 (out-of-stock threshold).
    pub min_publish: i64,
    /// Whether soft reservations (checkout holds) reduce what this channel shows.
    pub counts_soft_reservations: bool,
    /// Backorder/preorder channels add open supply expected within this horizon.
    pub incoming_horizon_s: Option<u64>,
    /// ATS at or below this is "low stock" for delivery priority.
    pub low_stock: i64,
}

impl ChannelPolicy {
    /// A channel that shows everything at the given locations, with no buffer.
    pub fn plain(id: ChannelId, locations: Vec<LocIdx>) -> Self {
        ChannelPolicy {
            id,
            locations,
            buffer: Buffer::Units(0),
            share_pct: 100,
            max: None,
            min_publish: 0,
            counts_soft_reservations: true,
            incoming_horizon_s: None,
            low_stock: 0,
        }
    }
}

/// Which event types a source may emit, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipRule {
    /// Exact type names (`inventory.received.v1`) or prefixes ending in `*` (`inventory.*`).
    pub types: Vec<String>,
    /// `None` means every location.
    pub locations: Option<Vec<LocIdx>>,
}

impl OwnershipRule {
    fn allows(&self, ty: &str, loc: LocIdx) -> bool {
        let type_ok = self.types.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => ty.starts_with(prefix),
            None => p == ty,
        });
        type_ok && self.locations.as_ref().is_none_or(|ls| ls.contains(&loc))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourcePolicy {
    pub rules: Vec<OwnershipRule>,
    /// Whether the source's `sequence` is checked for gaps (resequenced with a bounded wait).
    pub sequenced: bool,
}

/// Source name of imports; may emit inventory types anywhere.
pub const IMPORT_SOURCE: &str = "crossdock.import";

/// Source name of reconciliation corrections: counts (and status moves) anywhere, nothing else.
pub const RECONCILER_SOURCE: &str = "crossdock.reconciler";

/// Source name of synthetic canaries: counts of their own canary items, nothing else.
pub const CANARY_SOURCE: &str = "crossdock.canary";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `None`: any item id is accepted (no item master loaded).
    pub items: Option<HashSet<ItemId>>,
    pub locations: Vec<LocationId>,
    location_index: HashMap<LocationId, LocIdx>,
    pub channels: Vec<ChannelPolicy>,
    channel_index: HashMap<ChannelId, ChanIdx>,
    pub sources: HashMap<SourceId, SourcePolicy>,
    /// How long the resequencer waits for a missing sequence number.
    pub gap_wait_s: u64,
    /// Most events held per source while waiting; past it the gap is given up at once.
    pub held_max: usize,
    /// Sourcing rules, regions, substitutions and deadlines of the workflows.
    pub workflow: WorkflowPolicy,
    /// Whether an `oversell_risk` record is resolved when available is back at or above zero
    /// (the exceptions policy `auto_correct`). Either way the hold on the item's ATS is lifted.
    pub resolves_oversell_records: bool,
    /// How far from the hub's clock an input's time may lie (inputs from outside the hub).
    pub time_bounds: TimeBounds,
}

/// How an order of a channel is sourced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcingRule {
    /// Locations in priority order; the channel's eligible locations when `None`.
    pub locations: Option<Vec<LocIdx>>,
    /// Every line from one location, or split.
    pub ship_complete: bool,
    /// Locations beyond the first an order may be split across.
    pub max_splits: u32,
    /// What cannot be allocated now waits for stock; otherwise the order is refused.
    pub backorder: bool,
    /// A line short of stock may be filled with the item's configured substitutes.
    pub substitute: bool,
}

impl Default for SourcingRule {
    fn default() -> Self {
        SourcingRule {
            locations: None,
            ship_complete: false,
            max_splits: 2,
            backorder: false,
            substitute: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowPolicy {
    pub sourcing: HashMap<ChanIdx, SourcingRule>,
    /// The rule of channels without their own.
    pub default_rule: SourcingRule,
    /// Ship-to regions each location serves (first choice when sourcing an order to the region).
    pub regions: HashMap<LocIdx, Vec<String>>,
    /// Items that may stand in for an item, in order of preference.
    pub substitutions: HashMap<ItemId, Vec<ItemId>>,
    /// An accepted order not shipped this long after release raises `shipment_posting_delay`.
    pub shipment_sla_s: u64,
    /// A purchase order not acknowledged this long after creation raises `partner_ack_timeout`.
    pub ack_timeout_s: u64,
}

impl Default for WorkflowPolicy {
    fn default() -> Self {
        WorkflowPolicy {
            sourcing: HashMap::new(),
            default_rule: SourcingRule::default(),
            regions: HashMap::new(),
            substitutions: HashMap::new(),
            shipment_sla_s: 2 * 24 * 3600,
            ack_timeout_s: 24 * 3600,
        }
    }
}

impl WorkflowPolicy {
    pub fn rule(&self, channel: ChanIdx) -> &SourcingRule {
        self.sourcing.get(&channel).unwrap_or(&self.default_rule)
    }
}

impl Policy {
    pub fn new(
        items: Option<HashSet<ItemId>>,
        locations: Vec<LocationId>,
        channels: Vec<ChannelPolicy>,
        sources: HashMap<SourceId, SourcePolicy>,
    ) -> Self {
        assert!(locations.len() < u16::MAX as usize, "too many locations");
        assert!(channels.len() < u16::MAX as usize, "too many channels");
        let location_index = locations
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), LocIdx(i as u16)))
            .collect();
        let channel_index = channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), ChanIdx(i as u16)))
            .collect();
        Policy {
            items,
            locations,
            location_index,
            channels,
            channel_index,
            sources,
            gap_wait_s: 30,
            held_max: 10_000,
            workflow: WorkflowPolicy::default(),
            resolves_oversell_records: true,
            time_bounds: TimeBounds::default(),
        }
    }

    pub fn location(&self, id: &LocationId) -> Option<LocIdx> {
        self.location_index.get(id).copied()
    }

    pub fn location_name(&self, idx: LocIdx) -> &LocationId {
        &self.locations[idx.0 as usize]
    }

    pub fn channel(&self, id: &ChannelId) -> Option<ChanIdx> {
        self.channel_index.get(id).copied()
    }

    pub fn channel_policy(&self, idx: ChanIdx) -> &ChannelPolicy {
        &self.channels[idx.0 as usize]
    }

    pub fn knows_item(&self, item: &ItemId) -> bool {
        self.items.as_ref().is_none_or(|set| set.contains(item))
    }

    /// Whether `source` may emit `ty` touching `loc`. The import source may emit inventory types.
    pub fn owns(&self, source: &SourceId, ty: &str, loc: LocIdx) -> bool {
        if source.as_str() == IMPORT_SOURCE {
            return ty.starts_with("inventory.") || ty.starts_with("supply.");
        }
        if source.as_str() == RECONCILER_SOURCE {
            return ty.starts_with("inventory.counted.")
                || ty.starts_with("inventory.status_changed.");
        }
        if source.as_str() == CANARY_SOURCE {
            return ty.starts_with("inventory.counted.");
        }
        self.sources
            .get(source)
            .is_some_and(|s| s.rules.iter().any(|r| r.allows(ty, loc)))
    }

    pub fn is_sequenced(&self, source: &SourceId) -> bool {
        self.sources.get(source).is_some_and(|s| s.sequenced)
    }
}
