//! 943 Warehouse Stock Transfer Shipment Advice (inbound stock announced to a warehouse): W06
//! header, parties, N9, G62, NTE, the W27 carrier, W04 lines (quantity, unit, UPC case code,
//! product ids, G69 description, N9) and W03 totals.
//!
//! W27 and W03 are mandatory in the 943: rendering writes W27 with transport method `ZZ` when
//! `carrier` is empty, and W03 with the sum of the line quantities when `totals` is empty.

use serde::{Deserialize, Serialize};

use super::common::*;
use super::warehouse::*;
use super::{SetType, beginning};
use crate::diag::Diagnostic;
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::{Date, Decimal};

/// A stock transfer shipment advice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StockTransferShipment943 {
    /// W0601 reporting code (`F` full, `P` partial, `J` just in time).
    pub reporting_code: String,
    /// W0602 depositor order number.
    pub depositor_order_number: Option<String>,
    /// W0603 date.
    pub date: Option<Date>,
    /// W0604 shipment identification.
    pub shipment_id: Option<String>,
    /// W0605 agent shipment id.
    pub agent_shipment_id: Option<String>,
    /// W0606 purchase order number.
    pub po_number: Option<String>,
    /// N1 loops.
    pub parties: Vec<Party>,
    /// N9 references.
    pub references: Vec<Reference>,
    /// G62 dates.
    pub dates: Vec<DateRef>,
    /// NTE notes.
    pub notes: Vec<Note>,
    /// W27 carrier.
    pub carrier: Option<Carrier>,
    /// W04 lines.
    pub lines: Vec<StockTransferLine>,
    /// W03 totals.
    pub totals: Option<WarehouseTotals>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// A W04 line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StockTransferLine {
    /// W0401 quantity shipped.
    pub quantity: Option<Decimal>,
    /// W0402 unit of measure.
    pub unit: Option<String>,
    /// W0403 U.P.C. case code.
    pub upc_case_code: Option<String>,
    /// W0404/05, W0406/07, W0414/15 product ids.
    pub product_ids: Vec<ProductId>,
    /// G69 description.
    pub description: Option<String>,
    /// N9 references.
    pub references: Vec<Reference>,
}

const W04_PAIRS: [(usize, usize); 3] = [(4, 5), (6, 7), (14, 15)];

/// W06, the beginning segment of the 943 and the 945.
pub(crate) struct W06 {
    pub reporting_code: String,
    pub depositor_order_number: Option<String>,
    pub date: Option<Date>,
    pub shipment_id: Option<String>,
    pub agent_shipment_id: Option<String>,
    pub po_number: Option<String>,
}

pub(crate) fn read_w06(cx: &mut Ctx<'_>, s: &Segment) -> W06 {
    W06 {
        reporting_code: cx.required(s, 1, "reporting code"),
        depositor_order_number: s.opt(2),
        date: cx.date(s, 3),
        shipment_id: s.opt(4),
        agent_shipment_id: s.opt(5),
        po_number: s.opt(6),
    }
}

impl SetType for StockTransferShipment943 {
    const ID: &'static str = "943";
    const FUNCTIONAL_ID: &'static str = "AR";
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
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            if advice.lines.is_empty() {
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
            match (s.id.as_str(), advice.lines.last_mut()) {
                ("W27", _) => advice.carrier = Some(cx.w27(s)),
                ("W04", _) => advice.lines.push(StockTransferLine {
                    quantity: cx.decimal(s, 1),
                    unit: s.opt(2),
                    upc_case_code: s.opt(3),
                    product_ids: pairs_at(s, &W04_PAIRS),
                    ..StockTransferLine::default()
                }),
                ("G69", Some(l)) if l.description.is_none() => {
                    l.description = s.opt(1);
                }
                ("N9", Some(l)) => l.references.push(cx.reference(s)),
                ("W03", _) => advice.totals = Some(read_totals(&mut cx, s)),
                _ => {}
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
        out.push(w27_seg(
            self.carrier.as_ref().unwrap_or(&Carrier::default()),
        ));
        for l in &self.lines {
            let mut values = vec![on(&l.quantity), o(&l.unit), o(&l.upc_case_code)];
            place_pairs(&mut values, &l.product_ids, &W04_PAIRS);
            out.push(seg("W04", values));
            out.extend(description_and_refs(&l.description, &l.references));
        }
        let totals = self.totals.clone().unwrap_or_else(|| WarehouseTotals {
            quantity: Some(sum(self.lines.iter().map(|l| &l.quantity))),
            ..WarehouseTotals::default()
        });
        out.push(totals_seg("W03", &totals));
        out
    }
}
