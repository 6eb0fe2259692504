//! The envelope reader: ISA/IEA interchanges, GS/GE functional groups and ST/SE transaction
//! sets, with every control number and count checked.
//!
//! Checks (all errors, all reported, reading goes on after each):
//! - IEA01 = number of GS in the interchange, IEA02 = ISA13;
//! - GE01 = number of ST in the group, GE02 = GS06;
//! - SE01 = number of segments from ST to SE inclusive, SE02 = ST02;
//! - every ISA has an IEA, every GS a GE, every ST an SE, nothing outside its envelope (a
//!   missing trailer is reported on its header: the ST, GS or ISA);
//! - ISA09 is a date, ISA10 a time, ISA12 five digits, ISA13 nine digits, ISA14 `0`/`1`, ISA15
//!   `P`, `T` or `I`; GS04/GS05 date and time; GS06 a number; GS08 starts with six digits.
//!
//! Which errors reject which envelope: [`TransactionSet::errors`] (anything from ST to SE),
//! [`FunctionalGroup::envelope_errors`] (its GS or GE, or a segment between its sets) and
//! [`Interchange::envelope_errors`] (its ISA or IEA, or a segment outside every group).
//!
//! Leniencies: control numbers are compared as numbers (`1` matches `000000001`); a GS01 that
//! does not match the ST01 of a set (e.g. `PO` for an 855) is a warning; a GS08 version other
//! than 004010/005010 is a warning (the typed layer reads it with the same layouts), and a suffix
//! such as `004010VICS` or `004010UCS` is accepted. ISA fields of the wrong width are warnings
//! (from the tokenizer).

use serde::{Deserialize, Serialize};

use crate::diag::{DiagCode, Diagnostic, ParseError};
use crate::segment::Segment;
use crate::tokenizer::{Separators, tokenize};
use crate::value::{Date, Time};

/// ISA15: production, test or information data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Usage {
    /// `P`
    #[serde(rename = "P")]
    Production,
    /// `T`
    #[serde(rename = "T")]
    Test,
    /// `I`
    #[serde(rename = "I")]
    Information,
}

impl Usage {
    /// The ISA15 code.
    pub fn code(self) -> char {
        match self {
            Self::Production => 'P',
            Self::Test => 'T',
            Self::Information => 'I',
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        match code {
            "P" => Some(Self::Production),
            "T" => Some(Self::Test),
            "I" => Some(Self::Information),
            _ => None,
        }
    }
}

/// A GS08 version/release/industry code, e.g. `004010`, `005010`, `004010VICS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub String);

/// The releases the typed layer is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Release {
    /// 004010 (ISA12 `00401`).
    #[serde(rename = "004010")]
    V004010,
    /// 005010 (ISA12 `00501`).
    #[serde(rename = "005010")]
    V005010,
}

impl Release {
    /// The ISA12 interchange control version.
    pub fn isa12(self) -> &'static str {
        match self {
            Self::V004010 => "00401",
            Self::V005010 => "00501",
        }
    }

    /// The GS08 code without an industry suffix.
    pub fn gs08(self) -> &'static str {
        match self {
            Self::V004010 => "004010",
            Self::V005010 => "005010",
        }
    }

    /// `true` when ISA11 is a repetition separator (from 00402 on) rather than `U`.
    pub fn has_repetition_separator(self) -> bool {
        self == Self::V005010
    }
}

impl Version {
    /// The plain version of a release.
    pub fn of(release: Release) -> Self {
        Self(release.gs08().to_string())
    }

    /// The first six characters (`004010`).
    pub fn base(&self) -> &str {
        self.0.get(..6).unwrap_or(&self.0)
    }

    /// What follows the six digits (`VICS`, `UCS`, `X357`), possibly empty.
    pub fn suffix(&self) -> &str {
        self.0.get(6..).unwrap_or("")
    }

    /// The release, when it is one the typed layer is written for.
    pub fn release(&self) -> Option<Release> {
        match self.base() {
            "004010" => Some(Release::V004010),
            "005010" => Some(Release::V005010),
            _ => None,
        }
    }
}

