//! Canonical events: the CloudEvents 1.0 envelope on the wire and the typed event inside the hub.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{ChannelId, ItemId, LocationId, Lot, SourceId, validate_id};
use crate::time::Timestamp;
pub use crate::workflow::*;
use crate::workflow::{check_asn_lines, check_lines, check_ref};

/// The source name the hub itself uses for commands it logs (reservations, timers, imports).
pub const HUB_SOURCE: &str = "crossdock";

/// Prefix of the correlation id of an input that names none: `event:<source>/<id>`, its own
/// idempotency key. Such ids are found through the key's unique index, so the store's
/// correlation indexes leave them out and high-volume feeds without correlation ids pay nothing
/// for traces.
pub const OWN_CORRELATION_PREFIX: &str = "event:";

/// The correlation id of an input from `source` with id `id` that names none.
pub fn own_correlation(source: &str, id: &str) -> String {
    format!("{OWN_CORRELATION_PREFIX}{source}/{id}")
}

/// The `(source, id)` keys an own correlation id can stand for (a source may itself hold a `/`,
/// so every split is a candidate); none for any other id.
pub fn own_correlation_keys(correlation_id: &str) -> Vec<(&str, &str)> {
    let Some(rest) = correlation_id.strip_prefix(OWN_CORRELATION_PREFIX) else {
        return Vec::new();
    };
    rest.match_indices('/')
        .map(|(i, _)| (&rest[..i], &rest[i + 1..]))
        .filter(|(source, id)| !source.is_empty() && !id.is_empty())
        .collect()
}

/// The one bound on quantities: every quantity an input names lies within `±QTY_MAX`, and so does
/// every bucket the ledger keeps. Far above any real stock, far below where `i64` sums of a few
/// thousand such values could overflow.
pub const QTY_MAX: i64 = 1_000_000_000_000;

/// Whether `qty` lies within `±QTY_MAX`. Compares without arithmetic, so `i64::MIN` cannot
/// overflow the check itself (as `abs()` would).
pub const fn qty_in_bound(qty: i64) -> bool {
    -QTY_MAX <= qty && qty <= QTY_MAX
}

/// How far an event's `time` may lie from the hub's clock when the event is received. A count
/// dated in the future would otherwise absorb every later movement behind it (the event-time
/// rule); one dated before the horizon is a broken clock or a wrong field, not history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// How far ahead of the hub's clock a source's clock may run.
    pub future_skew_s: u64,
    /// How many days back an event may have happened.
    pub horizon_days: u32,
}

impl TimeBounds {
    pub const FUTURE_SKEW_S_DEFAULT: u64 = 300;
    pub const HORIZON_DAYS_DEFAULT: u32 = 3_650;

    /// No bound at all (replays of a log whose events were checked when they arrived).
    pub const UNBOUNDED: TimeBounds = TimeBounds {
        future_skew_s: u64::MAX,
        horizon_days: u32::MAX,
    };
}

impl TimeBounds {
    /// Refuses `time` (of the field `field`) more than `future_skew_s` after `now`, or more than
    /// `horizon_days` before it.
    pub fn check(&self, field: &str, time: Timestamp, now: Timestamp) -> Result<(), EventError> {
        let latest = now.plus_secs(self.future_skew_s);
        if time > latest {
            return Err(EventError::at(
                field,
                format!(
                    "{time} is more than {} s after the hub's clock ({now}); an event cannot have \
                     happened in the future: fix the source's clock or the time",
                    self.future_skew_s
                ),
            ));
        }
        let earliest = now.minus_secs(u64::from(self.horizon_days).saturating_mul(86_400));
        if time < earliest {
            return Err(EventError::at(
                field,
                format!(
                    "{time} is more than {} days before the hub's clock ({now}); older times are \
                     refused (engine.event_horizon_days)",
                    self.horizon_days
                ),
            ));
        }
        Ok(())
    }
}

impl Default for TimeBounds {
    fn default() -> Self {
        TimeBounds {
            future_skew_s: Self::FUTURE_SKEW_S_DEFAULT,
            horizon_days: Self::HORIZON_DAYS_DEFAULT,
        }
    }
}

/// Lines in one shipment or reservation.
pub const LINES_MAX: usize = 1_000;

/// The CloudEvents 1.0 envelope in JSON structured mode, as it arrives.
/// Unknown extension attributes are accepted and ignored, as CloudEvents requires.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Always `"1.0"`.
    pub specversion: String,
    /// Idempotency key, unique per source.
    pub id: String,
    /// The system that produced the event; must match the caller's `ingest:<source>` scope.
    pub source: String,
    /// Versioned event type, for example `inventory.received.v1`.
    #[serde(rename = "type")]
    pub ty: String,
    /// When it happened, by the source's clock.
    pub time: Timestamp,
    /// CloudEvents sequence extension: the source's monotonic stream position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<Sequence>,
    /// Carried end to end; generated at the edge when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    pub data: Value,
}

/// The sequence extension is a string in CloudEvents; integers are accepted as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SequenceRepr", into = "String")]
pub struct Sequence(pub u64);

