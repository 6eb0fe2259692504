//! 850 Purchase Order: BEG header, currency, references, contacts, dates, carriers, parties and
//! PO1 lines (quantity, unit, price, product ids, description, line dates, references and
//! parties). CTT01 is checked on reading (a mismatch is a warning) and computed on rendering.

use serde::{Deserialize, Serialize};

use super::common::*;
use super::{SetType, beginning};
use crate::diag::{DiagCode, Diagnostic};
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::{Date, Decimal};

/// A purchase order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PurchaseOrder850 {
    /// BEG01 purpose (`00` original, `01` cancellation, `05` replace, `07` duplicate).
    pub purpose: String,
    /// BEG02 type (`SA` stand-alone, `DS` drop ship, `RL` release, `BK` blanket, ...).
    pub order_type: String,
    /// BEG03 purchase order number.
    pub po_number: String,
    /// BEG04 release number.
    pub release: Option<String>,
    /// BEG05 order date.
    pub date: Option<Date>,
    /// CUR02 currency (`USD`).
    pub currency: Option<String>,
    /// REF.
    pub references: Vec<Reference>,
    /// PER.
    pub contacts: Vec<Contact>,
    /// DTM (requested delivery `002`, ship `010`, cancel after `001`, ...).
    pub dates: Vec<DateRef>,
    /// TD5.
    pub carriers: Vec<Carrier>,
    /// N1 loops (`ST` ship to, `BT` bill to, `BY` buyer, `VN` vendor).
    pub parties: Vec<Party>,
    /// PO1 loops.
    pub lines: Vec<PoLine>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// A PO1 line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoLine {
    /// PO101 assigned line number.
    pub line_number: Option<String>,
    /// PO102 quantity ordered.
    pub quantity: Option<Decimal>,
    /// PO103 unit of measure (`EA`, `CA`, ...).
    pub unit: Option<String>,
    /// PO104 unit price.
    pub unit_price: Option<Decimal>,
    /// PO105 price basis (`PE` per each, `CP` current price, ...).
    pub price_basis: Option<String>,
    /// PO106..PO125 product ids by qualifier (at most 10).
    pub product_ids: Vec<ProductId>,
    /// PID05 description.
    pub description: Option<String>,
    /// REF in the PO1 loop.
    pub references: Vec<Reference>,
    /// DTM in the PO1 loop.
    pub dates: Vec<DateRef>,
    /// N1 loops in the PO1 loop (e.g. a line-level ship-to).
    pub parties: Vec<Party>,
}

/// Reads a PO1 (850 and 855 share it).
pub(crate) fn read_po1(cx: &mut Ctx<'_>, s: &Segment) -> PoLine {
    PoLine {
        line_number: s.opt(1),
        quantity: cx.decimal(s, 2),
        unit: s.opt(3),
        unit_price: cx.decimal(s, 4),
        price_basis: s.opt(5),
        product_ids: pairs(s, 6, 25),
        ..PoLine::default()
    }
}

/// Renders a PO1 segment.
pub(crate) fn po1_seg(l: &PoLine) -> Segment {
    let mut values = vec![
        o(&l.line_number),
        on(&l.quantity),
        o(&l.unit),
        on(&l.unit_price),
        o(&l.price_basis),
    ];
    values.extend(pair_elements(
        l.product_ids.get(..10).unwrap_or(&l.product_ids),
    ));
    seg("PO1", values)
}

/// Checks CTT01 against the number of lines counted (a warning: partners differ in what they
/// count).
pub(crate) fn check_ctt(
    diags: &mut Vec<Diagnostic>,
    ctt: Option<&Segment>,
    counted: usize,
    what: &str,
) {
    let Some(ctt) = ctt else { return };
    let said = ctt.value(1).trim();
    if said.parse::<usize>().ok() != Some(counted) {
        diags.push(
            Diagnostic::warning(
                DiagCode::Count,
                format!("CTT01 says {said:?} {what}, counted {counted}"),
            )
            .at(ctt.position, "CTT")
            .element(1),
        );
    }
}

impl SetType for PurchaseOrder850 {
    const ID: &'static str = "850";
    const FUNCTIONAL_ID: &'static str = "PO";
    const BEGINNING: &'static str = "BEG";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let beg = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let mut po = Self {
            purpose: cx.required(&beg, 1, "purpose"),
            order_type: cx.required(&beg, 2, "order type"),
            po_number: cx.required(&beg, 3, "purchase order number"),
            release: beg.opt(4),
            date: cx.date(&beg, 5),
            raw: set.segments.clone(),
            ..Self::default()
        };
        let segs = &set.segments;
        let mut ctt = None;
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            let line = po.lines.last_mut();
            match (s.id.as_str(), line) {
                ("N1", None) => {
                    let p = cx.party(segs, &mut i);
                    po.parties.push(p);
                    continue;
                }
                ("N1", Some(l)) => {
                    let p = cx.party(segs, &mut i);
                    l.parties.push(p);
                    continue;
                }
                ("CUR", None) => po.currency = s.opt(2),
                ("REF", None) => po.references.push(cx.reference(s)),
                ("REF", Some(l)) => l.references.push(cx.reference(s)),
                ("PER", None) => po.contacts.push(cx.contact(s)),
                ("DTM", None) => po.dates.push(cx.dtm(s)),
                ("DTM", Some(l)) => l.dates.push(cx.dtm(s)),
                ("TD5", None) => po.carriers.push(cx.td5(s)),
                ("PO1", _) => po.lines.push(read_po1(&mut cx, s)),
                ("PID", Some(l)) if l.description.is_none() => {
                    l.description = s.opt(5);
                }
                ("CTT", _) => ctt = Some(s),
                _ => {}
            }
            i += 1;
        }
        check_ctt(cx.diags, ctt, po.lines.len(), "line items");
        Some(po)
    }

    fn body(&self) -> Vec<Segment> {
        let mut out = vec![seg(
            "BEG",
            [
                e(&self.purpose),
                e(&self.order_type),
                e(&self.po_number),
                o(&self.release),
                od(&self.date),
            ],
        )];
        if let Some(currency) = &self.currency {
            out.push(seg("CUR", [e("BY"), e(currency)]));
        }
        out.extend(self.references.iter().map(|r| ref_seg("REF", r)));
        out.extend(self.contacts.iter().map(per_seg));
        out.extend(self.dates.iter().map(dtm_seg));
        out.extend(self.carriers.iter().map(td5_seg));
        for p in &self.parties {
            out.extend(party_segs(p, true));
        }
        for l in &self.lines {
            out.push(po1_seg(l));
            out.extend(l.description.iter().map(|d| pid_seg(d)));
            out.extend(l.references.iter().map(|r| ref_seg("REF", r)));
            out.extend(l.dates.iter().map(dtm_seg));
            for p in &l.parties {
                out.extend(party_segs(p, true));
            }
        }
        out.push(seg("CTT", [count(self.lines.len())]));
        out
    }
}
