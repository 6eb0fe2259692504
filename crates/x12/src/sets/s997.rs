//! 997 Functional Acknowledgment: AK1 (the group acknowledged), one AK2 loop per transaction
//! set (AK3 segment errors with their AK4 element errors, AK5 the set's status) and AK9 (the
//! group's status and counts).
//!
//! To acknowledge a group that was read, build the 997 with
//! [`FunctionalAck997::for_group`](crate::ack) rather than by hand.

use serde::{Deserialize, Serialize};

use super::common::*;
use super::{SetType, beginning};
use crate::diag::{DiagCode, Diagnostic};
use crate::envelope::TransactionSet;
use crate::segment::{Element, Segment, seg};

/// A functional acknowledgment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionalAck997 {
    /// AK101 functional identifier (GS01) of the group acknowledged.
    pub functional_id: String,
    /// AK102 group control number (GS06) of the group acknowledged.
    pub group_control_number: u32,
    /// AK103 version (GS08) of the group acknowledged (005010 only).
    pub version: Option<String>,
    /// AK2 loops, one per transaction set acknowledged.
    pub sets: Vec<SetAck>,
    /// AK901 the group's status.
    pub status: AckStatus,
    /// AK902 number of transaction sets included in the group.
    pub sets_included: u32,
    /// AK903 number of transaction sets received.
    pub sets_received: u32,
    /// AK904 number of transaction sets accepted (with or without errors).
    pub sets_accepted: u32,
    /// AK905..AK909 functional group syntax error codes (`3` GE missing, `4` GE02 does not
    /// match GS06, `5` GE01 does not match the count, ...).
    pub errors: Vec<String>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// The acknowledgment of one transaction set (an AK2 loop).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SetAck {
    /// AK201 transaction set id (ST01).
    pub set_id: String,
    /// AK202 transaction set control number (ST02).
    pub control_number: String,
    /// AK203 implementation convention reference (ST03, 005010 only).
    pub implementation: Option<String>,
    /// AK3 loops: the segments in error.
    pub segment_errors: Vec<SegmentError>,
    /// AK501 the set's status.
    pub status: AckStatus,
    /// AK502..AK506 transaction set syntax error codes (`2` SE missing, `3` control numbers
    /// differ, `4` SE01 count wrong, `5` one or more segments in error, ...).
    pub errors: Vec<String>,
}

/// A segment in error (AK3) and its element errors (AK4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentError {
    /// AK301 segment id.
    pub segment_id: String,
    /// AK302 position of the segment in the set (ST is 1).
    pub position: u32,
    /// AK303 loop identifier (the id of the segment opening the loop, e.g. `PO1`, `N1`).
    pub loop_id: Option<String>,
    /// AK304 segment syntax error code (`1` unrecognized segment, `2` unexpected, `3`
    /// mandatory segment missing, `8` segment has data element errors, ...).
    pub code: Option<String>,
    /// AK4 element errors.
    pub element_errors: Vec<ElementError>,
}

/// An element in error (AK4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ElementError {
    /// AK401-1 position of the element in the segment (1-based).
    pub position: u32,
    /// AK401-2 position of the component in a composite.
    pub component: Option<u32>,
    /// AK402 data element reference number.
    pub reference: Option<String>,
    /// AK403 data element syntax error code (`1` mandatory element missing, `3` too many
    /// elements, `4` too short, `5` too long, `6` invalid character, `7` invalid code value,
    /// `8` invalid date, `9` invalid time).
    pub code: String,
    /// AK404 copy of the bad data element.
    pub bad_value: Option<String>,
}

/// AK501 and AK901 acknowledgment codes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum AckStatus {
    /// `A` accepted.
    #[default]
    Accepted,
    /// `E` accepted, but errors were noted.
    AcceptedWithErrors,
    /// `P` partially accepted: at least one set was rejected (AK901 only).
    PartiallyAccepted,
    /// `R` rejected.
    Rejected,
    /// Any other code (`M`, `W`, `X`), kept as written.
    Other(String),
}

impl AckStatus {
    /// The AK501/AK901 code.
    pub fn code(&self) -> &str {
        match self {
            Self::Accepted => "A",
            Self::AcceptedWithErrors => "E",
            Self::PartiallyAccepted => "P",
            Self::Rejected => "R",
            Self::Other(code) => code,
        }
    }

    /// `true` for `A`, `E` and `P`: the receiver applies the (accepted) data.
    pub fn is_accepted(&self) -> bool {
        matches!(
            self,
            Self::Accepted | Self::AcceptedWithErrors | Self::PartiallyAccepted
        )
    }
}

impl From<String> for AckStatus {
    fn from(code: String) -> Self {
        match code.as_str() {
            "A" => Self::Accepted,
            "E" => Self::AcceptedWithErrors,
            "P" => Self::PartiallyAccepted,
            "R" => Self::Rejected,
            _ => Self::Other(code),
        }
    }
}

impl From<AckStatus> for String {
    fn from(status: AckStatus) -> Self {
        status.code().to_string()
    }
}

