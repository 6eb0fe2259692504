//! What the X12 standard (004010 and 005010) says about the segments the typed layer reads and
//! writes: how many elements each has, which are mandatory, and the lengths of the codes a
//! mapping layer relies on (units of measure, qualifiers, state and country codes).
//!
//! The same rules check a set being read ([`check_set`], errors positioned on the segment and
//! element) and a set being rendered (the writer turns the same findings into a
//! [`RenderError`](crate::diag::RenderError)), so what the crate writes is what it accepts.
//! This is not a full data dictionary: other element lengths and the relational conditions
//! between elements are not checked.

use crate::diag::{DiagCode, Diagnostic};
use crate::segment::Segment;

/// The number of elements a segment has and its mandatory elements (the larger count of
/// 004010 and 005010; mandatory in both).
fn shape(id: &str) -> Option<(usize, &'static [usize])> {
    Some(match id {
        "ACK" => (29, &[1]),
        "AK1" => (3, &[1, 2]),
        "AK2" => (3, &[1, 2]),
        "AK3" => (4, &[1, 2]),
        "AK4" => (4, &[1, 3]),
        "AK5" => (6, &[1]),
        "AK9" => (9, &[1, 2, 3, 4]),
        "BAK" => (10, &[1, 2, 3, 4]),
        "BEG" => (12, &[1, 2, 3, 5]),
        "BGN" => (9, &[1, 2, 3]),
        "BIA" => (6, &[1, 2, 3, 4]),
        "BIG" => (11, &[1, 2]),
        "BLI" => (18, &[1, 2]),
        "BSN" => (7, &[1, 2, 3, 4]),
        "CTP" => (11, &[]),
        "CTT" => (7, &[1]),
        "CUR" => (21, &[1, 2]),
        "DTM" => (6, &[1]),
        "G62" => (5, &[]),
        "G69" => (1, &[1]),
        "HL" => (4, &[1, 3]),
        "IT1" => (25, &[]),
        "ITD" => (15, &[]),
        "LIN" => (31, &[2, 3]),
        "LX" => (1, &[1]),
        "MAN" => (6, &[1, 2]),
        "N1" => (6, &[1]),
        "N2" => (2, &[1]),
        "N3" => (2, &[1]),
        "N4" => (7, &[]),
        "N9" => (7, &[1]),
        "NTE" => (2, &[2]),
        "PER" => (9, &[1]),
        "PID" => (9, &[1]),
        "PO1" => (25, &[]),
        "PRF" => (7, &[1]),
        "QTY" => (4, &[1]),
        "RDR" => (5, &[]),
        "REF" => (4, &[1]),
        "SAC" => (16, &[1]),
        "SN1" => (8, &[2, 3]),
        "TD1" => (10, &[]),
        "TD5" => (15, &[]),
        "TDS" => (4, &[1]),
        "UIT" => (3, &[1]),
        "W01" => (16, &[1, 2]),
        "W03" => (7, &[1]),
        "W04" => (15, &[1, 2]),
        "W05" => (8, &[1, 2]),
        "W06" => (12, &[1]),
        "W07" => (11, &[1, 2]),
        "W12" => (22, &[1]),
        "W13" => (5, &[1, 2, 3]),
        "W14" => (5, &[1]),
        "W15" => (6, &[1]),
        "W17" => (9, &[1, 2, 3]),
        "W19" => (18, &[1, 2, 3]),
        "W27" => (10, &[1]),
        "W66" => (10, &[1, 2]),
        "W76" => (6, &[1]),
        _ => return None,
    })
}

