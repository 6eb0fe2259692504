//! 940 Warehouse Shipping Order: W05 header (order status, depositor order number, PO number,
//! master reference), parties, N9 references, G62 dates, NTE notes, the W66 carrier, LX/W01
//! lines (quantity, unit, UPC case code, product ids, lot, G69 description, line N9/G62/NTE)
//! and W76 totals.
//!
//! Lines: each W01 is a line; `lx` is the LX01 of the LX loop it sits in. Rendering puts
//! consecutive lines with the same `lx` under one LX (lines without `lx` get their own LX,
//! numbered by position). W76 is rendered only when `totals` is set.

use serde::{Deserialize, Serialize};

use super::common::*;
use super::warehouse::*;
use super::{SetType, beginning};
use crate::diag::Diagnostic;
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::Decimal;

/// A warehouse shipping order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShippingOrder940 {
    /// W0501 order status (`N` original, `C` cancellation, `R` replace, `F` confirmation).
    pub status: String,
    /// W0502 depositor order number.
    pub depositor_order_number: String,
    /// W0503 purchase order number.
    pub po_number: Option<String>,
    /// W0504 link sequence number.
    pub link_sequence: Option<String>,
    /// W0505 master reference number.
    pub master_reference: Option<String>,
    /// N1 loops (`ST` ship to, `SF` ship from, `WH` warehouse, `DE` depositor, `BT` bill to).
    pub parties: Vec<Party>,
    /// N9 references.
    pub references: Vec<Reference>,
    /// G62 dates (`10` requested ship, `02` delivery requested, `04` PO date).
    pub dates: Vec<DateRef>,
    /// NTE notes (`WHI` warehouse instructions).
    pub notes: Vec<Note>,
    /// W66 carrier details.
    pub carrier: Option<Carrier>,
    /// W01 lines.
    pub lines: Vec<ShippingOrderLine>,
    /// W76 totals.
    pub totals: Option<WarehouseTotals>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// A W01 line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShippingOrderLine {
    /// LX01 of the loop the line sits in.
    pub lx: Option<String>,
    /// W0101 quantity ordered.
    pub quantity: Option<Decimal>,
    /// W0102 unit of measure.
    pub unit: Option<String>,
    /// W0103 U.P.C. case code (12 digits).
    pub upc_case_code: Option<String>,
    /// W0104/05, W0106/07, W0115/16 product ids.
    pub product_ids: Vec<ProductId>,
    /// W0113 warehouse lot number.
    pub lot: Option<String>,
    /// G69 description.
    pub description: Option<String>,
    /// N9 in the line loop.
    pub references: Vec<Reference>,
    /// G62 in the line loop.
    pub dates: Vec<DateRef>,
    /// NTE in the line loop.
    pub notes: Vec<Note>,
}

const W01_PAIRS: [(usize, usize); 3] = [(4, 5), (6, 7), (15, 16)];

/// Groups consecutive lines by their LX number for rendering; lines without one get their own.
pub(crate) fn lx_groups<T>(lines: &[T], lx: impl Fn(&T) -> Option<&str>) -> Vec<(String, Vec<&T>)> {
    let mut groups: Vec<(String, Vec<&T>)> = Vec::new();
    for line in lines {
        match (lx(line), groups.last_mut()) {
            (Some(number), Some((last, members))) if last == number => members.push(line),
            (Some(number), _) => groups.push((number.to_string(), vec![line])),
            (None, _) => {
                let number = (groups.len() + 1).to_string();
                groups.push((number, vec![line]));
            }
        }
    }
    groups
}

impl SetType for ShippingOrder940 {
    const ID: &'static str = "940";
    const FUNCTIONAL_ID: &'static str = "OW";
    const BEGINNING: &'static str = "W05";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let w05 = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let mut order = Self {
            status: cx.required(&w05, 1, "order status"),
            depositor_order_number: cx.required(&w05, 2, "depositor order number"),
            po_number: w05.opt(3),
            link_sequence: w05.opt(4),
            master_reference: w05.opt(5),
            raw: set.segments.clone(),
            ..Self::default()
        };
        let segs = &set.segments;
        let mut lx: Option<String> = None;
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            if order.lines.is_empty() && lx.is_none() {
                let header = Header {
                    parties: &mut order.parties,
                    references: &mut order.references,
                    dates: &mut order.dates,
                    notes: &mut order.notes,
                };
                if read_header(&mut cx, segs, &mut i, header) {
                    continue;
                }
            }
            match s.id.as_str() {
                "W66" => {
                    order.carrier = Some(Carrier {
                        id_qualifier: None,
                        scac: s.opt(10),
                        transport_method: s.opt(2),
                        routing: s.opt(5),
                        payment_method: s.opt(1),
                    })
                }
                "LX" => lx = s.opt(1),
                "W01" => order.lines.push(ShippingOrderLine {
                    lx: lx.clone(),
                    quantity: cx.decimal(s, 1),
                    unit: s.opt(2),
                    upc_case_code: s.opt(3),
                    product_ids: pairs_at(s, &W01_PAIRS),
                    lot: s.opt(13),
                    ..ShippingOrderLine::default()
                }),
                "W76" => order.totals = Some(read_totals(&mut cx, s)),
                _ => {
                    if let Some(l) = order.lines.last_mut() {
                        let details = Details {
                            description: &mut l.description,
                            references: &mut l.references,
                            dates: &mut l.dates,
                            notes: &mut l.notes,
                        };
                        read_details(&mut cx, s, details);
                    }
                }
            }
            i += 1;
        }
        Some(order)
    }

    fn body(&self) -> Vec<Segment> {
        let mut out = vec![seg(
            "W05",
            [
                e(&self.status),
                e(&self.depositor_order_number),
                o(&self.po_number),
                o(&self.link_sequence),
                o(&self.master_reference),
            ],
        )];
        out.extend(header_segs(
            &self.parties,
            &self.references,
            &self.dates,
            &self.notes,
        ));
        if let Some(c) = &self.carrier {
            out.push(seg(
                "W66",
                [
                    Some(crate::segment::Element::simple(
                        c.payment_method.as_deref().unwrap_or("PP"),
                    )),
                    Some(crate::segment::Element::simple(
                        c.transport_method.as_deref().unwrap_or("M"),
                    )),
                    None,
                    None,
                    o(&c.routing),
                    None,
                    None,
                    None,
                    None,
                    o(&c.scac),
                ],
            ));
        }
        for (number, lines) in lx_groups(&self.lines, |l| l.lx.as_deref()) {
            out.push(seg("LX", [e(&number)]));
            for l in lines {
                let mut values = vec![on(&l.quantity), o(&l.unit), o(&l.upc_case_code)];
                place_pairs(&mut values, &l.product_ids, &W01_PAIRS);
                if l.lot.is_some() {
                    values.resize(values.len().max(13), None);
                    if let Some(slot) = values.get_mut(12) {
                        *slot = o(&l.lot);
                    }
                }
                out.push(seg("W01", values));
                out.extend(description_and_refs(&l.description, &l.references));
                out.extend(l.notes.iter().map(nte_seg));
                out.extend(l.dates.iter().map(g62_seg));
            }
        }
        if let Some(t) = &self.totals {
            out.push(totals_seg("W76", t));
        }
        out
    }
}
