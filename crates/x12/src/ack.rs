//! Building the 997 that acknowledges a functional group that was read.
//!
//! [`FunctionalAck997::for_group`] turns the diagnostics of a group into AK3/AK4/AK5/AK9, and
//! [`FunctionalAck997::for_interchange`] does so for every group of an interchange, rejecting
//! them all when the interchange's own envelope is wrong. Pass every diagnostic you have for the
//! document: those of [`parse`](crate::parse), those of [`TypedSet::read`](crate::TypedSet::read)
//! for each set, and your own application-level problems. Diagnostics are matched to sets by
//! their segment position (the ISA is segment 1); those outside the group are ignored.
//!
//! The 997 is a verdict to act on: a consumer applies exactly the sets whose AK5 is `A` or `E`
//! and nothing else, so what the partner is told is what happened.
//!
//! How a set's AK5 is decided:
//! - `R` (rejected) when an error diagnostic falls inside the set (ST to SE; see
//!   [`TransactionSet::errors`]), the set has no SE, or its group or interchange is rejected;
//! - `E` (accepted, errors noted) when only warnings fall inside it. Report an application-level
//!   problem this way, e.g. an unknown item code at LIN03 of segment 14:
//!   `Diagnostic::warning(DiagCode::ElementValue, "item 123 is unknown").at(14, "LIN").element(3)`.
//!   The rest of the set still applies, and the AK4 carries code `7` (invalid code value) and a
//!   copy of the value;
//! - `A` otherwise.
//!
//! Warnings about leniencies that change no data (whitespace, lowercase ids, empty segments, a
//! missing final terminator, unpadded ISA fields, separators, encoding) are not reported.
//!
//! Each segment with diagnostics becomes one AK3: its id, its position in the set (ST is 1), the
//! loop it sits in (the N1 loop, or the set's line loop such as `PO1`, `LIN` or `HL`) and a
//! segment syntax code (`8` when it has element errors, `3` for a missing segment, `2` for an
//! unexpected one, `1` for an unrecognized id). Each diagnostic naming an element becomes an
//! AK4 with the element (and component) position, the element syntax code and a copy of the
//! bad value. Diagnostics on the ST or SE themselves become AK5 codes (`2` SE missing, `3`
//! control numbers differ, `4` SE01 count wrong, `6`/`7` bad ST01/ST02).
//!
//! AK9: `R` when the group's envelope has errors ([`FunctionalGroup::envelope_errors`]), with
//! the group syntax codes that apply (`3` GE missing, `4` GE02 differs from GS06, `5` GE01
//! count wrong, `6` bad GS06), and then every set's AK5 is `R` and none counts as accepted;
//! the same, without a code, for every group of an interchange whose envelope has errors.
//! Otherwise `A` when every set is accepted, `E` when some were accepted with errors and none
//! rejected, `P` when some were rejected, `R` when all were. AK902 and AK903 are the number of
//! sets received, AK904 the number accepted.

use crate::diag::{DiagCode, Diagnostic};
use crate::envelope::{FunctionalGroup, Interchange, TransactionSet};
use crate::sets::{AckStatus, ElementError, FunctionalAck997, SegmentError, SetAck};

/// AK404 holds at most 99 characters.
const BAD_VALUE_MAX: usize = 99;

/// AK502..AK506 and AK905..AK909 hold at most five codes.
const CODES_MAX: usize = 5;

impl FunctionalAck997 {
    /// The 997 acknowledging `group`, given every diagnostic of the document (see the module
    /// documentation for how the codes are chosen).
    pub fn for_group(group: &FunctionalGroup, diagnostics: &[Diagnostic]) -> Self {
        // By position, so each set finds its own with a binary search.
        let mut reported: Vec<&Diagnostic> =
            diagnostics.iter().filter(|d| is_reported(d)).collect();
        reported.sort_by_key(|d| d.segment);
        let sets: Vec<SetAck> = group
            .sets
            .iter()
            .map(|set| acknowledge_set(set, &reported))
            .collect();
        let accepted = sets.iter().filter(|s| s.status.is_accepted()).count();
        let status = if accepted == sets.len() {
            if sets.iter().all(|s| s.status == AckStatus::Accepted) {
                AckStatus::Accepted
            } else {
                AckStatus::AcceptedWithErrors
            }
        } else if accepted > 0 {
            AckStatus::PartiallyAccepted
        } else {
            AckStatus::Rejected
        };
        let received = count(sets.len());
        let ack = Self {
            functional_id: group.functional_id.clone(),
            group_control_number: group.control_number,
            version: None,
            sets_included: received,
            sets_received: received,
            sets_accepted: count(accepted),
            status,
            errors: Vec::new(),
            sets,
            raw: Vec::new(),
        };
        match group_errors(group, diagnostics) {
            Some(codes) => Self {
                errors: codes,
                ..ack.rejected()
            },
            None => ack,
        }
    }