/// Reads a count or number element (empty is 0; not a number is an error).
fn number(cx: &mut Ctx<'_>, s: &Segment, n: usize) -> u32 {
    let text = s.value(n).trim();
    if text.is_empty() {
        return 0;
    }
    match text.parse::<u32>() {
        Ok(value) => value,
        Err(_) => {
            let shown: String = text.chars().take(40).collect();
            cx.diags.push(
                Diagnostic::error(
                    DiagCode::InvalidNumber,
                    format!("{} is not a number: {shown:?}", s.name(n)),
                )
                .at(s.position, &s.id)
                .element(n),
            );
            0
        }
    }
}

/// The non-empty values of elements `first..=last`.
fn codes(s: &Segment, first: usize, last: usize) -> Vec<String> {
    (first..=last).filter_map(|n| s.opt(n)).collect()
}

fn status(s: &Segment) -> AckStatus {
    AckStatus::from(s.opt(1).unwrap_or_default())
}

impl SetType for FunctionalAck997 {
    const ID: &'static str = "997";
    const FUNCTIONAL_ID: &'static str = "FA";
    const BEGINNING: &'static str = "AK1";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let ak1 = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let mut ack = Self {
            functional_id: cx.required(&ak1, 1, "functional identifier code"),
            group_control_number: number(&mut cx, &ak1, 2),
            version: ak1.opt(3),
            raw: set.segments.clone(),
            ..Self::default()
        };
        for s in &set.segments {
            let set_ack = ack.sets.last_mut();
            match (s.id.as_str(), set_ack) {
                ("AK2", _) => ack.sets.push(SetAck {
                    set_id: cx.required(s, 1, "transaction set identifier code"),
                    control_number: cx.required(s, 2, "transaction set control number"),
                    implementation: s.opt(3),
                    ..SetAck::default()
                }),
                ("AK3", Some(a)) => {
                    let error = SegmentError {
                        segment_id: cx.required(s, 1, "segment id code"),
                        position: number(&mut cx, s, 2),
                        loop_id: s.opt(3),
                        code: s.opt(4),
                        element_errors: Vec::new(),
                    };
                    a.segment_errors.push(error);
                }
                ("AK4", Some(a)) => {
                    let position = match s.opt_component(1, 1) {
                        Some(text) => text.trim().parse::<u32>().ok(),
                        None => None,
                    };
                    if position.is_none() {
                        cx.diags.push(
                            Diagnostic::error(
                                DiagCode::InvalidNumber,
                                format!(
                                    "AK401-1 (element position) is not a number: {:?}",
                                    s.value(1)
                                ),
                            )
                            .at(s.position, &s.id)
                            .element(1)
                            .component(1),
                        );
                    }
                    let error = ElementError {
                        position: position.unwrap_or(0),
                        component: s
                            .opt_component(1, 2)
                            .and_then(|c| c.trim().parse::<u32>().ok()),
                        reference: s.opt(2),
                        code: cx.required(s, 3, "data element syntax error code"),
                        bad_value: s.opt(4),
                    };
                    if let Some(segment) = a.segment_errors.last_mut() {
                        segment.element_errors.push(error);
                    }
                }
                ("AK5", Some(a)) => {
                    a.status = status(s);
                    a.errors = codes(s, 2, 6);
                }
                ("AK9", _) => {
                    ack.status = status(s);
                    ack.sets_included = number(&mut cx, s, 2);
                    ack.sets_received = number(&mut cx, s, 3);
                    ack.sets_accepted = number(&mut cx, s, 4);
                    ack.errors = codes(s, 5, 9);
                }
                _ => {}
            }
        }
        Some(ack)
    }

    fn body(&self) -> Vec<Segment> {
        let number = |n: u32| Some(Element::simple(n.to_string()));
        let mut out = vec![seg(
            "AK1",
            [
                e(&self.functional_id),
                number(self.group_control_number),
                o(&self.version),
            ],
        )];
        for a in &self.sets {
            out.push(seg(
                "AK2",
                [e(&a.set_id), e(&a.control_number), o(&a.implementation)],
            ));
            for s in &a.segment_errors {
                out.push(seg(
                    "AK3",
                    [
                        e(&s.segment_id),
                        number(s.position),
                        o(&s.loop_id),
                        o(&s.code),
                    ],
                ));
                for x in &s.element_errors {
                    let mut position = vec![x.position.to_string()];
                    position.extend(x.component.map(|c| c.to_string()));
                    out.push(seg(
                        "AK4",
                        [
                            Some(Element::composite(position)),
                            o(&x.reference),
                            e(&x.code),
                            o(&x.bad_value),
                        ],
                    ));
                }
            }
            let mut ak5 = vec![e(a.status.code())];
            ak5.extend(a.errors.iter().take(5).map(|c| e(c)));
            out.push(seg("AK5", ak5));
        }
        let mut ak9 = vec![
            e(self.status.code()),
            number(self.sets_included),
            number(self.sets_received),
            number(self.sets_accepted),
        ];
        ak9.extend(self.errors.iter().take(5).map(|c| e(c)));
        out.push(seg("AK9", ak9));
        out
    }
}
