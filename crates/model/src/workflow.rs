//! The data of the workflow events: orders, returns, transfers and purchase orders.
//!
//! Commands a person or the hub issues (capture an order, authorize a return, create a PO, a
//! decision on an ASN, timers) are hub commands; what partners report (acknowledgments, ASNs) is
//! public. Physical progress (picked, shipped, received, inspected) keeps using the inventory,
//! transfer and return events, which name the order, transfer, RMA or PO they belong to.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::{EventError, LINES_MAX, QTY_MAX};
use crate::ids::{ChannelId, ItemId, LocationId, validate_id};
use crate::time::Timestamp;

/// One ordered item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub item: ItemId,
    pub qty: i64,
}

/// Where an order goes; `region` is matched against the locations' regions when sourcing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipTo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
}

/// What the credit check decided before the order reached the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CreditDecision {
    /// The ERP approved.
    Approved,
    /// The ERP did not answer in time (or failed) and the amount is within the fallback limit.
    ApprovedByFallback,
    /// Held for a person: the ERP declined, or did not answer and the fallback holds.
    Held,
    /// No credit check applies (channel-paid orders, EDI orders under contract).
    NotRequired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credit {
    pub decision: CreditDecision,
    /// Why, in words (the ERP's answer, the timeout, the fallback rule).
    pub note: String,
}

/// `order.captured.v1` (hub command): an order to validate, source, allocate and accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCaptured {
    pub order: String,
    pub channel: ChannelId,
    pub lines: Vec<OrderLine>,
    pub ship_to: ShipTo,
    /// Order value in minor currency units (cents), for the credit rules.
    #[serde(default)]
    pub amount_minor: i64,
    pub credit: Credit,
    /// Already sold on the channel (a storefront or partner order): never refused for want of
    /// stock; what cannot be allocated is backordered and an `oversell_risk` says so.
    #[serde(default)]
    pub sold: bool,
    /// The customer takes backorders (a trading partner's PO answered line by line): what
    /// cannot be allocated waits for stock even where the channel's rule would refuse the order.
    #[serde(default)]
    pub backorder: bool,
    /// Where it came from: `api`, `shopify`, `edi:<partner>` …
    pub origin: String,
}

/// `order.approved.v1` (hub command): a person lifted a credit hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderApproved {
    pub order: String,
    pub note: String,
}

/// `order.cancelled.v1` (hub command): release what is not shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCancelled {
    pub order: String,
    pub reason: String,
}

/// `order.shipment_due.v1` (hub timer): the shipment-posting deadline of an order passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderShipmentDue {
    pub order: String,
}

/// `order.backorders_due.v1` (hub command): stock of `item` may have come in or been freed for
/// orders waiting for it in another partition than the one it changed in; fill what can be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackordersDue {
    pub item: ItemId,
}

/// `return.authorized.v1` (hub command; from the API or an X12 180).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnAuthorized {
    pub rma: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    pub location: LocationId,
    pub lines: Vec<OrderLine>,
    #[serde(default)]
    pub reason: String,
}

/// `transfer.requested.v1` (hub command): move stock between two locations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequested {
    pub transfer: String,
    pub from: LocationId,
    pub to: LocationId,
    pub lines: Vec<OrderLine>,
}

/// `purchase_order.created.v1` (hub command): open supply at `location`, an 850 to `partner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseOrderCreated {
    pub po: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    pub location: LocationId,
    pub lines: Vec<OrderLine>,
    pub expected_at: Timestamp,
    /// Acknowledgment deadline in seconds after creation; the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_within_s: Option<u64>,
}

/// How a supplier answered a PO (X12 855 BAK02).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Accepted,
    AcceptedWithChanges,
    Rejected,
}

/// `purchase_order.acknowledged.v1`: the supplier acknowledged the PO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseOrderAcknowledged {
    pub po: String,
    pub status: AckStatus,
}

/// `purchase_order.ack_due.v1` (hub timer): the acknowledgment deadline of a PO passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseOrderAckDue {
    pub po: String,
}

/// One shipped line of an ASN, as the supplier names it (the item may be unknown to us).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsnLine {
    pub item: String,
    pub qty: i64,
}

/// `asn.received.v1`: a supplier's advance ship notice against a PO (X12 856).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsnReceived {
    pub asn: String,
    pub po: String,
    pub lines: Vec<AsnLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_at: Option<Timestamp>,
}

/// `asn.decided.v1` (hub command): a person accepted or rejected the lines of an ASN that did
/// not match its PO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsnDecided {
    pub po: String,
    pub asn: String,
    pub accept: bool,
    pub note: String,
}

pub(crate) fn check_lines(field: &str, lines: &[OrderLine]) -> Result<(), EventError> {
    if lines.is_empty() {
        return Err(EventError::at(field, "must have at least one line"));
    }
    if lines.len() > LINES_MAX {
        return Err(EventError::at(field, format!("at most {LINES_MAX} lines")));
    }
    for (i, l) in lines.iter().enumerate() {
        check_qty(&format!("{field}[{i}].qty"), l.qty)?;
        if lines[..i].iter().any(|o| o.item == l.item) {
            return Err(EventError::at(
                &format!("{field}[{i}].item"),
                "appears twice; merge the lines",
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_asn_lines(lines: &[AsnLine]) -> Result<(), EventError> {
    if lines.is_empty() {
        return Err(EventError::at("data.lines", "must have at least one line"));
    }
    if lines.len() > LINES_MAX {
        return Err(EventError::at(
            "data.lines",
            format!("at most {LINES_MAX} lines"),
        ));
    }
    for (i, l) in lines.iter().enumerate() {
        check_qty(&format!("data.lines[{i}].qty"), l.qty)?;
        if l.item.trim().is_empty() {
            return Err(EventError::at(
                &format!("data.lines[{i}].item"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

fn check_qty(field: &str, qty: i64) -> Result<(), EventError> {
    if qty <= 0 || qty > QTY_MAX {
        return Err(EventError::at(
            field,
            format!("must be between 1 and {QTY_MAX}, got {qty}"),
        ));
    }
    Ok(())
}

pub(crate) fn check_ref(field: &str, raw: &str) -> Result<(), EventError> {
    validate_id(raw).map_err(|e| EventError::at(field, e.to_string()))
}
