//! 180 Return Merchandise Authorization and Notification: BGN header (purpose, return
//! authorization or notification number, date, time), the return reason (RDR), the purchase
//! order (PRF), dates, N9 references, contacts, notes, parties, and one item per BLI loop
//! (product ids, quantity, unit, price, and the item's N9, PID description, RDR reason, NTE,
//! PRF and DTM).
//!
//! The standard 180 (003030 to 005040) carries items in BLI loops; a partner sending LIN loops
//! instead is read too (LIN02..LIN31 product ids, the quantity from the first QTY of the loop),
//! and such items are rendered as BLI. BLI holds four product ids (BLI01/02, 08/09, 10/11,
//! 12/13); further ids are not rendered.

use serde::{Deserialize, Serialize};

use super::common::*;
use super::s856::OrderRef;
use super::{SetType, beginning};
use crate::diag::{DiagCode, Diagnostic};
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::{Date, Decimal, Time};

/// A return merchandise authorization or notification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReturnAuthorization180 {
    /// BGN01 purpose (`00` original, `01` cancellation, `05` replace, `11` response).
    pub purpose: String,
    /// BGN02 reference: the return authorization (RMA) or notification number.
    pub reference: String,
    /// BGN03 date.
    pub date: Option<Date>,
    /// BGN04 time.
    pub time: Option<Time>,
    /// RDR at header level: the disposition and reason for the whole return.
    pub reason: Option<ReturnReason>,
    /// PRF at header level: the purchase order the goods were bought on.
    pub order: Option<OrderRef>,
    /// DTM.
    pub dates: Vec<DateRef>,
    /// N9 references (`IA` vendor number, `WH` warehouse, `RZ` returned goods authorization).
    pub references: Vec<Reference>,
    /// PER contacts.
    pub contacts: Vec<Contact>,
    /// NTE notes.
    pub notes: Vec<Note>,
    /// N1 loops (`BY` buyer, `SE` seller, `RL` return location, `ST` ship to).
    pub parties: Vec<Party>,
    /// BLI loops: the items returned.
    pub items: Vec<ReturnItem>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// An item returned (a BLI loop).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReturnItem {
    /// BLI01/02, BLI08/09, BLI10/11, BLI12/13 product ids (`UP` UPC, `VN` vendor item, `IN`
    /// buyer item, `SK` SKU).
    pub product_ids: Vec<ProductId>,
    /// BLI03 quantity.
    pub quantity: Option<Decimal>,
    /// BLI04 unit of measure.
    pub unit: Option<String>,
    /// BLI05 price identifier (`UCP` unit cost price, `PUR` purchase price).
    pub price_code: Option<String>,
    /// BLI06 unit price.
    pub unit_price: Option<Decimal>,
    /// BLI07 basis of unit price (`PE` per each).
    pub price_basis: Option<String>,
    /// N9 references of the item.
    pub references: Vec<Reference>,
    /// PID05 description.
    pub description: Option<String>,
    /// RDR: what to do with the item and why it is returned.
    pub reason: Option<ReturnReason>,
    /// NTE notes of the item.
    pub notes: Vec<Note>,
    /// PRF: the purchase order of the item.
    pub order: Option<OrderRef>,
    /// DTM of the item.
    pub dates: Vec<DateRef>,
}

/// RDR: the disposition of returned goods and the reason for the return.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReturnReason {
    /// RDR01 returns disposition (`CR` credit, `RP` replace, `DA` destroy, `RT` return to
    /// vendor, ...).
    pub disposition: Option<String>,
    /// RDR02 return request reason (`DR` damaged, `DF` defective, `WI` wrong item, ...).
    pub request_reason: Option<String>,
    /// RDR03 return response reason (the vendor's answer to the request).
    pub response_reason: Option<String>,
    /// RDR04 description.
    pub description: Option<String>,
    /// RDR05 `Y` when the item was used, `N` when not.
    pub used: Option<bool>,
}

/// The product id positions of BLI.
const BLI_PAIRS: [(usize, usize); 4] = [(1, 2), (8, 9), (10, 11), (12, 13)];

fn read_rdr(cx: &mut Ctx<'_>, s: &Segment) -> ReturnReason {
    let used = match s.opt(5).as_deref() {
        None => None,
        Some("Y") => Some(true),
        Some("N") => Some(false),
        Some(other) => {
            cx.diags.push(
                Diagnostic::error(
                    DiagCode::ElementValue,
                    format!("RDR05 (item used) must be Y or N, not {other:?}"),
                )
                .at(s.position, &s.id)
                .element(5),
            );
            None
        }
    };
    ReturnReason {
        disposition: s.opt(1),
        request_reason: s.opt(2),
        response_reason: s.opt(3),
        description: s.opt(4),
        used,
    }
}

