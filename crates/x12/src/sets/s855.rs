//! 855 Purchase Order Acknowledgment: BAK header (purpose, acknowledgment type, PO number and
//! date, seller's order number), references, dates, parties, and PO1 lines each with their ACK
//! line statuses (accepted, back-ordered, rejected, changed quantity, scheduled date).

use serde::{Deserialize, Serialize};

use super::common::*;
use super::s850::{PoLine, check_ctt, po1_seg, read_po1};
use super::{SetType, beginning};
use crate::diag::Diagnostic;
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::{Date, Decimal};

/// A purchase order acknowledgment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoAck855 {
    /// BAK01 purpose (`00` original, ...).
    pub purpose: String,
    /// BAK02 acknowledgment type (`AC` with detail and change, `AD` with detail no change, `AK`
    /// no detail, `RD` rejected with detail, ...).
    pub ack_type: String,
    /// BAK03 purchase order number.
    pub po_number: String,
    /// BAK04 purchase order date.
    pub po_date: Option<Date>,
    /// BAK05 release number.
    pub release: Option<String>,
    /// BAK08 seller's order number.
    pub seller_order_number: Option<String>,
    /// BAK09 acknowledgment date.
    pub ack_date: Option<Date>,
    /// CUR02.
    pub currency: Option<String>,
    /// REF.
    pub references: Vec<Reference>,
    /// DTM.
    pub dates: Vec<DateRef>,
    /// N1 loops.
    pub parties: Vec<Party>,
    /// PO1 loops.
    pub lines: Vec<PoAckLine>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// A PO1 line with its acknowledgments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoAckLine {
    /// The PO1 line as acknowledged.
    pub line: PoLine,
    /// ACK segments.
    pub acks: Vec<LineAck>,
}

/// An ACK: the status of (part of) a line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineAck {
    /// ACK01 line item status (`IA` accepted, `IB` back-ordered, `IR` rejected, `IC` changed,
    /// `IQ` quantity changed, `DR` date rescheduled, ...).
    pub status: String,
    /// ACK02 quantity.
    pub quantity: Option<Decimal>,
    /// ACK03 unit of measure.
    pub unit: Option<String>,
    /// ACK04 date qualifier (`068` current schedule ship, `067` current schedule delivery).
    pub date_qualifier: Option<String>,
    /// ACK05 date.
    pub date: Option<Date>,
    /// ACK07..ACK26 product ids.
    pub product_ids: Vec<ProductId>,
}

impl SetType for PoAck855 {
    const ID: &'static str = "855";
    const FUNCTIONAL_ID: &'static str = "PR";
    const BEGINNING: &'static str = "BAK";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let bak = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let mut ack = Self {
            purpose: cx.required(&bak, 1, "purpose"),
            ack_type: cx.required(&bak, 2, "acknowledgment type"),
            po_number: cx.required(&bak, 3, "purchase order number"),
            po_date: cx.date(&bak, 4),
            release: bak.opt(5),
            seller_order_number: bak.opt(8),
            ack_date: cx.date(&bak, 9),
            raw: set.segments.clone(),
            ..Self::default()
        };
        let segs = &set.segments;
        let mut ctt = None;
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            let line = ack.lines.last_mut();
            match (s.id.as_str(), line) {
                ("N1", None) => {
                    let p = cx.party(segs, &mut i);
                    ack.parties.push(p);
                    continue;
                }
                ("N1", Some(l)) => {
                    let p = cx.party(segs, &mut i);
                    l.line.parties.push(p);
                    continue;
                }
                ("CUR", None) => ack.currency = s.opt(2),
                ("REF", None) => ack.references.push(cx.reference(s)),
                ("REF", Some(l)) => l.line.references.push(cx.reference(s)),
                ("DTM", None) => ack.dates.push(cx.dtm(s)),
                ("DTM", Some(l)) => l.line.dates.push(cx.dtm(s)),
                ("PO1", _) => ack.lines.push(PoAckLine {
                    line: read_po1(&mut cx, s),
                    acks: Vec::new(),
                }),
                ("PID", Some(l)) if l.line.description.is_none() => {
                    l.line.description = s.opt(5);
                }
                ("ACK", Some(l)) => l.acks.push(LineAck {
                    status: cx.required(s, 1, "line item status"),
                    quantity: cx.decimal(s, 2),
                    unit: s.opt(3),
                    date_qualifier: s.opt(4),
                    date: cx.date(s, 5),
                    product_ids: pairs(s, 7, 26),
                }),
                ("CTT", _) => ctt = Some(s),
                _ => {}
            }
            i += 1;
        }
        check_ctt(cx.diags, ctt, ack.lines.len(), "line items");
        Some(ack)
    }

    fn body(&self) -> Vec<Segment> {
        let mut out = vec![seg(
            "BAK",
            [
                e(&self.purpose),
                e(&self.ack_type),
                e(&self.po_number),
                od(&self.po_date),
                o(&self.release),
                None,
                None,
                o(&self.seller_order_number),
                od(&self.ack_date),
            ],
        )];
        if let Some(currency) = &self.currency {
            out.push(seg("CUR", [e("BY"), e(currency)]));
        }
        out.extend(self.references.iter().map(|r| ref_seg("REF", r)));
        out.extend(self.dates.iter().map(dtm_seg));
        for p in &self.parties {
            out.extend(party_segs(p, true));
        }
        for l in &self.lines {
            out.push(po1_seg(&l.line));
            out.extend(l.line.description.iter().map(|d| pid_seg(d)));
            out.extend(l.line.references.iter().map(|r| ref_seg("REF", r)));
            out.extend(l.line.dates.iter().map(dtm_seg));
            for a in &l.acks {
                let mut values = vec![
                    e(&a.status),
                    on(&a.quantity),
                    o(&a.unit),
                    o(&a.date_qualifier),
                    od(&a.date),
                    None,
                ];
                values.extend(pair_elements(
                    a.product_ids.get(..10).unwrap_or(&a.product_ids),
                ));
                out.push(seg("ACK", values));
            }
            for p in &l.line.parties {
                out.extend(party_segs(p, true));
            }
        }
        out.push(seg("CTT", [count(self.lines.len())]));
        out
    }
}
