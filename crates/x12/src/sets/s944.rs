//! 944 Warehouse Stock Transfer Receipt Advice (what a warehouse received): W17 header
//! (reporting code, date, warehouse receipt number, depositor order number, shipment
//! reference), parties, N9, G62, NTE, W07 lines (quantity received, unit, UPC case code,
//! product ids, lot, G69 description, N9, W13 exceptions such as damaged units) and W14 totals.
//!
//! W14 is mandatory: rendering writes the sum of the line quantities when `total_received` is
//! empty.

use serde::{Deserialize, Serialize};

use super::common::*;
use super::warehouse::*;
use super::{SetType, beginning};
use crate::diag::Diagnostic;
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::{Date, Decimal};

/// A stock transfer receipt advice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StockTransferReceipt944 {
    /// W1701 reporting code (`F` final, `P` partial).
    pub reporting_code: String,
    /// W1702 date received.
    pub date: Option<Date>,
    /// W1703 warehouse receipt number.
    pub receipt_number: String,
    /// W1704 depositor order number.
    pub depositor_order_number: Option<String>,
    /// W1705 shipment reference.
    pub shipment_reference: Option<String>,
    /// N1 loops.
    pub parties: Vec<Party>,
    /// N9 references.
    pub references: Vec<Reference>,
    /// G62 dates.
    pub dates: Vec<DateRef>,
    /// NTE notes.
    pub notes: Vec<Note>,
    /// W07 lines.
    pub lines: Vec<StockTransferReceiptLine>,
    /// W1401 total quantity received.
    pub total_received: Option<Decimal>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// A W07 line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StockTransferReceiptLine {
    /// W0701 quantity received.
    pub quantity: Option<Decimal>,
    /// W0702 unit of measure.
    pub unit: Option<String>,
    /// W0703 U.P.C. case code.
    pub upc_case_code: Option<String>,
    /// W0704/05, W0706/07, W0710/11 product ids.
    pub product_ids: Vec<ProductId>,
    /// W0708 warehouse lot number.
    pub lot: Option<String>,
    /// G69 description.
    pub description: Option<String>,
    /// N9 references.
    pub references: Vec<Reference>,
    /// W13 exceptions (units received in another condition).
    pub exceptions: Vec<ReceiptException>,
}

/// W13: a quantity received in a given condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptException {
    /// W1301 quantity.
    pub quantity: Option<Decimal>,
    /// W1302 unit of measure.
    pub unit: Option<String>,
    /// W1303 receiving condition (`01` damaged, `03` shortage, `05` overage, ...).
    pub condition: String,
}

const W07_PAIRS: [(usize, usize); 3] = [(4, 5), (6, 7), (10, 11)];

impl SetType for StockTransferReceipt944 {
    const ID: &'static str = "944";
    const FUNCTIONAL_ID: &'static str = "RE";
    const BEGINNING: &'static str = "W17";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let w17 = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let mut receipt = Self {
            reporting_code: cx.required(&w17, 1, "reporting code"),
            date: cx.date(&w17, 2),
            receipt_number: cx.required(&w17, 3, "warehouse receipt number"),
            depositor_order_number: w17.opt(4),
            shipment_reference: w17.opt(5),
            raw: set.segments.clone(),
            ..Self::default()
        };
        let segs = &set.segments;
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            if receipt.lines.is_empty() {
                let header = Header {
                    parties: &mut receipt.parties,
                    references: &mut receipt.references,
                    dates: &mut receipt.dates,
                    notes: &mut receipt.notes,
                };
                if read_header(&mut cx, segs, &mut i, header) {
                    continue;
                }
            }
            match (s.id.as_str(), receipt.lines.last_mut()) {
                ("W07", _) => receipt.lines.push(StockTransferReceiptLine {
                    quantity: cx.decimal(s, 1),
                    unit: s.opt(2),
                    upc_case_code: s.opt(3),
                    product_ids: pairs_at(s, &W07_PAIRS),
                    lot: s.opt(8),
                    ..StockTransferReceiptLine::default()
                }),
                ("G69", Some(l)) if l.description.is_none() => {
                    l.description = s.opt(1);
                }
                ("N9", Some(l)) if l.exceptions.is_empty() => l.references.push(cx.reference(s)),
                ("W13", Some(l)) => l.exceptions.push(ReceiptException {
                    quantity: cx.decimal(s, 1),
                    unit: s.opt(2),
                    condition: cx.required(s, 3, "receiving condition code"),
                }),
                ("W14", _) => receipt.total_received = cx.decimal(s, 1),
                _ => {}
            }
            i += 1;
        }
        Some(receipt)
    }

    fn body(&self) -> Vec<Segment> {
        let mut out = vec![seg(
            "W17",
            [
                e(&self.reporting_code),
                od(&self.date),
                e(&self.receipt_number),
                o(&self.depositor_order_number),
                o(&self.shipment_reference),
            ],
        )];
        out.extend(header_segs(
            &self.parties,
            &self.references,
            &self.dates,
            &self.notes,
        ));
        for l in &self.lines {
            let mut values = vec![on(&l.quantity), o(&l.unit), o(&l.upc_case_code)];
            place_pairs(&mut values, &l.product_ids, &W07_PAIRS);
            if l.lot.is_some() {
                values.resize(values.len().max(8), None);
                if let Some(slot) = values.get_mut(7) {
                    *slot = o(&l.lot);
                }
            }
            out.push(seg("W07", values));
            out.extend(description_and_refs(&l.description, &l.references));
            for x in &l.exceptions {
                out.push(seg("W13", [on(&x.quantity), o(&x.unit), e(&x.condition)]));
            }
        }
        let total = self
            .total_received
            .unwrap_or_else(|| sum(self.lines.iter().map(|l| &l.quantity)));
        out.push(seg("W14", [on(&Some(total))]));
        out
    }
}