/// The functional identifier (GS01) of each transaction set the typed layer reads.
pub fn functional_id(set_id: &str) -> Option<&'static str> {
    Some(match set_id {
        "846" => "IB",
        "850" => "PO",
        "855" => "PR",
        "856" => "SH",
        "810" => "IN",
        "940" => "OW",
        "943" => "AR",
        "944" => "RE",
        "945" => "SW",
        "947" => "AW",
        "180" => "AN",
        "997" => "FA",
        _ => return None,
    })
}

/// The ISA header, read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterchangeHeader {
    /// ISA01/ISA02 authorization qualifier and information (trailing spaces trimmed).
    pub authorization: (String, String),
    /// ISA03/ISA04 security qualifier and information.
    pub security: (String, String),
    /// ISA05 sender id qualifier.
    pub sender_qualifier: String,
    /// ISA06 sender id (trailing spaces trimmed).
    pub sender_id: String,
    /// ISA07 receiver id qualifier.
    pub receiver_qualifier: String,
    /// ISA08 receiver id.
    pub receiver_id: String,
    /// ISA09/ISA10 date and time.
    pub date: Option<Date>,
    /// ISA10.
    pub time: Option<Time>,
    /// ISA12 interchange control version (`00401`, `00501`).
    pub version: String,
    /// ISA13.
    pub control_number: u32,
    /// ISA14 = `1`.
    pub ack_requested: bool,
    /// ISA15.
    pub usage: Option<Usage>,
}

/// A transaction set: ST, its body, SE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionSet {
    /// ST01, e.g. `850`.
    pub id: String,
    /// ST02.
    pub control_number: String,
    /// ST03 implementation convention reference (005010).
    pub implementation: Option<String>,
    /// The segments between ST and SE (exclusive).
    pub segments: Vec<Segment>,
    /// Position of the ST in the file.
    pub position: usize,
    /// Position of the SE in the file; `None` when the set has no SE.
    pub trailer: Option<usize>,
    /// The ST as read (not serialized).
    #[serde(skip)]
    pub st: Segment,
    /// The SE as read, `None` when missing (not serialized).
    #[serde(skip)]
    pub se: Option<Segment>,
}

impl TransactionSet {
    /// The file positions of the set's segments, ST to SE inclusive (to the last segment read
    /// when the SE is missing).
    pub fn span(&self) -> std::ops::RangeInclusive<usize> {
        self.position..=self.trailer.unwrap_or(self.position + self.segments.len())
    }

    /// The errors that reject the set (its 997 AK5 is `R`): every error diagnostic from its ST
    /// to its SE, including a missing SE (reported on the ST).
    pub fn errors<'d>(&self, diagnostics: &'d [Diagnostic]) -> Vec<&'d Diagnostic> {
        let span = self.span();
        diagnostics
            .iter()
            .filter(|d| d.is_error() && d.segment.is_some_and(|p| span.contains(&p)))
            .collect()
    }

    /// The set as read, ST to SE, for a record of what was received.
    pub fn raw_segments(&self) -> impl Iterator<Item = &Segment> {
        std::iter::once(&self.st)
            .chain(&self.segments)
            .chain(self.se.as_ref())
    }
}

/// A functional group: GS, its transaction sets, GE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionalGroup {
    /// GS01, e.g. `PO`.
    pub functional_id: String,
    /// GS02 application sender.
    pub application_sender: String,
    /// GS03 application receiver.
    pub application_receiver: String,
    /// GS04.
    pub date: Option<Date>,
    /// GS05.
    pub time: Option<Time>,
    /// GS06.
    pub control_number: u32,
    /// GS07 responsible agency (`X`).
    pub agency: String,
    /// GS08.
    pub version: Version,
    /// The sets in order.
    pub sets: Vec<TransactionSet>,
    /// Position of the GS in the file.
    pub position: usize,
    /// Position of the GE in the file; `None` when the group has no GE.
    pub trailer: Option<usize>,
    /// The GS as read (not serialized).
    #[serde(skip)]
    pub gs: Segment,
    /// The GE as read, `None` when missing (not serialized).
    #[serde(skip)]
    pub ge: Option<Segment>,
}

