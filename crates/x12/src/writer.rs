//! The writer: typed sets in, one X12 interchange out.
//!
//! [`render`] writes one interchange (ISA..IEA) holding one functional group (GS..GE) with the
//! sets in order. It computes every count and control number: ST02 is `0001`, `0002`, ...;
//! SE01 counts the segments from ST to SE inclusive; SE02 = ST02; GE01 is the number of sets,
//! GE02 = GS06; IEA01 is 1, IEA02 = ISA13. The ISA has its fixed widths, ISA11 is `U` for
//! 004010 and the repetition separator for 005010, ISA16 the component separator. Each
//! segment ends with the terminator and a line break, for people reading the file.
//!
//! Nothing is written silently wrong: a value holding a separator or a control character, a
//! mandatory element left empty, a code of the wrong length (see the typed sets' rules), an ISA
//! field too long, or sets of different functional groups make [`render`] fail with a
//! [`RenderError`] listing every problem with its set, segment and element.

use crate::diag::{Diagnostic, RenderError};
use crate::envelope::{Release, Usage};
use crate::segment::Segment;
use crate::sets::TypedSet;
use crate::sets::rules::check_segment;
use crate::tokenizer::Separators;
use crate::value::{Date, Time};

/// The envelope of an interchange to write: who sends it to whom, control numbers, version,
/// date and separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundEnvelope {
    /// ISA05 sender id qualifier (`ZZ` mutually defined, `01` DUNS, `12` phone, ...).
    pub sender_qualifier: String,
    /// ISA06 sender id (at most 15 characters; padded with spaces).
    pub sender_id: String,
    /// ISA07 receiver id qualifier.
    pub receiver_qualifier: String,
    /// ISA08 receiver id (at most 15 characters).
    pub receiver_id: String,
    /// GS02 application sender's code (2 to 15 characters).
    pub application_sender: String,
    /// GS03 application receiver's code (2 to 15 characters).
    pub application_receiver: String,
    /// ISA13 and IEA02 (at most 999999999).
    pub interchange_control: u32,
    /// GS06 and GE02 (1 to 999999999).
    pub group_control: u32,
    /// ISA12 and GS08: 004010 or 005010.
    pub release: Release,
    /// Appended to GS08 (`VICS`, `UCS`, ...); may be empty. GS08 is at most 12 characters.
    pub version_suffix: String,
    /// ISA15.
    pub usage: Usage,
    /// ISA14: ask the receiver for a TA1.
    pub ack_requested: bool,
    /// ISA09 and GS04.
    pub date: Date,
    /// ISA10 and GS05 (hours and minutes).
    pub time: Time,
    /// The delimiters; `repetition` is used for 005010 only (ISA11 is `U` in 004010).
    pub separators: Separators,
}

impl OutboundEnvelope {
    /// An envelope with `(qualifier, id)` sender and receiver, the ids also used as GS02/GS03,
    /// release 004010, production usage, no TA1 requested, and the separators `*`, `>`, `~` (and
    /// `^` for repetitions in 005010).
    pub fn new(
        sender: (&str, &str),
        receiver: (&str, &str),
        interchange_control: u32,
        group_control: u32,
        date: Date,
        time: Time,
    ) -> Self {
        Self {
            sender_qualifier: sender.0.to_string(),
            sender_id: sender.1.to_string(),
            receiver_qualifier: receiver.0.to_string(),
            receiver_id: receiver.1.to_string(),
            application_sender: sender.1.to_string(),
            application_receiver: receiver.1.to_string(),
            interchange_control,
            group_control,
            release: Release::V004010,
            version_suffix: String::new(),
            usage: Usage::Production,
            ack_requested: false,
            date,
            time,
            separators: Separators {
                element: '*',
                repetition: Some('^'),
                component: '>',
                segment: '~',
            },
        }
    }

    /// The separators as written: no repetition separator in 004010.
    fn separators(&self) -> Separators {
        Separators {
            repetition: self
                .separators
                .repetition
                .filter(|_| self.release.has_repetition_separator()),
            ..self.separators
        }
    }
}

/// The largest control number (nine digits).
const CONTROL_MAX: u32 = 999_999_999;

