//! Typed transaction sets: the fields a distributor's hub needs, read from and rendered to
//! segments, with serde for JSON.
//!
//! Each set is a struct implementing [`SetType`]: `read` maps a [`TransactionSet`]'s segments
//! into the struct (unknown segments are ignored by the typed fields but kept in `raw`), and
//! `body` renders the struct back to segments (ST and SE are added by the writer). Loop counts
//! (CTT01 and the like) and totals a set requires (943 W03, 944 W14, 810 TDS) are computed when
//! rendering if the caller leaves them empty.
//!
//! Reading reports, as diagnostics positioned on the segment and element: a missing beginning
//! segment (then the set cannot be read), required elements that are empty, dates, times and
//! numbers that do not parse, and broken HL hierarchies (856). [`TypedSet::read`] also checks
//! every segment against the standard's rules: more elements than the segment defines (usually
//! two segments run together), mandatory elements left empty, code lengths (units of measure,
//! qualifiers, state and country codes), and a repetition separator inside an element. The
//! writer applies the same rules, so what is rendered is what is accepted.
//!
//! The `raw` field of each struct holds the set's segments as read; it is skipped when empty, is
//! not used for rendering and is not compared by the round-trip tests.

pub mod common;
pub(crate) mod rules;
pub mod s180;
pub mod s810;
pub mod s846;
pub mod s850;
pub mod s855;
pub mod s856;
pub mod s940;
pub mod s943;
pub mod s944;
pub mod s945;
pub mod s947;
pub mod s997;
mod warehouse;

use serde::{Deserialize, Serialize};

use crate::diag::{DiagCode, Diagnostic};
use crate::envelope::TransactionSet;
use crate::segment::Segment;

pub use common::{Carrier, Contact, DateRef, Note, Party, ProductId, QualifiedQuantity, Reference};
pub use s180::{ReturnAuthorization180, ReturnItem, ReturnReason};
pub use s810::{Allowance, Invoice810, InvoiceLine, Terms};
pub use s846::{InventoryAdvice846, InventoryItem, Price};
pub use s850::{PoLine, PurchaseOrder850};
pub use s855::{LineAck, PoAck855, PoAckLine};
pub use s856::{Asn856, AsnItem, HlLevel, HlNode, Mark, OrderRef, Packaging};
pub use s940::{ShippingOrder940, ShippingOrderLine};
pub use s943::{StockTransferLine, StockTransferShipment943};
pub use s944::{ReceiptException, StockTransferReceipt944, StockTransferReceiptLine};
pub use s945::{ShippingAdvice945, ShippingAdviceLine};
pub use s947::{AdjustmentLine, InventoryAdjustment947};
pub use s997::{AckStatus, ElementError, FunctionalAck997, SegmentError, SetAck};
pub use warehouse::WarehouseTotals;

/// A typed transaction set.
pub trait SetType: Sized + Serialize + for<'de> Deserialize<'de> {
    /// ST01, e.g. `"850"`.
    const ID: &'static str;
    /// GS01 of the group the set belongs in, e.g. `"PO"`.
    const FUNCTIONAL_ID: &'static str;
    /// The segment that must open the set (`BEG` for an 850).
    const BEGINNING: &'static str;

    /// Reads the typed fields from the set's segments. Problems go to `diags`; `None` when the
    /// beginning segment is missing. Prefer [`TypedSet::read`], which also checks the segments
    /// against the standard's rules.
    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self>;

    /// The segments between ST and SE.
    fn body(&self) -> Vec<Segment>;
}

