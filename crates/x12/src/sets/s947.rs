//! 947 Warehouse Inventory Adjustment Advice: W15 header (date, adjustment number, previous
//! adjustment number), parties, N9, G62, NTE, and W19 lines (adjustment reason, quantity
//! adjusted (negative for a decrease), unit, UPC case code, product ids, lot, G69 description,
//! N9, G62).

use serde::{Deserialize, Serialize};

use super::common::*;
use super::warehouse::*;
use super::{SetType, beginning};
use crate::diag::Diagnostic;
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::{Date, Decimal};

/// An inventory adjustment advice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryAdjustment947 {
    /// W1501 date.
    pub date: Option<Date>,
    /// W1502 adjustment number.
    pub adjustment_number: Option<String>,
    /// W1503 previous adjustment number (for a correction).
    pub previous_adjustment_number: Option<String>,
    /// N1 loops.
    pub parties: Vec<Party>,
    /// N9 references.
    pub references: Vec<Reference>,
    /// G62 dates.
    pub dates: Vec<DateRef>,
    /// NTE notes.
    pub notes: Vec<Note>,
    /// W19 lines.
    pub lines: Vec<AdjustmentLine>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// A W19 line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdjustmentLine {
    /// W1901 quantity or status adjustment reason (`01` damaged, `05` receipt, `AA` physical
    /// count, `55` cycle count, ...).
    pub reason: String,
    /// W1902 credit/debit quantity.
    pub quantity: Option<Decimal>,
    /// W1903 unit of measure.
    pub unit: Option<String>,
    /// W1904 U.P.C. case code.
    pub upc_case_code: Option<String>,
    /// W1905/06, W1907/08, W1917/18 product ids.
    pub product_ids: Vec<ProductId>,
    /// W1909 warehouse lot number.
    pub lot: Option<String>,
    /// G69 description.
    pub description: Option<String>,
    /// N9 references.
    pub references: Vec<Reference>,
    /// G62 dates.
    pub dates: Vec<DateRef>,
}

const W19_PAIRS: [(usize, usize); 3] = [(5, 6), (7, 8), (17, 18)];

impl SetType for InventoryAdjustment947 {
    const ID: &'static str = "947";
    const FUNCTIONAL_ID: &'static str = "AW";
    const BEGINNING: &'static str = "W15";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let w15 = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let mut adjustment = Self {
            date: cx.date(&w15, 1),
            adjustment_number: w15.opt(2),
            previous_adjustment_number: w15.opt(3),
            raw: set.segments.clone(),
            ..Self::default()
        };
        let segs = &set.segments;
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            if adjustment.lines.is_empty() {
                let header = Header {
                    parties: &mut adjustment.parties,
                    references: &mut adjustment.references,
                    dates: &mut adjustment.dates,
                    notes: &mut adjustment.notes,
                };
                if read_header(&mut cx, segs, &mut i, header) {
                    continue;
                }
            }
            match s.id.as_str() {
                "W19" => adjustment.lines.push(AdjustmentLine {
                    reason: cx.required(s, 1, "adjustment reason"),
                    quantity: cx.decimal(s, 2),
                    unit: s.opt(3),
                    upc_case_code: s.opt(4),
                    product_ids: pairs_at(s, &W19_PAIRS),
                    lot: s.opt(9),
                    ..AdjustmentLine::default()
                }),
                _ => {
                    if let Some(l) = adjustment.lines.last_mut() {
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
        Some(adjustment)
    }

    fn body(&self) -> Vec<Segment> {
        let mut out = vec![seg(
            "W15",
            [
                od(&self.date),
                o(&self.adjustment_number),
                o(&self.previous_adjustment_number),
            ],
        )];
        out.extend(header_segs(
            &self.parties,
            &self.references,
            &self.dates,
            &self.notes,
        ));
        for l in &self.lines {
            let mut values = vec![
                e(&l.reason),
                on(&l.quantity),
                o(&l.unit),
                o(&l.upc_case_code),
            ];
            place_pairs(&mut values, &l.product_ids, &W19_PAIRS);
            if l.lot.is_some() {
                values.resize(values.len().max(9), None);
                if let Some(slot) = values.get_mut(8) {
                    *slot = o(&l.lot);
                }
            }
            out.push(seg("W19", values));
            out.extend(description_and_refs(&l.description, &l.references));
            out.extend(l.dates.iter().map(g62_seg));
        }
        out
    }
}