impl FunctionalGroup {
    /// The file positions of the group, GS to GE inclusive (to the end of its last set when
    /// the GE is missing).
    pub fn span(&self) -> std::ops::RangeInclusive<usize> {
        let end = self
            .trailer
            .unwrap_or_else(|| self.sets.last().map_or(self.position, |s| *s.span().end()));
        self.position..=end
    }

    /// The errors that reject the whole group (its 997 AK9 is `R`): those on its GS or GE
    /// (a missing GE is reported on the GS) and those inside the group but outside every
    /// transaction set (a segment between sets).
    pub fn envelope_errors<'d>(&self, diagnostics: &'d [Diagnostic]) -> Vec<&'d Diagnostic> {
        let span = self.span();
        diagnostics
            .iter()
            .filter(|d| {
                let Some(p) = d.segment.filter(|_| d.is_error()) else {
                    return false;
                };
                if p == self.position || Some(p) == self.trailer {
                    return true;
                }
                span.contains(&p) && !in_a_set(&self.sets, p)
            })
            .collect()
    }

    /// The group as read, GS to GE, for a record of what was received.
    pub fn raw_segments(&self) -> impl Iterator<Item = &Segment> {
        std::iter::once(&self.gs)
            .chain(self.sets.iter().flat_map(TransactionSet::raw_segments))
            .chain(self.ge.as_ref())
    }
}

/// Whether position `p` falls inside one of `sets` (in file order).
fn in_a_set(sets: &[TransactionSet], p: usize) -> bool {
    let after = sets.partition_point(|s| s.position <= p);
    after > 0 && sets[after - 1].span().contains(&p)
}

/// An interchange: ISA, groups, IEA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interchange {
    /// The separators the ISA declared (or the file used; see the tokenizer's leniencies).
    pub separators: Separators,
    /// The ISA.
    pub header: InterchangeHeader,
    /// The groups in order.
    pub groups: Vec<FunctionalGroup>,
    /// Position of the ISA in the file.
    #[serde(default)]
    pub position: usize,
    /// Position of the IEA in the file; `None` when the interchange has no IEA.
    #[serde(default)]
    pub trailer: Option<usize>,
    /// Position of the last segment of the input that belongs to this interchange (its IEA,
    /// what follows it before the next ISA, or the end of the input).
    #[serde(default)]
    pub end: usize,
    /// The ISA as read (not serialized).
    #[serde(skip)]
    pub isa: Segment,
    /// The IEA as read, `None` when missing (not serialized).
    #[serde(skip)]
    pub iea: Option<Segment>,
}

impl Interchange {
    /// The errors that reject the whole interchange: those on its ISA (a missing IEA is
    /// reported on the ISA) or its IEA, and those outside every functional group (a segment
    /// between groups, data after the IEA). Nothing in an interchange with such errors may be
    /// acted on.
    pub fn envelope_errors<'d>(&self, diagnostics: &'d [Diagnostic]) -> Vec<&'d Diagnostic> {
        let groups: Vec<std::ops::RangeInclusive<usize>> =
            self.groups.iter().map(FunctionalGroup::span).collect();
        diagnostics
            .iter()
            .filter(|d| {
                let Some(p) = d.segment.filter(|_| d.is_error()) else {
                    return false;
                };
                if !(self.position..=self.end.max(self.position)).contains(&p) {
                    return false;
                }
                let after = groups.partition_point(|g| *g.start() <= p);
                after == 0 || !groups[after - 1].contains(&p)
            })
            .collect()
    }

    /// The interchange as read, ISA to IEA (without segments outside any group), for a
    /// record of what was received.
    pub fn raw_segments(&self) -> impl Iterator<Item = &Segment> {
        std::iter::once(&self.isa)
            .chain(self.groups.iter().flat_map(FunctionalGroup::raw_segments))
            .chain(self.iea.as_ref())
    }
}