/// Finds the beginning segment of a set, or reports that it is missing.
pub(crate) fn beginning<'a>(
    set: &'a TransactionSet,
    id: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a Segment> {
    match set.segments.first() {
        Some(first) if first.id == id => Some(first),
        first => {
            let found = set.segments.iter().find(|s| s.id == id);
            let (position, found_id) =
                first.map_or((set.position, "SE"), |s| (s.position, s.id.as_str()));
            match found {
                Some(s) => {
                    diags.push(
                        Diagnostic::warning(
                            DiagCode::UnexpectedSegment,
                            format!(
                                "the {} set should start with {id}; found {found_id} first",
                                set.id
                            ),
                        )
                        .at(position, found_id),
                    );
                    Some(s)
                }
                None => {
                    // Positioned where the segment belongs and named after it (what a 997 AK3
                    // reports for a missing segment).
                    diags.push(
                        Diagnostic::error(
                            DiagCode::MissingSegment,
                            format!(
                                "the {} set (ST at segment {}) has no {id} segment; found \
                                 {found_id} where it belongs",
                                set.id, set.position
                            ),
                        )
                        .at(set.position + 1, id),
                    );
                    None
                }
            }
        }
    }
}

/// Any of the typed sets. JSON: `{"set": "850", ...fields of the set...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "set")]
pub enum TypedSet {
    /// 846 Inventory Inquiry/Advice.
    #[serde(rename = "846")]
    InventoryAdvice(InventoryAdvice846),
    /// 850 Purchase Order.
    #[serde(rename = "850")]
    PurchaseOrder(PurchaseOrder850),
    /// 855 Purchase Order Acknowledgment.
    #[serde(rename = "855")]
    PoAck(PoAck855),
    /// 856 Ship Notice/Manifest.
    #[serde(rename = "856")]
    Asn(Asn856),
    /// 810 Invoice.
    #[serde(rename = "810")]
    Invoice(Invoice810),
    /// 940 Warehouse Shipping Order.
    #[serde(rename = "940")]
    ShippingOrder(ShippingOrder940),
    /// 943 Warehouse Stock Transfer Shipment Advice.
    #[serde(rename = "943")]
    StockTransferShipment(StockTransferShipment943),
    /// 944 Warehouse Stock Transfer Receipt Advice.
    #[serde(rename = "944")]
    StockTransferReceipt(StockTransferReceipt944),
    /// 945 Warehouse Shipping Advice.
    #[serde(rename = "945")]
    ShippingAdvice(ShippingAdvice945),
    /// 947 Warehouse Inventory Adjustment Advice.
    #[serde(rename = "947")]
    InventoryAdjustment(InventoryAdjustment947),
    /// 180 Return Merchandise Authorization and Notification.
    #[serde(rename = "180")]
    ReturnAuthorization(ReturnAuthorization180),
    /// 997 Functional Acknowledgment.
    #[serde(rename = "997")]
    FunctionalAck(FunctionalAck997),
}

/// The ST01 codes of the sets [`TypedSet`] covers.
pub const SET_IDS: [&str; 12] = [
    "846", "850", "855", "856", "810", "940", "943", "944", "945", "947", "180", "997",
];

macro_rules! dispatch {
    ($self:expr, $v:ident => $body:expr) => {
        match $self {
            TypedSet::InventoryAdvice($v) => $body,
            TypedSet::PurchaseOrder($v) => $body,
            TypedSet::PoAck($v) => $body,
            TypedSet::Asn($v) => $body,
            TypedSet::Invoice($v) => $body,
            TypedSet::ShippingOrder($v) => $body,
            TypedSet::StockTransferShipment($v) => $body,
            TypedSet::StockTransferReceipt($v) => $body,
            TypedSet::ShippingAdvice($v) => $body,
            TypedSet::InventoryAdjustment($v) => $body,
            TypedSet::ReturnAuthorization($v) => $body,
            TypedSet::FunctionalAck($v) => $body,
        }
    };
}

fn id_of<T: SetType>(_: &T) -> &'static str {
    T::ID
}

fn functional_id_of<T: SetType>(_: &T) -> &'static str {
    T::FUNCTIONAL_ID
}

