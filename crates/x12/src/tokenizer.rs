//! The tokenizer: bytes in, separators and positioned [`Segment`]s out.
//!
//! It reads the separators from each ISA: the element separator is the character after `ISA`,
//! ISA11 is the repetition separator when it is a delimiter (in 004010 it is the standards id
//! `U` and there is none), ISA16 is the component separator and the character after ISA16 is the
//! segment terminator. The ISA is read by counting its 16 element separators rather than by byte
//! offsets, so an ISA with unpadded fields or a multi-byte character still yields its separators
//! (each field of the wrong width is a warning).
//!
//! Leniencies (each documented, warnings unless noted):
//! - A UTF-8 byte order mark and whitespace before the ISA are skipped (no diagnostic).
//! - Line breaks, spaces and tabs between segments (pretty-printed or indented files) are
//!   skipped (no diagnostic); `\r\n` and `\n` after a terminator are normal.
//! - A newline as segment terminator (the character after ISA16 is a line break).
//! - A declared terminator the file does not use: when the character after ISA16 is a line
//!   break but the next segment ends with a delimiter such as `~`, or the declared terminator
//!   never ends the next segment, the terminator the next segment actually ends with is used
//!   (warning [`DiagCode::Separators`]).
//! - Input that is not UTF-8 is read as ISO 8859-1 (warning [`DiagCode::Encoding`]).
//! - Spaces or tabs at the end of a segment are dropped (warning [`DiagCode::Whitespace`]).
//! - Lowercase segment ids are uppercased (warning [`DiagCode::Lowercase`]).
//! - Two terminators in a row (an empty segment) are skipped (warning).
//! - The last segment may lack its terminator, also in a newline-terminated file (warning
//!   [`DiagCode::MissingTerminator`]).
//!
//! Errors: EDIFACT input (`UNA`/`UNB`), input not starting with ISA, a truncated ISA, an ISA
//! broken by a line break, a terminator that is a letter or digit or equal to another separator,
//! a line break inside a segment, a malformed segment id.

use crate::diag::{DiagCode, Diagnostic, ParseError};
use crate::segment::{Element, Segment};

/// The four delimiters of an interchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Separators {
    /// Between elements (ISA character 4), e.g. `*`.
    pub element: char,
    /// Between repetitions (ISA11 from version 00402 on), e.g. `^`; `None` when ISA11 is `U`.
    pub repetition: Option<char>,
    /// Between components of a composite (ISA16), e.g. `:` or `>`.
    pub component: char,
    /// After each segment, e.g. `~`; `\n` for newline-terminated files.
    pub segment: char,
}

impl Default for Separators {
    /// `*`, `^`, `:`, `~`: the common choice.
    fn default() -> Self {
        Self {
            element: '*',
            repetition: Some('^'),
            component: ':',
            segment: '~',
        }
    }
}

impl Separators {
    /// Checks the separators can be used for writing: distinct, not letters, digits or spaces.
    pub fn check(&self) -> Result<(), String> {
        let mut all = vec![
            ("element", self.element),
            ("component", self.component),
            ("segment", self.segment),
        ];
        if let Some(repetition) = self.repetition {
            all.push(("repetition", repetition));
        }
        for (i, (name, c)) in all.iter().enumerate() {
            if c.is_alphanumeric() || *c == ' ' {
                return Err(format!(
                    "{name} separator {c:?} is a letter, digit or space"
                ));
            }
            if let Some((other, _)) = all.iter().skip(i + 1).find(|(_, d)| d == c) {
                return Err(format!("{name} and {other} separators are both {c:?}"));
            }
        }
        Ok(())
    }
}

/// Tokenized input: every segment of every interchange in file order, with the separators of
/// each ISA.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// All segments, positions 1-based in file order.
    pub segments: Vec<Segment>,
    /// For each ISA: its index in `segments` and the separators it declared.
    pub interchanges: Vec<(usize, Separators)>,
    /// Problems found while tokenizing.
    pub diagnostics: Vec<Diagnostic>,
}

/// The elements of an ISA read by [`sniff`], and where the interchange body starts.
struct Sniffed {
    separators: Separators,
    /// ISA01..ISA16 as written.
    fields: Vec<String>,
    /// Byte offset just after the ISA's terminator.
    body_start: usize,
    diagnostics: Vec<Diagnostic>,
}

/// Widths of ISA01..ISA16 in a fixed-width ISA.
pub(crate) const ISA_WIDTHS: [usize; 16] = [2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1];