    /// The 997s of every functional group of `interchange`, in order. When the interchange's
    /// own envelope has errors ([`Interchange::envelope_errors`]: a bad ISA, a missing or
    /// mismatched IEA, segments outside every group) nothing in it may be acted on, so every
    /// group is [rejected](Self::rejected). X12 has no AK9 code for an interchange error; the
    /// group syntax codes stay those the group's own envelope earned.
    pub fn for_interchange(interchange: &Interchange, diagnostics: &[Diagnostic]) -> Vec<Self> {
        let rejected = !interchange.envelope_errors(diagnostics).is_empty();
        interchange
            .groups
            .iter()
            .map(|group| {
                let ack = Self::for_group(group, diagnostics);
                if rejected { ack.rejected() } else { ack }
            })
            .collect()
    }

    /// This acknowledgment with the whole group rejected: AK9 `R`, no set accepted, and every
    /// set's AK5 `R` (the codes and segment errors found so far are kept), so the 997 says
    /// exactly that none of the group was acted on.
    pub fn rejected(mut self) -> Self {
        self.status = AckStatus::Rejected;
        self.sets_accepted = 0;
        for set in &mut self.sets {
            set.status = AckStatus::Rejected;
        }
        self
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `false` for warnings about leniencies that change no data.
fn is_reported(d: &Diagnostic) -> bool {
    d.is_error()
        || !matches!(
            d.code,
            DiagCode::Whitespace
                | DiagCode::Lowercase
                | DiagCode::EmptySegment
                | DiagCode::MissingTerminator
                | DiagCode::IsaWidth
                | DiagCode::Separators
                | DiagCode::Encoding
        )
}

/// Adds a code once, keeping at most [`CODES_MAX`].
fn push_code(codes: &mut Vec<String>, code: &str) {
    if codes.len() < CODES_MAX && !codes.iter().any(|c| c == code) {
        codes.push(code.to_string());
    }
}

/// AK905..AK909 when the group's own envelope has errors ([`FunctionalGroup::envelope_errors`]:
/// on its GS or GE, a missing GE, a segment outside every set), so the group is rejected;
/// `None` when it has none.
fn group_errors(group: &FunctionalGroup, diagnostics: &[Diagnostic]) -> Option<Vec<String>> {
    let errors = group.envelope_errors(diagnostics);
    let mut codes = Vec::new();
    if group.trailer.is_none() {
        push_code(&mut codes, "3");
    }
    for d in &errors {
        let code = match (d.segment_id.as_deref(), d.code, d.element) {
            (Some("GE"), DiagCode::Count, _) => "5",
            (Some("GE"), DiagCode::ControlNumber, _) => "4",
            (Some("GS"), _, Some(6)) => "6",
            (Some("GS"), _, Some(8)) => "2",
            // Other errors on the GS or GE (dates, times) and segments between sets reject
            // the group too, without a code.
            _ => continue,
        };
        push_code(&mut codes, code);
    }
    (!codes.is_empty() || !errors.is_empty()).then_some(codes)
}

/// The AK2 loop of one set; `diagnostics` are sorted by position.
fn acknowledge_set(set: &TransactionSet, diagnostics: &[&Diagnostic]) -> SetAck {
    let span = set.span();
    let first = diagnostics.partition_point(|d| d.segment < Some(*span.start()));
    let mine: Vec<&Diagnostic> = diagnostics
        .get(first..)
        .unwrap_or(&[])
        .iter()
        .copied()
        .take_while(|d| d.segment.is_some_and(|p| p <= *span.end()))
        .collect();

    let mut rejected = set.trailer.is_none();
    let mut noted = false;
    let mut errors = Vec::new();
    if set.trailer.is_none() {
        push_code(&mut errors, "2");
    }
    let loops = if mine.is_empty() {
        Vec::new()
    } else {
        loop_ids(set)
    };
    let mut segment_errors: Vec<SegmentError> = Vec::new();
    for d in mine {
        let Some(position) = d.segment else { continue };
        if d.is_error() {
            rejected = true;
        } else {
            noted = true;
        }
        let id = d.segment_id.as_deref();
        let on_envelope = (position == set.position && id == Some("ST"))
            || (Some(position) == set.trailer && id == Some("SE"));
        if on_envelope {
            if d.is_error() {
                push_code(&mut errors, envelope_code(d));
            }
            continue;
        }
        let Some(index) = position.checked_sub(set.position + 1) else {
            continue;
        };
        let in_set = u32::try_from(position - set.position + 1).unwrap_or(u32::MAX);
        let segment = set.segments.get(index).filter(|s| s.position == position);
        if segment_errors
            .last()
            .is_none_or(|last| last.position != in_set)
        {
            segment_errors.push(SegmentError {
                segment_id: id.unwrap_or_default().to_string(),
                position: in_set,
                loop_id: loops.get(index).copied().flatten().map(str::to_string),
                code: None,
                element_errors: Vec::new(),
            });
        }
        let Some(at) = segment_errors.last_mut() else {
            continue;
        };
        match d.element {
            Some(element) => {
                let component = d.component.unwrap_or(1);
                let bad_value = segment
                    .and_then(|s| s.element(element))
                    .and_then(|e| e.component(component))
                    .filter(|v| !v.is_empty())
                    .map(|v| v.chars().take(BAD_VALUE_MAX).collect());
                at.element_errors.push(ElementError {
                    position: u32::try_from(element).unwrap_or(u32::MAX),
                    component: d.component.and_then(|c| u32::try_from(c).ok()),
                    reference: None,
                    code: element_code(d.code).to_string(),
                    bad_value,
                });
                if at.code.is_none() {
                    at.code = Some("8".to_string());
                }
            }
            None => at.code = Some(segment_code(d.code).to_string()),
        }
    }
    if !segment_errors.is_empty() {
        push_code(&mut errors, "5");
    }
    SetAck {
        set_id: set.id.clone(),
        control_number: set.control_number.clone(),
        implementation: None,
        segment_errors,
        status: if rejected {
            AckStatus::Rejected
        } else if noted {
            AckStatus::AcceptedWithErrors
        } else {
            AckStatus::Accepted
        },
        errors,
    }
}

/// AK502 code for an error on the ST or SE.
fn envelope_code(d: &Diagnostic) -> &'static str {
    match (d.segment_id.as_deref(), d.code, d.element) {
        (Some("ST"), DiagCode::EnvelopeStructure, None) => "2",
        (Some("ST"), _, Some(1)) => "6",
        (Some("ST"), _, Some(2)) => "7",
        (Some("SE"), DiagCode::ControlNumber, _) => "3",
        (Some("SE"), _, _) => "4",
        _ => "5",
    }
}

/// AK304 for a diagnostic about a whole segment.
fn segment_code(code: DiagCode) -> &'static str {
    match code {
        DiagCode::BadSegmentId => "1",
        DiagCode::UnexpectedSegment => "2",
        DiagCode::MissingSegment => "3",
        _ => "8",
    }
}