impl TypedSet {
    /// Reads a set whose ST01 is one of [`SET_IDS`] and checks its segments against the
    /// standard's rules (see the [module documentation](crate::sets)). `None` for other sets
    /// (no diagnostic) and when the beginning segment is missing (an error diagnostic).
    pub fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let reported = diags.len();
        let typed = match set.id.as_str() {
            "846" => SetType::read(set, diags).map(Self::InventoryAdvice),
            "850" => SetType::read(set, diags).map(Self::PurchaseOrder),
            "855" => SetType::read(set, diags).map(Self::PoAck),
            "856" => SetType::read(set, diags).map(Self::Asn),
            "810" => SetType::read(set, diags).map(Self::Invoice),
            "940" => SetType::read(set, diags).map(Self::ShippingOrder),
            "943" => SetType::read(set, diags).map(Self::StockTransferShipment),
            "944" => SetType::read(set, diags).map(Self::StockTransferReceipt),
            "945" => SetType::read(set, diags).map(Self::ShippingAdvice),
            "947" => SetType::read(set, diags).map(Self::InventoryAdjustment),
            "180" => SetType::read(set, diags).map(Self::ReturnAuthorization),
            "997" => SetType::read(set, diags).map(Self::FunctionalAck),
            _ => return None,
        };
        rules::check_set(&set.segments, diags, reported);
        typed
    }

    /// Reads JSON for the set with ST01 `id` (the body of `crossdock edi render TYPE FILE.json`),
    /// with or without the `"set"` tag.
    pub fn from_json(id: &str, json: &str) -> Result<Self, String> {
        fn parse<T: SetType>(json: &str) -> Result<T, String> {
            let mut value: serde_json::Value =
                serde_json::from_str(json).map_err(|e| e.to_string())?;
            if let Some(object) = value.as_object_mut()
                && let Some(tag) = object.remove("set")
                && tag.as_str() != Some(T::ID)
            {
                return Err(format!("the JSON is a {tag} set, not a {}", T::ID));
            }
            serde_json::from_value(value).map_err(|e| e.to_string())
        }
        Ok(match id {
            "846" => Self::InventoryAdvice(parse(json)?),
            "850" => Self::PurchaseOrder(parse(json)?),
            "855" => Self::PoAck(parse(json)?),
            "856" => Self::Asn(parse(json)?),
            "810" => Self::Invoice(parse(json)?),
            "940" => Self::ShippingOrder(parse(json)?),
            "943" => Self::StockTransferShipment(parse(json)?),
            "944" => Self::StockTransferReceipt(parse(json)?),
            "945" => Self::ShippingAdvice(parse(json)?),
            "947" => Self::InventoryAdjustment(parse(json)?),
            "180" => Self::ReturnAuthorization(parse(json)?),
            "997" => Self::FunctionalAck(parse(json)?),
            other => return Err(format!("set {other:?} is not one of {SET_IDS:?}")),
        })
    }

    /// ST01.
    pub fn id(&self) -> &'static str {
        dispatch!(self, s => id_of(s))
    }

    /// GS01 of the group the set belongs in.
    pub fn functional_id(&self) -> &'static str {
        dispatch!(self, s => functional_id_of(s))
    }

    /// The segments between ST and SE.
    pub fn body(&self) -> Vec<Segment> {
        dispatch!(self, s => s.body())
    }

    /// Drops the raw segments (what a round trip compares).
    pub fn without_raw(mut self) -> Self {
        dispatch!(&mut self, s => s.raw.clear());
        self
    }
}

macro_rules! impl_from {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl From<$t> for TypedSet {
            fn from(value: $t) -> Self {
                Self::$v(value)
            }
        })*
    };
}

impl_from!(
    InventoryAdvice846 => InventoryAdvice,
    PurchaseOrder850 => PurchaseOrder,
    PoAck855 => PoAck,
    Asn856 => Asn,
    Invoice810 => Invoice,
    ShippingOrder940 => ShippingOrder,
    StockTransferShipment943 => StockTransferShipment,
    StockTransferReceipt944 => StockTransferReceipt,
    ShippingAdvice945 => ShippingAdvice,
    InventoryAdjustment947 => InventoryAdjustment,
    ReturnAuthorization180 => ReturnAuthorization,
    FunctionalAck997 => FunctionalAck,
);