/// Everything read from one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Usually one; files with several ISA..IEA in a row give several.
    pub interchanges: Vec<Interchange>,
    /// Every error and warning, in file order of discovery.
    pub diagnostics: Vec<Diagnostic>,
}

impl Document {
    /// `true` when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Every transaction set with its group, in file order.
    pub fn sets(&self) -> impl Iterator<Item = (&FunctionalGroup, &TransactionSet)> {
        self.interchanges
            .iter()
            .flat_map(|i| &i.groups)
            .flat_map(|g| g.sets.iter().map(move |s| (g, s)))
    }
}

/// Reads an input: tokenizes, then checks the envelopes. Problems inside a readable interchange
/// are diagnostics on the [`Document`]; [`ParseError`] means there is no usable ISA at all.
pub fn parse(input: &[u8]) -> Result<Document, ParseError> {
    let tokens = tokenize(input)?;
    let mut diags = tokens.diagnostics;
    // Each interchange takes its own segments (from its ISA to the next ISA).
    let mut segments = tokens.segments;
    let mut chunks = Vec::with_capacity(tokens.interchanges.len());
    for (start, separators) in tokens.interchanges.iter().rev() {
        let chunk = segments.split_off((*start).min(segments.len()));
        chunks.push((chunk, *separators));
    }
    let mut interchanges = Vec::with_capacity(chunks.len());
    for (chunk, separators) in chunks.into_iter().rev() {
        if let Some(interchange) = read_interchange(chunk, separators, &mut diags) {
            interchanges.push(interchange);
        }
    }
    Ok(Document {
        interchanges,
        diagnostics: diags,
    })
}

fn error(s: &Segment, code: DiagCode, message: String) -> Diagnostic {
    Diagnostic::error(code, message).at(s.position, &s.id)
}

fn number(s: &Segment, n: usize, digits_max: usize, diags: &mut Vec<Diagnostic>) -> u32 {
    let text = s.value(n).trim();
    match text.parse::<u32>() {
        Ok(v)
            if !text.is_empty()
                && text.len() <= digits_max
                && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            v
        }
        _ => {
            diags.push(
                error(
                    s,
                    DiagCode::ElementValue,
                    format!(
                        "{} is not a control number of 1 to {digits_max} digits: {:?}",
                        s.name(n),
                        text
                    ),
                )
                .element(n),
            );
            0
        }
    }
}

fn count(s: &Segment, n: usize, diags: &mut Vec<Diagnostic>) -> Option<usize> {
    let text = s.value(n).trim();
    match text.parse::<usize>() {
        Ok(v) if text.bytes().all(|b| b.is_ascii_digit()) => Some(v),
        _ => {
            diags.push(
                error(
                    s,
                    DiagCode::ElementValue,
                    format!("{} is not a count: {:?}", s.name(n), text),
                )
                .element(n),
            );
            None
        }
    }
}

