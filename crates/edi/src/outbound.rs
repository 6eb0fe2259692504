//! Canonical → X12 for a partner: 846 from a channel's availability, 855 answering an order,
//! 856 and 810 for a shipment, 940 releasing an order to a warehouse. Items are named by the
//! partner's code (crosswalk, `BP`), our id (`VN`) and GTIN (`UK`) where known.

use crossdock_master::{CrosswalkKind, MasterData};
use crossdock_model::{ItemId, LocationId, Timestamp};
use crossdock_x12::sets::{
    Asn856, AsnItem, HlLevel, HlNode, InventoryAdvice846, InventoryItem, Invoice810, InvoiceLine,
    LineAck, OrderRef, Party, PoAck855, PoAckLine, PoLine, ProductId, PurchaseOrder850,
    QualifiedQuantity, ShippingOrder940, ShippingOrderLine,
};
use crossdock_x12::value::{Date, Decimal, Time};
use serde::Deserialize;

use crate::inbound::OrderIn;
use crate::partner::PartnerSpec;

/// How each partner names an item: theirs, ours, the GTIN.
pub fn product_ids(partner: &PartnerSpec, master: &MasterData, item: &ItemId) -> Vec<ProductId> {
    let mut ids = Vec::new();
    if let Some(code) = master.partner_code(&partner.id, CrosswalkKind::Item, item.as_str()) {
        ids.push(ProductId {
            qualifier: "BP".into(),
            id: code.to_string(),
        });
    }
    ids.push(ProductId {
        qualifier: "VN".into(),
        id: item.to_string(),
    });
    if let Some(g) = master.item(item).and_then(|i| i.gtin) {
        ids.push(ProductId {
            qualifier: "UK".into(),
            id: g.to_string(),
        });
    }
    ids
}

/// The partner's code for one of our locations, else ours.
fn location_code(partner: &PartnerSpec, master: &MasterData, location: &LocationId) -> String {
    master
        .partner_code(&partner.id, CrosswalkKind::Location, location.as_str())
        .map_or_else(|| location.to_string(), str::to_string)
}

/// An X12 date and time (UTC) for a timestamp.
pub fn date_time(t: Timestamp) -> (Date, Time) {
    let odt = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.as_micros()) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let date = Date::new(
        u16::try_from(odt.year()).unwrap_or(1970),
        u8::from(odt.month()),
        odt.day(),
    )
    .expect("a calendar date");
    let time = Time::hm(odt.hour(), odt.minute()).expect("a time of day");
    (date, time)
}