/// Upper bound on the number of segments read from one input (TigerBeetle style: bound every
/// loop). 10 million segments is far beyond any real interchange.
const SEGMENTS_MAX: usize = 10_000_000;

/// Decodes the input: UTF-8 (BOM dropped) or, failing that, ISO 8859-1.
pub(crate) fn decode(input: &[u8]) -> (String, Option<Diagnostic>) {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    match std::str::from_utf8(input) {
        Ok(text) => (text.to_string(), None),
        Err(e) => (
            input.iter().map(|&b| char::from(b)).collect(),
            Some(Diagnostic::warning(
                DiagCode::Encoding,
                format!(
                    "the input is not UTF-8 (invalid byte at offset {}); read as ISO 8859-1",
                    e.valid_up_to()
                ),
            )),
        ),
    }
}

/// Splits the input into segments, reading separators from each ISA.
pub fn tokenize(input: &[u8]) -> Result<Tokens, ParseError> {
    let (text, encoding) = decode(input);
    let mut diagnostics: Vec<Diagnostic> = encoding.into_iter().collect();
    let start = text.len() - text.trim_start_matches(is_skippable).len();
    let rest = text.get(start..).unwrap_or("");
    if rest.is_empty() {
        return Err(ParseError::one(Diagnostic::error(
            DiagCode::EmptyInput,
            "the input is empty",
        )));
    }
    if rest.starts_with("UNA") || rest.starts_with("UNB") {
        return Err(ParseError::one(Diagnostic::error(
            DiagCode::EdifactNotSupported,
            "EDIFACT is not supported yet (the input starts with UNA/UNB); only ASC X12 is read",
        )));
    }
    if !rest.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ISA")) {
        let shown: String = rest.chars().take(20).collect();
        return Err(ParseError::one(Diagnostic::error(
            DiagCode::NotX12,
            format!("not an X12 interchange: the input must start with ISA, found {shown:?}"),
        )));
    }

    let mut tokens = Tokens {
        segments: Vec::new(),
        interchanges: Vec::new(),
        diagnostics: Vec::new(),
    };
    let mut offset = start;
    loop {
        // Read the ISA at `offset`, then the segments up to the next ISA or the end.
        let position = tokens.segments.len() + 1;
        let sniffed = sniff(&text, offset, position).map_err(|mut e| {
            diagnostics.append(&mut e.diagnostics);
            ParseError {
                diagnostics: std::mem::take(&mut diagnostics),
            }
        })?;
        tokens.diagnostics.extend(sniffed.diagnostics);
        tokens
            .interchanges
            .push((tokens.segments.len(), sniffed.separators));
        tokens.segments.push(Segment {
            id: "ISA".to_string(),
            elements: sniffed.fields.into_iter().map(Element::simple).collect(),
            position,
        });
        match split_body(&text, sniffed.body_start, sniffed.separators, &mut tokens) {
            Some(next_isa) => offset = next_isa,
            None => break,
        }
    }
    diagnostics.append(&mut tokens.diagnostics);
    tokens.diagnostics = diagnostics;
    Ok(tokens)
}

fn is_skippable(c: char) -> bool {
    c == '\u{FEFF}' || c.is_whitespace()
}

fn is_line_break(c: char) -> bool {
    c == '\n' || c == '\r'
}