fn read_header(isa: &Segment, diags: &mut Vec<Diagnostic>) -> InterchangeHeader {
    let field = |n: usize| isa.value(n).trim_end().to_string();
    let date_text = isa.value(9).trim();
    let date = Date::from_x12(date_text).filter(|_| date_text.len() == 6);
    if date.is_none() {
        diags.push(
            error(
                isa,
                DiagCode::InvalidDate,
                format!("ISA09 is not a date (YYMMDD): {date_text:?}"),
            )
            .element(9),
        );
    }
    let time_text = isa.value(10).trim();
    let time = Time::from_x12(time_text).filter(|_| time_text.len() == 4);
    if time.is_none() {
        diags.push(
            error(
                isa,
                DiagCode::InvalidTime,
                format!("ISA10 is not a time (HHMM): {time_text:?}"),
            )
            .element(10),
        );
    }
    let version = field(12);
    if version.len() != 5 || !version.bytes().all(|b| b.is_ascii_digit()) {
        diags.push(
            error(
                isa,
                DiagCode::ElementValue,
                format!("ISA12 is not a 5-digit interchange version: {version:?}"),
            )
            .element(12),
        );
    }
    let control_number = number(isa, 13, 9, diags);
    let ack = isa.value(14).trim();
    if ack != "0" && ack != "1" {
        diags.push(
            error(
                isa,
                DiagCode::ElementValue,
                format!("ISA14 (acknowledgment requested) must be 0 or 1, not {ack:?}"),
            )
            .element(14),
        );
    }
    let usage = Usage::from_code(isa.value(15).trim());
    if usage.is_none() {
        diags.push(
            error(
                isa,
                DiagCode::ElementValue,
                format!("ISA15 (usage) must be P, T or I, not {:?}", isa.value(15)),
            )
            .element(15),
        );
    }
    InterchangeHeader {
        authorization: (field(1), field(2)),
        security: (field(3), field(4)),
        sender_qualifier: field(5),
        sender_id: field(6),
        receiver_qualifier: field(7),
        receiver_id: field(8),
        date,
        time,
        version,
        control_number,
        ack_requested: ack == "1",
        usage,
    }
}

fn read_group_header(gs: &Segment, diags: &mut Vec<Diagnostic>) -> FunctionalGroup {
    let date_text = gs.value(4).trim();
    let date = Date::from_x12(date_text);
    if date.is_none() {
        diags.push(
            error(
                gs,
                DiagCode::InvalidDate,
                format!("GS04 is not a date: {date_text:?}"),
            )
            .element(4),
        );
    }
    let time_text = gs.value(5).trim();
    let time = Time::from_x12(time_text);
    if time.is_none() {
        diags.push(
            error(
                gs,
                DiagCode::InvalidTime,
                format!("GS05 is not a time: {time_text:?}"),
            )
            .element(5),
        );
    }
    let version = Version(gs.value(8).trim().to_string());
    if version.base().len() != 6 || !version.base().bytes().all(|b| b.is_ascii_digit()) {
        diags.push(
            error(
                gs,
                DiagCode::ElementValue,
                format!(
                    "GS08 does not start with a 6-digit version: {:?}",
                    version.0
                ),
            )
            .element(8),
        );
    } else if version.release().is_none() {
        diags.push(
            Diagnostic::warning(
                DiagCode::Version,
                format!(
                    "GS08 version {:?} is neither 004010 nor 005010; typed sets are read with \
                     the 004010/005010 layouts",
                    version.0
                ),
            )
            .at(gs.position, &gs.id)
            .element(8),
        );
    }
    FunctionalGroup {
        functional_id: gs.value(1).trim().to_string(),
        application_sender: gs.value(2).trim().to_string(),
        application_receiver: gs.value(3).trim().to_string(),
        date,
        time,
        control_number: number(gs, 6, 9, diags),
        agency: gs.value(7).trim().to_string(),
        version,
        sets: Vec::new(),
        position: gs.position,
        trailer: None,
        gs: gs.clone(),
        ge: None,
    }
}

