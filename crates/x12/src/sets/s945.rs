//! 945 Warehouse Shipping Advice (what a warehouse shipped against a 940): W06 header
//! (reporting code, depositor order number, ship date, shipment id, agent shipment id, PO
//! number), parties, N9, G62, NTE, the W27 carrier, LX/W12 lines (status, quantity ordered,
//! shipped and difference, unit, UPC case code, product ids, lot, MAN marks such as SSCC-18,
//! G69 description, N9, G62) and W03 totals.
//!
//! Lines: each W12 is a line; `lx` is its LX01, and MAN segments of the LX loop go to the line
//! that follows them. Rendering groups consecutive lines with the same `lx` under one LX. W03
//! is rendered only when `totals` is set.

use serde::{Deserialize, Serialize};

use super::common::*;
use super::s856::Mark;
use super::s940::lx_groups;
use super::s943::read_w06;
use super::warehouse::*;
use super::{SetType, beginning};
use crate::diag::Diagnostic;
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::{Date, Decimal};

/// A warehouse shipping advice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShippingAdvice945 {
    /// W0601 reporting code (`F` full, `P` partial).
    pub reporting_code: String,
    /// W0602 depositor order number (the 940's W0502).
    pub depositor_order_number: Option<String>,
    /// W0603 ship date.
    pub date: Option<Date>,
    /// W0604 shipment identification.
    pub shipment_id: Option<String>,
    /// W0605 agent shipment id.
    pub agent_shipment_id: Option<String>,
    /// W0606 purchase order number.
    pub po_number: Option<String>,
    /// N1 loops.
    pub parties: Vec<Party>,
    /// N9 references (`BM` bill of lading, `CN` PRO number).
    pub references: Vec<Reference>,
    /// G62 dates.
    pub dates: Vec<DateRef>,
    /// NTE notes.
    pub notes: Vec<Note>,
    /// W27 carrier.
    pub carrier: Option<Carrier>,
    /// W12 lines.
    pub lines: Vec<ShippingAdviceLine>,
    /// W03 totals.
    pub totals: Option<WarehouseTotals>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// A W12 line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShippingAdviceLine {
    /// LX01 of the loop the line sits in.
    pub lx: Option<String>,
    /// MAN marks of the LX loop (`GM` SSCC-18).
    pub marks: Vec<Mark>,
    /// W1201 shipment order status (`CC` complete, `CP` partial, `SH` shipped, ...).
    pub status: String,
    /// W1202 quantity ordered.
    pub quantity_ordered: Option<Decimal>,
    /// W1203 number of units shipped.
    pub quantity_shipped: Option<Decimal>,
    /// W1204 quantity difference.
    pub quantity_difference: Option<Decimal>,
    /// W1205 unit of measure.
    pub unit: Option<String>,
    /// W1206 U.P.C. case code.
    pub upc_case_code: Option<String>,
    /// W1207/08, W1217/18, W1221/22 product ids.
    pub product_ids: Vec<ProductId>,
    /// W1209 warehouse lot number.
    pub lot: Option<String>,
    /// G69 description.
    pub description: Option<String>,
    /// N9 references.
    pub references: Vec<Reference>,
    /// G62 dates.
    pub dates: Vec<DateRef>,
}

const W12_PAIRS: [(usize, usize); 3] = [(7, 8), (17, 18), (21, 22)];

impl SetType for ShippingAdvice945 {
    const ID: &'static str = "945";
    const FUNCTIONAL_ID: &'static str = "SW";
    const BEGINNING: &'static str = "W06";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let w06 = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let w = read_w06(&mut cx, &w06);
        let mut advice = Self {
            reporting_code: w.reporting_code,
            depositor_order_number: w.depositor_order_number,
            date: w.date,
            shipment_id: w.shipment_id,
            agent_shipment_id: w.agent_shipment_id,
            po_number: w.po_number,
            raw: set.segments.clone(),
            ..Self::default()
        };
        let segs = &set.segments;
        let mut lx: Option<String> = None;
        let mut pending_marks: Vec<Mark> = Vec::new();
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            if advice.lines.is_empty() && lx.is_none() {
                let header = Header {
                    parties: &mut advice.parties,
                    references: &mut advice.references,
                    dates: &mut advice.dates,
                    notes: &mut advice.notes,
                };
                if read_header(&mut cx, segs, &mut i, header) {
                    continue;
                }
            }
            match s.id.as_str() {
                "W27" => advice.carrier = Some(cx.w27(s)),
                "LX" => {
                    lx = s.opt(1);
                    pending_marks.clear();
                }
                "MAN" => pending_marks.push(Mark {
                    qualifier: cx.required(s, 1, "marks qualifier"),
                    number: cx.required(s, 2, "marks and numbers"),
                }),
                "W12" => advice.lines.push(ShippingAdviceLine {
                    lx: lx.clone(),
                    marks: std::mem::take(&mut pending_marks),
                    status: s.opt(1).unwrap_or_default(),
                    quantity_ordered: cx.decimal(s, 2),
                    quantity_shipped: cx.decimal(s, 3),
                    quantity_difference: cx.decimal(s, 4),
                    unit: s.opt(5),
                    upc_case_code: s.opt(6),
                    product_ids: pairs_at(s, &W12_PAIRS),
                    lot: s.opt(9),
                    ..ShippingAdviceLine::default()
                }),
                "W03" => advice.totals = Some(read_totals(&mut cx, s)),
                _ => {
                    if let Some(l) = advice.lines.last_mut() {
                        let mut notes = Vec::new();
                        let details = Details {
                            description: &mut l.description,
                            references: &mut l.references,
                            dates: &mut l.dates,
                            notes: &mut notes,
                        };
                        read_details(&mut cx, s, details);
                    }
                }
            }
            i += 1;
        }
        Some(advice)
    }

    fn body(&self) -> Vec<Segment> {
        let mut out = vec![seg(
            "W06",
            [
                e(&self.reporting_code),
                o(&self.depositor_order_number),
                od(&self.date),
                o(&self.shipment_id),
                o(&self.agent_shipment_id),
                o(&self.po_number),
            ],
        )];
        out.extend(header_segs(
            &self.parties,
            &self.references,
            &self.dates,
            &self.notes,
        ));
        if let Some(c) = &self.carrier {
            out.push(w27_seg(c));
        }
        for (number, lines) in lx_groups(&self.lines, |l| l.lx.as_deref()) {
            out.push(seg("LX", [e(&number)]));
            for m in lines.iter().flat_map(|l| &l.marks) {
                out.push(seg("MAN", [e(&m.qualifier), e(&m.number)]));
            }
            for l in lines {
                let mut values = vec![
                    e(&l.status),
                    on(&l.quantity_ordered),
                    on(&l.quantity_shipped),
                    on(&l.quantity_difference),
                    o(&l.unit),
                    o(&l.upc_case_code),
                ];
                place_pairs(&mut values, &l.product_ids, &W12_PAIRS);
                if l.lot.is_some() {
                    values.resize(values.len().max(9), None);
                    if let Some(slot) = values.get_mut(8) {
                        *slot = o(&l.lot);
                    }
                }
                out.push(seg("W12", values));
                out.extend(description_and_refs(&l.description, &l.references));
                out.extend(l.dates.iter().map(g62_seg));
            }
        }
        if let Some(t) = &self.totals {
            out.push(totals_seg("W03", t));
        }
        out
    }
}