impl JsonSchema for Sequence {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Sequence".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [{ "type": "string", "pattern": "^[0-9]+$" }, { "type": "integer", "minimum": 0 }]
        })
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SequenceRepr {
    Int(u64),
    Str(String),
}

impl TryFrom<SequenceRepr> for Sequence {
    type Error = String;
    fn try_from(r: SequenceRepr) -> Result<Self, String> {
        match r {
            SequenceRepr::Int(n) => Ok(Sequence(n)),
            SequenceRepr::Str(s) => s
                .parse::<u64>()
                .map(Sequence)
                .map_err(|_| format!("sequence {s:?} is not a non-negative integer")),
        }
    }
}

impl From<Sequence> for String {
    fn from(s: Sequence) -> String {
        s.0.to_string()
    }
}

/// Stock status a quantity can move between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockStatus {
    Sellable,
    Quarantined,
    Damaged,
}

/// What inspection decided for a returned unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Restock,
    Damaged,
    Scrap,
}

/// `inventory.received.v1`: +on_hand; closes open supply when `reference` names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Received {
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<Lot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `inventory.adjusted.v1`: ±on_hand with a reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjusted {
    pub item: ItemId,
    pub location: LocationId,
    pub delta: i64,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<Lot>,
}

/// `inventory.counted.v1`: absolute on_hand as of the event's `time`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Counted {
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<Lot>,
}

/// `inventory.status_changed.v1`: moves quantity between sellable, quarantined and damaged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChanged {
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
    pub from: StockStatus,
    pub to: StockStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<Lot>,
}

/// `inventory.picked.v1`: allocated → picked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Picked {
    pub order: String,
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipLine {
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
}

/// `inventory.shipped.v1`: −picked, −on_hand per line; partial shipments allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shipped {
    pub order: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<String>,
    pub lines: Vec<ShipLine>,
}

/// `transfer.shipped.v1`: −on_hand at `from`, +in_transit at `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferShipped {
    pub transfer: String,
    pub item: ItemId,
    pub from: LocationId,
    pub to: LocationId,
    pub qty: i64,
}

/// `transfer.received.v1`: −in_transit, +on_hand at `location`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferReceived {
    pub transfer: String,
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
}

/// `return.received.v1`: +on_hand, +returns_pending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnReceived {
    pub rma: String,
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
}

/// `return.inspected.v1`: −returns_pending; restock, move to damaged, or scrap (−on_hand).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnInspected {
    pub rma: String,
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
    pub disposition: Disposition,
}

/// `supply.expected.v1`: open PO/ASN supply, +incoming at the destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupplyExpected {
    pub reference: String,
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
    pub expected_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveLine {
    pub item: ItemId,
    pub qty: i64,
}

/// `reservation.requested.v1` (hub command): hold `lines` for `channel` until `ttl_s` passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationRequested {
    pub reservation: String,
    pub channel: ChannelId,
    pub lines: Vec<ReserveLine>,
    pub ttl_s: u64,
}

/// `reservation.released.v1`, `reservation.committed.v1`, `reservation.expired.v1` (hub commands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationRef {
    pub reservation: String,
}

/// `reservation.cross_begun.v1` (hub command, in the partition that owns the reservation id):
/// a reservation whose lines live on `partitions` is being prepared, attempt `nonce`; each of
/// those partitions holds its lines as an ordinary reservation, a part (see
/// [`cross_part_id`]). Undecided after `prepare_s`, it is aborted (presumed abort).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossBegun {
    pub reservation: String,
    pub channel: ChannelId,
    pub lines: Vec<ReserveLine>,
    pub ttl_s: u64,
    pub nonce: u64,
    pub partitions: Vec<u32>,
    pub prepare_s: u64,
    /// The coordinator's own part when it is one of `partitions`: held by the same command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<OwnPart>,
}

/// The part a coordinator holds itself: its partition's lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnPart {
    pub partition: u32,
    pub lines: Vec<ReserveLine>,
    pub ttl_s: u64,
}

/// `reservation.cross_decided.v1` (hub command or timer): the decision of attempt `nonce`: held
/// with the parts' `lines` (every part held), or aborted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossDecided {
    pub reservation: String,
    pub nonce: u64,
    pub held: bool,
    #[serde(default)]
    pub lines: Vec<CrossLine>,
}

/// A line a part holds: an item at a location (and lot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossLine {
    pub item: ItemId,
    pub location: LocationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<Lot>,
    pub qty: i64,
}

/// Marks the id of a part of a cross-partition reservation; refused in ids clients choose.
pub const CROSS_PART_MARK: &str = "#part:";

/// The id of the part of reservation `id`, attempt `nonce`, held in `partition`.
pub fn cross_part_id(id: &str, nonce: u64, partition: u32) -> String {
    format!("{id}{CROSS_PART_MARK}{nonce:016x}:{partition}")
}

/// The reservation a part id belongs to, if it is one.
pub fn cross_part_owner(part: &str) -> Option<&str> {
    part.rfind(CROSS_PART_MARK).map(|i| &part[..i])
}