/// Reads one interchange from its segments (the first is its ISA).
///
/// A missing trailer is reported on its header (no SE: on the ST; no GE: on the GS; no IEA: on
/// the ISA), so each error rejects exactly the envelope it belongs to (see
/// [`TransactionSet::errors`], [`FunctionalGroup::envelope_errors`] and
/// [`Interchange::envelope_errors`]).
fn read_interchange(
    segs: Vec<Segment>,
    separators: Separators,
    diags: &mut Vec<Diagnostic>,
) -> Option<Interchange> {
    let mut rest = segs.into_iter().peekable();
    let isa = rest.next()?;
    let header = read_header(&isa, diags);
    let mut groups: Vec<FunctionalGroup> = Vec::new();
    let mut group: Option<FunctionalGroup> = None;
    let mut set: Option<TransactionSet> = None;
    let mut iea: Option<Segment> = None;

    // Closes an open set that had no SE (`by` describes what ended it).
    fn close_set_without_se(
        set: &mut Option<TransactionSet>,
        group: &mut Option<FunctionalGroup>,
        by: &str,
        diags: &mut Vec<Diagnostic>,
    ) {
        if let Some(open) = set.take() {
            diags.push(error(
                &open.st,
                DiagCode::EnvelopeStructure,
                format!(
                    "the transaction set {} has no SE ({by} came first)",
                    open.control_number
                ),
            ));
            if let Some(g) = group.as_mut() {
                g.sets.push(open);
            }
        }
    }

    // Closes an open group that had no GE (`by` describes what ended it).
    fn close_group_without_ge(
        group: &mut Option<FunctionalGroup>,
        groups: &mut Vec<FunctionalGroup>,
        by: &str,
        diags: &mut Vec<Diagnostic>,
    ) {
        if let Some(open) = group.take() {
            diags.push(error(
                &open.gs,
                DiagCode::EnvelopeStructure,
                format!(
                    "the functional group {} has no GE ({by} came first)",
                    open.control_number
                ),
            ));
            groups.push(open);
        }
    }

    // The last segment read, for the problems found at the end of the input.
    let mut end = isa.position;
    while let Some(s) = rest.next() {
        end = s.position;
        if iea.is_some() {
            diags.push(error(
                &s,
                DiagCode::EnvelopeStructure,
                "data after the IEA (the interchange has ended)".into(),
            ));
            // The rest of this interchange's part of the input is not read.
            end = rest.last().map_or(end, |l| l.position);
            break;
        }
        // TA1 (interchange acknowledgment) sits between ISA and the first GS.
        let ta1 = s.id == "TA1" && group.is_none() && set.is_none();
        let envelope = matches!(s.id.as_str(), "ST" | "SE" | "GS" | "GE" | "IEA");
        if !envelope && !ta1 {
            match set.as_mut() {
                Some(open) => open.segments.push(s),
                None => diags.push(error(
                    &s,
                    DiagCode::EnvelopeStructure,
                    format!("{} outside a transaction set (no ST before it)", s.id),
                )),
            }
            continue;
        }
        let by = format!("the {} at segment {}", s.id, s.position);
        match s.id.as_str() {
            "ST" => {
                close_set_without_se(&mut set, &mut group, &by, diags);
                if group.is_none() {
                    diags.push(error(
                        &s,
                        DiagCode::EnvelopeStructure,
                        "ST outside a functional group (no GS before it)".into(),
                    ));
                }
                let id = s.value(1).trim().to_string();
                if id.len() != 3 || !id.bytes().all(|b| b.is_ascii_digit()) {
                    diags.push(
                        error(
                            &s,
                            DiagCode::ElementValue,
                            format!("ST01 is not a 3-digit set id: {id:?}"),
                        )
                        .element(1),
                    );
                }
                let control_number = s.value(2).trim().to_string();
                if !(4..=9).contains(&control_number.len()) {
                    diags.push(
                        error(
                            &s,
                            DiagCode::ElementValue,
                            format!("ST02 must be 4 to 9 characters, not {control_number:?}"),
                        )
                        .element(2),
                    );
                }
                if let (Some(g), Some(expected)) = (group.as_ref(), functional_id(&id))
                    && g.functional_id != expected
                {
                    diags.push(
                        Diagnostic::warning(
                            DiagCode::EnvelopeStructure,
                            format!(
                                "a {id} belongs in a group with GS01 {expected}, this group \
                                     (segment {}) has {:?}",
                                g.position, g.functional_id
                            ),
                        )
                        .at(s.position, &s.id)
                        .element(1),
                    );
                }
                set = Some(TransactionSet {
                    id,
                    control_number,
                    implementation: s.opt(3),
                    segments: Vec::new(),
                    position: s.position,
                    trailer: None,
                    st: s,
                    se: None,
                });
            }
            "SE" => match set.take() {
                Some(mut done) => {
                    done.trailer = Some(s.position);
                    let counted = s.position.saturating_sub(done.position) + 1;
                    if let Some(said) = count(&s, 1, diags)
                        && said != counted
                    {
                        diags.push(
                            error(
                                &s,
                                DiagCode::Count,
                                format!("SE01 says {said} segments, counted {counted}"),
                            )
                            .element(1),
                        );
                    }
                    let se02 = s.value(2).trim();
                    if se02 != done.control_number {
                        diags.push(
                            error(
                                &s,
                                DiagCode::ControlNumber,
                                format!(
                                    "SE02 is {se02:?} but ST02 (segment {}) is {:?}",
                                    done.position, done.control_number
                                ),
                            )
                            .element(2),
                        );
                    }
                    done.se = Some(s);
                    match group.as_mut() {
                        Some(g) => g.sets.push(done),
                        None => {
                            // Already reported at the ST (outside any group, so the
                            // interchange is rejected); the set is not kept.
                        }
                    }
                }
                None => diags.push(error(
                    &s,
                    DiagCode::EnvelopeStructure,
                    "SE without an ST".into(),
                )),
            },
            "GS" => {
                close_set_without_se(&mut set, &mut group, &by, diags);
                close_group_without_ge(&mut group, &mut groups, &by, diags);
                group = Some(read_group_header(&s, diags));
            }
            "GE" => {
                close_set_without_se(&mut set, &mut group, &by, diags);
                match group.take() {
                    Some(mut done) => {
                        done.trailer = Some(s.position);
                        if let Some(said) = count(&s, 1, diags)
                            && said != done.sets.len()
                        {
                            diags.push(
                                error(
                                    &s,
                                    DiagCode::Count,
                                    format!(
                                        "GE01 says {said} transaction sets, counted {}",
                                        done.sets.len()
                                    ),
                                )
                                .element(1),
                            );
                        }
                        let ge02 = number(&s, 2, 9, diags);
                        if ge02 != done.control_number {
                            diags.push(
                                error(
                                    &s,
                                    DiagCode::ControlNumber,
                                    format!(
                                        "GE02 is {ge02} but GS06 (segment {}) is {}",
                                        done.position, done.control_number
                                    ),
                                )
                                .element(2),
                            );
                        }
                        done.ge = Some(s);
                        groups.push(done);
                    }
                    None => diags.push(error(
                        &s,
                        DiagCode::EnvelopeStructure,
                        "GE without a GS".into(),
                    )),
                }
            }
            "IEA" => {
                close_set_without_se(&mut set, &mut group, &by, diags);
                close_group_without_ge(&mut group, &mut groups, &by, diags);
                if let Some(said) = count(&s, 1, diags)
                    && said != groups.len()
                {
                    diags.push(
                        error(
                            &s,
                            DiagCode::Count,
                            format!(
                                "IEA01 says {said} functional groups, counted {}",
                                groups.len()
                            ),
                        )
                        .element(1),
                    );
                }
                let iea02 = number(&s, 2, 9, diags);
                if iea02 != header.control_number {
                    diags.push(
                        error(
                            &s,
                            DiagCode::ControlNumber,
                            format!(
                                "IEA02 is {iea02:09} but ISA13 is {:09}",
                                header.control_number
                            ),
                        )
                        .element(2),
                    );
                }
                iea = Some(s);
            }
            _ => {} // TA1
        }
    }
    if iea.is_none() {
        let by = format!("the input ends at segment {end}");
        close_set_without_se(&mut set, &mut group, &by, diags);
        close_group_without_ge(&mut group, &mut groups, &by, diags);
        diags.push(error(
            &isa,
            DiagCode::EnvelopeStructure,
            format!(
                "the interchange {:09} has no IEA ({by})",
                header.control_number
            ),
        ));
    }
    Some(Interchange {
        separators,
        header,
        groups,
        position: isa.position,
        trailer: iea.as_ref().map(|s| s.position),
        end,
        isa,
        iea,
    })
}
