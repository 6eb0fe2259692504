//! Exception records: every rejected input, variance or timeout an operator has to see.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

macro_rules! kinds {
    ($($variant:ident = $name:literal,)*) => {
        /// The exception taxonomy (DESIGN section 8).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ExceptionKind { $($variant,)* }

        impl ExceptionKind {
            pub const ALL: &'static [ExceptionKind] = &[$(ExceptionKind::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(ExceptionKind::$variant => $name,)* }
            }
            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($name => Some(ExceptionKind::$variant),)* _ => None }
            }
        }
    };
}

kinds! {
    UnknownItem = "unknown_item",
    UnknownLocation = "unknown_location",
    UnknownChannel = "unknown_channel",
    UomMismatch = "uom_mismatch",
    SchemaViolation = "schema_violation",
    OwnershipViolation = "ownership_violation",
    AuthRejected = "auth_rejected",
    DuplicateConflict = "duplicate_conflict",
    SequenceGap = "sequence_gap",
    OversellRisk = "oversell_risk",
    InventoryMismatch = "inventory_mismatch",
    TransferVariance = "transfer_variance",
    AsnMismatch = "asn_mismatch",
    PartnerAckTimeout = "partner_ack_timeout",
    ShipmentPostingDelay = "shipment_posting_delay",
    DeliveryFailed = "delivery_failed",
    PricingFailure = "pricing_failure",
    CreditHold = "credit_hold",
    OutOfBounds = "out_of_bounds",
    ReservationTimeout = "reservation_timeout",
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionStatus {
    Open,
    Acknowledged,
    Resolved,
    Replayed,
    Discarded,
}

impl ExceptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionStatus::Open => "open",
            ExceptionStatus::Acknowledged => "acknowledged",
            ExceptionStatus::Resolved => "resolved",
            ExceptionStatus::Replayed => "replayed",
            ExceptionStatus::Discarded => "discarded",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Open,
            Self::Acknowledged,
            Self::Resolved,
            Self::Replayed,
            Self::Discarded,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// One exception record. `id` is derived from what caused it, so re-processing the same input
/// does not open a second record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExceptionRecord {
    pub id: String,
    pub kind: ExceptionKind,
    pub status: ExceptionStatus,
    /// What it is about: `item:SKU-1`, `event:wms-east/e-17`, `source:wms-east`.
    pub entity: String,
    pub correlation_id: Option<String>,
    pub reason: String,
    /// The input that caused it, verbatim where there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl ExceptionRecord {
    pub fn open(
        kind: ExceptionKind,
        cause: &str,
        entity: String,
        correlation_id: Option<String>,
        reason: String,
        raw: Option<String>,
        at: Timestamp,
    ) -> Self {
        let id = format!(
            "ex-{:016x}",
            xxhash_rust::xxh3::xxh3_64(format!("{}\0{cause}", kind.as_str()).as_bytes())
        );
        ExceptionRecord {
            id,
            kind,
            status: ExceptionStatus::Open,
            entity,
            correlation_id,
            reason,
            raw,
            created_at: at,
            updated_at: at,
        }
    }
}