/// What the id of an event's forwarded copy ends with: an event of a resequenced source is put
/// in line by the partition of its source and applied, as a copy, by the partitions of its items.
pub const FORWARD_MARK: &str = "#fwd";

/// The id of the forwarded copy of event `id`.
pub fn forward_copy_id(id: &str) -> String {
    format!("{id}{FORWARD_MARK}")
}

/// Whether `id` names a forwarded copy (or a part of one): the original is in the log too.
pub fn is_forward_copy(id: &str) -> bool {
    id.contains(FORWARD_MARK)
}

/// What the id of a wide input's part row ends with: a workflow across partitions runs its
/// inputs in its home partition with the items of the others lent to it, and each lender logs a
/// part row (`<id>#at:<partition>`) at the same sequence for the changes to its items.
pub const WIDE_PART_MARK: &str = "#at:";

/// The id of the part row of wide input `id` in `partition`.
pub fn wide_part_id(id: &str, partition: u32) -> String {
    format!("{id}{WIDE_PART_MARK}{partition}")
}

/// Whether `id` names a part row of a wide input (the input itself is logged in its home).
pub fn is_wide_part(id: &str) -> bool {
    id.contains(WIDE_PART_MARK)
}

/// `sequence.gap_timeout.v1` (hub timer): stop waiting for `expected` from `source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GapTimeout {
    pub source: SourceId,
    pub expected: u64,
}

macro_rules! event_types {
    ($( $variant:ident($data:ty) = $name:literal, public: $public:literal; )*) => {
        /// Serializes as the bare `data` object of its type.
        impl Serialize for EventData {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $( EventData::$variant(d) => d.serialize(s), )* }
            }
        }

        /// The typed `data` of every event kind, selected by the envelope's `type`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventData {
            $( $variant($data), )*
        }

        impl EventData {
            /// Every known type name and whether clients may submit it.
            pub const TYPES: &'static [(&'static str, bool)] = &[ $( ($name, $public), )* ];

            pub fn type_name(&self) -> &'static str {
                match self { $( EventData::$variant(_) => $name, )* }
            }

            /// Parses `data` for `ty`, naming the offending field on error.
            pub fn parse(ty: &str, data: &Value) -> Result<Self, EventError> {
                match ty {
                    $( $name => parse_data(data).map(EventData::$variant), )*
                    other => Err(EventError::UnknownType(other.to_string())),
                }
            }

            pub fn to_json(&self) -> Value {
                serde_json::to_value(self).expect("event data always serializes")
            }

            /// JSON Schema of the `data` of every type, keyed by type name.
            pub fn schemas() -> serde_json::Map<String, Value> {
                let mut out = serde_json::Map::new();
                $( out.insert($name.to_string(), serde_json::to_value(schemars::schema_for!($data)).expect("schema serializes")); )*
                out
            }
        }
    };
}

event_types! {
    Received(Received) = "inventory.received.v1", public: true;
    Adjusted(Adjusted) = "inventory.adjusted.v1", public: true;
    Counted(Counted) = "inventory.counted.v1", public: true;
    StatusChanged(StatusChanged) = "inventory.status_changed.v1", public: true;
    Picked(Picked) = "inventory.picked.v1", public: true;
    Shipped(Shipped) = "inventory.shipped.v1", public: true;
    TransferShipped(TransferShipped) = "transfer.shipped.v1", public: true;
    TransferReceived(TransferReceived) = "transfer.received.v1", public: true;
    ReturnReceived(ReturnReceived) = "return.received.v1", public: true;
    ReturnInspected(ReturnInspected) = "return.inspected.v1", public: true;
    SupplyExpected(SupplyExpected) = "supply.expected.v1", public: true;
    ReservationRequested(ReservationRequested) = "reservation.requested.v1", public: false;
    ReservationReleased(ReservationRef) = "reservation.released.v1", public: false;
    ReservationCommitted(ReservationRef) = "reservation.committed.v1", public: false;
    ReservationExpired(ReservationRef) = "reservation.expired.v1", public: false;
    GapTimeout(GapTimeout) = "sequence.gap_timeout.v1", public: false;
    CrossBegun(CrossBegun) = "reservation.cross_begun.v1", public: false;
    CrossDecided(CrossDecided) = "reservation.cross_decided.v1", public: false;
    OrderCaptured(OrderCaptured) = "order.captured.v1", public: false;
    OrderApproved(OrderApproved) = "order.approved.v1", public: false;
    OrderCancelled(OrderCancelled) = "order.cancelled.v1", public: false;
    OrderShipmentDue(OrderShipmentDue) = "order.shipment_due.v1", public: false;
    BackordersDue(BackordersDue) = "order.backorders_due.v1", public: false;
    ReturnAuthorized(ReturnAuthorized) = "return.authorized.v1", public: false;
    TransferRequested(TransferRequested) = "transfer.requested.v1", public: false;
    PurchaseOrderCreated(PurchaseOrderCreated) = "purchase_order.created.v1", public: false;
    PurchaseOrderAcknowledged(PurchaseOrderAcknowledged) = "purchase_order.acknowledged.v1", public: true;
    PurchaseOrderAckDue(PurchaseOrderAckDue) = "purchase_order.ack_due.v1", public: false;
    AsnReceived(AsnReceived) = "asn.received.v1", public: true;
    AsnDecided(AsnDecided) = "asn.decided.v1", public: false;
}