/// Reads the ISA starting at byte `offset` of `text`.
fn sniff(text: &str, offset: usize, position: usize) -> Result<Sniffed, ParseError> {
    let isa_error = |message: String| {
        ParseError::one(Diagnostic::error(DiagCode::IsaMalformed, message).at(position, "ISA"))
    };
    let isa = text.get(offset..).unwrap_or("");
    let mut chars = isa.char_indices().skip(3);
    let Some((_, element)) = chars.next() else {
        return Err(isa_error(
            "the ISA is truncated before its element separator".into(),
        ));
    };
    if element.is_alphanumeric() || element.is_whitespace() {
        return Err(isa_error(format!(
            "the element separator (the character after ISA) is {element:?}, which is a letter, \
             digit or space"
        )));
    }
    // ISA01..ISA15 are delimited by element separators.
    let mut fields: Vec<String> = Vec::with_capacity(16);
    let mut current = String::new();
    let mut component = None;
    for (_, c) in chars.by_ref() {
        if c == element {
            fields.push(std::mem::take(&mut current));
            if fields.len() == 15 {
                break;
            }
        } else if is_line_break(c) {
            return Err(isa_error(format!(
                "the ISA is broken by a line break after {} of its 16 elements (missing fields \
                 or a wrong element separator)",
                fields.len()
            )));
        } else {
            current.push(c);
        }
    }
    if fields.len() < 15 {
        return Err(isa_error(format!(
            "the ISA is truncated: {} of its 16 elements",
            fields.len()
        )));
    }
    if let Some((_, c)) = chars.next() {
        component = Some(c);
    }
    let Some(component) = component else {
        return Err(isa_error(
            "the ISA is truncated: ISA16 (component separator) is missing".into(),
        ));
    };
    if is_line_break(component) {
        return Err(isa_error(
            "ISA16 (component separator) is missing: the ISA ends with a line break after ISA15"
                .into(),
        ));
    }
    let Some((terminator_at, declared)) = chars.next() else {
        return Err(isa_error(
            "the ISA is truncated: no segment terminator after ISA16".into(),
        ));
    };
    let mut diagnostics = Vec::new();
    if component.is_alphanumeric() || component == ' ' || component == element {
        return Err(isa_error(format!(
            "ISA16 (component separator) is {component:?}; it must be a delimiter distinct from \
             the element separator"
        )));
    }
    if declared.is_alphanumeric() || declared == ' ' {
        return Err(isa_error(format!(
            "the segment terminator (the character after ISA16) is {declared:?}, a letter, \
             digit or space: the ISA has too many or too few characters"
        )));
    }
    if declared == element {
        return Err(isa_error(format!(
            "the segment terminator (the character after ISA16) is {declared:?}, the same as \
             the element separator: the ISA has an extra element"
        )));
    }
    fields.push(component.to_string());
    let body_start = terminator_at + declared.len_utf8();

    // Fixed widths: a warning per field of the wrong width.
    for (i, (field, width)) in fields.iter().zip(ISA_WIDTHS).enumerate() {
        let len = field.chars().count();
        if len != width {
            diagnostics.push(
                Diagnostic::warning(
                    DiagCode::IsaWidth,
                    format!(
                        "ISA{:02} is {len} characters, the fixed width is {width}",
                        i + 1
                    ),
                )
                .at(position, "ISA")
                .element(i + 1),
            );
        }
    }

    let segment = actual_terminator(
        text.get(offset + body_start..).unwrap_or(""),
        element,
        declared,
        position,
        &mut diagnostics,
    );
    if segment == component {
        diagnostics.push(
            Diagnostic::warning(
                DiagCode::Separators,
                format!(
                    "ISA16 (component separator) is {component:?}, the same as the segment \
                     terminator; composite elements are not split"
                ),
            )
            .at(position, "ISA")
            .element(16),
        );
    }
    let repetition = fields.get(10).and_then(|isa11| {
        let mut cs = isa11.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None)
                if !c.is_alphanumeric()
                    && c != ' '
                    && c != element
                    && c != component
                    && c != segment =>
            {
                Some(c)
            }
            _ => None,
        }
    });
    Ok(Sniffed {
        separators: Separators {
            element,
            repetition,
            component,
            segment: if is_line_break(segment) {
                '\n'
            } else {
                segment
            },
        },
        fields,
        body_start: offset + body_start,
        diagnostics,
    })
}

/// Decides which terminator the interchange really uses, given the one the ISA declares.
fn actual_terminator(
    body: &str,
    element: char,
    declared: char,
    position: usize,
    diagnostics: &mut Vec<Diagnostic>,
) -> char {
    let next = body.trim_start_matches(is_skippable);
    if next.is_empty() {
        return declared;
    }
    let first_line_raw = next.split(is_line_break).next().unwrap_or("");
    let first_line = first_line_raw.trim_end();
    let more_lines = next
        .get(first_line_raw.len()..)
        .is_some_and(|after| !after.trim().is_empty());
    let line_end = first_line
        .chars()
        .last()
        .filter(|c| !c.is_alphanumeric() && *c != element && !c.is_whitespace());
    let declared_is_used = if is_line_break(declared) {
        line_end.is_none()
    } else {
        // The declared terminator must end the next segment before any line break (a single
        // last segment without terminator is the missing-terminator leniency instead).
        first_line.contains(declared) || !more_lines
    };
    if declared_is_used {
        return declared;
    }
    match line_end {
        Some(actual) => {
            diagnostics.push(
                Diagnostic::warning(
                    DiagCode::Separators,
                    format!(
                        "the ISA declares segment terminator {declared:?} (the character after \
                         ISA16) but the next segment ends with {actual:?}; using {actual:?}"
                    ),
                )
                .at(position, "ISA"),
            );
            actual
        }
        None => {
            diagnostics.push(
                Diagnostic::warning(
                    DiagCode::Separators,
                    format!(
                        "the ISA declares segment terminator {declared:?} but the next segment \
                         ends with a line break; using line breaks as terminators"
                    ),
                )
                .at(position, "ISA"),
            );
            '\n'
        }
    }
}

