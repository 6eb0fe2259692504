//! Pieces shared by the warehouse sets (940, 943, 944, 945, 947): the header N1 (without REF),
//! N9, G62 and NTE segments, line details (G69 description, N9, G62, NTE) and totals.

use serde::{Deserialize, Serialize};

use super::common::*;
use crate::segment::{Segment, seg};
use crate::value::Decimal;

/// Totals of a warehouse set: W76 (940), W03 (943, 945), W14 (944, quantity only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarehouseTotals {
    /// Total quantity (W7601, W0301, W1401).
    pub quantity: Option<Decimal>,
    /// Total weight (W7602, W0302).
    pub weight: Option<Decimal>,
    /// Weight unit (W7603, W0303: `LB`, `KG`).
    pub weight_unit: Option<String>,
}

/// The header parts every warehouse set has.
pub(crate) struct Header<'a> {
    pub parties: &'a mut Vec<Party>,
    pub references: &'a mut Vec<Reference>,
    pub dates: &'a mut Vec<DateRef>,
    pub notes: &'a mut Vec<Note>,
}

/// Reads N1 loops, N9, G62 and NTE at header level. Returns `true` when `segs[*i]` was taken
/// (and `*i` advanced past it).
pub(crate) fn read_header(
    cx: &mut Ctx<'_>,
    segs: &[Segment],
    i: &mut usize,
    h: Header<'_>,
) -> bool {
    let Some(s) = segs.get(*i) else { return false };
    match s.id.as_str() {
        "N1" => {
            let p = cx.party(segs, i);
            h.parties.push(p);
            return true;
        }
        "N9" => h.references.push(cx.reference(s)),
        "G62" => h.dates.push(cx.g62(s)),
        "NTE" => h.notes.push(cx.note(s)),
        _ => return false,
    }
    *i += 1;
    true
}

/// Line details: G69, N9, G62, NTE under a line.
pub(crate) struct Details<'a> {
    pub description: &'a mut Option<String>,
    pub references: &'a mut Vec<Reference>,
    pub dates: &'a mut Vec<DateRef>,
    pub notes: &'a mut Vec<Note>,
}

/// Reads a line detail segment; `true` when taken.
pub(crate) fn read_details(cx: &mut Ctx<'_>, s: &Segment, d: Details<'_>) -> bool {
    match s.id.as_str() {
        "G69" => {
            if d.description.is_none() {
                *d.description = s.opt(1);
            }
        }
        "N9" => d.references.push(cx.reference(s)),
        "G62" => d.dates.push(cx.g62(s)),
        "NTE" => d.notes.push(cx.note(s)),
        _ => return false,
    }
    true
}

/// Header N1 loops (no REF in the warehouse sets' N1 loop), N9, G61 skipped, G62, NTE, in
/// standard order.
pub(crate) fn header_segs(
    parties: &[Party],
    references: &[Reference],
    dates: &[DateRef],
    notes: &[Note],
) -> Vec<Segment> {
    let mut out = Vec::new();
    for p in parties {
        out.extend(party_segs(p, false));
    }
    out.extend(references.iter().map(|r| ref_seg("N9", r)));
    out.extend(dates.iter().map(g62_seg));
    out.extend(notes.iter().map(nte_seg));
    out
}

/// G69 description and N9 references of a line (the part every warehouse line loop allows).
pub(crate) fn description_and_refs(
    description: &Option<String>,
    references: &[Reference],
) -> Vec<Segment> {
    let mut out: Vec<Segment> = description.iter().map(|d| seg("G69", [e(d)])).collect();
    out.extend(references.iter().map(|r| ref_seg("N9", r)));
    out
}

/// Sum of the line quantities, for totals the caller left empty.
pub(crate) fn sum<'a>(quantities: impl Iterator<Item = &'a Option<Decimal>>) -> Decimal {
    let mut total = Decimal::from_i64(0);
    for q in quantities.flatten() {
        if let Some(next) = total.checked_add(q) {
            total = next;
        }
    }
    total
}

/// Reads W76/W03-style totals (quantity, weight, weight unit at elements 1, 2, 3).
pub(crate) fn read_totals(cx: &mut Ctx<'_>, s: &Segment) -> WarehouseTotals {
    WarehouseTotals {
        quantity: cx.decimal(s, 1),
        weight: cx.decimal(s, 2),
        weight_unit: s.opt(3),
    }
}

/// Renders W76/W03-style totals.
pub(crate) fn totals_seg(id: &str, t: &WarehouseTotals) -> Segment {
    seg(id, [on(&t.quantity), on(&t.weight), o(&t.weight_unit)])
}