/// AK403 for a diagnostic about an element.
fn element_code(code: DiagCode) -> &'static str {
    match code {
        DiagCode::MissingElement => "1",
        DiagCode::TooManyElements => "3",
        DiagCode::ElementTooShort => "4",
        DiagCode::ElementTooLong => "5",
        DiagCode::InvalidNumber | DiagCode::RepeatedElement => "6",
        DiagCode::InvalidDate => "8",
        DiagCode::InvalidTime => "9",
        _ => "7",
    }
}

/// The line loop of each set: its opening segment and the segments that start the summary
/// (after which no segment is in the loop).
fn line_loop(set_id: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match set_id {
        "846" => ("LIN", &["CTT"]),
        "850" | "855" => ("PO1", &["CTT"]),
        "856" => ("HL", &["CTT"]),
        "810" => ("IT1", &["TDS"]),
        "940" => ("LX", &["W76"]),
        "943" => ("W04", &["W03"]),
        "944" => ("W07", &["W14"]),
        "945" => ("LX", &["W03"]),
        "947" => ("W19", &[]),
        "180" => ("BLI", &[]),
        _ => return None,
    })
}

/// The loop each segment of the set sits in (AK303): the N1 loop, the set's line loop, or none.
fn loop_ids(set: &TransactionSet) -> Vec<Option<&'static str>> {
    let line = line_loop(&set.id);
    let mut in_line = false;
    let mut in_n1 = false;
    let mut summary = false;
    set.segments
        .iter()
        .map(|s| {
            let id = s.id.as_str();
            if let Some((opener, ends)) = line {
                if ends.contains(&id) {
                    summary = true;
                }
                if id == opener && !summary {
                    in_line = true;
                }
            }
            in_n1 = id == "N1" || (in_n1 && matches!(id, "N2" | "N3" | "N4" | "REF" | "PER"));
            if in_n1 {
                Some("N1")
            } else if in_line && !summary {
                line.map(|(opener, _)| opener)
            } else {
                None
            }
        })
        .collect()
}