/// 846: each item's quantity available for sale (`QTY*33`) on the partner's channel.
pub fn inventory_846(
    partner: &PartnerSpec,
    master: &MasterData,
    reference: &str,
    as_of: Timestamp,
    lines: &[(ItemId, i64)],
) -> InventoryAdvice846 {
    let (date, time) = date_time(as_of);
    InventoryAdvice846 {
        purpose: "00".into(),
        report_type: "MM".into(),
        reference: reference.to_string(),
        date: Some(date),
        time: Some(time),
        items: lines
            .iter()
            .map(|(item, qty)| InventoryItem {
                product_ids: product_ids(partner, master, item),
                quantities: vec![QualifiedQuantity {
                    qualifier: "33".into(),
                    quantity: Some(Decimal::from_i64(*qty)),
                    unit: Some("EA".into()),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// How one order line was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineAnswer {
    /// Reserved in full.
    Accepted,
    /// Not enough stock: nothing reserved for this line.
    Backordered,
    /// The line could not be read (unknown item or unit).
    Rejected,
}

/// 855 answering an 850: `answers[i]` for `order.po.lines[i]`.
pub fn po_ack_855(order: &OrderIn, answers: &[LineAnswer], at: Timestamp) -> PoAck855 {
    let (date, _) = date_time(at);
    let all_accepted = answers.iter().all(|a| *a == LineAnswer::Accepted);
    PoAck855 {
        purpose: "00".into(),
        ack_type: if all_accepted { "AT" } else { "AC" }.into(),
        po_number: order.po.po_number.clone(),
        po_date: order.po.date,
        ack_date: Some(date),
        lines: order
            .po
            .lines
            .iter()
            .zip(answers)
            .map(|(line, answer)| PoAckLine {
                line: line.clone(),
                acks: vec![LineAck {
                    status: match answer {
                        LineAnswer::Accepted => "IA",
                        LineAnswer::Backordered => "IB",
                        LineAnswer::Rejected => "IR",
                    }
                    .into(),
                    quantity: line.quantity,
                    unit: line.unit.clone(),
                    ..Default::default()
                }],
            })
            .collect(),
        ..Default::default()
    }
}

/// A shipment to report (856) or invoice (810), in canonical terms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentDoc {
    pub shipment: String,
    pub po_number: String,
    pub shipped_at: Timestamp,
    pub ship_from: LocationId,
    /// The partner's ship-to code.
    #[serde(default)]
    pub ship_to: Option<String>,
    pub lines: Vec<DocLine>,
    /// Invoice number (810); defaults to the shipment id.
    #[serde(default)]
    pub invoice: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocLine {
    pub item: ItemId,
    pub qty: i64,
    /// Unit price in cents (810).
    #[serde(default)]
    pub unit_price_cents: Option<i64>,
}

/// 856: shipment → order → items.
pub fn asn_856(partner: &PartnerSpec, master: &MasterData, doc: &ShipmentDoc) -> Asn856 {
    let (date, time) = date_time(doc.shipped_at);
    let mut parties = vec![Party {
        entity: "SF".into(),
        id_qualifier: Some("92".into()),
        id: Some(location_code(partner, master, &doc.ship_from)),
        ..Default::default()
    }];
    if let Some(to) = &doc.ship_to {
        parties.push(Party {
            entity: "ST".into(),
            id_qualifier: Some("92".into()),
            id: Some(to.clone()),
            ..Default::default()
        });
    }
    let items = doc
        .lines
        .iter()
        .enumerate()
        .map(|(n, l)| HlNode {
            level: HlLevel::Item,
            item: Some(AsnItem {
                line_number: Some((n + 1).to_string()),
                product_ids: product_ids(partner, master, &l.item),
                quantity_shipped: Some(Decimal::from_i64(l.qty)),
                unit: Some("EA".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let order = HlNode {
        level: HlLevel::Order,
        order: Some(OrderRef {
            po_number: doc.po_number.clone(),
            ..Default::default()
        }),
        children: items,
        ..Default::default()
    };
    Asn856 {
        purpose: "00".into(),
        shipment_id: doc.shipment.clone(),
        date: Some(date),
        time: Some(time),
        structure: Some("0001".into()),
        hierarchy: vec![HlNode {
            level: HlLevel::Shipment,
            parties,
            children: vec![order],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// 810 for a shipment; the total is computed by the renderer.
pub fn invoice_810(partner: &PartnerSpec, master: &MasterData, doc: &ShipmentDoc) -> Invoice810 {
    let (date, _) = date_time(doc.shipped_at);
    Invoice810 {
        date: Some(date),
        invoice_number: doc.invoice.clone().unwrap_or_else(|| doc.shipment.clone()),
        po_number: Some(doc.po_number.clone()),
        lines: doc
            .lines
            .iter()
            .enumerate()
            .map(|(n, l)| InvoiceLine {
                line_number: Some((n + 1).to_string()),
                quantity: Some(Decimal::from_i64(l.qty)),
                unit: Some("EA".into()),
                unit_price: l.unit_price_cents.map(|c| {
                    Decimal::from_implied(&c.to_string(), 2).unwrap_or(Decimal::from_i64(0))
                }),
                product_ids: product_ids(partner, master, &l.item),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// An order released to a warehouse (940), in canonical terms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseDoc {
    pub order: String,
    #[serde(default)]
    pub po_number: Option<String>,
    pub ship_from: LocationId,
    /// Ship-to name and code as the warehouse should print them.
    pub ship_to_name: String,
    #[serde(default)]
    pub ship_to_code: Option<String>,
    pub lines: Vec<DocLine>,
}

/// 940: ship these lines from the warehouse.
pub fn shipping_order_940(
    partner: &PartnerSpec,
    master: &MasterData,
    doc: &ReleaseDoc,
) -> ShippingOrder940 {
    ShippingOrder940 {
        status: "N".into(),
        depositor_order_number: doc.order.clone(),
        po_number: doc.po_number.clone(),
        parties: vec![
            Party {
                entity: "ST".into(),
                name: Some(doc.ship_to_name.clone()),
                id_qualifier: doc.ship_to_code.as_ref().map(|_| "92".into()),
                id: doc.ship_to_code.clone(),
                ..Default::default()
            },
            Party {
                entity: "SF".into(),
                id_qualifier: Some("92".into()),
                id: Some(location_code(partner, master, &doc.ship_from)),
                ..Default::default()
            },
        ],
        lines: doc
            .lines
            .iter()
            .enumerate()
            .map(|(n, l)| ShippingOrderLine {
                lx: Some((n + 1).to_string()),
                quantity: Some(Decimal::from_i64(l.qty)),
                unit: Some("EA".into()),
                product_ids: product_ids(partner, master, &l.item),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// 850: a purchase order to a supplier, shipping to one of our locations.
pub fn purchase_order_850(
    partner: &PartnerSpec,
    master: &MasterData,
    po: &str,
    ship_to: &LocationId,
    at: Timestamp,
    lines: &[(ItemId, i64)],
) -> PurchaseOrder850 {
    let (date, _) = date_time(at);
    PurchaseOrder850 {
        purpose: "00".into(),
        order_type: "SA".into(),
        po_number: po.to_string(),
        date: Some(date),
        parties: vec![Party {
            entity: "ST".into(),
            id_qualifier: Some("92".into()),
            id: Some(location_code(partner, master, ship_to)),
            ..Default::default()
        }],
        lines: lines
            .iter()
            .enumerate()
            .map(|(n, (item, qty))| PoLine {
                line_number: Some((n + 1).to_string()),
                quantity: Some(Decimal::from_i64(*qty)),
                unit: Some("EA".into()),
                product_ids: product_ids(partner, master, item),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