/// Splits the segments after an ISA. Returns the byte offset of the next ISA, if one follows.
fn split_body(
    text: &str,
    body_start: usize,
    separators: Separators,
    tokens: &mut Tokens,
) -> Option<usize> {
    let body = text.get(body_start..)?;
    let newline_terminated = separators.segment == '\n';
    let mut piece_start = 0usize;
    let separator_len = if newline_terminated {
        1
    } else {
        separators.segment.len_utf8()
    };
    let pieces: Box<dyn Iterator<Item = &str>> = if newline_terminated {
        Box::new(body.split(is_line_break))
    } else {
        Box::new(body.split(separators.segment))
    };
    let mut pieces = pieces.peekable();
    // At most one segment per terminator, and per 3 bytes (`XX~`): reserving costs a scan,
    // growing the list as it fills costs more.
    let terminator = if newline_terminated {
        '\n'
    } else {
        separators.segment
    };
    let expected = (body.matches(terminator).count() + 1).min(body.len() / 3);
    tokens.segments.reserve(expected.min(SEGMENTS_MAX));
    while let Some(piece) = pieces.next() {
        let this_start = piece_start;
        piece_start += piece.len() + separator_len;
        let is_last = pieces.peek().is_none();
        let content = piece.trim_start_matches(is_skippable);
        let leading = piece.len() - content.len();
        if content.is_empty() {
            // Between pretty-printed CR LF (newline-terminated) or after the final terminator.
            if !is_last && !newline_terminated && piece.is_empty() {
                let position = tokens.segments.len();
                tokens.diagnostics.push(
                    Diagnostic::warning(
                        DiagCode::EmptySegment,
                        "an empty segment (two terminators in a row) was skipped",
                    )
                    .at(position, tokens.segments.last().map_or("", |s| &s.id)),
                );
            }
            continue;
        }
        let position = tokens.segments.len() + 1;
        if tokens.segments.len() >= SEGMENTS_MAX {
            tokens.diagnostics.push(Diagnostic::error(
                DiagCode::EnvelopeStructure,
                format!("more than {SEGMENTS_MAX} segments; the rest of the input was not read"),
            ));
            return None;
        }
        // A new interchange: its ISA declares its own separators.
        if content
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case("ISA"))
            && content
                .chars()
                .nth(3)
                .is_some_and(|c| !c.is_alphanumeric() && !c.is_whitespace())
        {
            return Some(body_start + this_start + leading);
        }
        let without_breaks = content.trim_end_matches(is_line_break);
        let trimmed = without_breaks.trim_end_matches([' ', '\t']);
        // The id as far as it can be told, for diagnostics before the segment is split.
        let id_guess = || {
            trimmed
                .split(separators.element)
                .next()
                .unwrap_or("")
                .to_ascii_uppercase()
        };
        if trimmed.len() != without_breaks.len() && !newline_terminated {
            tokens.diagnostics.push(
                Diagnostic::warning(
                    DiagCode::Whitespace,
                    "spaces at the end of the segment were dropped",
                )
                .at(position, &id_guess()),
            );
        }
        if is_last && !trimmed.is_empty() {
            tokens.diagnostics.push(
                Diagnostic::warning(
                    DiagCode::MissingTerminator,
                    format!(
                        "the last segment has no terminator {:?}",
                        separators.segment
                    ),
                )
                .at(position, &id_guess()),
            );
        }
        if trimmed.contains(is_line_break) {
            tokens.diagnostics.push(
                Diagnostic::error(
                    DiagCode::Whitespace,
                    format!(
                        "a line break inside the segment: segments end with {:?}; is a \
                         terminator missing?",
                        separators.segment
                    ),
                )
                .at(position, &id_guess()),
            );
        }
        tokens.segments.push(split_segment(
            trimmed,
            separators,
            position,
            &mut tokens.diagnostics,
        ));
    }
    None
}