/// Writes one interchange with one functional group holding `sets` (all of the same functional
/// group, e.g. all 850s, or 940s; at least one).
pub fn render(envelope: &OutboundEnvelope, sets: &[TypedSet]) -> Result<String, RenderError> {
    let mut problems = Vec::new();
    let separators = envelope.separators();
    if let Err(problem) = separators.check() {
        return Err(RenderError {
            problems: vec![format!("unusable separators: {problem}")],
        });
    }
    if envelope.release.has_repetition_separator() && separators.repetition.is_none() {
        problems.push(format!(
            "ISA11: {} needs a repetition separator",
            envelope.release.gs08()
        ));
    }
    let Some(first) = sets.first() else {
        return Err(RenderError {
            problems: vec!["no transaction sets to render".to_string()],
        });
    };
    let functional_id = first.functional_id();
    for (k, set) in sets.iter().enumerate() {
        if set.functional_id() != functional_id {
            problems.push(format!(
                "set {} ({}) belongs in a group with GS01 {}, but set 1 ({}) makes this a {} \
                 group: one interchange holds one functional group",
                k + 1,
                set.id(),
                set.functional_id(),
                first.id(),
                functional_id
            ));
        }
    }

    let mut writer = Writer {
        out: String::new(),
        separators,
    };
    writer.isa(envelope, &mut problems);
    let mut gs = gs_segment(envelope, functional_id, &mut problems);
    gs.position = 2;
    writer.check(&gs, "interchange", &mut problems);
    writer.segment(&gs);
    for (k, set) in sets.iter().enumerate() {
        let control = format!("{:04}", k + 1);
        let label = format!("{} set {} (ST02 {control})", set.id(), k + 1);
        let mut segments = vec![Segment::new("ST", [set.id(), control.as_str()])];
        segments.extend(set.body());
        let count = (segments.len() + 1).to_string();
        segments.push(Segment::new("SE", [count.as_str(), control.as_str()]));
        for (i, segment) in segments.iter_mut().enumerate() {
            segment.position = i + 1;
            writer.check(segment, &label, &mut problems);
            writer.segment(segment);
        }
    }
    let group_control = envelope.group_control.to_string();
    let set_count = sets.len().to_string();
    writer.segment(&Segment::new(
        "GE",
        [set_count.as_str(), group_control.as_str()],
    ));
    let interchange_control = format!("{:09}", envelope.interchange_control);
    writer.segment(&Segment::new("IEA", ["1", interchange_control.as_str()]));
    if problems.is_empty() {
        Ok(writer.out)
    } else {
        Err(RenderError { problems })
    }
}

/// The GS of the group, with its problems.
fn gs_segment(
    envelope: &OutboundEnvelope,
    functional_id: &str,
    problems: &mut Vec<String>,
) -> Segment {
    for (name, value) in [
        ("GS02 (application sender)", &envelope.application_sender),
        (
            "GS03 (application receiver)",
            &envelope.application_receiver,
        ),
    ] {
        let len = value.chars().count();
        if !(2..=15).contains(&len) {
            problems.push(format!(
                "{name} {value:?} must be 2 to 15 characters, not {len}"
            ));
        }
    }
    if !(1..=CONTROL_MAX).contains(&envelope.group_control) {
        problems.push(format!(
            "GS06 (group control number) {} must be 1 to {CONTROL_MAX}",
            envelope.group_control
        ));
    }
    let version = format!("{}{}", envelope.release.gs08(), envelope.version_suffix);
    if version.chars().count() > 12 {
        problems.push(format!(
            "GS08 (version) {version:?} is longer than 12 characters"
        ));
    }
    let time = format!("{:02}{:02}", envelope.time.hour(), envelope.time.minute());
    let group_control = envelope.group_control.to_string();
    Segment::new(
        "GS",
        [
            functional_id,
            envelope.application_sender.as_str(),
            envelope.application_receiver.as_str(),
            envelope.date.to_x12().as_str(),
            time.as_str(),
            group_control.as_str(),
            "X",
            version.as_str(),
        ],
    )
}

/// The text being written.
struct Writer {
    out: String,
    separators: Separators,
}