/// Length limits of a code element: (min, max, what it is).
type CodeRule = (usize, usize, &'static str);

const UNIT: CodeRule = (2, 2, "unit of measure code");
const PRODUCT_QUALIFIER: CodeRule = (2, 2, "product id qualifier");

/// The length rule of the code at element `n` of segment `id` (first component of a composite).
fn code_rule(id: &str, n: usize) -> Option<CodeRule> {
    Some(match (id, n) {
        ("PO1" | "IT1" | "ACK", 3)
        | ("SN1", 3 | 6)
        | ("W01" | "W04" | "W07" | "W13", 2)
        | ("W12", 5)
        | ("W19" | "QTY", 3)
        | ("BLI", 4)
        | ("TD1", 8)
        | ("CTP", 5)
        | ("UIT", 1) => UNIT,
        ("LIN", n) if n.is_multiple_of(2) => PRODUCT_QUALIFIER,
        ("PO1" | "IT1", n) if n >= 6 && n.is_multiple_of(2) => PRODUCT_QUALIFIER,
        ("ACK", n) if n >= 7 && !n.is_multiple_of(2) => PRODUCT_QUALIFIER,
        ("BLI", 1 | 8 | 10 | 12)
        | ("W01", 4 | 6 | 15)
        | ("W04", 4 | 6 | 14)
        | ("W07", 4 | 6 | 10)
        | ("W12", 7 | 17 | 21)
        | ("W19", 5 | 7 | 17) => PRODUCT_QUALIFIER,
        ("N1" | "CUR", 1) => (2, 3, "entity identifier code"),
        ("N1", 3) => (1, 2, "identification code qualifier"),
        ("N4", 2) => (2, 2, "state or province code"),
        ("N4", 4) => (2, 3, "country code"),
        ("REF" | "N9", 1) => (2, 3, "reference qualifier"),
        ("DTM", 1) => (3, 3, "date/time qualifier"),
        ("QTY", 1) => (2, 2, "quantity qualifier"),
        ("CUR", 2) => (3, 3, "currency code"),
        _ => return None,
    })
}

/// Checks one segment against the rules: element count, mandatory elements, code lengths, and
/// elements holding a repetition separator (no element of these sets repeats).
pub(crate) fn check_segment(s: &Segment, diags: &mut Vec<Diagnostic>) {
    let error = |code: DiagCode, n: usize, message: String| {
        Diagnostic::error(code, message)
            .at(s.position, &s.id)
            .element(n)
    };
    let Some((count, mandatory)) = shape(&s.id) else {
        return;
    };
    if s.elements.len() > count {
        diags.push(error(
            DiagCode::TooManyElements,
            count + 1,
            format!(
                "{} is past the last element: {} has {} elements where the standard defines \
                 {count} (two segments run together because a terminator is missing?)",
                s.name(count + 1),
                s.id,
                s.elements.len()
            ),
        ));
    }
    for &n in mandatory {
        if s.element(n).is_none_or(|e| e.value().trim().is_empty()) {
            diags.push(error(
                DiagCode::MissingElement,
                n,
                format!("{} is mandatory but empty", s.name(n)),
            ));
        }
    }
    for (i, element) in s.elements.iter().enumerate() {
        let n = i + 1;
        if element.repetition_count() > 1 {
            diags.push(error(
                DiagCode::RepeatedElement,
                n,
                format!(
                    "{} holds the repetition separator (ISA11), but it is not a repeating \
                     element: the separator appears in the data and split the value",
                    s.name(n)
                ),
            ));
        }
        let value = element.value().trim_end();
        let Some((min, max, what)) = code_rule(&s.id, n).filter(|_| !value.is_empty()) else {
            continue;
        };
        let len = value.chars().count();
        let shown = || value.chars().take(40).collect::<String>();
        if len < min {
            diags.push(error(
                DiagCode::ElementTooShort,
                n,
                format!(
                    "{} ({what}) {:?} is shorter than {min} characters",
                    s.name(n),
                    shown()
                ),
            ));
        } else if len > max {
            diags.push(error(
                DiagCode::ElementTooLong,
                n,
                format!(
                    "{} ({what}) {:?} is longer than {max} characters",
                    s.name(n),
                    shown()
                ),
            ));
        }
    }
}

/// Checks every segment of a set; a missing mandatory element already reported (by the typed
/// reader, at the same segment and element) in `diags[reported..]` is not reported twice.
pub(crate) fn check_set(segments: &[Segment], diags: &mut Vec<Diagnostic>, reported: usize) {
    let mut found = Vec::new();
    for s in segments {
        check_segment(s, &mut found);
    }
    for d in found {
        let duplicate = d.code == DiagCode::MissingElement
            && diags.get(reported..).unwrap_or(&[]).iter().any(|r| {
                r.code == DiagCode::MissingElement
                    && r.segment == d.segment
                    && r.element == d.element
            });
        if !duplicate {
            diags.push(d);
        }
    }
}