/// Splits one segment's text into id and elements.
fn split_segment(
    text: &str,
    separators: Separators,
    position: usize,
    diagnostics: &mut Vec<Diagnostic>,
) -> Segment {
    let mut parts = text.split(separators.element);
    let raw_id = parts.next().unwrap_or("");
    let id = raw_id.to_ascii_uppercase();
    let valid_id = (2..=3).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    if !valid_id {
        let shown: String = raw_id.chars().take(20).collect();
        diagnostics.push(
            Diagnostic::error(
                DiagCode::BadSegmentId,
                format!("{shown:?} is not a segment id (2 or 3 letters and digits)"),
            )
            .at(position, &id.chars().take(3).collect::<String>()),
        );
    } else if raw_id != id {
        diagnostics.push(
            Diagnostic::warning(
                DiagCode::Lowercase,
                format!("segment id {raw_id:?} is lowercase; read as {id:?}"),
            )
            .at(position, &id),
        );
    }
    let component = separators.component;
    let split_components = component != separators.segment;
    let components = |repeat: &str| -> Vec<String> {
        if split_components {
            repeat.split(component).map(str::to_string).collect()
        } else {
            vec![repeat.to_string()]
        }
    };
    let element = |value: &str| {
        if let Some(r) = separators.repetition.filter(|r| value.contains(*r)) {
            Element::repeated(value.split(r).map(components).collect())
        } else if split_components && value.contains(component) {
            Element::composite(components(value))
        } else {
            Element::simple(value)
        }
    };
    let mut elements = Vec::with_capacity(text.matches(separators.element).count());
    elements.extend(parts.map(element));
    Segment {
        id,
        elements,
        position,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISA: &str = "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *240101*1200*U*00401*000000001*0*P*>";

    #[test]
    fn reads_separators_from_the_isa() {
        let input = format!("{ISA}~GS*IN*A*B~");
        let tokens = tokenize(input.as_bytes()).unwrap();
        let (_, s) = tokens.interchanges[0];
        assert_eq!(
            (s.element, s.repetition, s.component, s.segment),
            ('*', None, '>', '~')
        );
        assert_eq!(tokens.segments.len(), 2);
        assert_eq!(tokens.segments[1].value(1), "IN");
        assert!(tokens.diagnostics.is_empty(), "{:?}", tokens.diagnostics);
    }

    #[test]
    fn rejects_edifact() {
        let err = tokenize(b"UNA:+.? 'UNB+UNOC:3+X+Y'").unwrap_err();
        assert_eq!(err.diagnostics[0].code, DiagCode::EdifactNotSupported);
        assert!(err.to_string().contains("EDIFACT is not supported yet"));
    }

    #[test]
    fn newline_terminated_and_pretty_printed() {
        let input = format!("\u{FEFF}{ISA}\r\n  GS*IN*A*B\r\n    ST*810*0001\r\n");
        let tokens = tokenize(input.as_bytes()).unwrap();
        assert_eq!(tokens.interchanges[0].1.segment, '\n');
        let ids: Vec<&str> = tokens.segments.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["ISA", "GS", "ST"]);
    }

    #[test]
    fn declared_terminator_not_used_is_a_warning() {
        let input = format!("{ISA}\nGS*IN*A*B~\nST*810*0001~\n");
        let tokens = tokenize(input.as_bytes()).unwrap();
        assert_eq!(tokens.interchanges[0].1.segment, '~');
        assert_eq!(tokens.segments.len(), 3);
        assert_eq!(tokens.diagnostics[0].code, DiagCode::Separators);
    }

    #[test]
    fn composites_repetitions_and_lowercase() {
        let isa = ISA.replace("*U*00401*", "*^*00501*");
        let input = format!("{isa}~lin*1*A>B*X^Y");
        let tokens = tokenize(input.as_bytes()).unwrap();
        let lin = &tokens.segments[1];
        assert_eq!(lin.id, "LIN");
        assert_eq!(lin.element(2).unwrap().components(), ["A", "B"]);
        assert_eq!(lin.element(3).unwrap().repeats().len(), 2);
        assert!(
            tokens
                .diagnostics
                .iter()
                .any(|d| d.code == DiagCode::Lowercase)
        );
        assert!(
            tokens
                .diagnostics
                .iter()
                .any(|d| d.code == DiagCode::MissingTerminator)
        );
    }

    #[test]
    fn truncated_isa_is_a_positioned_error() {
        let err = tokenize(b"ISA*00*          *00*").unwrap_err();
        assert_eq!(err.diagnostics[0].segment, Some(1));
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