fn read_prf(cx: &mut Ctx<'_>, s: &Segment) -> OrderRef {
    OrderRef {
        po_number: cx.required(s, 1, "purchase order number"),
        release: s.opt(2),
        date: cx.date(s, 4),
    }
}

fn rdr_seg(r: &ReturnReason) -> Segment {
    let used = r.used.map(|used| if used { "Y" } else { "N" });
    seg(
        "RDR",
        [
            o(&r.disposition),
            o(&r.request_reason),
            o(&r.response_reason),
            o(&r.description),
            used.and_then(e),
        ],
    )
}

fn prf_seg(order: &OrderRef) -> Segment {
    seg(
        "PRF",
        [
            e(&order.po_number),
            o(&order.release),
            None,
            od(&order.date),
        ],
    )
}

impl SetType for ReturnAuthorization180 {
    const ID: &'static str = "180";
    const FUNCTIONAL_ID: &'static str = "AN";
    const BEGINNING: &'static str = "BGN";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let bgn = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let mut rma = Self {
            purpose: cx.required(&bgn, 1, "purpose"),
            reference: cx.required(&bgn, 2, "reference"),
            date: cx.date(&bgn, 3),
            time: cx.time(&bgn, 4),
            raw: set.segments.clone(),
            ..Self::default()
        };
        let segs = &set.segments;
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            match (s.id.as_str(), rma.items.last_mut()) {
                ("N1", None) => {
                    let p = cx.party(segs, &mut i);
                    rma.parties.push(p);
                    continue;
                }
                ("RDR", None) => rma.reason = Some(read_rdr(&mut cx, s)),
                ("PRF", None) => rma.order = Some(read_prf(&mut cx, s)),
                ("DTM", None) => rma.dates.push(cx.dtm(s)),
                ("N9", None) => rma.references.push(cx.reference(s)),
                ("PER", None) => rma.contacts.push(cx.contact(s)),
                ("NTE", None) => rma.notes.push(cx.note(s)),
                ("BLI", _) => rma.items.push(ReturnItem {
                    product_ids: pairs_at(s, &BLI_PAIRS),
                    quantity: cx.decimal(s, 3),
                    unit: s.opt(4),
                    price_code: s.opt(5),
                    unit_price: cx.decimal(s, 6),
                    price_basis: s.opt(7),
                    ..ReturnItem::default()
                }),
                ("LIN", _) => rma.items.push(ReturnItem {
                    product_ids: pairs(s, 2, 31),
                    ..ReturnItem::default()
                }),
                ("QTY", Some(item)) if item.quantity.is_none() => {
                    let q = cx.qty(s);
                    item.quantity = q.quantity;
                    item.unit = q.unit;
                }
                ("N9", Some(item)) => item.references.push(cx.reference(s)),
                ("PID", Some(item)) if item.description.is_none() => {
                    item.description = s.opt(5);
                }
                ("RDR", Some(item)) => item.reason = Some(read_rdr(&mut cx, s)),
                ("NTE", Some(item)) => item.notes.push(cx.note(s)),
                ("PRF", Some(item)) => item.order = Some(read_prf(&mut cx, s)),
                ("DTM", Some(item)) => item.dates.push(cx.dtm(s)),
                _ => {}
            }
            i += 1;
        }
        Some(rma)
    }

    fn body(&self) -> Vec<Segment> {
        let mut out = vec![seg(
            "BGN",
            [
                e(&self.purpose),
                e(&self.reference),
                od(&self.date),
                ot(&self.time),
            ],
        )];
        out.extend(self.reason.iter().map(rdr_seg));
        out.extend(self.order.iter().map(prf_seg));
        out.extend(self.dates.iter().map(dtm_seg));
        out.extend(self.references.iter().map(|r| ref_seg("N9", r)));
        out.extend(self.contacts.iter().map(per_seg));
        out.extend(self.notes.iter().map(nte_seg));
        for p in &self.parties {
            out.extend(party_segs(p, false));
        }
        for item in &self.items {
            let mut values = vec![
                None,
                None,
                on(&item.quantity),
                o(&item.unit),
                o(&item.price_code),
                on(&item.unit_price),
                o(&item.price_basis),
            ];
            place_pairs(&mut values, &item.product_ids, &BLI_PAIRS);
            out.push(seg("BLI", values));
            out.extend(item.references.iter().map(|r| ref_seg("N9", r)));
            out.extend(item.description.iter().map(|d| pid_seg(d)));
            out.extend(item.reason.iter().map(rdr_seg));
            out.extend(item.notes.iter().map(nte_seg));
            out.extend(item.order.iter().map(prf_seg));
            out.extend(item.dates.iter().map(dtm_seg));
        }
        out
    }
}
