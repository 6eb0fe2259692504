//! 810 Invoice: BIG header (invoice date and number, PO date and number, transaction type),
//! notes, currency, references, parties, terms (ITD), dates, IT1 lines (quantity invoiced,
//! unit, unit price, product ids, description, references, dates), the TDS total and the
//! summary SAC allowances and charges. CTT01 is checked (warning) and computed when rendering.
//!
//! TDS01 is an `N2` number (implied two decimals: `12345` is 123.45) and so is SAC05; both are
//! read and written that way. When `total` is empty, rendering computes it as the sum of
//! quantity × unit price plus charges minus allowances.

use serde::{Deserialize, Serialize};

use super::common::*;
use super::s850::check_ctt;
use super::{SetType, beginning};
use crate::diag::Diagnostic;
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::{Date, Decimal};

/// An invoice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Invoice810 {
    /// BIG01 invoice date.
    pub date: Option<Date>,
    /// BIG02 invoice number.
    pub invoice_number: String,
    /// BIG03 purchase order date.
    pub po_date: Option<Date>,
    /// BIG04 purchase order number.
    pub po_number: Option<String>,
    /// BIG07 transaction type (`DI` debit invoice, `CR` credit memo).
    pub transaction_type: Option<String>,
    /// NTE.
    pub notes: Vec<Note>,
    /// CUR02.
    pub currency: Option<String>,
    /// REF.
    pub references: Vec<Reference>,
    /// N1 loops (`RE` remit to, `BT` bill to, `ST` ship to, `SF` ship from).
    pub parties: Vec<Party>,
    /// ITD terms of sale.
    pub terms: Vec<Terms>,
    /// DTM (`011` shipped).
    pub dates: Vec<DateRef>,
    /// IT1 loops.
    pub lines: Vec<InvoiceLine>,
    /// TDS01 total invoice amount.
    pub total: Option<Decimal>,
    /// Summary SAC allowances and charges.
    pub allowances: Vec<Allowance>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// An IT1 line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InvoiceLine {
    /// IT101 assigned line number.
    pub line_number: Option<String>,
    /// IT102 quantity invoiced.
    pub quantity: Option<Decimal>,
    /// IT103 unit of measure.
    pub unit: Option<String>,
    /// IT104 unit price.
    pub unit_price: Option<Decimal>,
    /// IT105 price basis.
    pub price_basis: Option<String>,
    /// IT106..IT125 product ids.
    pub product_ids: Vec<ProductId>,
    /// PID05 description.
    pub description: Option<String>,
    /// REF in the IT1 loop.
    pub references: Vec<Reference>,
    /// DTM in the IT1 loop.
    pub dates: Vec<DateRef>,
}

/// ITD terms of sale.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Terms {
    /// ITD01 terms type (`01` basic, `05` discount not applicable, `08` basic discount offered).
    pub terms_type: Option<String>,
    /// ITD02 terms basis date code (`3` invoice date).
    pub basis_date: Option<String>,
    /// ITD03 discount percent.
    pub discount_percent: Option<Decimal>,
    /// ITD04 discount due date.
    pub discount_due_date: Option<Date>,
    /// ITD05 discount days due.
    pub discount_days: Option<Decimal>,
    /// ITD06 net due date.
    pub net_due_date: Option<Date>,
    /// ITD07 net days.
    pub net_days: Option<Decimal>,
    /// ITD12 description.
    pub description: Option<String>,
}

/// SAC allowance or charge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Allowance {
    /// SAC01 `A` allowance, `C` charge, `N` no allowance or charge.
    pub indicator: String,
    /// SAC02 code (`D240` freight, `C310` discount, ...).
    pub code: Option<String>,
    /// SAC05 amount.
    pub amount: Option<Decimal>,
    /// SAC15 description.
    pub description: Option<String>,
}

pub(crate) fn read_sac(cx: &mut Ctx<'_>, s: &Segment) -> Allowance {
    Allowance {
        indicator: cx.required(s, 1, "allowance or charge indicator"),
        code: s.opt(2),
        amount: cx.implied(s, 5, 2),
        description: s.opt(15),
    }
}

pub(crate) fn sac_seg(a: &Allowance) -> Segment {
    let mut values = vec![e(&a.indicator), o(&a.code), None, None, oi(&a.amount, 2)];
    if a.description.is_some() {
        values.resize(14, None);
        values.push(o(&a.description));
    }
    seg("SAC", values)
}