fn parse_data<T: serde::de::DeserializeOwned>(data: &Value) -> Result<T, EventError> {
    serde_path_to_error::deserialize(data).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "data".to_string()
        } else {
            format!("data.{path}")
        };
        EventError::Field {
            field,
            problem: e.into_inner().to_string(),
        }
    })
}

/// Why an envelope or its data was refused. Each names the field a person has to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("{field}: {problem}")]
    Field { field: String, problem: String },
}

impl EventError {
    pub fn field(&self) -> &str {
        match self {
            EventError::UnknownType(_) => "type",
            EventError::Field { field, .. } => field,
        }
    }
    pub(crate) fn at(field: &str, problem: impl Into<String>) -> Self {
        EventError::Field {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

/// A canonical event as the hub records and applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub source: SourceId,
    pub time: Timestamp,
    pub sequence: Option<u64>,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub data: EventData,
    /// The hub's clock when the event was accepted.
    pub received_at: Timestamp,
}

impl Event {
    /// Whether this is a copy the hub logged of another input that is in the log too (a
    /// forwarded copy of a resequenced source's event, or a wide input's part row): its id is
    /// the original's (its cause) with the hub's mark. Replaying the log applies the original
    /// and skips the copies.
    #[cfg(test)]
    fn hub_test(id: &str, cause: Option<&str>) -> Event {
        Event {
            id: id.into(),
            source: crate::SourceId::new("wms").unwrap(),
            time: Timestamp::from_micros(0),
            sequence: None,
            correlation_id: "c".into(),
            causation_id: cause.map(str::to_string),
            data: EventData::BackordersDue(BackordersDue {
                item: crate::ItemId::new("I").unwrap(),
            }),
            received_at: Timestamp::from_micros(0),
        }
    }

    pub fn is_hub_copy(&self) -> bool {
        let Some(original) = self.causation_id.as_deref() else {
            return false;
        };
        let Some(rest) = self.id.strip_prefix(original) else {
            return false;
        };
        rest == FORWARD_MARK
            || rest
                .strip_prefix(WIDE_PART_MARK)
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Validates an envelope into an event. `correlation_id` is used when the envelope has none.
    pub fn from_envelope(
        env: &Envelope,
        received_at: Timestamp,
        fallback_correlation: impl FnOnce() -> String,
    ) -> Result<Self, EventError> {
        if env.specversion != "1.0" {
            return Err(EventError::at(
                "specversion",
                format!("must be \"1.0\", got {:?}", env.specversion),
            ));
        }
        validate_id(&env.id).map_err(|e| EventError::at("id", e.to_string()))?;
        let source =
            SourceId::new(&env.source).map_err(|e| EventError::at("source", e.to_string()))?;
        if let Some(ct) = &env.datacontenttype
            && !ct.starts_with("application/json")
        {
            return Err(EventError::at(
                "datacontenttype",
                format!("only application/json data is accepted, got {ct:?}"),
            ));
        }
        let data = EventData::parse(&env.ty, &env.data)?;
        data.validate()?;
        let correlation_id = match &env.correlationid {
            Some(c) => {
                validate_id(c).map_err(|e| EventError::at("correlationid", e.to_string()))?;
                c.clone()
            }
            None => fallback_correlation(),
        };
        Ok(Event {
            id: env.id.clone(),
            source,
            time: env.time,
            sequence: env.sequence.map(|s| s.0),
            correlation_id,
            causation_id: env.causationid.clone(),
            data,
            received_at,
        })
    }

    /// Every check an input must pass, whichever way it came in (HTTP, NDJSON, X12, CSV, imports,
    /// webhooks, workflow commands, reconciliation corrections, replays): its ids, its data and,
    /// for inputs from outside the hub, its time against the hub's clock at `received_at`.
    pub fn check(&self, bounds: &TimeBounds) -> Result<(), EventError> {
        validate_id(&self.id).map_err(|e| EventError::at("id", e.to_string()))?;
        validate_id(&self.correlation_id)
            .map_err(|e| EventError::at("correlationid", e.to_string()))?;
        self.data.validate()?;
        if self.sequence == Some(u64::MAX) {
            return Err(EventError::at(
                "sequence",
                format!(
                    "must be below {} (the number after it must exist)",
                    u64::MAX
                ),
            ));
        }
        if self.source.as_str() != HUB_SOURCE {
            self.check_time(bounds)?;
        }
        Ok(())
    }

    /// Refuses a `time` more than `future_skew_s` after the hub's clock at `received_at`, or
    /// more than `horizon_days` before it.
    pub fn check_time(&self, bounds: &TimeBounds) -> Result<(), EventError> {
        bounds.check("time", self.time, self.received_at)
    }

    /// The envelope as stored in the event log (with the generated correlation id filled in).
    pub fn to_envelope(&self) -> Envelope {
        Envelope {
            specversion: "1.0".into(),
            id: self.id.clone(),
            source: self.source.to_string(),
            ty: self.data.type_name().into(),
            time: self.time,
            sequence: self.sequence.map(Sequence),
            correlationid: Some(self.correlation_id.clone()),
            causationid: self.causation_id.clone(),
            datacontenttype: None,
            data: self.data.to_json(),
        }
    }

    /// Fingerprint of what the event says (type, time, sequence, data), to tell a true repeat
    /// from a different payload reusing an id. Stable across releases of the same type version.
    pub fn payload_hash(&self) -> u64 {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(self.data.type_name().as_bytes());
        buf.push(0);
        buf.extend_from_slice(&self.time.as_micros().to_le_bytes());
        buf.extend_from_slice(&self.sequence.unwrap_or(u64::MAX).to_le_bytes());
        serde_json::to_writer(&mut buf, &self.data).expect("json to vec");
        xxhash_rust::xxh3::xxh3_64(&buf)
    }

    /// The stored envelope as JSON text, in one pass (the hot path of the event log).
    pub fn envelope_json(&self) -> String {
        #[derive(Serialize)]
        struct EnvelopeRef<'a> {
            specversion: &'static str,
            id: &'a str,
            source: &'a str,
            #[serde(rename = "type")]
            ty: &'static str,
            time: Timestamp,
            #[serde(skip_serializing_if = "Option::is_none")]
            sequence: Option<Sequence>,
            correlationid: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            causationid: Option<&'a str>,
            data: &'a EventData,
        }
        serde_json::to_string(&EnvelopeRef {
            specversion: "1.0",
            id: &self.id,
            source: self.source.as_str(),
            ty: self.data.type_name(),
            time: self.time,
            sequence: self.sequence.map(Sequence),
            correlationid: &self.correlation_id,
            causationid: self.causation_id.as_deref(),
            data: &self.data,
        })
        .expect("envelope serializes")
    }

    /// Fingerprint of the idempotency key `(source, id)`.
    pub fn key_hash(&self) -> u64 {
        key_hash(self.source.as_str(), &self.id)
    }
}

pub fn key_hash(source: &str, id: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(source.as_bytes());
    h.update(&[0]);
    h.update(id.as_bytes());
    h.digest()
}

fn positive(field: &str, qty: i64) -> Result<(), EventError> {
    if qty <= 0 {
        return Err(EventError::at(
            field,
            format!("must be a positive whole number of base units, got {qty}"),
        ));
    }
    if qty > QTY_MAX {
        return Err(EventError::at(
            field,
            format!("must be at most {QTY_MAX}, got {qty}"),
        ));
    }
    Ok(())
}

fn not_negative(field: &str, qty: i64) -> Result<(), EventError> {
    if qty < 0 {
        return Err(EventError::at(
            field,
            format!("must not be negative, got {qty}"),
        ));
    }
    if qty > QTY_MAX {
        return Err(EventError::at(
            field,
            format!("must be at most {QTY_MAX}, got {qty}"),
        ));
    }
    Ok(())
}

fn reference(field: &str, raw: &str) -> Result<(), EventError> {
    validate_id(raw).map_err(|e| EventError::at(field, e.to_string()))
}

impl EventData {
    /// Checks what the types alone cannot: positive quantities, sane line counts, distinct statuses.
    pub fn validate(&self) -> Result<(), EventError> {
        match self {
            EventData::Received(d) => positive("data.qty", d.qty),
            EventData::Adjusted(d) => {
                if d.delta == 0 {
                    return Err(EventError::at("data.delta", "must not be zero"));
                }
                if !qty_in_bound(d.delta) {
                    return Err(EventError::at(
                        "data.delta",
                        format!("must be within ±{QTY_MAX}, got {}", d.delta),
                    ));
                }
                if d.reason.trim().is_empty() {
                    return Err(EventError::at(
                        "data.reason",
                        "must say why the stock was adjusted",
                    ));
                }
                Ok(())
            }
            EventData::Counted(d) => not_negative("data.qty", d.qty),
            EventData::StatusChanged(d) => {
                positive("data.qty", d.qty)?;
                if d.from == d.to {
                    return Err(EventError::at("data.to", "must differ from data.from"));
                }
                Ok(())
            }
            EventData::Picked(d) => {
                reference("data.order", &d.order)?;
                positive("data.qty", d.qty)
            }
            EventData::Shipped(d) => {
                reference("data.order", &d.order)?;
                if d.lines.is_empty() {
                    return Err(EventError::at("data.lines", "must have at least one line"));
                }
                if d.lines.len() > LINES_MAX {
                    return Err(EventError::at(
                        "data.lines",
                        format!("at most {LINES_MAX} lines"),
                    ));
                }
                for (i, l) in d.lines.iter().enumerate() {
                    positive(&format!("data.lines[{i}].qty"), l.qty)?;
                }
                Ok(())
            }
            EventData::TransferShipped(d) => {
                reference("data.transfer", &d.transfer)?;
                if d.from == d.to {
                    return Err(EventError::at("data.to", "must differ from data.from"));
                }
                positive("data.qty", d.qty)
            }
            EventData::TransferReceived(d) => {
                reference("data.transfer", &d.transfer)?;
                positive("data.qty", d.qty)
            }
            EventData::ReturnReceived(d) => {
                reference("data.rma", &d.rma)?;
                positive("data.qty", d.qty)
            }
            EventData::ReturnInspected(d) => {
                reference("data.rma", &d.rma)?;
                positive("data.qty", d.qty)
            }
            EventData::SupplyExpected(d) => {
                reference("data.reference", &d.reference)?;
                // Negative: the reference expects less than it did (an ASN moving supply off
                // its PO); the ledger takes off at most what the reference still has open.
                if d.qty == 0 || !qty_in_bound(d.qty) {
                    return Err(EventError::at(
                        "data.qty",
                        format!("must be non-zero and within ±{QTY_MAX}, got {}", d.qty),
                    ));
                }
                Ok(())
            }
            EventData::ReservationRequested(d) => {
                reference("id", &d.reservation)?;
                if d.lines.is_empty() {
                    return Err(EventError::at("lines", "must have at least one line"));
                }
                if d.lines.len() > LINES_MAX {
                    return Err(EventError::at(
                        "lines",
                        format!("at most {LINES_MAX} lines"),
                    ));
                }
                for (i, l) in d.lines.iter().enumerate() {
                    positive(&format!("lines[{i}].qty"), l.qty)?;
                    if d.lines[..i].iter().any(|o| o.item == l.item) {
                        return Err(EventError::at(
                            &format!("lines[{i}].item"),
                            "appears twice; merge the lines",
                        ));
                    }
                }
                if d.ttl_s == 0 || d.ttl_s > 30 * 24 * 3600 {
                    return Err(EventError::at(
                        "ttl_s",
                        "must be between 1 and 2592000 seconds",
                    ));
                }
                Ok(())
            }
            EventData::ReservationReleased(d)
            | EventData::ReservationCommitted(d)
            | EventData::ReservationExpired(d) => reference("reservation", &d.reservation),
            EventData::CrossBegun(d) => {
                reference("id", &d.reservation)?;
                if d.lines.is_empty() || d.lines.len() > LINES_MAX {
                    return Err(EventError::at(
                        "lines",
                        format!("must have 1 to {LINES_MAX} lines"),
                    ));
                }
                for (i, l) in d.lines.iter().enumerate() {
                    positive(&format!("lines[{i}].qty"), l.qty)?;
                }
                if d.partitions.len() < 2 {
                    return Err(EventError::at(
                        "partitions",
                        "names at least two partitions",
                    ));
                }
                if let Some(own) = &d.own {
                    for (i, l) in own.lines.iter().enumerate() {
                        positive(&format!("own.lines[{i}].qty"), l.qty)?;
                    }
                }
                Ok(())
            }
            EventData::CrossDecided(d) => {
                reference("reservation", &d.reservation)?;
                for (i, l) in d.lines.iter().enumerate() {
                    positive(&format!("lines[{i}].qty"), l.qty)?;
                }
                Ok(())
            }
            EventData::GapTimeout(_) => Ok(()),
            EventData::OrderCaptured(d) => {
                check_ref("data.order", &d.order)?;
                check_lines("data.lines", &d.lines)?;
                if d.ship_to.region.trim().is_empty() {
                    return Err(EventError::at("data.ship_to.region", "must not be empty"));
                }
                not_negative("data.amount_minor", d.amount_minor)
            }
            EventData::OrderApproved(d) => check_ref("data.order", &d.order),
            EventData::OrderCancelled(d) => check_ref("data.order", &d.order),
            EventData::OrderShipmentDue(d) => check_ref("data.order", &d.order),
            EventData::BackordersDue(_) => Ok(()),
            EventData::ReturnAuthorized(d) => {
                check_ref("data.rma", &d.rma)?;
                check_lines("data.lines", &d.lines)
            }
            EventData::TransferRequested(d) => {
                check_ref("data.transfer", &d.transfer)?;
                if d.from == d.to {
                    return Err(EventError::at("data.to", "must differ from data.from"));
                }
                check_lines("data.lines", &d.lines)
            }
            EventData::PurchaseOrderCreated(d) => {
                check_ref("data.po", &d.po)?;
                check_lines("data.lines", &d.lines)
            }
            EventData::PurchaseOrderAcknowledged(d) => check_ref("data.po", &d.po),
            EventData::PurchaseOrderAckDue(d) => check_ref("data.po", &d.po),
            EventData::AsnReceived(d) => {
                check_ref("data.po", &d.po)?;
                check_ref("data.asn", &d.asn)?;
                check_asn_lines(&d.lines)
            }
            EventData::AsnDecided(d) => {
                check_ref("data.po", &d.po)?;
                check_ref("data.asn", &d.asn)
            }
        }
    }

    /// Whether clients may submit this type on `POST /v1/events`.
    pub fn is_public(&self) -> bool {
        Self::TYPES
            .iter()
            .any(|(name, public)| *public && *name == self.type_name())
    }

    /// The items the event touches, in order, without repeats.
    pub fn items(&self) -> Vec<&ItemId> {
        let mut out: Vec<&ItemId> = Vec::with_capacity(1);
        match self {
            EventData::Received(d) => out.push(&d.item),
            EventData::Adjusted(d) => out.push(&d.item),
            EventData::Counted(d) => out.push(&d.item),
            EventData::StatusChanged(d) => out.push(&d.item),
            EventData::Picked(d) => out.push(&d.item),
            EventData::Shipped(d) => {
                for l in &d.lines {
                    if !out.contains(&&l.item) {
                        out.push(&l.item);
                    }
                }
            }
            EventData::TransferShipped(d) => out.push(&d.item),
            EventData::TransferReceived(d) => out.push(&d.item),
            EventData::ReturnReceived(d) => out.push(&d.item),
            EventData::ReturnInspected(d) => out.push(&d.item),
            EventData::SupplyExpected(d) => out.push(&d.item),
            EventData::ReservationRequested(d) => out.extend(d.lines.iter().map(|l| &l.item)),
            EventData::ReservationReleased(_)
            | EventData::ReservationCommitted(_)
            | EventData::ReservationExpired(_)
            | EventData::GapTimeout(_)
            | EventData::CrossBegun(_)
            | EventData::CrossDecided(_) => {}
            EventData::OrderCaptured(d) => out.extend(d.lines.iter().map(|l| &l.item)),
            EventData::ReturnAuthorized(d) => out.extend(d.lines.iter().map(|l| &l.item)),
            EventData::TransferRequested(d) => out.extend(d.lines.iter().map(|l| &l.item)),
            EventData::PurchaseOrderCreated(d) => out.extend(d.lines.iter().map(|l| &l.item)),
            EventData::BackordersDue(d) => out.push(&d.item),
            // Workflow commands that name only their workflow: routed by it, not by an item.
            // ASN lines name the supplier's items, which may be unknown: the workflow checks them.
            EventData::OrderApproved(_)
            | EventData::OrderCancelled(_)
            | EventData::OrderShipmentDue(_)
            | EventData::PurchaseOrderAcknowledged(_)
            | EventData::PurchaseOrderAckDue(_)
            | EventData::AsnReceived(_)
            | EventData::AsnDecided(_) => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_hub_copy_is_its_cause_with_the_hubs_mark() {
        let mut ev = Event::hub_test("e1#fwd", Some("e1"));
        assert!(ev.is_hub_copy());
        ev.id = wide_part_id("e1", 3);
        assert!(ev.is_hub_copy());
        for (id, cause) in [
            ("e1#fwd", None),
            ("e1#fwd", Some("e2")),
            ("e1#at:", Some("e1")),
            ("e1#at:x", Some("e1")),
            ("e1#fwdx", Some("e1")),
            ("e1", Some("e1")),
        ] {
            let ev = Event::hub_test(id, cause);
            assert!(!ev.is_hub_copy(), "{id} caused by {cause:?}");
        }
    }

    use super::*;
    use serde_json::json;

    fn envelope(ty: &str, data: Value) -> Envelope {
        serde_json::from_value(json!({
            "specversion": "1.0", "id": "e-1", "source": "wms-east", "type": ty,
            "time": "2026-11-23T10:00:00Z", "data": data,
        }))
        .unwrap()
    }

    fn parse(ty: &str, data: Value) -> Result<Event, EventError> {
        Event::from_envelope(&envelope(ty, data), Timestamp::from_micros(0), || {
            "corr".into()
        })
    }

    #[test]
    fn own_correlation_ids_name_their_input() {
        let c = own_correlation("wms/east", "rcv-1");
        assert_eq!(c, "event:wms/east/rcv-1");
        assert_eq!(
            own_correlation_keys(&c),
            vec![("wms", "east/rcv-1"), ("wms/east", "rcv-1")],
            "every split is a candidate"
        );
        assert!(own_correlation_keys("PO-4711").is_empty());
        assert!(own_correlation_keys("event:").is_empty());
        assert!(own_correlation_keys("event:/x").is_empty());
    }

    #[test]
    fn parses_received_and_fills_correlation() {
        let ev = parse(
            "inventory.received.v1",
            json!({"item": "SKU-1", "location": "DC-EAST", "qty": 5}),
        )
        .unwrap();
        assert_eq!(ev.correlation_id, "corr");
        assert_eq!(ev.data.type_name(), "inventory.received.v1");
        assert_eq!(ev.data.items().len(), 1);
        let back = ev.to_envelope();
        assert_eq!(back.correlationid.as_deref(), Some("corr"));
        let stored: Envelope = serde_json::from_str(&ev.envelope_json()).unwrap();
        assert_eq!(
            serde_json::to_value(&stored).unwrap(),
            serde_json::to_value(&back).unwrap()
        );
    }

    #[test]
    fn bad_data_names_the_field() {
        let cases = [
            (
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1.5}),
                "data.qty",
            ),
            (
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": -3}),
                "data.qty",
            ),
            (json!({"item": "SKU-1", "location": "DC-EAST"}), "data"),
            (
                json!({"item": "", "location": "DC-EAST", "qty": 1}),
                "data.item",
            ),
            (
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1, "colour": "red"}),
                "data.colour",
            ),
        ];
        for (data, field) in cases {
            let err = parse("inventory.received.v1", data.clone()).unwrap_err();
            assert_eq!(err.field(), field, "{data}: {err}");
        }
        let err = parse("inventory.teleported.v1", json!({})).unwrap_err();
        assert_eq!(
            err,
            EventError::UnknownType("inventory.teleported.v1".into())
        );
    }

