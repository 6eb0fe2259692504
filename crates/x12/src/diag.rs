//! Diagnostics: every problem found while reading, validating or rendering X12.
//!
//! A [`Diagnostic`] names where the problem is (the 1-based position of the segment in the
//! file, counting the ISA as segment 1; its id; the element and component position) and what is
//! wrong, in words a person can act on. Reading never stops at the first problem: the reader
//! collects every diagnostic it can and the caller decides what to do with warnings.
//!
//! Severity is a contract:
//! - [`Severity::Error`]: the data is wrong or ambiguous (a count or control number that does not
//!   match, a missing envelope segment, an unreadable date). A consumer must not act on the
//!   affected interchange without a person looking at it.
//! - [`Severity::Warning`]: a leniency the reader accepted and what it assumed (see the crate
//!   documentation for the list). The data was understood without guessing at content.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The data is wrong; do not act on it without review.
    Error,
    /// A documented leniency was applied; the data was understood.
    Warning,
}

/// A stable, machine-readable kind for each diagnostic (the message is for people).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagCode {
    /// The input is empty or only whitespace.
    EmptyInput,
    /// The input is EDIFACT (UNA/UNB), which this crate does not read yet.
    EdifactNotSupported,
    /// The input does not start with an ISA segment.
    NotX12,
    /// The ISA header is truncated or its fields are malformed.
    IsaMalformed,
    /// The separators declared by the ISA are unusable or are not the ones the file uses.
    Separators,
    /// The input is not valid UTF-8 and was read as ISO 8859-1.
    Encoding,
    /// Whitespace or line breaks inside a segment (leniency).
    Whitespace,
    /// A segment id was written in lowercase (leniency).
    Lowercase,
    /// The last segment has no terminator (leniency).
    MissingTerminator,
    /// An empty segment (two terminators in a row) was skipped (leniency).
    EmptySegment,
    /// A segment id is not 2 or 3 letters/digits.
    BadSegmentId,
    /// An envelope segment (ISA/IEA, GS/GE, ST/SE) is missing, duplicated or out of place.
    EnvelopeStructure,
    /// A trailer's control number differs from its header's.
    ControlNumber,
    /// A trailer's count (IEA01, GE01, SE01) differs from what was counted.
    Count,
    /// A field of a fixed-width ISA is not padded to its width (leniency).
    IsaWidth,
    /// A version (ISA12, GS08) outside what the typed layer knows.
    Version,
    /// An element holds a value that is not allowed (an invalid or unknown code). Also the code
    /// for application-level problems a caller adds (e.g. an unknown item number).
    ElementValue,
    /// An element that must be a date (`CCYYMMDD`/`YYMMDD`) is not one.
    InvalidDate,
    /// An element that must be a time (`HHMM[SS]`) is not one.
    InvalidTime,
    /// An element that must be a number is not one.
    InvalidNumber,
    /// An element is shorter than the standard allows.
    ElementTooShort,
    /// An element is longer than the standard allows.
    ElementTooLong,
    /// A segment has more elements than the standard defines (often two segments run together
    /// because a terminator is missing).
    TooManyElements,
    /// An element holds the repetition separator, but the element does not repeat (the
    /// separator appears in the data).
    RepeatedElement,
    /// A mandatory element is empty or missing.
    MissingElement,
    /// A required segment of a transaction set is missing.
    MissingSegment,
    /// A segment appears where the transaction set does not allow it.
    UnexpectedSegment,
    /// The HL hierarchy is broken (unknown parent, duplicate id, bad level code).
    Hierarchy,
    /// Rendering: a value cannot be written with the chosen separators or widths.
    Render,
}

/// One problem, positioned in the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Machine-readable kind.
    pub code: DiagCode,
    /// 1-based position of the segment in the file (the first ISA is segment 1). `None` when the
    /// problem is not tied to a segment (e.g. the input is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<usize>,
    /// Segment id (`SE`, `BEG`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
    /// 1-based element position (`SE01` is element 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element: Option<usize>,
    /// 1-based component position inside a composite element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<usize>,
    /// What is wrong, for a person.
    pub message: String,
}

impl Diagnostic {
    /// An error not tied to a segment.
    pub fn error(code: DiagCode, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            segment: None,
            segment_id: None,
            element: None,
            component: None,
            message: message.into(),
        }
    }

    /// A warning not tied to a segment.
    pub fn warning(code: DiagCode, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    /// Ties the diagnostic to a segment (position is 1-based in the file).
    pub fn at(mut self, position: usize, id: &str) -> Self {
        self.segment = Some(position);
        self.segment_id = Some(id.to_string());
        self
    }

    /// Names the element (1-based) the diagnostic is about.
    pub fn element(mut self, element: usize) -> Self {
        self.element = Some(element);
        self
    }

    /// Names the component (1-based) of a composite element.
    pub fn component(mut self, component: usize) -> Self {
        self.component = Some(component);
        self
    }

    /// `true` for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `segment 14 (SE): SE01 says 12 segments, counted 11`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.segment, &self.segment_id) {
            (Some(position), Some(id)) => write!(f, "segment {position} ({id}): ")?,
            (Some(position), None) => write!(f, "segment {position}: ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

/// Diagnostics with helpers to ask about them.
pub trait DiagnosticsExt {
    /// `true` when any diagnostic is an error.
    fn has_errors(&self) -> bool;
    /// The errors only.
    fn errors(&self) -> Vec<&Diagnostic>;
    /// The warnings only.
    fn warnings(&self) -> Vec<&Diagnostic>;
}

impl DiagnosticsExt for [Diagnostic] {
    fn has_errors(&self) -> bool {
        self.iter().any(Diagnostic::is_error)
    }
    fn errors(&self) -> Vec<&Diagnostic> {
        self.iter().filter(|d| d.is_error()).collect()
    }
    fn warnings(&self) -> Vec<&Diagnostic> {
        self.iter().filter(|d| !d.is_error()).collect()
    }
}

/// The input could not be read as an X12 interchange at all (no usable ISA, EDIFACT, empty).
/// Problems inside a readable interchange are [`Diagnostic`]s on the parse result instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", first_message(.diagnostics))]
pub struct ParseError {
    /// Every problem found (at least one error).
    pub diagnostics: Vec<Diagnostic>,
}

fn first_message(diagnostics: &[Diagnostic]) -> String {
    match diagnostics.iter().find(|d| d.is_error()) {
        Some(d) => d.to_string(),
        None => "cannot read X12".to_string(),
    }
}

impl ParseError {
    pub(crate) fn one(diagnostic: Diagnostic) -> Self {
        Self {
            diagnostics: vec![diagnostic],
        }
    }
}

/// Rendering failed: a value cannot be written as X12 (it contains a separator, is too long for
/// a fixed-width ISA field, a control number is out of range, ...). Every problem is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render X12: {}", .problems.join("; "))]
pub struct RenderError {
    /// One line per problem, naming the segment and element.
    pub problems: Vec<String>,
}
