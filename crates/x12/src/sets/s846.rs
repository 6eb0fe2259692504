//! 846 Inventory Inquiry/Advice: BIA header (purpose, report type, reference, date, time),
//! currency, dates, references, parties, and LIN items with product ids, description, prices
//! (CTP), references, dates, item-level parties (e.g. the warehouse holding the stock) and
//! quantities (QTY with the unit from QTY03 or a following UIT, and their DTM dates).

use serde::{Deserialize, Serialize};

use super::common::*;
use super::s850::check_ctt;
use super::{SetType, beginning};
use crate::diag::Diagnostic;
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::{Date, Decimal, Time};

/// An inventory advice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryAdvice846 {
    /// BIA01 purpose (`00` original, `05` replace, ...).
    pub purpose: String,
    /// BIA02 report type (`DD` distributor inventory report, `MM` merchandise movement, `SI`
    /// seller inventory, `MB` manufacturer, ...).
    pub report_type: String,
    /// BIA03 reference id.
    pub reference: String,
    /// BIA04 date.
    pub date: Option<Date>,
    /// BIA05 time.
    pub time: Option<Time>,
    /// CUR02.
    pub currency: Option<String>,
    /// DTM.
    pub dates: Vec<DateRef>,
    /// REF.
    pub references: Vec<Reference>,
    /// N1 loops at header level.
    pub parties: Vec<Party>,
    /// LIN loops.
    pub items: Vec<InventoryItem>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// A LIN item and its quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryItem {
    /// LIN01 assigned id.
    pub assigned_id: Option<String>,
    /// LIN02..LIN31 product ids.
    pub product_ids: Vec<ProductId>,
    /// PID05 description.
    pub description: Option<String>,
    /// CTP prices.
    pub prices: Vec<Price>,
    /// REF in the LIN loop.
    pub references: Vec<Reference>,
    /// DTM in the LIN loop (before the first QTY).
    pub dates: Vec<DateRef>,
    /// QTY loops (`33` available, `17` on hand, `QH` on hold, `02` cumulative, ...).
    pub quantities: Vec<QualifiedQuantity>,
    /// N1 loops in the LIN loop (e.g. the warehouse holding the stock).
    pub parties: Vec<Party>,
}

/// A CTP price.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Price {
    /// CTP02 price identifier (`ACT` actual, `UCP` unit cost, `MSR` retail, ...).
    pub kind: Option<String>,
    /// CTP03 unit price.
    pub unit_price: Option<Decimal>,
    /// CTP05-01 unit of measure.
    pub unit: Option<String>,
}

impl SetType for InventoryAdvice846 {
    const ID: &'static str = "846";
    const FUNCTIONAL_ID: &'static str = "IB";
    const BEGINNING: &'static str = "BIA";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let bia = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let mut advice = Self {
            purpose: cx.required(&bia, 1, "purpose"),
            report_type: cx.required(&bia, 2, "report type"),
            reference: cx.required(&bia, 3, "reference id"),
            date: cx.date(&bia, 4),
            time: cx.time(&bia, 5),
            raw: set.segments.clone(),
            ..Self::default()
        };
        let segs = &set.segments;
        let mut ctt = None;
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            let item = advice.items.last_mut();
            match (s.id.as_str(), item) {
                ("N1", None) => {
                    let p = cx.party(segs, &mut i);
                    advice.parties.push(p);
                    continue;
                }
                ("N1", Some(item)) => {
                    let p = cx.party(segs, &mut i);
                    item.parties.push(p);
                    continue;
                }
                ("CUR", None) => advice.currency = s.opt(2),
                ("DTM", None) => advice.dates.push(cx.dtm(s)),
                ("REF", None) => advice.references.push(cx.reference(s)),
                ("LIN", _) => advice.items.push(InventoryItem {
                    assigned_id: s.opt(1),
                    product_ids: pairs(s, 2, 31),
                    ..InventoryItem::default()
                }),
                ("PID", Some(item)) if item.description.is_none() => {
                    item.description = s.opt(5);
                }
                ("CTP", Some(item)) => item.prices.push(Price {
                    kind: s.opt(2),
                    unit_price: cx.decimal(s, 3),
                    unit: s.opt_component(5, 1),
                }),
                ("REF", Some(item)) => item.references.push(cx.reference(s)),
                ("QTY", Some(item)) => item.quantities.push(cx.qty(s)),
                ("UIT", Some(item)) => {
                    if let Some(q) = item.quantities.last_mut()
                        && q.unit.is_none()
                    {
                        q.unit = s.opt_component(1, 1);
                    }
                }
                ("DTM", Some(item)) => {
                    let d = cx.dtm(s);
                    match item.quantities.last_mut() {
                        Some(q) => q.dates.push(d),
                        None => item.dates.push(d),
                    }
                }
                ("CTT", _) => ctt = Some(s),
                _ => {}
            }
            i += 1;
        }
        check_ctt(cx.diags, ctt, advice.items.len(), "line items");
        Some(advice)
    }

    fn body(&self) -> Vec<Segment> {
        let mut out = vec![seg(
            "BIA",
            [
                e(&self.purpose),
                e(&self.report_type),
                e(&self.reference),
                od(&self.date),
                ot(&self.time),
            ],
        )];
        if let Some(currency) = &self.currency {
            out.push(seg("CUR", [e("SE"), e(currency)]));
        }
        out.extend(self.dates.iter().map(dtm_seg));
        out.extend(self.references.iter().map(|r| ref_seg("REF", r)));
        for p in &self.parties {
            out.extend(party_segs(p, true));
        }
        for item in &self.items {
            let mut values = vec![o(&item.assigned_id)];
            values.extend(pair_elements(
                item.product_ids.get(..15).unwrap_or(&item.product_ids),
            ));
            out.push(seg("LIN", values));
            out.extend(item.description.iter().map(|d| pid_seg(d)));
            out.extend(item.dates.iter().map(dtm_seg));
            for p in &item.prices {
                out.push(seg(
                    "CTP",
                    [None, o(&p.kind), on(&p.unit_price), None, o(&p.unit)],
                ));
            }
            out.extend(item.references.iter().map(|r| ref_seg("REF", r)));
            for q in &item.quantities {
                out.extend(qty_segs(q));
            }
            for p in &item.parties {
                out.extend(party_segs(p, true));
            }
        }
        out.push(seg("CTT", [count(self.items.len())]));
        out
    }
}