    #[test]
    fn quantities_outside_the_bound_are_refused_without_overflow() {
        let adjust = |delta: i64| {
            parse(
                "inventory.adjusted.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "delta": delta, "reason": "x"}),
            )
        };
        for delta in [i64::MIN, i64::MIN + 1, -QTY_MAX - 1, QTY_MAX + 1, i64::MAX] {
            let err = adjust(delta).unwrap_err();
            assert_eq!(err.field(), "data.delta", "{delta}: {err}");
        }
        for delta in [-QTY_MAX, -1, 1, QTY_MAX] {
            assert!(adjust(delta).is_ok(), "{delta}");
        }
        let count = |qty: i64| {
            parse(
                "inventory.counted.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": qty}),
            )
        };
        for qty in [i64::MIN, -5, QTY_MAX + 1, i64::MAX] {
            assert_eq!(count(qty).unwrap_err().field(), "data.qty", "{qty}");
        }
        assert!(count(0).is_ok() && count(QTY_MAX).is_ok());
        assert!(qty_in_bound(QTY_MAX) && qty_in_bound(-QTY_MAX));
        assert!(!qty_in_bound(i64::MIN) && !qty_in_bound(i64::MAX));
    }

    #[test]
    fn blank_ids_are_refused() {
        for id in ["", " ", "\t", "\u{a0}\u{3000}"] {
            let mut env = envelope(
                "inventory.received.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 1}),
            );
            env.id = id.into();
            let err =
                Event::from_envelope(&env, Timestamp::from_micros(0), || "c".into()).unwrap_err();
            assert_eq!(err.field(), "id", "{id:?}: {err}");
        }
    }

    #[test]
    fn time_is_bounded_by_the_hub_clock() {
        let now = Timestamp::parse_rfc3339("2026-12-04T12:00:00Z").unwrap();
        let at = |time: &str| {
            let mut ev = parse(
                "inventory.counted.v1",
                json!({"item": "SKU-1", "location": "DC-EAST", "qty": 5}),
            )
            .unwrap();
            ev.time = Timestamp::parse_rfc3339(time).unwrap();
            ev.received_at = now;
            ev.check(&TimeBounds::default())
        };
        assert!(at("2026-12-04T12:05:00Z").is_ok(), "within the skew");
        assert!(at("2016-12-07T12:00:00Z").is_ok(), "within the horizon");
        for far in [
            "2026-12-04T12:05:01Z",
            "9999-12-31T23:59:59Z",
            "2016-12-05T11:59:59Z",
            "0000-01-01T00:00:00Z",
        ] {
            let err = at(far).unwrap_err();
            assert_eq!(err.field(), "time", "{far}: {err}");
        }
        // A hub command carries the hub's own clock; its time is not checked against itself.
        let mut hub = parse(
            "inventory.counted.v1",
            json!({"item": "SKU-1", "location": "DC-EAST", "qty": 5}),
        )
        .unwrap();
        hub.source = SourceId::new(HUB_SOURCE).unwrap();
        hub.time = Timestamp::parse_rfc3339("9999-12-31T00:00:00Z").unwrap();
        assert!(hub.check(&TimeBounds::default()).is_ok());
        let unbounded = TimeBounds::UNBOUNDED;
        let mut ev = hub.clone();
        ev.source = SourceId::new("wms-east").unwrap();
        assert!(
            ev.check(&unbounded).is_ok(),
            "saturates instead of wrapping"
        );
    }

    #[test]
    fn payload_hash_separates_payloads_not_formatting() {
        let a = parse(
            "inventory.received.v1",
            json!({"item": "SKU-1", "location": "DC-EAST", "qty": 5}),
        )
        .unwrap();
        let b = parse(
            "inventory.received.v1",
            json!({"qty": 5, "location": "DC-EAST", "item": "SKU-1"}),
        )
        .unwrap();
        let c = parse(
            "inventory.received.v1",
            json!({"item": "SKU-1", "location": "DC-EAST", "qty": 6}),
        )
        .unwrap();
        assert_eq!(a.payload_hash(), b.payload_hash());
        assert_ne!(a.payload_hash(), c.payload_hash());
    }

    #[test]
    fn sequence_accepts_string_or_integer() {
        let s: Sequence = serde_json::from_value(json!("42")).unwrap();
        assert_eq!(s, Sequence(42));
        let s: Sequence = serde_json::from_value(json!(7)).unwrap();
        assert_eq!(s, Sequence(7));
        assert!(serde_json::from_value::<Sequence>(json!("x")).is_err());
    }

    #[test]
    fn schemas_cover_every_type() {
        let schemas = EventData::schemas();
        assert_eq!(schemas.len(), EventData::TYPES.len());
        assert!(
            schemas["inventory.shipped.v1"]
                .to_string()
                .contains("lines")
        );
    }
}