impl Invoice810 {
    /// The total to render: `total`, or computed from the lines and allowances.
    pub fn computed_total(&self) -> Decimal {
        if let Some(total) = self.total {
            return total;
        }
        let mut sum = Decimal::from_i64(0);
        for l in &self.lines {
            if let (Some(q), Some(p)) = (l.quantity, l.unit_price)
                && let Some(next) = q.checked_mul(&p).and_then(|x| sum.checked_add(&x))
            {
                sum = next;
            }
        }
        for a in &self.allowances {
            let Some(amount) = a.amount else { continue };
            let signed = if a.indicator == "A" {
                amount.negated()
            } else {
                amount
            };
            if let Some(next) = sum.checked_add(&signed) {
                sum = next;
            }
        }
        sum
    }
}

impl SetType for Invoice810 {
    const ID: &'static str = "810";
    const FUNCTIONAL_ID: &'static str = "IN";
    const BEGINNING: &'static str = "BIG";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let big = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let mut inv = Self {
            date: cx.date(&big, 1),
            invoice_number: cx.required(&big, 2, "invoice number"),
            po_date: cx.date(&big, 3),
            po_number: big.opt(4),
            transaction_type: big.opt(7),
            raw: set.segments.clone(),
            ..Self::default()
        };
        let segs = &set.segments;
        let mut ctt = None;
        let mut in_summary = false;
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            let line = if in_summary {
                None
            } else {
                inv.lines.last_mut()
            };
            match (s.id.as_str(), line) {
                ("N1", None) if !in_summary => {
                    let p = cx.party(segs, &mut i);
                    inv.parties.push(p);
                    continue;
                }
                ("NTE", None) if !in_summary => inv.notes.push(cx.note(s)),
                ("CUR", None) => inv.currency = s.opt(2),
                ("REF", None) if !in_summary => inv.references.push(cx.reference(s)),
                ("REF", Some(l)) => l.references.push(cx.reference(s)),
                ("ITD", None) if !in_summary => {
                    let terms = Terms {
                        terms_type: s.opt(1),
                        basis_date: s.opt(2),
                        discount_percent: cx.decimal(s, 3),
                        discount_due_date: cx.date(s, 4),
                        discount_days: cx.decimal(s, 5),
                        net_due_date: cx.date(s, 6),
                        net_days: cx.decimal(s, 7),
                        description: s.opt(12),
                    };
                    inv.terms.push(terms);
                }
                ("DTM", None) if !in_summary => inv.dates.push(cx.dtm(s)),
                ("DTM", Some(l)) => l.dates.push(cx.dtm(s)),
                ("IT1", _) => inv.lines.push(InvoiceLine {
                    line_number: s.opt(1),
                    quantity: cx.decimal(s, 2),
                    unit: s.opt(3),
                    unit_price: cx.decimal(s, 4),
                    price_basis: s.opt(5),
                    product_ids: pairs(s, 6, 25),
                    ..InvoiceLine::default()
                }),
                ("PID", Some(l)) if l.description.is_none() => {
                    l.description = s.opt(5);
                }
                ("TDS", _) => {
                    inv.total = cx.implied(s, 1, 2);
                    in_summary = true;
                }
                ("SAC", _) if in_summary => {
                    inv.allowances.push(read_sac(&mut cx, s));
                }
                ("CTT", _) => {
                    ctt = Some(s);
                    in_summary = true;
                }
                _ => {}
            }
            i += 1;
        }
        check_ctt(cx.diags, ctt, inv.lines.len(), "line items");
        Some(inv)
    }

    fn body(&self) -> Vec<Segment> {
        let mut out = vec![seg(
            "BIG",
            [
                od(&self.date),
                e(&self.invoice_number),
                od(&self.po_date),
                o(&self.po_number),
                None,
                None,
                o(&self.transaction_type),
            ],
        )];
        out.extend(self.notes.iter().map(nte_seg));
        if let Some(currency) = &self.currency {
            out.push(seg("CUR", [e("SE"), e(currency)]));
        }
        out.extend(self.references.iter().map(|r| ref_seg("REF", r)));
        for p in &self.parties {
            out.extend(party_segs(p, true));
        }
        for t in &self.terms {
            out.push(seg(
                "ITD",
                [
                    o(&t.terms_type),
                    o(&t.basis_date),
                    on(&t.discount_percent),
                    od(&t.discount_due_date),
                    on(&t.discount_days),
                    od(&t.net_due_date),
                    on(&t.net_days),
                    None,
                    None,
                    None,
                    None,
                    o(&t.description),
                ],
            ));
        }
        out.extend(self.dates.iter().map(dtm_seg));
        for l in &self.lines {
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
            out.push(seg("IT1", values));
            out.extend(l.description.iter().map(|d| pid_seg(d)));
            out.extend(l.references.iter().map(|r| ref_seg("REF", r)));
            out.extend(l.dates.iter().map(dtm_seg));
        }
        out.push(seg("TDS", [oi(&Some(self.computed_total()), 2)]));
        out.extend(self.allowances.iter().map(sac_seg));
        out.push(seg("CTT", [count(self.lines.len())]));
        out
    }
}