impl Writer {
    /// Ends a segment: the terminator and, unless the terminator is a line break, a line break.
    fn end(&mut self) {
        self.out.push(self.separators.segment);
        if self.separators.segment != '\n' {
            self.out.push('\n');
        }
    }

    fn segment(&mut self, segment: &Segment) {
        self.out.push_str(&segment.id);
        for element in &segment.elements {
            self.out.push(self.separators.element);
            element.write(
                &mut self.out,
                self.separators.component,
                self.separators.repetition,
            );
        }
        self.end();
    }

    /// Reports every value of `segment` that cannot be written, and what the standard's rules
    /// find (mandatory elements, code lengths). `label` names the set.
    fn check(&self, segment: &Segment, label: &str, problems: &mut Vec<String>) {
        let mut found: Vec<Diagnostic> = Vec::new();
        check_segment(segment, &mut found);
        for d in found {
            problems.push(format!(
                "{label}, segment {} ({}): {}",
                segment.position, segment.id, d.message
            ));
        }
        for (i, element) in segment.elements.iter().enumerate() {
            for value in element.values() {
                if let Some(problem) = self.unwritable(value) {
                    problems.push(format!(
                        "{label}, segment {} ({}): {} {value:?} {problem}",
                        segment.position,
                        segment.id,
                        segment.name(i + 1)
                    ));
                }
            }
        }
    }

    /// Why a value cannot be written with these separators, if it cannot.
    fn unwritable(&self, value: &str) -> Option<String> {
        let s = self.separators;
        let named = [
            ("element separator", Some(s.element)),
            ("component separator", Some(s.component)),
            ("segment terminator", Some(s.segment)),
            ("repetition separator", s.repetition),
        ];
        for (name, separator) in named {
            if let Some(c) = separator.filter(|c| value.contains(*c)) {
                return Some(format!("contains the {name} {c:?}"));
            }
        }
        value
            .chars()
            .find(|c| c.is_control())
            .map(|c| format!("contains the control character {c:?}"))
    }

    /// The ISA, fixed width.
    fn isa(&mut self, envelope: &OutboundEnvelope, problems: &mut Vec<String>) {
        let repetition = match envelope.release {
            Release::V004010 => 'U',
            Release::V005010 => self.separators.repetition.unwrap_or('U'),
        };
        if envelope.interchange_control > CONTROL_MAX {
            problems.push(format!(
                "ISA13 (interchange control number) {} is larger than {CONTROL_MAX}",
                envelope.interchange_control
            ));
        }
        let fields = [
            ("ISA05", envelope.sender_qualifier.as_str(), 2, 2),
            ("ISA06", envelope.sender_id.as_str(), 1, 15),
            ("ISA07", envelope.receiver_qualifier.as_str(), 2, 2),
            ("ISA08", envelope.receiver_id.as_str(), 1, 15),
        ];
        for (name, value, min, max) in fields {
            let len = value.chars().count();
            if !(min..=max).contains(&len) {
                problems.push(format!(
                    "{name} {value:?} must be {min} to {max} characters, not {len}"
                ));
            }
            if !value.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
                problems.push(format!("{name} {value:?} must be printable ASCII"));
            } else if let Some(problem) = self.unwritable(value) {
                problems.push(format!("{name} {value:?} {problem}"));
            }
        }
        let e = self.separators.element;
        let isa = format!(
            "ISA{e}00{e}{:10}{e}00{e}{:10}{e}{}{e}{:<15}{e}{}{e}{:<15}{e}{}{e}{:02}{:02}{e}{repetition}\
             {e}{}{e}{:09}{e}{}{e}{}{e}{}",
            "",
            "",
            envelope.sender_qualifier,
            envelope.sender_id,
            envelope.receiver_qualifier,
            envelope.receiver_id,
            envelope.date.to_x12_short(),
            envelope.time.hour(),
            envelope.time.minute(),
            envelope.release.isa12(),
            envelope.interchange_control,
            if envelope.ack_requested { '1' } else { '0' },
            envelope.usage.code(),
            self.separators.component,
        );
        self.out.push_str(&isa);
        self.end();
    }
}
